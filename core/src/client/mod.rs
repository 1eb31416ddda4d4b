//! The phone half of the core: one [`Client`] per install, over one SQLite file.
//!
//! Drafts are Automerge documents kept in memory while in use and persisted as
//! content-addressed chunks after every edit; [`Client::sync`] exchanges them with the server
//! over the automerge-repo protocol. The `sos_*` methods ([`sos`]) are the SOS silent call:
//! incidents, fixes and their own send queue, PINs and the duress cover, the SMS fallback.

mod api;
mod backoff;
mod drafts;
mod error;
mod recover;
pub mod sos;
pub mod store;
mod sync;

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

pub use error::ClientError;
pub use sos::{
    FeedbackStatus, SendFailure, SmsText, SosError, SosLinkState, SosListener, SosMessage,
    SosOptions, SosStatus, SosTransport,
};
use store::{AccountRow, Store};
use sync::{Device, Nudge};
pub use sync::{LiveOptions, LiveState, LiveSync, Rejected, SyncListener, SyncReport};

use crate::clock::{Clock, SystemClock};
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

/// The phone's core: its store, its drafts and its connection to the server.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    device: Arc<Device>,
    /// Where local edits are announced while a live sync session runs.
    live: Mutex<Option<mpsc::UnboundedSender<Nudge>>>,
    /// The clock SOS times come from (injectable for tests).
    clock: Arc<dyn Clock>,
    /// Wakes the SOS beacon sender when a beacon is queued.
    sos_wake: Arc<tokio::sync::Notify>,
}

impl Inner {
    fn store(&self) -> &Store {
        &self.device.store
    }

    fn drafts(&self) -> &drafts::Drafts {
        &self.device.drafts
    }

    /// Tells a running live session, if any.
    fn nudge(&self, nudge: Nudge) {
        if let Ok(live) = self.live.lock() {
            if let Some(tx) = live.as_ref() {
                let _ = tx.send(nudge);
            }
        }
    }
}

impl Client {
    /// Opens (creating if needed) the install's data in `data_dir`. `server_url` is used
    /// until the device registers; afterwards the account's server is used.
    pub fn open(data_dir: &Path, server_url: &str) -> Result<Client, ClientError> {
        Self::open_with_clock(data_dir, server_url, Arc::new(SystemClock))
    }

    /// [`Client::open`] with another clock for time-dependent rules (SOS cadence, fix
    /// validation, record times): tests pass a [`crate::clock::ManualClock`].
    pub fn open_with_clock(
        data_dir: &Path,
        server_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Client, ClientError> {
        std::fs::create_dir_all(data_dir)?;
        let store = Arc::new(Store::open(&data_dir.join(DATABASE_FILE))?);
        let url = match store.account()? {
            Some(a) => a.server_url,
            // Signed out with an SOS incident unfinished: its server, until it is done.
            None => match store.sos_read(store::sos::kept_credential)? {
                Some((url, _)) => url,
                None => server_url.to_owned(),
            },
        };
        let api = api::Api::new(&url)?;
        Ok(Client {
            inner: Arc::new(Inner {
                device: Arc::new(Device {
                    drafts: Arc::new(drafts::Drafts::new(store.clone())),
                    store,
                    api,
                    sos_lane: sos::lane::SosLane::default(),
                }),
                live: Mutex::new(None),
                clock,
                sos_wake: Arc::new(tokio::sync::Notify::new()),
            }),
        })
    }

    /// The server this device talks to.
    pub fn server_url(&self) -> String {
        self.inner
            .device
            .api
            .base()
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Asks the server to send a one-time code to `phone` (E.164, e.g. "+821012345678").
    pub async fn request_code(&self, phone: &str) -> Result<(), ClientError> {
        self.inner.device.api.request_code(phone).await
    }

    /// Registers this device with the code received; a second device of the same number
    /// joins the same account.
    pub async fn register(
        &self,
        phone: &str,
        code: &str,
        device_name: &str,
    ) -> Result<AccountInfo, ClientError> {
        let reg = self
            .inner
            .device
            .api
            .register(phone, code, device_name)
            .await?;
        let row = AccountRow {
            server_url: self.server_url(),
            account_id: reg.account_id,
            device_id: reg.device_id,
            token: reg.token,
            token_expires_at: reg.expires_at.saturating_mul(1000),
            registered_at: now_millis(),
        };
        self.inner.store().save_account(&row)?;
        Ok(account_info(&row))
    }

    /// The device's account, if registered.
    pub fn account(&self) -> Result<Option<AccountInfo>, ClientError> {
        Ok(self.inner.store().account()?.map(|a| account_info(&a)))
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
        self.inner.drafts().insert_new(id, proposal::KIND, doc)?;
        self.inner.nudge(Nudge::Changed(id));
        Ok(id)
    }

    /// Applies one edit to a proposal draft and returns its new content; works offline.
    pub fn edit_proposal(
        &self,
        id: &DocumentId,
        edit: ProposalEdit,
    ) -> Result<Proposal, ClientError> {
        let out = self.inner.drafts().edit(id, |doc| {
            proposal::apply(doc, &edit)?;
            Ok(proposal::read(doc)?)
        })?;
        self.inner.nudge(Nudge::Changed(*id));
        Ok(out)
    }

    /// A proposal draft's content.
    pub fn read_proposal(&self, id: &DocumentId) -> Result<Proposal, ClientError> {
        self.inner.drafts().read(id, |doc| Ok(proposal::read(doc)?))
    }

    /// Every proposal draft on this device, most recently changed first. Read from the
    /// store's list columns, so listing does not load every draft.
    pub fn list_proposals(&self) -> Result<Vec<ProposalSummary>, ClientError> {
        let mut out = Vec::new();
        for row in self.inner.store().list_documents()? {
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
        sync::sync_once(&self.inner.device).await
    }

    /// Starts a live sync session: every draft is synced, then the device stays connected,
    /// pushing local edits at once and applying the server's pushes as they come (reported to
    /// `listener`). A lost connection is retried with backoff until the session is stopped or
    /// fails for good (refused token, sign-out). Returns once the first connection is online
    /// or has failed in a way worth retrying; needs a tokio runtime. One live session per
    /// client: a second one takes over the device's edit notifications.
    pub async fn start_live_sync(
        &self,
        listener: Arc<dyn SyncListener>,
    ) -> Result<LiveSync, ClientError> {
        self.start_live_sync_with(listener, LiveOptions::default())
            .await
    }

    /// [`Client::start_live_sync`] with other timings (ping, silence, backoff).
    pub async fn start_live_sync_with(
        &self,
        listener: Arc<dyn SyncListener>,
        options: LiveOptions,
    ) -> Result<LiveSync, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut live) = self.inner.live.lock() {
            *live = Some(tx);
        }
        sync::start_live(self.inner.device.clone(), listener, options, rx).await
    }

    /// Signs this device out: forgets its token and account, and wipes its drafts (they
    /// belong to the account; kept, they would sync into the next account registered here).
    /// Sync first to keep unsent changes. A running live session stops. The server is not
    /// told (it has no logout route yet): the token stays valid there until it expires.
    ///
    /// SOS (ADR 0005, "Sign-out"): the data of every incident that is over and delivered
    /// (trail, messages, feedback) is wiped. A live incident (under the duress cover too)
    /// or one with fixes not yet delivered is kept, with the account's server and token for
    /// the SOS sender alone, so that a person in danger who signs out by mistake (or is
    /// made to) loses no fix and shows nothing different; once it has ended and everything
    /// is delivered the sender wipes it and the kept token.
    pub fn sign_out(&self) -> Result<(), ClientError> {
        self.inner.nudge(Nudge::SignedOut);
        let account = self.inner.store().account()?;
        let kept = self.inner.store().sos_write(|tx| {
            store::sos::sign_out(
                tx,
                account
                    .as_ref()
                    .map(|a| (a.server_url.as_str(), a.token.as_str())),
            )
        })?;
        if kept {
            tracing::info!("sign-out: an SOS incident is unfinished; its data is kept");
        }
        self.inner.store().sign_out()?;
        self.inner.drafts().clear()
    }

    /// Test support: the most drafts held in memory at once since the last call (which
    /// resets the mark to what is loaded now).
    #[doc(hidden)]
    pub fn take_loaded_drafts_high_water(&self) -> Result<usize, ClientError> {
        self.inner.drafts().take_high_water()
    }

    /// Test support: changes a draft with raw Automerge operations, bypassing the schema, to
    /// play a tampered or buggy client. Not for production use.
    #[doc(hidden)]
    pub fn tamper_for_tests(
        &self,
        id: &DocumentId,
        f: impl FnOnce(&mut automerge::Automerge),
    ) -> Result<(), ClientError> {
        self.inner.drafts().edit(id, |doc| {
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
    crate::clock::unix_millis_now()
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
        assert!(client.inner.drafts().loaded_ids().unwrap().is_empty());
        assert_eq!(client.read_proposal(&first).unwrap().body, "one");
    }
}
