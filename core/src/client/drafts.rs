//! Drafts in memory: each loaded Automerge document with the heads last persisted. Every
//! change goes through here, so a draft is written to SQLite before the call returns.

use std::collections::HashMap;
use std::sync::Mutex;

use automerge::{Automerge, ChangeHash};

use super::error::ClientError;
use super::store::Store;
use crate::DocumentId;

pub(crate) struct Draft {
    pub(crate) doc: Automerge,
    pub(crate) saved_heads: Vec<ChangeHash>,
}

#[derive(Default)]
pub(crate) struct Drafts {
    loaded: Mutex<HashMap<DocumentId, Draft>>,
}

impl Drafts {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<DocumentId, Draft>>, ClientError> {
        self.loaded
            .lock()
            .map_err(|_| ClientError::Internal("drafts lock poisoned".into()))
    }

    /// Stores a newly created document.
    pub(crate) fn insert_new(
        &self,
        store: &Store,
        id: DocumentId,
        kind: &str,
        doc: Automerge,
    ) -> Result<(), ClientError> {
        let mut draft = Draft {
            doc,
            saved_heads: Vec::new(),
        };
        store.insert_document(&id, kind)?;
        store.save_document(&id, &draft.doc, &mut draft.saved_heads)?;
        self.lock()?.insert(id, draft);
        Ok(())
    }

    /// Runs `f` on the draft (loading it if needed) and persists whatever it changed. The
    /// typed document APIs check an edit before writing, so a failing `f` changes nothing.
    pub(crate) fn edit<T>(
        &self,
        store: &Store,
        id: &DocumentId,
        f: impl FnOnce(&mut Automerge) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.with_draft(store, id, |draft| {
            let out = f(&mut draft.doc);
            if draft.doc.get_heads() != draft.saved_heads {
                store.save_document(id, &draft.doc, &mut draft.saved_heads)?;
            }
            out
        })
    }

    /// Ids of the drafts loaded now.
    pub(crate) fn loaded_ids(&self) -> Result<std::collections::HashSet<DocumentId>, ClientError> {
        Ok(self.lock()?.keys().copied().collect())
    }

    /// Drops a draft from memory (it is persisted; the next use loads it again).
    pub(crate) fn unload(&self, id: &DocumentId) -> Result<(), ClientError> {
        self.lock()?.remove(id);
        Ok(())
    }

    /// Runs `f` on the draft without changing it.
    pub(crate) fn read<T>(
        &self,
        store: &Store,
        id: &DocumentId,
        f: impl FnOnce(&Automerge) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.with_draft(store, id, |draft| f(&draft.doc))
    }

    /// Runs `f` on the loaded draft, `None` if the device does not have it.
    pub(crate) fn with_draft_opt<T>(
        &self,
        store: &Store,
        id: &DocumentId,
        f: impl FnOnce(&mut Draft) -> Result<T, ClientError>,
    ) -> Result<Option<T>, ClientError> {
        let mut loaded = self.lock()?;
        if !loaded.contains_key(id) {
            match store.load_document(id)? {
                Some(l) => {
                    loaded.insert(
                        *id,
                        Draft {
                            doc: l.doc,
                            saved_heads: l.saved_heads,
                        },
                    );
                }
                None => return Ok(None),
            }
        }
        match loaded.get_mut(id) {
            Some(draft) => f(draft).map(Some),
            None => Ok(None),
        }
    }

    fn with_draft<T>(
        &self,
        store: &Store,
        id: &DocumentId,
        f: impl FnOnce(&mut Draft) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.with_draft_opt(store, id, f)?
            .ok_or_else(|| ClientError::NotFound(format!("no draft {id} on this device")))
    }
}
