//! Live sync across the FFI: the app passes a [`LiveSyncListener`] and gets a
//! [`LiveSyncHandle`] whose `cancel()`/`stop()` (or its release) ends the session, as in
//! matrix-rust-sdk's `TaskHandle`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use sotong_core::client::{LiveState, LiveSync, Rejected, SyncListener};
use sotong_core::DocumentId;

use crate::{LiveSyncState, RejectedDraft};

/// Receives what a live sync session does. Called on a background thread: hand the work to
/// your UI thread and return quickly.
#[uniffi::export(callback_interface)]
pub trait LiveSyncListener: Send + Sync {
    /// The session's connection state changed. The last call is `Stopped`.
    fn on_state_changed(&self, state: LiveSyncState);
    /// A draft (base58 id) received changes from the citizen's other devices; they are saved.
    fn on_draft_changed(&self, id: String);
    /// The server refused a draft's changes; the draft was rewound to the server's content
    /// with its still-valid changes replayed.
    fn on_draft_rejected(&self, rejected: RejectedDraft);
}

/// Adapts the app's listener to the core's, keeping an exception thrown by the app (which
/// uniffi turns into a panic) from ending the session.
pub(crate) struct ListenerBridge(pub(crate) Box<dyn LiveSyncListener>);

impl ListenerBridge {
    fn call(&self, what: &str, f: impl FnOnce(&dyn LiveSyncListener)) {
        if catch_unwind(AssertUnwindSafe(|| f(self.0.as_ref()))).is_err() {
            tracing::warn!(callback = what, "the app's live sync listener failed");
        }
    }
}

impl SyncListener for ListenerBridge {
    fn state_changed(&self, state: LiveState) {
        self.call("on_state_changed", |l| l.on_state_changed(state.into()));
    }
    fn draft_changed(&self, id: DocumentId) {
        self.call("on_draft_changed", |l| l.on_draft_changed(id.to_string()));
    }
    fn draft_rejected(&self, rejected: Rejected) {
        self.call("on_draft_rejected", |l| {
            l.on_draft_rejected(rejected.into())
        });
    }
}

/// A running live sync session. Releasing it (Kotlin `close()`, Swift deinit) stops it too.
#[derive(uniffi::Object)]
pub struct LiveSyncHandle {
    live: Mutex<Option<LiveSync>>,
}

impl LiveSyncHandle {
    pub(crate) fn new(live: LiveSync) -> Self {
        Self {
            live: Mutex::new(Some(live)),
        }
    }

    fn take(&self) -> Option<LiveSync> {
        self.live.lock().ok().and_then(|mut l| l.take())
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl LiveSyncHandle {
    /// Asks the session to stop and returns at once; the listener then sees `Stopped`.
    pub fn cancel(&self) {
        if let Ok(mut live) = self.live.lock() {
            if let Some(l) = live.as_mut() {
                l.cancel();
            }
        }
    }

    /// Stops the session and returns once its connection is closed and the listener has
    /// seen `Stopped`.
    pub async fn stop(&self) {
        if let Some(live) = self.take() {
            live.stop().await;
        }
    }

    /// Whether the session has ended (stopped, or failed for good).
    pub fn is_finished(&self) -> bool {
        self.live
            .lock()
            .ok()
            .is_none_or(|l| l.as_ref().is_none_or(LiveSync::is_finished))
    }
}
