//! The phone half of the core: one [`Client`] per install, over one SQLite file.
//!
//! Drafts are Automerge documents kept in memory while in use and persisted as
//! content-addressed chunks after every edit; [`Client::sync`] exchanges them with the server
//! over the automerge-repo protocol.

mod api;
mod drafts;
mod error;
mod recover;
pub mod store;
mod sync;

use std::path::Path;
use std::sync::Arc;

pub use error::ClientError;
use store::{AccountRow, Store};
pub use sync::{LiveSync, SyncListener};

use crate::schema::proposal::{self, Proposal, ProposalEdit};
use crate::DocumentId;

/// File name of the install's database inside its data directory.
pub const DATABASE_FILE: &str = "sotong.db";

/// A registered (or not yet registered) device's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// The server's id for the citizen's account.
    pub account_id: i64,
    /// The server's id for this device.
    pub device_id: i64,
    /// The server the account lives on.
    pub server_url: String,
}

/// One line of the drafts list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalSummary {
    /// The draft's id.
    pub id: DocumentId,
    /// Its title.
    pub title: String,
    /// Its category.
    pub category: String,
    /// Last local change, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A draft the server refused during a sync, and why. The draft was rewound to the server's
/// state and its still-valid content replayed on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The draft.
    pub id: DocumentId,
    /// The server's reason.
    pub reason: String,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Drafts whose local changes the server now holds.
    pub documents_sent: u32,
    /// Drafts that received changes from the server (including new ones).
    pub documents_received: u32,
    /// Drafts the server refused changes of.
    pub rejected: Vec<Rejected>,
}

/// The phone's core: its store, its drafts and its connection to the server.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) api: api::Api,
    pub(crate) drafts: drafts::Drafts,
    /// Where local edits are announced while a live sync session runs.
    live: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<DocumentId>>>,
}

impl Inner {
    pub(crate) fn set_live(&self, tx: Option<tokio::sync::mpsc::UnboundedSender<DocumentId>>) {
        if let Ok(mut live) = self.live.lock() {
            *live = tx;
        }
    }

    /// Tells a running live session that a draft changed here.
    fn changed_locally(&self, id: DocumentId) {
        if let Ok(live) = self.live.lock() {
            if let Some(tx) = live.as_ref() {
                let _ = tx.send(id);
            }
        }
    }
}

impl Client {
    /// Opens (creating if needed) the install's data in `data_dir`. `server_url` is used
    /// until the device registers; afterwards the account's server is used.
    pub fn open(data_dir: &Path, server_url: &str) -> Result<Client, ClientError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ClientError::Storage(format!("cannot create the data directory: {e}")))?;
        let store = Store::open(&data_dir.join(DATABASE_FILE))?;
        let url = match store.account()? {
            Some(a) => a.server_url,
            None => server_url.to_owned(),
        };
        let api = api::Api::new(&url)?;
        Ok(Client {
            inner: Arc::new(Inner {
                store,
                api,
                drafts: drafts::Drafts::default(),
                live: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The server this device talks to.
    pub fn server_url(&self) -> String {
        self.inner
            .api
            .base()
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Asks the server to send a one-time code to `phone` (E.164, e.g. "+821012345678").
    pub async fn request_code(&self, phone: &str) -> Result<(), ClientError> {
        self.inner.api.request_code(phone).await
    }

    /// Registers this device with the code received; a second device of the same number
    /// joins the same account.
    pub async fn register(
        &self,
        phone: &str,
        code: &str,
        device_name: &str,
    ) -> Result<AccountInfo, ClientError> {
        let reg = self.inner.api.register(phone, code, device_name).await?;
        let row = AccountRow {
            server_url: self.server_url(),
            account_id: reg.account_id,
            device_id: reg.device_id,
            token: reg.token,
            token_expires_at: reg.expires_at.saturating_mul(1000),
            registered_at: now_millis(),
        };
        self.inner.store.save_account(&row)?;
        Ok(account_info(&row))
    }

    /// The device's account, if registered.
    pub fn account(&self) -> Result<Option<AccountInfo>, ClientError> {
        Ok(self.inner.store.account()?.map(|a| account_info(&a)))
    }

    /// Creates a proposal draft; works offline.
    pub fn create_proposal(
        &self,
        title: &str,
        body: &str,
        category: &str,
    ) -> Result<DocumentId, ClientError> {
        let doc = proposal::create(title, body, category)?;
        let id = DocumentId::random();
        self.inner
            .drafts
            .insert_new(&self.inner.store, id, proposal::KIND, doc)?;
        self.inner.changed_locally(id);
        Ok(id)
    }

    /// Applies one edit to a proposal draft and returns its new content; works offline.
    pub fn edit_proposal(
        &self,
        id: &DocumentId,
        edit: ProposalEdit,
    ) -> Result<Proposal, ClientError> {
        let out = self.inner.drafts.edit(&self.inner.store, id, |doc| {
            proposal::apply(doc, &edit)?;
            Ok(proposal::read(doc)?)
        })?;
        self.inner.changed_locally(*id);
        Ok(out)
    }

    /// A proposal draft's content.
    pub fn read_proposal(&self, id: &DocumentId) -> Result<Proposal, ClientError> {
        self.inner
            .drafts
            .read(&self.inner.store, id, |doc| Ok(proposal::read(doc)?))
    }

    /// Every proposal draft on this device, most recently changed first. Read from the
    /// store's list columns, so listing does not load every draft.
    pub fn list_proposals(&self) -> Result<Vec<ProposalSummary>, ClientError> {
        let mut out = Vec::new();
        for row in self.inner.store.list_documents()? {
            if row.kind != proposal::KIND {
                continue;
            }
            let (title, category) = match (row.title, row.category) {
                (Some(t), Some(c)) => (t, c),
                // Saved before the list columns existed: read it once.
                _ => match self.read_proposal(&row.id) {
                    Ok(p) => (p.title, p.category),
                    // A draft that does not read (e.g. only partly received) is skipped.
                    Err(_) => continue,
                },
            };
            out.push(ProposalSummary {
                id: row.id,
                title,
                category,
                updated_at: row.updated_at,
            });
        }
        Ok(out)
    }

    /// Exchanges every draft with the server until both sides hold the same content.
    pub async fn sync(&self) -> Result<SyncReport, ClientError> {
        sync::sync_once(&self.inner).await
    }

    /// Starts a live sync session: every draft is synced, then the device stays connected,
    /// pushing local edits at once and applying the server's pushes as they come (reported to
    /// `listener`). Returns once connected; needs a tokio runtime.
    pub async fn start_live_sync(
        &self,
        listener: Arc<dyn SyncListener>,
    ) -> Result<LiveSync, ClientError> {
        sync::start_live(self.inner.clone(), listener).await
    }

    /// Test support: changes a draft with raw Automerge operations, bypassing the schema, to
    /// play a tampered or buggy client. Not for production use.
    #[doc(hidden)]
    pub fn tamper_for_tests(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut automerge::Automerge),
    ) -> Result<(), ClientError> {
        self.inner.drafts.edit(&self.inner.store, id, |doc| {
            f(doc);
            Ok(())
        })
    }
}

fn account_info(a: &AccountRow) -> AccountInfo {
    AccountInfo {
        account_id: a.account_id,
        device_id: a.device_id,
        server_url: a.server_url.clone(),
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal::TextField;

    #[test]
    fn drafts_work_offline_and_the_list_does_not_load_them() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens there: everything below is offline.
        let client = Client::open(dir.path(), "http://127.0.0.1:9").unwrap();
        assert_eq!(client.account().unwrap(), None);
        let first = client.create_proposal("first", "one", "a").unwrap();
        let second = client.create_proposal("second", "two", "b").unwrap();
        client
            .edit_proposal(&first, ProposalEdit::SetCategory("changed".into()))
            .unwrap();
        client
            .edit_proposal(
                &second,
                ProposalEdit::Replace {
                    field: TextField::Title,
                    text: "second, renamed".into(),
                },
            )
            .unwrap();
        let err = client
            .edit_proposal(&DocumentId::random(), ProposalEdit::SetCategory("x".into()))
            .unwrap_err();
        assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
        drop(client);

        let client = Client::open(dir.path(), "http://127.0.0.1:9").unwrap();
        let mut listed: Vec<_> = client
            .list_proposals()
            .unwrap()
            .into_iter()
            .map(|s| (s.title, s.category))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ("first".to_owned(), "changed".to_owned()),
                ("second, renamed".to_owned(), "b".to_owned())
            ]
        );
        assert!(client.inner.drafts.loaded_ids().unwrap().is_empty());
        assert_eq!(client.read_proposal(&first).unwrap().body, "one");
    }
}
