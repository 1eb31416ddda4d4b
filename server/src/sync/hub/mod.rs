//! The documents this instance has loaded, the peers syncing each of them, and the one path by
//! which an incoming sync message reaches a document ([`path`]: decode → open (authorize) →
//! check → apply → store → reply and fan out).
//!
//! Memory is a budget: every loaded document, idle or attached to connections, counts by its
//! estimated cost ([`slots::cost`]) and the least recently used are dropped once the total
//! passes it. A connection stays a *watcher* of the documents it synced, so a dropped document
//! is reloaded (with fresh per-peer sync states) when it is next used, and its watchers still
//! receive later changes.

mod path;
mod registry;
mod slots;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;

use super::link::Link;
use crate::config::SyncLimits;
use crate::store::notice::Notice;
use crate::store::{AccountId, Store, StoreError};
use registry::Registry;
use slots::Slots;

pub use registry::Admission;

/// Identifies one WebSocket connection on this instance.
pub type ConnId = u64;

/// Frames to send back to the peer, in order.
pub type Replies = Vec<WireMessage>;

/// Stable codes of the hub's refusals (`Rejected.code`), besides the schema's
/// (`sotong_core::schema::validate::codes`).
pub mod codes {
    /// The account owns as many documents as it may.
    pub const ACCOUNT_DOCUMENTS: &str = "account_documents";
    /// The account stores as many bytes as it may.
    pub const ACCOUNT_BYTES: &str = "account_bytes";
}

/// Why a message could not be handled; the connection reports it and keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Storage failed; nothing was applied.
    #[error("storage unavailable")]
    Store(#[from] StoreError),
    /// A stored document does not load.
    #[error("stored document is corrupt")]
    Corrupt(String),
    /// A bug (a panic while handling the message); the document was reloaded.
    #[error("internal error")]
    Internal,
}

/// The requesting side of a document message.
pub struct Requester<'a> {
    /// The connection.
    pub conn: ConnId,
    /// The peer's automerge-repo id.
    pub peer_id: &'a str,
    /// The account it is authenticated as.
    pub account: AccountId,
}

/// All loaded documents of this server instance.
pub struct Hub {
    store: Arc<dyn Store>,
    server_peer_id: String,
    limits: SyncLimits,
    slots: Slots,
    registry: Registry,
    /// Becomes true when the server shuts down; every connection then closes.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    /// A hub over `store` with `limits`.
    pub fn new(store: Arc<dyn Store>, limits: SyncLimits) -> Self {
        let mut suffix = [0u8; 6];
        rand::Rng::fill(&mut rand::thread_rng(), &mut suffix[..]);
        Self {
            store,
            server_peer_id: format!("sotong-server-{}", hex::encode(suffix)),
            slots: Slots::new(limits.memory_budget),
            limits,
            registry: Registry::default(),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// This instance's automerge-repo peer id.
    pub fn peer_id(&self) -> &str {
        &self.server_peer_id
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &SyncLimits {
        &self.limits
    }

    /// Counts a new connection of `account`; `None` when the account already has as many as it
    /// may. The connection is uncounted when the admission is dropped.
    pub fn admit(self: &Arc<Self>, account: AccountId) -> Option<Admission> {
        self.registry
            .admit(account, self.limits.connections_per_account)
            .then(|| Admission::new(self.clone(), account))
    }

    /// Registers a connection once its peer has joined.
    pub fn join(&self, conn: ConnId, account: AccountId, peer_id: &str, link: &Arc<Link>) {
        self.registry.join(conn, account, peer_id, link);
    }

    /// Handles a `request` or `sync` message from an authenticated peer.
    pub async fn handle(
        &self,
        who: &Requester<'_>,
        msg: &DocMessage,
        is_request: bool,
    ) -> Result<Replies, HubError> {
        let outcome = self.handle_message(who, msg, is_request).await;
        self.slots.evict_over_budget();
        outcome
    }

    /// Forgets a closed connection everywhere.
    pub async fn disconnect(&self, conn: ConnId) {
        for id in self.registry.leave(conn) {
            if let Some(mut held) = self.slots.lock_existing(&id).await {
                if let Some(loaded) = held.loaded_mut() {
                    loaded.peers.remove(&conn);
                }
            }
        }
        self.slots.evict_over_budget();
    }

    /// Drops the in-memory copy of a document; the next message reloads it from the store.
    pub async fn forget(&self, id: &DocumentId) {
        if let Some(mut held) = self.slots.lock_existing(id).await {
            held.discard();
        }
    }

    /// Asks every connection to close (server shutdown).
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the server shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Estimated resident bytes of `doc` once loaded with `peers` peers: what it counts
    /// against the memory budget.
    pub fn estimated_cost(doc: &sotong_core::automerge::Automerge, peers: usize) -> usize {
        let changes = doc.get_changes(&[]);
        let ops = changes.iter().map(|c| c.len()).sum();
        slots::estimate(ops, changes.len(), peers)
    }

    /// Number of documents currently loaded (for metrics and tests).
    pub fn loaded_documents(&self) -> usize {
        self.slots.loaded_documents()
    }

    /// Estimated bytes held by loaded documents (for metrics and tests).
    pub fn loaded_cost(&self) -> usize {
        self.slots.total_cost()
    }

    /// Documents that have a slot in memory, loaded or being loaded (for tests: an unknown id
    /// must leave none behind).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Connections registered (joined) on this instance.
    pub fn connections(&self) -> usize {
        self.registry.connections()
    }

    /// Has the store tell the other instances about every chunk this one stores.
    pub(super) fn announce_chunks(&self) {
        self.store.announce_chunks(&self.server_peer_id);
    }

    /// Another instance stored a chunk of `id` (described by `notice`, if known): catch up
    /// and tell this instance's peers.
    pub async fn remote_change(&self, id: DocumentId, notice: Option<Notice>) {
        if !self.slots.contains(&id) && !self.registry.is_watched(&id) {
            return;
        }
        if let Err(e) = self.catch_up_remote(&id, notice).await {
            tracing::warn!(doc = %id, error = %e, "cannot catch up with another instance");
        }
        self.slots.evict_over_budget();
    }

    /// Catches every loaded document up with the store (after the feed missed notifications).
    pub async fn catch_up_all(&self) {
        for id in self.slots.ids() {
            self.remote_change(id, None).await;
        }
    }
}
