//! The phone's side of sync, speaking the automerge-repo protocol with the server.
//!
//! - `transport`: one WebSocket session (connect and join, send, receive, ping, silence);
//! - `engine`: the per-document state machine, shared by one-shot and live sync, which
//!   reaches documents only through [`Drafts`] and keeps few of them loaded;
//! - `live`: the live task, which reconnects by itself with backoff and reports its state;
//! - recovery after a refusal is `client::recover`, called by the engine.
//!
//! Per-document sync state is persisted per (document, "server"), so a later session starts
//! from what both sides were known to share.

mod engine;
mod live;
mod transport;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use live::{start_live, Nudge};
pub use live::{LiveOptions, LiveState, LiveSync};

use super::api::Api;
use super::drafts::Drafts;
use super::error::ClientError;
use super::store::Store;
use crate::DocumentId;
use engine::{Engine, Event};
use transport::Transport;

/// How long a one-shot sync waits for the server's next message before it gives up (it can
/// be retried; nothing is lost). An idle limit rather than a total one, so that a device with
/// many drafts can take as long as it keeps making progress.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A draft the server refused during a sync, and why. The draft was rewound to the server's
/// state and its still-valid content replayed on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The draft.
    pub id: DocumentId,
    /// The server's stable refusal code (e.g. `too_long`), for the app to act on.
    pub code: String,
    /// The server's reason, for people.
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

/// Receives what a live sync session does. Called from the session's task: return quickly.
pub trait SyncListener: Send + Sync + 'static {
    /// The session's connection changed state.
    fn state_changed(&self, state: LiveState) {
        let _ = state;
    }
    /// Changes from the server were applied to a draft and persisted.
    fn draft_changed(&self, id: DocumentId);
    /// The server refused a draft's changes; the draft was rewound and its valid content
    /// replayed.
    fn draft_rejected(&self, rejected: Rejected);
    /// The session ended for good: `None` when the app stopped it, else why. Called once,
    /// right after [`LiveState::Stopped`].
    fn stopped(&self, error: Option<String>) {
        let _ = error;
    }
}

/// What sync needs of the device: its account (credentials), its server and its drafts.
pub(crate) struct Device {
    pub(crate) store: Arc<Store>,
    pub(crate) api: Api,
    pub(crate) drafts: Arc<Drafts>,
    /// SOS beacons through the live connection, while one is online.
    pub(crate) sos_lane: super::sos::lane::SosLane,
}

impl Device {
    pub(crate) fn token(&self) -> Result<String, ClientError> {
        Ok(self
            .store
            .account()?
            .ok_or(ClientError::NotRegistered)?
            .token)
    }
}

/// Exchanges every draft with the server until both sides hold the same heads.
pub(crate) async fn sync_once(device: &Device) -> Result<SyncReport, ClientError> {
    let token = device.token()?;
    let result = run_once(device, &token).await;
    // A sync writes many small transactions; fold the WAL back while the app is idle-ish.
    if let Err(e) = device.store.checkpoint() {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
    result
}

async fn run_once(device: &Device, token: &str) -> Result<SyncReport, ClientError> {
    let remote = tokio::time::timeout(IDLE_TIMEOUT, device.api.documents(token))
        .await
        .map_err(|_| ClientError::TimedOut)??;
    let me = device.store.peer_id()?;
    let mut transport = Transport::connect(&device.api, token, me).await?;
    let mut engine = Engine::new(&device.drafts, &remote)?;
    engine.fill()?;
    flush(&mut transport, &mut engine, None).await?;
    while !engine.done() {
        let msg = tokio::time::timeout(IDLE_TIMEOUT, transport.recv())
            .await
            .map_err(|_| ClientError::TimedOut)??;
        engine.handle(msg)?;
        engine.fill()?;
        flush(&mut transport, &mut engine, None).await?;
    }
    let report = engine.finish();
    transport.close().await;
    Ok(report)
}

/// Sends what the engine has to say and tells `listener` what happened.
async fn flush(
    transport: &mut Transport,
    engine: &mut Engine<'_>,
    listener: Option<&dyn SyncListener>,
) -> Result<(), ClientError> {
    for o in engine.take_outgoing() {
        transport.send_doc(o.id, o.msg, o.request).await?;
    }
    let events = engine.take_events();
    if let Some(l) = listener {
        for e in events {
            match e {
                Event::Changed(id) => l.draft_changed(id),
                Event::Rejected(r) => l.draft_rejected(r),
            }
        }
    }
    Ok(())
}
