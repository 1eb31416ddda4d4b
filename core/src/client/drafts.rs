//! Drafts in memory: each loaded Automerge document with the heads last persisted. Every
//! change goes through here, so a draft is written to SQLite before the call returns.
//!
//! Memory is the constraint (automerge 0.6 holds ~2 MB per loaded 5,000-character draft), so
//! two kinds of use keep a draft loaded, and nothing else does:
//! - the app's most recently used drafts, a handful ([`APP_RECENT`]), so that an editor does not
//!   reload its draft on every keystroke;
//! - sync, which *holds* a draft while a message about it is in flight and *releases* it once
//!   both sides agree (see `sync::engine`; it keeps a bounded window of those);
//! - the drafts sync released last, a handful ([`SYNC_RECENT`]), so that a stream of live
//!   edits to one draft does not reload it from SQLite for every change (a 5k draft takes
//!   ~8 ms to load, most of an edit's way from one device to another).
//!
//! Sync reaches documents only through this type: their ids, their per-peer sync states and
//! the drafts themselves.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use automerge::sync::State;
use automerge::{Automerge, ChangeHash};

use super::error::ClientError;
use super::store::Store;
use crate::DocumentId;

/// How many drafts the app used last stay loaded.
pub(crate) const APP_RECENT: usize = 4;
/// How many drafts sync released last stay loaded.
pub(crate) const SYNC_RECENT: usize = 4;

pub(crate) struct Draft {
    pub(crate) doc: Automerge,
    pub(crate) saved_heads: Vec<ChangeHash>,
    /// Sync has a message about it in flight.
    held: bool,
}

#[derive(Default)]
struct Loaded {
    drafts: HashMap<DocumentId, Draft>,
    /// The app's most recently used drafts, newest first.
    recent: VecDeque<DocumentId>,
    /// The drafts sync released last, newest first.
    synced: VecDeque<DocumentId>,
    /// Most drafts ever loaded at once (for tests and the bench).
    high_water: usize,
}

impl Loaded {
    fn insert(&mut self, id: DocumentId, draft: Draft) {
        self.drafts.insert(id, draft);
        self.high_water = self.high_water.max(self.drafts.len());
    }

    /// Marks `id` as used by the app; unloads whatever falls off the recent list.
    fn touch(&mut self, id: DocumentId) {
        self.recent.retain(|r| *r != id);
        self.recent.push_front(id);
        while self.recent.len() > APP_RECENT {
            if let Some(old) = self.recent.pop_back() {
                self.unload_if_unused(&old);
            }
        }
    }

    /// Marks `id` as just released by sync; unloads whatever falls off that list.
    fn synced(&mut self, id: DocumentId) {
        self.synced.retain(|r| *r != id);
        self.synced.push_front(id);
        while self.synced.len() > SYNC_RECENT {
            if let Some(old) = self.synced.pop_back() {
                self.unload_if_unused(&old);
            }
        }
    }

    fn unload_if_unused(&mut self, id: &DocumentId) {
        let held = self.drafts.get(id).is_some_and(|d| d.held);
        if !held && !self.recent.contains(id) && !self.synced.contains(id) {
            self.drafts.remove(id);
        }
    }
}

/// The device's drafts: loaded on use, persisted on every change.
pub(crate) struct Drafts {
    store: Arc<Store>,
    loaded: Mutex<Loaded>,
}

impl Drafts {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            loaded: Mutex::new(Loaded::default()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Loaded>, ClientError> {
        self.loaded
            .lock()
            .map_err(|_| ClientError::Internal("drafts lock poisoned".into()))
    }

    /// Loads `id` into `loaded` if needed; false if the device does not have it.
    fn ensure_loaded(&self, loaded: &mut Loaded, id: &DocumentId) -> Result<bool, ClientError> {
        if loaded.drafts.contains_key(id) {
            return Ok(true);
        }
        match self.store.load_document(id)? {
            Some(l) => {
                loaded.insert(
                    *id,
                    Draft {
                        doc: l.doc,
                        saved_heads: l.saved_heads,
                        held: false,
                    },
                );
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Persists what `draft` has beyond what was last saved.
    fn persist(&self, id: &DocumentId, draft: &mut Draft) -> Result<(), ClientError> {
        if draft.doc.get_heads() != draft.saved_heads {
            self.store
                .save_document(id, &draft.doc, &mut draft.saved_heads)?;
        }
        Ok(())
    }

    // --- The app's side ---------------------------------------------------------------

    /// Stores a document the app created.
    pub(crate) fn insert_new(
        &self,
        id: DocumentId,
        kind: &str,
        doc: Automerge,
    ) -> Result<(), ClientError> {
        let draft = self.store_new(id, kind, doc, false)?;
        let mut loaded = self.lock()?;
        loaded.insert(id, draft);
        loaded.touch(id);
        Ok(())
    }

    /// Writes a new document to the store and returns it as a loaded draft.
    fn store_new(
        &self,
        id: DocumentId,
        kind: &str,
        doc: Automerge,
        held: bool,
    ) -> Result<Draft, ClientError> {
        let mut draft = Draft {
            doc,
            saved_heads: Vec::new(),
            held,
        };
        self.store.insert_document(&id, kind)?;
        self.store
            .save_document(&id, &draft.doc, &mut draft.saved_heads)?;
        Ok(draft)
    }

    /// Runs `f` on the draft (loading it if needed) and persists whatever it changed. The
    /// typed document APIs check an edit before writing, so a failing `f` changes nothing.
    pub(crate) fn edit<T>(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.with_app_draft(id, |draft| {
            let out = f(&mut draft.doc);
            self.persist(id, draft)?;
            out
        })
    }

    /// Runs `f` on the draft without changing it.
    pub(crate) fn read<T>(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&Automerge) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.with_app_draft(id, |draft| f(&draft.doc))
    }

    fn with_app_draft<T>(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut Draft) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut loaded = self.lock()?;
        if !self.ensure_loaded(&mut loaded, id)? {
            return Err(ClientError::NotFound(format!(
                "no draft {id} on this device"
            )));
        }
        loaded.touch(*id);
        match loaded.drafts.get_mut(id) {
            Some(draft) => f(draft),
            None => Err(ClientError::Internal("loaded draft vanished".into())),
        }
    }

    /// Forgets every draft in memory (after sign-out wiped them from the store).
    pub(crate) fn clear(&self) -> Result<(), ClientError> {
        let mut loaded = self.lock()?;
        loaded.drafts.clear();
        loaded.recent.clear();
        loaded.synced.clear();
        Ok(())
    }

    // --- Sync's side ------------------------------------------------------------------

    /// Ids of every document on the device.
    pub(crate) fn ids(&self) -> Result<Vec<DocumentId>, ClientError> {
        Ok(self
            .store
            .list_documents()?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Whether the device has the document.
    pub(crate) fn contains(&self, id: &DocumentId) -> Result<bool, ClientError> {
        if self.lock()?.drafts.contains_key(id) {
            return Ok(true);
        }
        Ok(self.store.has_document(id)?)
    }

    /// The sync state last saved for `id` with `peer`, or a fresh one.
    pub(crate) fn sync_state(&self, id: &DocumentId, peer: &str) -> Result<State, ClientError> {
        Ok(self.store.load_sync_state(id, peer)?.unwrap_or_default())
    }

    /// Saves the sync state of `id` with `peer`.
    pub(crate) fn save_sync_state(
        &self,
        id: &DocumentId,
        peer: &str,
        state: &State,
    ) -> Result<(), ClientError> {
        Ok(self.store.save_sync_state(id, peer, state)?)
    }

    /// Runs `f` on the draft, loading it and holding it loaded until [`Drafts::release`], and
    /// persists whatever `f` changed. `None` if the device does not have it.
    pub(crate) fn hold<T>(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<T, ClientError>,
    ) -> Result<Option<T>, ClientError> {
        self.with_held(id, |draft| {
            let out = f(&mut draft.doc);
            self.persist(id, draft)?;
            out
        })
    }

    /// Loads the draft if needed, marks it held (until [`Drafts::release`]) and runs `f` on it
    /// under the lock. `None` if the device does not have it.
    fn with_held<T>(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut Draft) -> Result<T, ClientError>,
    ) -> Result<Option<T>, ClientError> {
        let mut loaded = self.lock()?;
        if !self.ensure_loaded(&mut loaded, id)? {
            return Ok(None);
        }
        let Some(draft) = loaded.drafts.get_mut(id) else {
            return Ok(None);
        };
        draft.held = true;
        f(draft).map(Some)
    }

    /// Stores a document that arrived from the server, held as by [`Drafts::hold`].
    pub(crate) fn insert_received(
        &self,
        id: DocumentId,
        kind: &str,
        doc: Automerge,
    ) -> Result<(), ClientError> {
        let draft = self.store_new(id, kind, doc, true)?;
        self.lock()?.insert(id, draft);
        Ok(())
    }

    /// Replaces a held draft by `f(draft)`, dropping what `f` left out also from the store (for
    /// rewinding a refused draft). Returns the new heads, `None` if the device lacks it.
    pub(crate) fn rewrite(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&Automerge) -> Result<Automerge, ClientError>,
    ) -> Result<Option<Vec<ChangeHash>>, ClientError> {
        self.with_held(id, |draft| {
            let doc = f(&draft.doc)?;
            self.store.replace_document(id, &doc)?;
            draft.doc = doc;
            draft.saved_heads = draft.doc.get_heads();
            Ok(draft.saved_heads.clone())
        })
    }

    /// Sync is done with `id` for now: unloads it unless the app used it recently.
    pub(crate) fn release(&self, id: &DocumentId) -> Result<(), ClientError> {
        let mut loaded = self.lock()?;
        if let Some(d) = loaded.drafts.get_mut(id) {
            d.held = false;
            loaded.synced(*id);
        }
        Ok(())
    }

    // --- Observation ------------------------------------------------------------------

    /// Ids of the drafts loaded now.
    #[cfg(test)]
    pub(crate) fn loaded_ids(&self) -> Result<std::collections::HashSet<DocumentId>, ClientError> {
        Ok(self.lock()?.drafts.keys().copied().collect())
    }

    /// The most drafts loaded at once since the last call, which resets it to what is loaded
    /// now.
    pub(crate) fn take_high_water(&self) -> Result<usize, ClientError> {
        let mut loaded = self.lock()?;
        let peak = loaded.high_water;
        loaded.high_water = loaded.drafts.len();
        Ok(peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal;

    fn drafts() -> (tempfile::TempDir, Drafts) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, Drafts::new(Arc::new(store)))
    }

    #[test]
    fn the_app_keeps_only_its_recent_drafts_loaded() {
        let (_dir, drafts) = drafts();
        let ids: Vec<_> = (0..APP_RECENT + 3)
            .map(|i| {
                let id = DocumentId::random();
                let doc = proposal::create(&format!("t{i}"), "b", "c").unwrap();
                drafts.insert_new(id, proposal::KIND, doc).unwrap();
                id
            })
            .collect();
        let loaded = drafts.loaded_ids().unwrap();
        assert_eq!(loaded.len(), APP_RECENT);
        assert!(loaded.contains(ids.last().unwrap()));
        assert!(!loaded.contains(&ids[0]));
        // The oldest still reads (from the store) and becomes recent again.
        drafts.read(&ids[0], |_| Ok(())).unwrap();
        assert!(drafts.loaded_ids().unwrap().contains(&ids[0]));
        assert_eq!(drafts.take_high_water().unwrap(), APP_RECENT + 1);
    }

    #[test]
    fn sync_holds_a_draft_until_released_unless_the_app_uses_it() {
        let (_dir, drafts) = drafts();
        let ids: Vec<_> = (0..APP_RECENT + 1)
            .map(|_| {
                let id = DocumentId::random();
                drafts
                    .insert_new(id, proposal::KIND, proposal::create("t", "b", "c").unwrap())
                    .unwrap();
                id
            })
            .collect();
        // ids[0] fell off the app's recent list; sync holds it.
        assert!(!drafts.loaded_ids().unwrap().contains(&ids[0]));
        drafts.hold(&ids[0], |_| Ok(())).unwrap().unwrap();
        // The app touching more drafts does not unload a held one.
        drafts.read(&ids[1], |_| Ok(())).unwrap();
        assert!(drafts.loaded_ids().unwrap().contains(&ids[0]));
        drafts.release(&ids[0]).unwrap();
        // Released, it stays loaded among the drafts sync released last, until
        // `SYNC_RECENT` others are released after it.
        assert!(drafts.loaded_ids().unwrap().contains(&ids[0]));
        let others: Vec<_> = (0..SYNC_RECENT)
            .map(|_| {
                let id = DocumentId::random();
                drafts
                    .insert_new(id, proposal::KIND, proposal::create("t", "b", "c").unwrap())
                    .unwrap();
                id
            })
            .collect();
        for id in &others {
            drafts.hold(id, |_| Ok(())).unwrap().unwrap();
            drafts.release(id).unwrap();
        }
        let loaded = drafts.loaded_ids().unwrap();
        assert!(!loaded.contains(&ids[0]));
        assert!(loaded.len() <= APP_RECENT + SYNC_RECENT, "{}", loaded.len());
        // A recent draft stays loaded after sync releases it.
        let recent = *ids.last().unwrap();
        drafts.hold(&recent, |_| Ok(())).unwrap().unwrap();
        drafts.release(&recent).unwrap();
        assert!(drafts.loaded_ids().unwrap().contains(&recent));
        assert!(drafts
            .hold(&DocumentId::random(), |_| Ok(()))
            .unwrap()
            .is_none());
    }
}
