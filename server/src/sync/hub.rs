//! The documents this instance has loaded, the peers syncing each of them, and the one path
//! by which an incoming sync message reaches a document: check, store, apply, fan out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::{Automerge, ChangeHash, ReadDoc};
use sotong_core::schema::validate::{check_changes, codes};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::{changes, DocumentId};
use tokio::sync::{mpsc, Mutex};

use crate::store::{AccountId, ChunkKind, DocumentMeta, Store, StoreError};

/// Identifies one WebSocket connection on this instance.
pub type ConnId = u64;

/// Operations kept loaded in memory across all documents. automerge 0.6 holds about 0.4 KB per
/// operation (docs/adr/0001), so this is roughly 400 MB. Beyond it, documents no peer is
/// syncing are dropped, least recently used first; their chunks are in the store.
const LOADED_OPS_BUDGET: usize = 1_000_000;

/// Outgoing frames for one connection. Bounded: a peer that cannot keep up is disconnected
/// (it resyncs on reconnect) rather than holding memory or a document lock.
pub type Outbox = mpsc::Sender<Vec<u8>>;

/// Frames to send back to the peer, in order.
pub type Replies = Vec<WireMessage>;

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

struct Peer {
    peer_id: String,
    state: sync::State,
    outbox: Outbox,
}

struct Loaded {
    meta: DocumentMeta,
    doc: Automerge,
    /// Highest chunk sequence number seen, for catching up with other instances.
    last_seq: i64,
    /// Hashes of the stored chunks this instance has read or written (for compaction).
    chunk_hashes: Vec<[u8; 32]>,
    snapshot_bytes: usize,
    incremental_bytes: usize,
    /// Operations in the document: what it costs to keep loaded.
    ops: usize,
    last_used: std::time::Instant,
    peers: HashMap<ConnId, Peer>,
}

type Slot = Arc<Mutex<Option<Loaded>>>;

/// All loaded documents of this server instance.
pub struct Hub {
    store: Arc<dyn Store>,
    server_peer_id: String,
    docs: StdMutex<HashMap<DocumentId, Slot>>,
    ops_budget: usize,
    /// Becomes true when the server shuts down; every connection then closes.
    closing: tokio::sync::watch::Sender<bool>,
    /// Joined connections: whom a new document of an account is offered to, and which
    /// documents each connection must be removed from when it closes.
    conns: StdMutex<HashMap<ConnId, Conn>>,
}

struct Conn {
    account: AccountId,
    peer_id: String,
    outbox: Outbox,
    docs: std::collections::HashSet<DocumentId>,
}

/// The requesting side of a document message.
pub struct Requester<'a> {
    /// The connection.
    pub conn: ConnId,
    /// The peer's automerge-repo id.
    pub peer_id: &'a str,
    /// The account it is authenticated as.
    pub account: AccountId,
    /// Where to push later changes.
    pub outbox: &'a Outbox,
}

impl Hub {
    /// A hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_ops_budget(store, LOADED_OPS_BUDGET)
    }

    /// A hub that keeps at most `ops_budget` operations of idle documents loaded.
    pub fn with_ops_budget(store: Arc<dyn Store>, ops_budget: usize) -> Self {
        let mut suffix = [0u8; 6];
        rand::Rng::fill(&mut rand::thread_rng(), &mut suffix[..]);
        Self {
            store,
            server_peer_id: format!("sotong-server-{}", hex::encode(suffix)),
            docs: StdMutex::new(HashMap::new()),
            ops_budget,
            closing: tokio::sync::watch::Sender::new(false),
            conns: StdMutex::new(HashMap::new()),
        }
    }

    /// Registers a connection once its peer has joined.
    pub fn join(&self, conn: ConnId, account: AccountId, peer_id: &str, outbox: &Outbox) {
        self.lock_conns().insert(
            conn,
            Conn {
                account,
                peer_id: peer_id.to_owned(),
                outbox: outbox.clone(),
                docs: Default::default(),
            },
        );
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `conn` a peer of the document (it is then sent later changes).
    fn attach(&self, id: &DocumentId, loaded: &mut Loaded, conn: ConnId) {
        let mut conns = self.lock_conns();
        let Some(c) = conns.get_mut(&conn) else {
            return;
        };
        c.docs.insert(*id);
        loaded.peers.entry(conn).or_insert_with(|| Peer {
            peer_id: c.peer_id.clone(),
            state: sync::State::new(),
            outbox: c.outbox.clone(),
        });
    }

    /// A document was just created: the account's other connected devices become its peers,
    /// so the fan-out offers it to them (an automerge-repo peer accepts a sync message for a
    /// document it does not have yet).
    fn offer_to_other_devices(&self, id: &DocumentId, loaded: &mut Loaded, from: ConnId) {
        let others: Vec<ConnId> = self
            .lock_conns()
            .iter()
            .filter(|(c, entry)| **c != from && entry.account == loaded.meta.owner)
            .map(|(c, _)| *c)
            .collect();
        for conn in others {
            self.attach(id, loaded, conn);
        }
    }

    /// Drops the in-memory copy of a document; the next message reloads it from the store.
    pub fn forget(&self, id: &DocumentId) {
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Asks every connection to close (server shutdown).
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the server shuts down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// This instance's automerge-repo peer id.
    pub fn peer_id(&self) -> &str {
        &self.server_peer_id
    }

    fn slot(&self, id: &DocumentId) -> Slot {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        docs.entry(*id).or_default().clone()
    }

    /// Handles a `request` or `sync` message from an authenticated peer.
    pub async fn handle(
        &self,
        who: &Requester<'_>,
        msg: &DocMessage,
        is_request: bool,
    ) -> Result<Replies, HubError> {
        let before = self.loaded_documents();
        let outcome = self.handle_loaded(who, msg, is_request).await;
        if self.loaded_documents() > before {
            self.evict_idle().await;
        }
        outcome
    }

    async fn handle_loaded(
        &self,
        who: &Requester<'_>,
        msg: &DocMessage,
        is_request: bool,
    ) -> Result<Replies, HubError> {
        let id = msg.document_id;
        // What a peer gets for a document it may not see: the same as for one that does not
        // exist. A `request` (the peer has nothing) is answered "unavailable"; a `sync` (the
        // peer has the document, e.g. created offline) is answered as an empty document would,
        // so the peer sends its changes and creates it.
        let unavailable = |message: Option<&sync::Message>| {
            let reply = match (is_request, message) {
                (false, Some(m)) => {
                    let mut empty = Automerge::new();
                    let mut state = sync::State::new();
                    let _ = empty.receive_sync_message(&mut state, m.clone());
                    empty.generate_sync_message(&mut state).map(|out| {
                        WireMessage::Sync(DocMessage {
                            sender_id: self.server_peer_id.clone(),
                            target_id: who.peer_id.to_owned(),
                            document_id: id,
                            data: out.encode(),
                        })
                    })
                }
                _ => None,
            };
            vec![reply.unwrap_or_else(|| WireMessage::DocUnavailable {
                sender_id: self.server_peer_id.clone(),
                target_id: who.peer_id.to_owned(),
                document_id: id,
            })]
        };
        let reject = |code: &str, reason: String, heads: Vec<ChangeHash>| {
            tracing::info!(doc = %id, code, %reason, "refused a sync message");
            vec![WireMessage::Rejected {
                sender_id: self.server_peer_id.clone(),
                target_id: who.peer_id.to_owned(),
                document_id: id,
                code: code.to_owned(),
                reason,
                heads,
            }]
        };
        let message = match sync::Message::decode(&msg.data) {
            Ok(m) => m,
            Err(_) => {
                return Ok(reject(
                    codes::UNREADABLE,
                    "not an automerge sync message".into(),
                    Vec::new(),
                ));
            }
        };
        let mut incoming = Vec::new();
        for chunk in message.changes.iter() {
            match changes::decode(chunk) {
                Ok(c) => incoming.extend(c),
                Err(e) => return Ok(reject(codes::UNREADABLE, e.to_string(), Vec::new())),
            }
        }

        let slot = self.slot(&id);
        let mut guard = slot.lock().await;
        let mut created = false;
        if guard.is_none() {
            match self.store.document(&id).await? {
                Some(meta) => *guard = Some(self.load(meta).await?),
                None if incoming.is_empty() => return Ok(unavailable(Some(&message))),
                None => {
                    // A phone's first sync of a document it created offline.
                    let empty = Automerge::new();
                    let kind = match check_changes(&empty, &incoming) {
                        Ok(Some(schema)) => schema.kind.to_owned(),
                        Ok(None) => return Ok(unavailable(Some(&message))),
                        Err(r) => return Ok(reject(r.code, r.message, Vec::new())),
                    };
                    let meta = DocumentMeta {
                        id,
                        owner: who.account,
                        kind,
                        created_at: unix_now(),
                    };
                    if !self.store.create_document(&meta).await? {
                        // Created meanwhile (another instance, or someone else's id).
                        match self.store.document(&id).await? {
                            Some(meta) => *guard = Some(self.load(meta).await?),
                            None => return Ok(unavailable(None)),
                        }
                    } else {
                        created = true;
                        *guard = Some(Loaded {
                            meta,
                            doc: empty,
                            last_seq: 0,
                            chunk_hashes: Vec::new(),
                            snapshot_bytes: 0,
                            incremental_bytes: 0,
                            ops: 0,
                            last_used: std::time::Instant::now(),
                            peers: HashMap::new(),
                        });
                    }
                }
            }
        }
        let Some(loaded) = guard.as_mut() else {
            return Ok(unavailable(None));
        };
        // Another citizen learns nothing: the same answer as for a document that does not
        // exist, and its changes are never applied.
        if loaded.meta.owner != who.account {
            let message = incoming.is_empty().then_some(&message);
            return Ok(unavailable(message));
        }
        loaded.last_used = std::time::Instant::now();
        self.catch_up(&id, loaded).await?;

        let fresh: Vec<_> = incoming
            .into_iter()
            .filter(|c| loaded.doc.get_change_by_hash(&c.hash()).is_none())
            .collect();
        if let Err(r) = check_changes(&loaded.doc, &fresh) {
            // The peer's sync state is left as it was before this message.
            return Ok(reject(r.code, r.message, loaded.doc.get_heads()));
        }
        // Applied in memory first: automerge refuses changes that are well-formed but do not
        // fit the document's history, and those must never reach the store (they would make
        // the stored document fail to load).
        let before = loaded.doc.get_heads();
        self.attach(&id, loaded, who.conn);
        let Some(peer) = loaded.peers.get_mut(&who.conn) else {
            // Not joined (the connection registers on `join`, before any document message).
            return Ok(unavailable(None));
        };
        if let Err(e) = loaded.doc.receive_sync_message(&mut peer.state, message) {
            // Part of the message may have been applied: drop the in-memory copy, so the next
            // message reloads the document from the store.
            *guard = None;
            return Ok(reject(
                codes::UNREADABLE,
                format!("changes do not apply: {e}"),
                before,
            ));
        }
        if !fresh.is_empty() {
            let bytes: Vec<u8> = fresh.iter().flat_map(|c| c.raw_bytes().to_vec()).collect();
            // Stored before anything is acknowledged or relayed: an accepted edit survives a
            // crash. If storing fails, the in-memory copy is dropped and the peer resends.
            if let Err(e) = self
                .store
                .append_chunk(&id, ChunkKind::Incremental, &bytes)
                .await
            {
                *guard = None;
                return Err(e.into());
            }
            loaded.chunk_hashes.push(sha256(&bytes));
            loaded.ops += fresh.iter().map(|c| c.len()).sum::<usize>();
            loaded.incremental_bytes += bytes.len();
        }
        let mut replies = Vec::new();
        let Some(peer) = loaded.peers.get_mut(&who.conn) else {
            return Ok(replies);
        };
        if let Some(out) = loaded.doc.generate_sync_message(&mut peer.state) {
            replies.push(WireMessage::Sync(DocMessage {
                sender_id: self.server_peer_id.clone(),
                target_id: who.peer_id.to_owned(),
                document_id: id,
                data: out.encode(),
            }));
        }
        if created {
            self.offer_to_other_devices(&id, loaded, who.conn);
        }
        if loaded.doc.get_heads() != before {
            self.fan_out(&id, loaded, who.conn);
            self.maybe_compact(&id, loaded).await;
        }
        Ok(replies)
    }

    /// Sends every other peer of the document what it is missing.
    fn fan_out(&self, id: &DocumentId, loaded: &mut Loaded, except: ConnId) {
        let Loaded { doc, peers, .. } = loaded;
        let mut gone = Vec::new();
        for (conn, peer) in peers.iter_mut().filter(|(c, _)| **c != except) {
            if let Some(out) = doc.generate_sync_message(&mut peer.state) {
                let frame = WireMessage::Sync(DocMessage {
                    sender_id: self.server_peer_id.clone(),
                    target_id: peer.peer_id.clone(),
                    document_id: *id,
                    data: out.encode(),
                })
                .encode();
                if peer.outbox.try_send(frame).is_err() {
                    gone.push(*conn);
                }
            }
        }
        for conn in gone {
            tracing::warn!(doc = %id, "dropping a peer that cannot keep up");
            peers.remove(&conn);
        }
    }

    /// Reads chunks other instances appended since this one last looked.
    async fn catch_up(&self, id: &DocumentId, loaded: &mut Loaded) -> Result<(), HubError> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let chunks = self.store.chunks_after(id, loaded.last_seq).await?;
        if chunks.is_empty() {
            return Ok(());
        }
        let before = loaded.doc.get_heads();
        for chunk in chunks {
            loaded.last_seq = loaded.last_seq.max(chunk.seq);
            if !loaded.chunk_hashes.contains(&chunk.hash) {
                loaded
                    .doc
                    .load_incremental(&chunk.bytes)
                    .map_err(|e| HubError::Corrupt(e.to_string()))?;
                loaded.chunk_hashes.push(chunk.hash);
            }
        }
        if loaded.doc.get_heads() != before {
            self.fan_out(id, loaded, ConnId::MAX);
        }
        Ok(())
    }

    async fn load(&self, meta: DocumentMeta) -> Result<Loaded, HubError> {
        let chunks = self.store.chunks_after(&meta.id, 0).await?;
        let mut doc = Automerge::new();
        let mut loaded = Loaded {
            meta,
            doc: Automerge::new(),
            last_seq: 0,
            chunk_hashes: Vec::with_capacity(chunks.len()),
            snapshot_bytes: 0,
            incremental_bytes: 0,
            ops: 0,
            last_used: std::time::Instant::now(),
            peers: HashMap::new(),
        };
        for chunk in chunks {
            doc.load_incremental(&chunk.bytes)
                .map_err(|e| HubError::Corrupt(e.to_string()))?;
            loaded.last_seq = loaded.last_seq.max(chunk.seq);
            loaded.chunk_hashes.push(chunk.hash);
            match chunk.kind {
                ChunkKind::Snapshot => loaded.snapshot_bytes += chunk.bytes.len(),
                ChunkKind::Incremental => loaded.incremental_bytes += chunk.bytes.len(),
            }
        }
        loaded.ops = doc.get_changes(&[]).iter().map(|c| c.len()).sum();
        loaded.doc = doc;
        Ok(loaded)
    }

    /// Replaces the chunks read so far by one snapshot once they outgrow it. Only chunks this
    /// instance has read are deleted, so a concurrent writer's chunk is never lost.
    async fn maybe_compact(&self, id: &DocumentId, loaded: &mut Loaded) {
        if loaded.incremental_bytes < 64 * 1024 || loaded.incremental_bytes < loaded.snapshot_bytes
        {
            return;
        }
        let snapshot = loaded.doc.save();
        match self
            .store
            .replace_chunks(id, &snapshot, &loaded.chunk_hashes)
            .await
        {
            Ok(()) => {
                loaded.chunk_hashes = vec![sha256(&snapshot)];
                loaded.snapshot_bytes = snapshot.len();
                loaded.incremental_bytes = 0;
            }
            // Compaction is an optimisation; the chunks are still all there.
            Err(e) => tracing::warn!(doc = %id, error = %e, "compaction failed"),
        }
    }

    /// Forgets a closed connection everywhere and drops idle documents beyond the budget.
    pub async fn disconnect(&self, conn: ConnId) {
        let docs = self
            .lock_conns()
            .remove(&conn)
            .map(|c| c.docs)
            .unwrap_or_default();
        for id in &docs {
            let slot = self.slot(id);
            let mut guard = slot.lock().await;
            if let Some(loaded) = guard.as_mut() {
                loaded.peers.remove(&conn);
            }
        }
        self.evict_idle().await;
    }

    async fn evict_idle(&self) {
        let slots: Vec<(DocumentId, Slot)> = {
            let docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
            docs.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
        let mut total = 0;
        let mut idle = Vec::new();
        for (id, slot) in slots {
            // A document in use right now is neither counted as idle nor waited for.
            let Ok(guard) = slot.try_lock() else { continue };
            match guard.as_ref() {
                Some(l) => {
                    total += l.ops;
                    if l.peers.is_empty() {
                        idle.push((l.last_used, l.ops, id));
                    }
                }
                None => idle.push((std::time::Instant::now(), 0, id)),
            }
        }
        if total <= self.ops_budget {
            return;
        }
        idle.sort_by_key(|(used, _, _)| *used);
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        for (_, ops, id) in idle {
            if total <= self.ops_budget {
                break;
            }
            docs.remove(&id);
            total = total.saturating_sub(ops);
        }
    }

    /// Number of documents currently loaded (for metrics and tests).
    pub fn loaded_documents(&self) -> usize {
        self.docs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use sotong_core::schema::proposal;

    /// Runs a phone's side of the protocol against the hub until it has nothing more to send.
    async fn upload(hub: &Hub, who: &Requester<'_>, id: DocumentId, doc: &mut Automerge) {
        let mut state = sync::State::new();
        for _ in 0..6 {
            let Some(msg) = doc.generate_sync_message(&mut state) else {
                return;
            };
            let d = DocMessage {
                sender_id: who.peer_id.into(),
                target_id: hub.peer_id().into(),
                document_id: id,
                data: msg.encode(),
            };
            let replies = hub.handle(who, &d, false).await.unwrap();
            for r in replies {
                if let WireMessage::Sync(d) = r {
                    let m = sync::Message::decode(&d.data).unwrap();
                    doc.receive_sync_message(&mut state, m).unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn idle_documents_beyond_the_budget_are_dropped_and_reload_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        // Each draft below holds about 30 operations: room for two.
        let hub = Hub::with_ops_budget(store.clone(), 70);
        let (outbox, _rx) = mpsc::channel(64);
        hub.join(1, 7, "phone", &outbox);
        let who = Requester {
            conn: 1,
            peer_id: "phone",
            account: 7,
            outbox: &outbox,
        };
        let mut ids = Vec::new();
        for i in 0..4 {
            let id = DocumentId::random();
            let mut doc = proposal::create(&format!("title {i}"), "a body of text", "c").unwrap();
            upload(&hub, &who, id, &mut doc).await;
            assert!(store.document(&id).await.unwrap().is_some());
            ids.push(id);
        }
        // All in use by the connection: nothing is dropped.
        assert_eq!(hub.loaded_documents(), 4);
        hub.disconnect(1).await;
        assert!(hub.loaded_documents() <= 2, "{}", hub.loaded_documents());
        // A dropped document comes back from the store when asked for.
        hub.join(2, 7, "tablet", &outbox);
        let who = Requester {
            conn: 2,
            peer_id: "tablet",
            account: 7,
            outbox: &outbox,
        };
        let mut fresh = Automerge::new();
        upload(&hub, &who, ids[0], &mut fresh).await;
        assert_eq!(proposal::read(&fresh).unwrap().title, "title 0");
    }
}
