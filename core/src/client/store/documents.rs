//! Drafts as Automerge documents, stored as content-addressed chunks.
//!
//! A document is the union of its chunks: snapshots (`save()`) and incremental chunks
//! (`save_after(heads)`), each keyed by the SHA-256 of its bytes. Saving only ever adds a
//! chunk, so two writers (two `Store`s on one file, or the app and a background task) can save
//! concurrently without losing each other's changes. Compaction folds every chunk it read into
//! one new snapshot and deletes exactly those chunks, in one transaction under the write lock.

use automerge::{Automerge, ChangeHash, ObjType, ReadDoc, Value, ROOT};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{now_millis, Store, StoreError};
use crate::DocumentId;

/// `doc_chunks.kind` of a snapshot, from `Automerge::save()`.
const SNAPSHOT: i64 = 0;
/// `doc_chunks.kind` of an incremental chunk, from `Automerge::save_after()`.
const INCREMENTAL: i64 = 1;
/// Without a snapshot, compact once there are more incremental chunks than this.
const MAX_INCREMENTALS_WITHOUT_SNAPSHOT: i64 = 8;
/// Compact once there are more incremental chunks than this, however small they are, so that
/// loading stays one short query.
const MAX_INCREMENTALS: i64 = 256;
/// Longest title kept in `documents.title_cache`, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// A document the phone knows, as listed without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    /// The document's id.
    pub id: DocumentId,
    /// Its schema kind (`"proposal"`, …); empty while not yet known (a document still arriving
    /// by sync).
    pub kind: String,
    /// Its root `title` text as of the last save on this phone, if it has one; for showing a
    /// list of drafts without loading each.
    pub title: Option<String>,
    /// Its root `category` string as of the last save on this phone, if it has one.
    pub category: Option<String>,
    /// When this phone first stored it, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When this phone last stored a change to it, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A document loaded from the store.
#[derive(Debug)]
pub struct LoadedDoc {
    /// The document.
    pub doc: Automerge,
    /// The heads the store already holds; pass to [`Store::save_document`] with the document,
    /// which keeps it current.
    pub saved_heads: Vec<ChangeHash>,
}

/// Inserts the document's row if missing. An existing row keeps its times; its kind is filled
/// in if it was unknown (empty) and `kind` is not.
pub(super) fn ensure_document_row(
    conn: &Connection,
    id: &DocumentId,
    kind: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO documents (doc_id, kind, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (doc_id) DO UPDATE SET kind = excluded.kind
             WHERE documents.kind = '' AND excluded.kind <> ''",
        params![id.as_bytes(), kind, now],
    )?;
    Ok(())
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    crate::hash::sha256(bytes).to_vec()
}

/// The document's kind, from its root `type` field; empty if it has none yet.
fn doc_kind(doc: &Automerge) -> String {
    crate::schema::read_kind(doc).unwrap_or_default()
}

/// The document's root `title`, text or string, shortened for the list cache.
fn doc_title(doc: &Automerge) -> Option<String> {
    let title = match doc.get(ROOT, "title").ok()?? {
        (Value::Object(ObjType::Text), obj) => doc.text(obj).ok()?,
        (Value::Scalar(s), _) => s.to_str()?.to_owned(),
        _ => return None,
    };
    Some(title.chars().take(MAX_TITLE_CHARS).collect())
}

/// The document's root `category` string, for the list cache.
fn doc_category(doc: &Automerge) -> Option<String> {
    crate::schema::read_str(doc, "category").ok()
}

/// Counts and total sizes of a document's chunks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ChunkStats {
    snapshots: i64,
    snapshot_bytes: i64,
    incrementals: i64,
    incremental_bytes: i64,
}

impl ChunkStats {
    fn read(conn: &Connection, id: &DocumentId) -> Result<Self, StoreError> {
        let mut stats = ChunkStats::default();
        let mut stmt = conn.prepare_cached(
            "SELECT kind, count(*), sum(length(bytes)) FROM doc_chunks
             WHERE doc_id = ?1 GROUP BY kind",
        )?;
        let mut rows = stmt.query(params![id.as_bytes()])?;
        while let Some(row) = rows.next()? {
            let (count, bytes): (i64, i64) = (row.get(1)?, row.get(2)?);
            match row.get::<_, i64>(0)? {
                SNAPSHOT => (stats.snapshots, stats.snapshot_bytes) = (count, bytes),
                _ => (stats.incrementals, stats.incremental_bytes) = (count, bytes),
            }
        }
        Ok(stats)
    }

    fn needs_compaction(&self) -> bool {
        if self.snapshots == 0 {
            return self.incrementals > MAX_INCREMENTALS_WITHOUT_SNAPSHOT;
        }
        // Two snapshots: two writers compacted from different states; fold them together.
        self.snapshots > 1
            || self.incrementals > MAX_INCREMENTALS
            || (self.incrementals > 0 && self.incremental_bytes > self.snapshot_bytes)
    }
}

/// One stored chunk.
struct StoredChunk {
    hash: Vec<u8>,
    bytes: Vec<u8>,
}

/// Every chunk of a document, snapshots first and largest first (the first chunk of a load is
/// rebuilt directly; the rest are applied as changes).
fn read_chunks(conn: &Connection, id: &DocumentId) -> Result<Vec<StoredChunk>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, bytes FROM doc_chunks WHERE doc_id = ?1
         ORDER BY kind, length(bytes) DESC, hash",
    )?;
    let rows = stmt.query_map(params![id.as_bytes()], |r| {
        Ok(StoredChunk {
            hash: r.get(0)?,
            bytes: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn read_chunk_hashes(conn: &Connection, id: &DocumentId) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT hash FROM doc_chunks WHERE doc_id = ?1")?;
    let rows = stmt.query_map(params![id.as_bytes()], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Loads concatenated chunks; `Automerge::load` accepts a document chunk followed by any
/// mixture of change and document chunks.
fn load_chunks(chunks: &[StoredChunk]) -> Result<Automerge, StoreError> {
    let mut all = Vec::with_capacity(chunks.iter().map(|c| c.bytes.len()).sum());
    for chunk in chunks {
        all.extend_from_slice(&chunk.bytes);
    }
    Automerge::load(&all)
        .map_err(|e| StoreError::Corrupt(format!("document chunks do not load: {e}")))
}

fn insert_chunk(
    conn: &Connection,
    id: &DocumentId,
    kind: i64,
    bytes: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let hash = sha256(bytes);
    conn.prepare_cached(
        "INSERT INTO doc_chunks (doc_id, hash, kind, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (doc_id, hash) DO NOTHING",
    )?
    .execute(params![id.as_bytes(), hash, kind, bytes])?;
    Ok(hash)
}

/// Replaces the document's chunks by one snapshot if they have outgrown the last one. Must run
/// under the write lock (an IMMEDIATE transaction): no chunk can then be added between reading
/// the chunks and deleting them. Returns whether it compacted.
fn compact_if_needed(
    conn: &Connection,
    id: &DocumentId,
    doc: &Automerge,
) -> Result<bool, StoreError> {
    if !ChunkStats::read(conn, id)?.needs_compaction() {
        return Ok(false);
    }
    let chunks = read_chunks(conn, id)?;
    // The snapshot is built from what the store holds, not from `doc` alone: another writer's
    // chunks may hold changes `doc` has never seen, and they are about to be deleted.
    let mut merged = match load_chunks(&chunks) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(doc = %id, error = %e, "not compacting a document that does not load");
            return Ok(false);
        }
    };
    // `doc` may hold the dependencies of a stored change that arrived before them.
    if let Err(e) = merged.apply_changes(doc.get_changes(&[]).into_iter().cloned()) {
        // Keep the save that was just written; compaction can wait.
        tracing::warn!(doc = %id, error = %e, "not compacting: document changes do not apply");
        return Ok(false);
    }
    if !merged.get_missing_deps(&[]).is_empty() {
        // `save()` would drop changes still waiting for their dependencies.
        tracing::warn!(doc = %id, "not compacting a document with missing dependencies");
        return Ok(false);
    }
    let snapshot_hash = insert_chunk(conn, id, SNAPSHOT, &merged.save())?;
    let mut delete =
        conn.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1 AND hash = ?2")?;
    for chunk in &chunks {
        if chunk.hash != snapshot_hash {
            delete.execute(params![id.as_bytes(), chunk.hash])?;
        }
    }
    Ok(true)
}

impl Store {
    /// Registers a document of `kind` (idempotent: an existing document is left as it is,
    /// except that an unknown kind is filled in).
    pub fn insert_document(&self, id: &DocumentId, kind: &str) -> Result<(), StoreError> {
        let conn = self.writer()?;
        ensure_document_row(&conn, id, kind, now_millis())
    }

    /// Every document the phone knows, most recently updated first.
    pub fn list_documents(&self) -> Result<Vec<DocumentRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc_id, kind, title_cache, category_cache, created_at, updated_at FROM documents
                 ORDER BY updated_at DESC, created_at DESC, doc_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.map(|row| {
                let (id, kind, title, category, created_at, updated_at) = row?;
                Ok(DocumentRow {
                    id: DocumentId::from_bytes(&id)
                        .map_err(|_| StoreError::Corrupt("document id is not 16 bytes".into()))?,
                    kind,
                    title,
                    category,
                    created_at,
                    updated_at,
                })
            })
            .collect()
        })
    }

    /// Whether the phone knows the document (without loading it).
    pub fn has_document(&self, id: &DocumentId) -> Result<bool, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM documents WHERE doc_id = ?1",
                params![id.as_bytes()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }

    /// Loads a document from all its stored chunks, or `None` if the phone does not know it.
    /// A known document with nothing saved yet loads as an empty document.
    pub fn load_document(&self, id: &DocumentId) -> Result<Option<LoadedDoc>, StoreError> {
        let chunks = self.read(|c| {
            // One read transaction, so a compaction in between cannot be seen half done.
            let tx = c.unchecked_transaction()?;
            let known = tx
                .query_row(
                    "SELECT 1 FROM documents WHERE doc_id = ?1",
                    params![id.as_bytes()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let chunks = if known {
                Some(read_chunks(&tx, id)?)
            } else {
                None
            };
            tx.finish()?;
            Ok(chunks)
        })?;
        let Some(chunks) = chunks else {
            return Ok(None);
        };
        let doc = load_chunks(&chunks)?;
        let saved_heads = doc.get_heads();
        Ok(Some(LoadedDoc { doc, saved_heads }))
    }

    /// Saves what `doc` has beyond `saved_heads` as one incremental chunk, then sets
    /// `saved_heads` to the document's heads. Works for a new document (empty `saved_heads`)
    /// and registers it if the phone did not know it yet, taking its kind from its `type`
    /// field. Compacts the stored chunks into one snapshot when they have outgrown the last
    /// one; chunks saved meanwhile by another writer are kept in it, never lost.
    pub fn save_document(
        &self,
        id: &DocumentId,
        doc: &Automerge,
        saved_heads: &mut Vec<ChangeHash>,
    ) -> Result<(), StoreError> {
        let incremental = doc.save_after(saved_heads);
        let now = now_millis();
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_document_row(&tx, id, &doc_kind(doc), now)?;
        if !incremental.is_empty() {
            insert_chunk(&tx, id, INCREMENTAL, &incremental)?;
            tx.execute(
                "UPDATE documents SET updated_at = ?2, title_cache = ?3, category_cache = ?4
                 WHERE doc_id = ?1",
                params![id.as_bytes(), now, doc_title(doc), doc_category(doc)],
            )?;
        }
        compact_if_needed(&tx, id, doc)?;
        tx.commit()?;
        *saved_heads = doc.get_heads();
        Ok(())
    }

    /// Replaces everything stored for a document by one snapshot of `doc`, deliberately
    /// dropping changes `doc` lacks: for rewinding a draft whose changes the server refused, so
    /// that they do not come back on the next load. Unlike [`Store::save_document`] this
    /// discards chunks saved by any other writer meanwhile; callers must hold the only copy of
    /// the draft in use (the client's draft cache does). Afterwards the stored heads are
    /// `doc.get_heads()`.
    pub fn replace_document(&self, id: &DocumentId, doc: &Automerge) -> Result<(), StoreError> {
        let now = now_millis();
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ensure_document_row(&tx, id, &doc_kind(doc), now)?;
        let old = read_chunk_hashes(&tx, id)?;
        let snapshot_hash = insert_chunk(&tx, id, SNAPSHOT, &doc.save())?;
        let mut delete =
            tx.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1 AND hash = ?2")?;
        for hash in old.iter().filter(|h| **h != snapshot_hash) {
            delete.execute(params![id.as_bytes(), hash])?;
        }
        drop(delete);
        tx.execute(
            "UPDATE documents SET updated_at = ?2, title_cache = ?3, category_cache = ?4
             WHERE doc_id = ?1",
            params![id.as_bytes(), now, doc_title(doc), doc_category(doc)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a document: its chunks and sync states go with it.
    pub fn delete_document(&self, id: &DocumentId) -> Result<(), StoreError> {
        self.writer()?.execute(
            "DELETE FROM documents WHERE doc_id = ?1",
            params![id.as_bytes()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal::{self, Proposal, ProposalEdit, TextField};
    use std::path::Path;

    impl Store {
        fn chunk_stats(&self, id: &DocumentId) -> ChunkStats {
            ChunkStats::read(&self.writer().unwrap(), id).unwrap()
        }
    }

    fn open(path: &Path) -> Store {
        Store::open(path).unwrap()
    }

    #[test]
    fn reopen_restores_every_draft() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = open(&path);
        let mut expected = Vec::new();
        for i in 0..4 {
            let id = DocumentId::random();
            let mut doc = proposal::create(&format!("Draft {i}"), "", "transport").unwrap();
            let mut heads = Vec::new();
            store.insert_document(&id, proposal::KIND).unwrap();
            store.save_document(&id, &doc, &mut heads).unwrap();
            assert_eq!(heads, doc.get_heads());
            for (n, word) in ["more ", "buses ", "please"].iter().enumerate() {
                let len = proposal::read(&doc).unwrap().body.chars().count();
                proposal::apply(&mut doc, &ProposalEdit::insert(TextField::Body, len, *word))
                    .unwrap();
                // Some drafts are saved after every edit, others once after several.
                if i % 2 == 0 || n == 2 {
                    store.save_document(&id, &doc, &mut heads).unwrap();
                }
            }
            proposal::apply(&mut doc, &ProposalEdit::SetCategory(format!("cat{i}"))).unwrap();
            store.save_document(&id, &doc, &mut heads).unwrap();
            expected.push((id, proposal::read(&doc).unwrap(), doc.get_heads()));
        }
        drop(store);

        let store = open(&path);
        let rows = store.list_documents().unwrap();
        assert_eq!(rows.len(), 4);
        for (id, content, heads) in &expected {
            let row = rows.iter().find(|r| r.id == *id).unwrap();
            assert_eq!(row.kind, proposal::KIND);
            assert_eq!(row.title.as_deref(), Some(content.title.as_str()));
            let loaded = store.load_document(id).unwrap().unwrap();
            assert_eq!(&proposal::read(&loaded.doc).unwrap(), content);
            assert_eq!(&loaded.saved_heads, heads);
            assert_eq!(&loaded.doc.get_heads(), heads);
        }
        assert_eq!(
            proposal::read(&store.load_document(&expected[3].0).unwrap().unwrap().doc).unwrap(),
            Proposal {
                title: "Draft 3".into(),
                body: "more buses please".into(),
                category: "cat3".into(),
            }
        );
    }

    #[test]
    fn list_is_newest_updated_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.db"));
        let ids: Vec<_> = (0..3).map(|_| DocumentId::random()).collect();
        for id in &ids {
            store.insert_document(id, proposal::KIND).unwrap();
        }
        let w = store.writer().unwrap();
        for (i, id) in ids.iter().enumerate() {
            w.execute(
                "UPDATE documents SET updated_at = ?2 WHERE doc_id = ?1",
                params![id.as_bytes(), [30, 10, 20][i]],
            )
            .unwrap();
        }
        drop(w);
        let listed: Vec<_> = store
            .list_documents()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, vec![ids[0], ids[2], ids[1]]);
    }

    #[test]
    fn insert_is_idempotent_and_unknown_documents_load_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.db"));
        let id = DocumentId::random();
        assert!(store.load_document(&id).unwrap().is_none());

        store.insert_document(&id, "").unwrap();
        store.insert_document(&id, proposal::KIND).unwrap();
        store.insert_document(&id, "something-else").unwrap();
        let rows = store.list_documents().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].kind,
            proposal::KIND,
            "unknown kind filled in once, then kept"
        );

        let empty = store.load_document(&id).unwrap().unwrap();
        assert!(empty.saved_heads.is_empty());

        store.delete_document(&id).unwrap();
        assert!(store.load_document(&id).unwrap().is_none());
    }

    #[test]
    fn saving_an_unregistered_document_registers_it_with_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.db"));
        let id = DocumentId::random();
        let doc = proposal::create("From sync", "", "x").unwrap();
        let mut heads = Vec::new();
        store.save_document(&id, &doc, &mut heads).unwrap();
        let rows = store.list_documents().unwrap();
        assert_eq!(rows[0].kind, proposal::KIND);
        assert_eq!(rows[0].title.as_deref(), Some("From sync"));
        // Nothing new: no chunk written.
        let before = store.chunk_stats(&id);
        store.save_document(&id, &doc, &mut heads).unwrap();
        assert_eq!(store.chunk_stats(&id), before);
    }

    #[test]
    fn compaction_happens_and_the_reopened_doc_is_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = open(&path);
        let id = DocumentId::random();
        let mut doc = proposal::create("Bike lanes", "", "transport").unwrap();
        let mut heads = Vec::new();
        let mut saw_snapshot = false;
        for i in 0..200 {
            proposal::apply(&mut doc, &ProposalEdit::insert(TextField::Body, i, "x")).unwrap();
            store.save_document(&id, &doc, &mut heads).unwrap();
            let stats = store.chunk_stats(&id);
            assert!(stats.snapshots <= 1, "{stats:?}");
            saw_snapshot |= stats.snapshots == 1;
            if stats.snapshots == 0 {
                assert!(stats.incrementals <= MAX_INCREMENTALS_WITHOUT_SNAPSHOT);
            } else {
                assert!(stats.incremental_bytes <= stats.snapshot_bytes, "{stats:?}");
            }
        }
        assert!(saw_snapshot);
        let stats = store.chunk_stats(&id);
        assert!(stats.snapshots + stats.incrementals < 50, "{stats:?}");
        drop(store);

        let store = open(&path);
        let loaded = store.load_document(&id).unwrap().unwrap();
        assert_eq!(loaded.doc.get_heads(), doc.get_heads());
        assert_eq!(
            proposal::read(&loaded.doc).unwrap(),
            proposal::read(&doc).unwrap()
        );
        assert_eq!(proposal::read(&doc).unwrap().body, "x".repeat(200));
    }

    #[test]
    fn two_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a = open(&path);
        let b = open(&path);
        let id = DocumentId::random();

        let doc = proposal::create("Title", "Body", "c").unwrap();
        let mut heads = Vec::new();
        a.save_document(&id, &doc, &mut heads).unwrap();

        // Both load the same state, then edit it differently.
        let mut in_a = a.load_document(&id).unwrap().unwrap();
        let mut in_b = b.load_document(&id).unwrap().unwrap();
        proposal::apply(
            &mut in_b.doc,
            &ProposalEdit::insert(TextField::Body, 0, "B says: "),
        )
        .unwrap();

        // A saves many times, compacting along the way, while B's edit is not saved yet.
        for i in 0..40 {
            proposal::apply(
                &mut in_a.doc,
                &ProposalEdit::insert(TextField::Title, 5 + i, "!"),
            )
            .unwrap();
            a.save_document(&id, &in_a.doc, &mut in_a.saved_heads)
                .unwrap();
        }
        assert_eq!(a.chunk_stats(&id).snapshots, 1);
        // B saves its edit, then enough more to compact: its snapshot must keep A's edits,
        // which B's own document has never seen.
        b.save_document(&id, &in_b.doc, &mut in_b.saved_heads)
            .unwrap();
        let mut b_compacted = false;
        for i in 0..40 {
            let before = b.chunk_stats(&id);
            proposal::apply(
                &mut in_b.doc,
                &ProposalEdit::insert(TextField::Body, 8 + i, "b"),
            )
            .unwrap();
            b.save_document(&id, &in_b.doc, &mut in_b.saved_heads)
                .unwrap();
            b_compacted |= b.chunk_stats(&id).incrementals <= before.incrementals;
        }
        assert!(b_compacted);
        // And A saves once more on top of B's compaction.
        proposal::apply(&mut in_a.doc, &ProposalEdit::SetCategory("from-a".into())).unwrap();
        a.save_document(&id, &in_a.doc, &mut in_a.saved_heads)
            .unwrap();
        drop((a, b));

        let store = open(&path);
        let loaded = store.load_document(&id).unwrap().unwrap();
        let p = proposal::read(&loaded.doc).unwrap();
        assert_eq!(p.title, format!("Title{}", "!".repeat(40)));
        assert_eq!(p.body, format!("B says: {}Body", "b".repeat(40)));
        assert_eq!(p.category, "from-a");
        let mut expected = in_a.doc.clone();
        expected.merge(&mut in_b.doc.clone()).unwrap();
        assert_eq!(loaded.doc.get_heads(), expected.get_heads());
    }

    #[test]
    fn two_threads_saving_concurrently_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let id = DocumentId::random();
        let base = proposal::create("", "", "c").unwrap();
        let mut heads = Vec::new();
        open(&path).save_document(&id, &base, &mut heads).unwrap();

        let handles: Vec<_> = [TextField::Title, TextField::Body]
            .into_iter()
            .map(|field| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    let mut mine = store.load_document(&id).unwrap().unwrap();
                    for i in 0..60 {
                        proposal::apply(&mut mine.doc, &ProposalEdit::insert(field, i, "z"))
                            .unwrap();
                        store
                            .save_document(&id, &mine.doc, &mut mine.saved_heads)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let p = proposal::read(&open(&path).load_document(&id).unwrap().unwrap().doc).unwrap();
        assert_eq!(p.title, "z".repeat(60));
        assert_eq!(p.body, "z".repeat(60));
    }

    #[test]
    fn replace_drops_what_the_replacement_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = open(&path);
        let id = DocumentId::random();
        let base = proposal::create("Accepted", "", "c").unwrap();
        let mut doc = base.clone();
        let mut heads = Vec::new();
        for i in 0..12 {
            proposal::apply(&mut doc, &ProposalEdit::insert(TextField::Body, i, "r")).unwrap();
            store.save_document(&id, &doc, &mut heads).unwrap();
        }
        // Rewind to the accepted state: the refused edits must not come back.
        store.replace_document(&id, &base).unwrap();
        assert_eq!(
            store.chunk_stats(&id),
            ChunkStats {
                snapshots: 1,
                snapshot_bytes: i64::try_from(base.save().len()).unwrap(),
                incrementals: 0,
                incremental_bytes: 0,
            }
        );
        drop(store);
        let loaded = open(&path).load_document(&id).unwrap().unwrap();
        assert_eq!(loaded.saved_heads, base.get_heads());
        assert_eq!(proposal::read(&loaded.doc).unwrap().body, "");
    }

    #[test]
    fn a_corrupt_chunk_is_reported_not_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.db"));
        let id = DocumentId::random();
        let doc = proposal::create("t", "b", "c").unwrap();
        store.save_document(&id, &doc, &mut Vec::new()).unwrap();
        store
            .writer()
            .unwrap()
            .execute("UPDATE doc_chunks SET bytes = x'00112233'", [])
            .unwrap();
        assert!(matches!(
            store.load_document(&id),
            Err(StoreError::Corrupt(_))
        ));
    }
}
