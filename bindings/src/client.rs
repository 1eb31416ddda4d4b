//! [`SotongClient`]: one install of the app (its database, its account) as an FFI object.

use std::path::Path;
use std::sync::Arc;

use sotong_core::client::Client;
use sotong_core::DocumentId;

use crate::guard::{async_call, sync_call};
use crate::live::{ListenerBridge, LiveSyncHandle, LiveSyncListener};
use crate::{AccountInfo, Proposal, ProposalEdit, ProposalSummary, SotongError, SyncReport};

/// A citizen's phone: the local store of drafts, the registered account, and sync with the
/// Sotong server. Open one per install and share it; it is safe to use from any thread.
/// Synchronous methods touch only the local database (call them off the main thread);
/// `suspend`/`async` methods talk to the server.
#[derive(uniffi::Object)]
pub struct SotongClient {
    pub(crate) inner: Client,
}

#[uniffi::export(async_runtime = "tokio")]
impl SotongClient {
    /// Opens (creating if needed) the install's data in `data_dir`, talking to the server at
    /// `server_url` (e.g. `https://sotong.example.kr`).
    #[uniffi::constructor]
    pub fn open(data_dir: String, server_url: String) -> Result<Arc<Self>, SotongError> {
        sync_call(|| {
            let inner = Client::open(Path::new(&data_dir), &server_url)?;
            Ok(Arc::new(Self { inner }))
        })
    }

    /// The server this client talks to.
    pub fn server_url(&self) -> String {
        sync_call(|| Ok(self.inner.server_url())).unwrap_or_default()
    }

    /// Asks the server to send a one-time registration code to `phone` (by SMS).
    pub async fn request_code(&self, phone: String) -> Result<(), SotongError> {
        let inner = self.inner.clone();
        async_call(async move { Ok(inner.request_code(&phone).await?) }).await
    }

    /// Registers this install as a device of the citizen owning `phone`, with the one-time
    /// `code` they received. `device_name` is shown to the citizen in their device list.
    pub async fn register(
        &self,
        phone: String,
        code: String,
        device_name: String,
    ) -> Result<AccountInfo, SotongError> {
        let inner = self.inner.clone();
        async_call(async move {
            let info = inner.register(&phone, &code, &device_name).await?;
            Ok(info.into())
        })
        .await
    }

    /// The registered account of this install, or `null`/`nil` before registration.
    pub fn account(&self) -> Result<Option<AccountInfo>, SotongError> {
        sync_call(|| Ok(self.inner.account()?.map(Into::into)))
    }

    /// Creates a proposal draft on this phone and returns its document id (base58). It reaches
    /// the server and the citizen's other devices on the next `sync`.
    pub fn create_proposal(
        &self,
        title: String,
        body: String,
        category: String,
    ) -> Result<String, SotongError> {
        sync_call(|| {
            let id = self.inner.create_proposal(&title, &body, &category)?;
            Ok(id.to_string())
        })
    }

    /// Applies one edit to the draft `id` (a base58 id or `automerge:` URL) and returns its new
    /// content. Works offline; concurrent edits from other devices merge on `sync`.
    pub fn edit_proposal(&self, id: String, edit: ProposalEdit) -> Result<Proposal, SotongError> {
        sync_call(|| {
            let id = parse_id(&id)?;
            Ok(self.inner.edit_proposal(&id, edit.into())?.into())
        })
    }

    /// The current content of the draft `id` (a base58 id or `automerge:` URL).
    pub fn read_proposal(&self, id: String) -> Result<Proposal, SotongError> {
        sync_call(|| {
            let id = parse_id(&id)?;
            Ok(self.inner.read_proposal(&id)?.into())
        })
    }

    /// Every proposal draft on this phone.
    pub fn list_proposals(&self) -> Result<Vec<ProposalSummary>, SotongError> {
        sync_call(|| {
            Ok(self
                .inner
                .list_proposals()?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// Sends local changes to the server and receives the changes of the citizen's other
    /// devices. Needs a registered device.
    pub async fn sync(&self) -> Result<SyncReport, SotongError> {
        let inner = self.inner.clone();
        async_call(async move { Ok(inner.sync().await?.into()) }).await
    }

    /// Starts live sync: every draft is synced, then this phone stays connected, pushing
    /// local edits as they are made and receiving the citizen's other devices' edits as they
    /// happen, all reported to `listener`. A lost connection is retried by itself with
    /// growing, jittered delays (`BackingOff`); the session stops on `handle.cancel()`, on
    /// sign-out, or when the server refuses the device (`Stopped` with the reason). Returns
    /// once online, or once the first attempt failed in a way worth retrying. Fails with
    /// `NotRegistered`/`Unauthorized` when retrying cannot help.
    pub async fn start_live_sync(
        &self,
        listener: Box<dyn LiveSyncListener>,
    ) -> Result<Arc<LiveSyncHandle>, SotongError> {
        let inner = self.inner.clone();
        async_call(async move {
            let live = inner
                .start_live_sync(Arc::new(ListenerBridge(listener)))
                .await?;
            Ok(Arc::new(LiveSyncHandle::new(live)))
        })
        .await
    }

    /// Signs this phone out: forgets its token and account and wipes its drafts (they belong
    /// to the account; kept, they would sync into the next account registered here). Call
    /// `sync` first to keep unsent changes. A live session stops. The server is not told
    /// (it has no logout route yet), so the token stays valid there until it expires.
    pub fn sign_out(&self) -> Result<(), SotongError> {
        sync_call(|| Ok(self.inner.sign_out()?))
    }
}

/// Parses a document id given as base58 or as an `automerge:` URL.
fn parse_id(s: &str) -> Result<DocumentId, SotongError> {
    DocumentId::parse_url_or_id(s).map_err(|e| SotongError::InvalidInput {
        reason: format!("\"{}\" is not a document id: {e}", truncate(s, 40)),
    })
}

/// At most `max` characters of `s`, so that error texts stay short.
fn truncate(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextField;

    fn open() -> (tempfile::TempDir, Arc<SotongClient>) {
        let dir = tempfile::tempdir().unwrap();
        let client = SotongClient::open(
            dir.path().to_string_lossy().into_owned(),
            "http://127.0.0.1:9".to_owned(),
        )
        .unwrap();
        (dir, client)
    }

    #[test]
    fn drafts_round_trip_through_string_ids() {
        let (_dir, client) = open();
        assert_eq!(client.account().unwrap(), None);
        let id = client
            .create_proposal("버스 노선".into(), "배차 간격".into(), "transport".into())
            .unwrap();
        let edited = client
            .edit_proposal(
                format!("automerge:{id}"),
                ProposalEdit::Splice {
                    field: TextField::Title,
                    pos: 5,
                    delete: 0,
                    insert: " 개선".into(),
                },
            )
            .unwrap();
        assert_eq!(edited.title, "버스 노선 개선");
        assert_eq!(client.read_proposal(id.clone()).unwrap(), edited);
        let list = client.list_proposals().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, id);
    }

    #[test]
    fn bad_ids_and_positions_are_invalid_input() {
        let (_dir, client) = open();
        let id = client
            .create_proposal("t".into(), "b".into(), "c".into())
            .unwrap();
        for bad in ["", "nope", "automerge:0OIl"] {
            assert!(matches!(
                client.read_proposal(bad.into()),
                Err(SotongError::InvalidInput { .. })
            ));
        }
        let splice = ProposalEdit::Splice {
            field: TextField::Body,
            pos: 99,
            delete: 0,
            insert: "x".into(),
        };
        assert!(matches!(
            client.edit_proposal(id, splice),
            Err(SotongError::InvalidInput { .. })
        ));
    }

    #[tokio::test]
    async fn sync_before_registering_is_not_registered() {
        let (_dir, client) = open();
        assert!(matches!(
            client.sync().await,
            Err(SotongError::NotRegistered { .. })
        ));
        struct Ignore;
        impl LiveSyncListener for Ignore {
            fn on_state_changed(&self, _: crate::LiveSyncState) {}
            fn on_draft_changed(&self, _: String) {}
            fn on_draft_rejected(&self, _: crate::RejectedDraft) {}
        }
        assert!(matches!(
            client.start_live_sync(Box::new(Ignore)).await,
            Err(SotongError::NotRegistered { .. })
        ));
    }

    #[test]
    fn plain_http_to_another_machine_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let refused = SotongClient::open(
            dir.path().to_string_lossy().into_owned(),
            "http://sotong.example.kr".to_owned(),
        );
        assert!(matches!(refused, Err(SotongError::InsecureServer { .. })));
    }

    #[test]
    fn sign_out_wipes_the_drafts() {
        let (_dir, client) = open();
        let id = client
            .create_proposal("t".into(), "b".into(), "c".into())
            .unwrap();
        client.sign_out().unwrap();
        assert!(client.list_proposals().unwrap().is_empty());
        assert!(matches!(
            client.read_proposal(id),
            Err(SotongError::NotFound { .. })
        ));
    }
}
