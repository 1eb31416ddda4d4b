//! Automerge sync state per (document, peer), so that a reconnect resumes from what the peer
//! already has instead of starting over.

use automerge::sync::State;
use rusqlite::{params, OptionalExtension};

use super::documents::ensure_document_row;
use super::{now_millis, Store, StoreError};
use crate::DocumentId;

impl Store {
    /// The sync state last saved for `id` with `peer`, or `None` if there is none. A stored
    /// state that no longer decodes is treated as none (the sync simply starts over), with a
    /// warning in the log.
    pub fn load_sync_state(
        &self,
        id: &DocumentId,
        peer: &str,
    ) -> Result<Option<State>, StoreError> {
        let bytes: Option<Vec<u8>> = self.read(|c| {
            Ok(c.query_row(
                "SELECT state FROM sync_states WHERE doc_id = ?1 AND peer = ?2",
                params![id.as_bytes(), peer],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        Ok(bytes.and_then(|b| match State::decode(&b) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(doc = %id, error = %e, "stored sync state does not decode; starting over");
                None
            }
        }))
    }

    /// Saves the sync state for `id` with `peer`, replacing the previous one. Creates the
    /// document's row if the phone did not know the document yet.
    pub fn save_sync_state(
        &self,
        id: &DocumentId,
        peer: &str,
        state: &State,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        ensure_document_row(&tx, id, "", now_millis())?;
        tx.execute(
            "INSERT INTO sync_states (doc_id, peer, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (doc_id, peer) DO UPDATE SET state = excluded.state",
            params![id.as_bytes(), peer, state.encode()],
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::sync::SyncDoc;

    #[test]
    fn sync_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let id = DocumentId::random();
        assert!(store.load_sync_state(&id, "server").unwrap().is_none());

        // A state with shared heads, from a real sync between two documents.
        let mut ours = crate::schema::proposal::create("t", "b", "c").unwrap();
        let mut theirs = automerge::Automerge::new();
        let (mut s1, mut s2) = (State::new(), State::new());
        for _ in 0..10 {
            let m1 = ours.generate_sync_message(&mut s1);
            if let Some(m) = &m1 {
                theirs.receive_sync_message(&mut s2, m.clone()).unwrap();
            }
            let m2 = theirs.generate_sync_message(&mut s2);
            if let Some(m) = &m2 {
                ours.receive_sync_message(&mut s1, m.clone()).unwrap();
            }
            if m1.is_none() && m2.is_none() {
                break;
            }
        }
        assert_eq!(s1.shared_heads, ours.get_heads());

        store.save_sync_state(&id, "server", &s1).unwrap();
        store
            .save_sync_state(&id, "other-peer", &State::new())
            .unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        let back = store.load_sync_state(&id, "server").unwrap().unwrap();
        assert_eq!(back.shared_heads, s1.shared_heads);
        assert_eq!(back.encode(), s1.encode());
        let other = store.load_sync_state(&id, "other-peer").unwrap().unwrap();
        assert!(other.shared_heads.is_empty());
        assert!(store.load_sync_state(&id, "nobody").unwrap().is_none());
    }

    #[test]
    fn corrupt_sync_state_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let id = DocumentId::random();
        store.save_sync_state(&id, "server", &State::new()).unwrap();
        store
            .writer()
            .unwrap()
            .execute("UPDATE sync_states SET state = x'ff00ff'", [])
            .unwrap();
        assert!(store.load_sync_state(&id, "server").unwrap().is_none());
    }
}
