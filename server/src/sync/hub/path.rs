//! The path of one `request` or `sync` message, as named stages:
//! decode → open (load or create, authorize) → check (schema, quota) → apply → check the
//! result → store → reply and fan out. A stage that ends the message early returns
//! [`Exit`]: the replies to send, or a failure.

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::{Automerge, Change, ChangeHash, ReadDoc};
use sotong_core::schema::validate::{check_changes, codes as schema_codes, Rejection};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::{changes, DocumentId};

use super::slots::{Held, Loaded, Peer};
use super::{codes, ConnId, Hub, HubError, Replies, Requester};
use crate::store::notice::Notice;
use crate::store::{AccountId, ChunkKind, DocumentMeta, StoreError};

/// How a stage ends a message early.
pub(super) enum Exit {
    /// Answer the peer with these frames (a refusal, or "unavailable").
    Reply(Replies),
    /// Report a failure.
    Fail(HubError),
}

impl From<HubError> for Exit {
    fn from(e: HubError) -> Self {
        Exit::Fail(e)
    }
}

impl From<StoreError> for Exit {
    fn from(e: StoreError) -> Self {
        Exit::Fail(e.into())
    }
}

type Step<T> = Result<T, Exit>;

/// A sync message read into automerge's types.
struct Decoded {
    message: sync::Message,
    incoming: Vec<Change>,
    /// The sender's whole document, loaded, when the message carries exactly that (automerge
    /// sends it to a peer that has nothing yet).
    document: Option<Automerge>,
}

/// Builds the answers to one message.
struct Answer<'a> {
    hub: &'a Hub,
    who: &'a Requester<'a>,
    id: DocumentId,
    is_request: bool,
}

impl Answer<'_> {
    /// What a peer gets for a document it may not see: the same as for one that does not
    /// exist. A `request` (the peer has nothing) is answered "unavailable"; a `sync` (the
    /// peer has the document, e.g. created offline) as an empty document would answer, so
    /// the peer sends its changes and creates it.
    fn unavailable(&self, message: Option<&sync::Message>) -> Exit {
        let reply = match (self.is_request, message) {
            (false, Some(m)) => {
                let mut empty = Automerge::new();
                let mut state = sync::State::new();
                let _ = empty.receive_sync_message(&mut state, m.clone());
                empty
                    .generate_sync_message(&mut state)
                    .map(|out| WireMessage::Sync(self.doc_message(out.encode())))
            }
            _ => None,
        };
        Exit::Reply(vec![reply.unwrap_or_else(|| WireMessage::DocUnavailable {
            sender_id: self.hub.server_peer_id.clone(),
            target_id: self.who.peer_id.to_owned(),
            document_id: self.id,
        })])
    }

    fn reject(&self, code: &str, reason: String, heads: Vec<ChangeHash>) -> Exit {
        tracing::info!(doc = %self.id, code, %reason, "refused a sync message");
        Exit::Reply(vec![WireMessage::Rejected {
            sender_id: self.hub.server_peer_id.clone(),
            target_id: self.who.peer_id.to_owned(),
            document_id: self.id,
            code: code.to_owned(),
            reason,
            heads,
        }])
    }

    fn doc_message(&self, data: Vec<u8>) -> DocMessage {
        DocMessage {
            sender_id: self.hub.server_peer_id.clone(),
            target_id: self.who.peer_id.to_owned(),
            document_id: self.id,
            data,
        }
    }
}

fn loaded<'h>(held: &'h mut Held<'_>) -> Step<&'h mut Loaded> {
    held.loaded_mut().ok_or(Exit::Fail(HubError::Internal))
}

impl Hub {
    pub(super) async fn handle_message(
        &self,
        who: &Requester<'_>,
        msg: &DocMessage,
        is_request: bool,
    ) -> Result<Replies, HubError> {
        let answer = Answer {
            hub: self,
            who,
            id: msg.document_id,
            is_request,
        };
        match self.run(&answer, msg).await {
            Ok(replies) | Err(Exit::Reply(replies)) => Ok(replies),
            Err(Exit::Fail(e)) => Err(e),
        }
    }

    async fn run(&self, a: &Answer<'_>, msg: &DocMessage) -> Step<Replies> {
        tracing::debug!(target: "sotong_timing", doc = %a.id, "message in");
        let message = parse(a, msg)?;
        let mut held = self.slots.lock(&a.id).await;
        let holds = held
            .loaded_mut()
            .filter(|l| l.meta.owner == a.who.account)
            .map(|l| &l.doc);
        let decoded = decode(a, message, holds)?;
        let created = self.open(a, &mut held, &decoded).await?;
        self.catch_up(&a.id, loaded(&mut held)?).await?;
        tracing::debug!(target: "sotong_timing", doc = %a.id, "caught up");
        let fresh = if created && loaded(&mut held)?.doc.get_heads().is_empty() {
            // `create` checked these very changes against this same empty document.
            decoded.incoming
        } else {
            check(a, loaded(&mut held)?, decoded.incoming)?
        };
        let bytes: Vec<u8> = fresh.iter().flat_map(|c| c.raw_bytes().to_vec()).collect();
        let owner = loaded(&mut held)?.meta.owner;
        self.check_quota(a, owner, bytes.len()).await?;
        let before = loaded(&mut held)?.doc.get_heads();
        let known = Known {
            document: decoded.document,
            nothing_new: fresh.is_empty(),
        };
        self.apply(a, &mut held, decoded.message, known, &before)?;
        check_result(a, &mut held, &before)?;
        self.store(&a.id, &mut held, &fresh, bytes).await?;
        tracing::debug!(target: "sotong_timing", doc = %a.id, "stored");
        held.touch();
        Ok(self.respond(a, loaded(&mut held)?, created, &before).await)
    }

    /// Open: finds the document in memory, in the store, or creates it (a phone's first sync
    /// of a draft made offline), and checks that the requester may see it. Returns whether it
    /// was created. A document another account owns is never loaded for this peer.
    async fn open(&self, a: &Answer<'_>, held: &mut Held<'_>, d: &Decoded) -> Step<bool> {
        let mut created = false;
        if held.is_empty() {
            match self.store.document(&a.id).await? {
                Some(meta) if meta.owner != a.who.account => {}
                Some(meta) => {
                    let loaded = self.load(meta).await?;
                    held.fill(loaded);
                }
                None if d.incoming.is_empty() => return Err(a.unavailable(Some(&d.message))),
                None => created = self.create(a, held, d).await?,
            }
        }
        match held.loaded_mut() {
            // Another citizen learns nothing: the same answer as for a document that does not
            // exist, and its changes are never applied.
            Some(l) if l.meta.owner == a.who.account => Ok(created),
            _ => Err(a.unavailable(d.incoming.is_empty().then_some(&d.message))),
        }
    }

    /// Creates a document from a peer's first changes, within the account's quota.
    async fn create(&self, a: &Answer<'_>, held: &mut Held<'_>, d: &Decoded) -> Step<bool> {
        let empty = Automerge::new();
        let kind = match check_changes(&empty, &d.incoming) {
            Ok(Some(schema)) => schema.kind.to_owned(),
            Ok(None) => return Err(a.unavailable(Some(&d.message))),
            Err(r) => return Err(a.reject(r.code, r.message, Vec::new())),
        };
        let usage = self.store.account_usage(a.who.account).await?;
        self.registry.set_usage(a.who.account, usage);
        if usage.documents >= self.limits.documents_per_account {
            return Err(a.reject(
                codes::ACCOUNT_DOCUMENTS,
                format!(
                    "the account already has {} documents, the most it may have",
                    usage.documents
                ),
                Vec::new(),
            ));
        }
        let meta = DocumentMeta {
            id: a.id,
            owner: a.who.account,
            kind,
            created_at: sotong_core::clock::unix_millis_now() / 1000,
        };
        if self.store.create_document(&meta).await? {
            self.registry.add_usage(a.who.account, 1, 0);
            held.fill(Loaded::new(meta, empty));
            return Ok(true);
        }
        // Created meanwhile (another instance, or someone else's id).
        match self.store.document(&a.id).await? {
            Some(meta) if meta.owner == a.who.account => {
                let loaded = self.load(meta).await?;
                held.fill(loaded);
                Ok(false)
            }
            _ => Err(a.unavailable(None)),
        }
    }

    /// Quota: the account may store `adding` more bytes.
    async fn check_quota(&self, a: &Answer<'_>, owner: AccountId, adding: usize) -> Step<()> {
        if adding == 0 {
            return Ok(());
        }
        let usage = match self.registry.cached_usage(owner) {
            Some(u) => u,
            None => {
                let u = self.store.account_usage(owner).await?;
                self.registry.set_usage(owner, u);
                u
            }
        };
        let limit = self.limits.bytes_per_account;
        if usage.bytes.saturating_add(adding as u64) > limit {
            return Err(a.reject(
                codes::ACCOUNT_BYTES,
                format!("the account's documents would exceed {limit} stored bytes"),
                Vec::new(),
            ));
        }
        Ok(())
    }

    /// Apply: makes the requester a peer and applies the message in memory. Automerge refuses
    /// changes that are well-formed but do not fit the history; those must never reach the
    /// store (they would make the stored document fail to load).
    fn apply(
        &self,
        a: &Answer<'_>,
        held: &mut Held<'_>,
        message: sync::Message,
        known: Known,
        before: &[ChangeHash],
    ) -> Step<()> {
        let loaded = loaded(held)?;
        if self.attach(&a.id, loaded, a.who.conn).is_none() {
            // Not joined (the connection registers on `join`, before any document message).
            return Err(a.unavailable(None));
        }
        let Loaded { doc, peers, .. } = loaded;
        let Some(peer) = peers.get_mut(&a.who.conn) else {
            return Err(a.unavailable(None));
        };
        let received = match known.document {
            // The sender's whole document (its new changes checked above), holding all this
            // one holds (a new document, or automerge-repo sending it whole again before it
            // heard back): take the copy the decode stage loaded, rather than have automerge
            // load it a second time.
            Some(whole) if before.iter().all(|h| whole.get_change_by_hash(h).is_some()) => {
                *doc = whole;
                receive_applied(doc, &mut peer.state, message, before);
                Ok(())
            }
            // Changes the document already has (a peer resending its whole document, say):
            // automerge need not parse them again.
            _ if known.nothing_new => {
                receive_applied(doc, &mut peer.state, message, before);
                Ok(())
            }
            _ => doc.receive_sync_message(&mut peer.state, message),
        };
        if let Err(e) = received {
            // Part of the message may have been applied: drop the in-memory copy, so the next
            // message reloads the document from the store (its peers stay watchers).
            held.discard();
            return Err(a.reject(
                schema_codes::UNREADABLE,
                format!("changes do not apply: {e}"),
                before.to_vec(),
            ));
        }
        Ok(())
    }

    /// Store: the accepted changes are stored before anything is acknowledged or relayed, so
    /// an accepted edit survives a crash. If storing fails, the in-memory copy is dropped and
    /// the peer resends.
    async fn store(
        &self,
        id: &DocumentId,
        held: &mut Held<'_>,
        fresh: &[Change],
        bytes: Vec<u8>,
    ) -> Step<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let appended = match self
            .store
            .append_chunk(id, ChunkKind::Incremental, &bytes)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                held.discard();
                return Err(Exit::Fail(e.into()));
            }
        };
        let loaded = loaded(held)?;
        // Read up to just before it: then also up to it (else the next catch-up reads it).
        if let Some(at) = appended.filter(|at| at.prev == loaded.last_seq) {
            loaded.last_seq = at.seq;
        }
        loaded.chunk_hashes.push(sotong_core::hash::sha256(&bytes));
        loaded.ops += fresh.iter().map(|c| c.len()).sum::<usize>();
        loaded.changes += fresh.len();
        loaded.incremental_bytes += bytes.len();
        self.registry
            .add_usage(loaded.meta.owner, 0, bytes.len() as u64);
        Ok(())
    }

    /// Reply and fan out: answers the requester, offers a new document to the account's other
    /// devices, and sends every other peer what it is missing.
    async fn respond(
        &self,
        a: &Answer<'_>,
        loaded: &mut Loaded,
        created: bool,
        before: &[ChangeHash],
    ) -> Replies {
        let mut replies = Vec::new();
        if let Some(peer) = loaded.peers.get_mut(&a.who.conn) {
            if let Some(out) = loaded.doc.generate_sync_message(&mut peer.state) {
                replies.push(WireMessage::Sync(a.doc_message(out.encode())));
            }
        }
        if created {
            for conn in self.registry.others_of(loaded.meta.owner, a.who.conn) {
                self.attach(&a.id, loaded, conn);
            }
        }
        if loaded.doc.get_heads() != before {
            self.fan_out(&a.id, loaded, a.who.conn);
            self.maybe_compact(&a.id, loaded).await;
        }
        replies
    }

    /// Makes `conn` a peer (and a watcher) of the document.
    fn attach<'l>(
        &self,
        id: &DocumentId,
        loaded: &'l mut Loaded,
        conn: ConnId,
    ) -> Option<&'l mut Peer> {
        let (peer_id, link) = self.registry.watch(conn, id)?;
        Some(loaded.peers.entry(conn).or_insert_with(|| Peer {
            peer_id,
            state: sync::State::new(),
            link,
        }))
    }

    /// Sends every peer but `except` what it is missing. A peer too slow to take it is closed
    /// by its link (it resyncs when it reconnects).
    pub(super) fn fan_out(&self, id: &DocumentId, loaded: &mut Loaded, except: ConnId) {
        let Loaded { doc, peers, .. } = loaded;
        peers.retain(|_, peer| !peer.link.is_closed());
        for (_, peer) in peers.iter_mut().filter(|(c, _)| **c != except) {
            if let Some(out) = doc.generate_sync_message(&mut peer.state) {
                peer.link.send(&WireMessage::Sync(DocMessage {
                    sender_id: self.server_peer_id.clone(),
                    target_id: peer.peer_id.to_string(),
                    document_id: *id,
                    data: out.encode(),
                }));
            }
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
                loaded.incremental_bytes += chunk.bytes.len();
            }
        }
        tracing::debug!(target: "sotong_timing", doc = %id, "chunks read");
        if loaded.doc.get_heads() != before {
            loaded.recount();
            self.fan_out(id, loaded, ConnId::MAX);
            tracing::debug!(target: "sotong_timing", doc = %id, "fanned out");
        }
        Ok(())
    }

    /// A notification from another instance: apply the chunk it carries if this instance
    /// holds every chunk before it, else catch the document up from the store (loading it if
    /// a connection here watches it); fan out.
    pub(super) async fn catch_up_remote(
        &self,
        id: &DocumentId,
        notice: Option<Notice>,
    ) -> Result<(), HubError> {
        let mut held = self.slots.lock(id).await;
        if let (Some(loaded), Some(n)) = (held.loaded_mut(), notice) {
            if n.seq <= loaded.last_seq {
                // Already read (notifications can be handled out of order).
                return Ok(());
            }
            match n.bytes {
                Some(bytes) if n.prev == loaded.last_seq => {
                    return self.apply_remote_chunk(id, loaded, n.seq, bytes);
                }
                // A gap, or a chunk too large to travel along: read the store.
                _ => {}
            }
        }
        if held.is_empty() {
            let Some(meta) = self.store.document(id).await? else {
                return Ok(());
            };
            let loaded = self.load(meta).await?;
            if let Some(loaded) = held.fill(loaded) {
                self.fan_out(id, loaded, ConnId::MAX);
            }
            return Ok(());
        }
        match held.loaded_mut() {
            Some(loaded) => self.catch_up(id, loaded).await,
            None => Ok(()),
        }
    }

    /// Applies a chunk another instance stored at `seq`, right after every chunk this
    /// instance has read, and fans the change out.
    fn apply_remote_chunk(
        &self,
        id: &DocumentId,
        loaded: &mut Loaded,
        seq: i64,
        bytes: Vec<u8>,
    ) -> Result<(), HubError> {
        let hash = sotong_core::hash::sha256(&bytes);
        if loaded.chunk_hashes.contains(&hash) {
            loaded.last_seq = seq;
            return Ok(());
        }
        let before = loaded.doc.get_heads();
        loaded
            .doc
            .load_incremental(&bytes)
            .map_err(|e| HubError::Corrupt(e.to_string()))?;
        loaded.last_seq = seq;
        loaded.chunk_hashes.push(hash);
        loaded.incremental_bytes += bytes.len();
        tracing::debug!(target: "sotong_timing", doc = %id, "chunk applied");
        if loaded.doc.get_heads() != before {
            loaded.recount();
            self.fan_out(id, loaded, ConnId::MAX);
            tracing::debug!(target: "sotong_timing", doc = %id, "fanned out");
        }
        Ok(())
    }

    /// Loads a document from its chunks; the connections watching it become its peers.
    async fn load(&self, meta: DocumentMeta) -> Result<Loaded, HubError> {
        let chunks = self.store.chunks_after(&meta.id, 0).await?;
        let mut loaded = Loaded::new(meta, Automerge::new());
        loaded.chunk_hashes.reserve(chunks.len());
        for chunk in chunks {
            loaded
                .doc
                .load_incremental(&chunk.bytes)
                .map_err(|e| HubError::Corrupt(e.to_string()))?;
            loaded.last_seq = loaded.last_seq.max(chunk.seq);
            loaded.chunk_hashes.push(chunk.hash);
            match chunk.kind {
                ChunkKind::Snapshot => loaded.snapshot_bytes += chunk.bytes.len(),
                ChunkKind::Incremental => loaded.incremental_bytes += chunk.bytes.len(),
            }
        }
        loaded.recount();
        for (conn, peer_id, link) in self.registry.watchers(&loaded.meta.id) {
            loaded.peers.insert(
                conn,
                Peer {
                    peer_id,
                    state: sync::State::new(),
                    link,
                },
            );
        }
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
                loaded.chunk_hashes = vec![sotong_core::hash::sha256(&snapshot)];
                loaded.snapshot_bytes = snapshot.len();
                loaded.incremental_bytes = 0;
                self.registry.reset_usage(loaded.meta.owner);
            }
            // Compaction is an optimisation; the chunks are still all there.
            Err(e) => tracing::warn!(doc = %id, error = %e, "compaction failed"),
        }
    }
}

/// What the stages before `apply` learnt about a message's changes.
struct Known {
    /// The sender's whole document, loaded by the decode stage.
    document: Option<Automerge>,
    /// The document already has every change the message carries.
    nothing_new: bool,
}

/// Receives `message` as `receive_sync_message` does, when `doc` already holds every change
/// it carries (`before`: the heads `doc` had before they were added): the peer's sync state
/// ends as automerge 0.6.1 leaves it, without automerge parsing the changes again.
fn receive_applied(
    doc: &mut Automerge,
    state: &mut sync::State,
    mut message: sync::Message,
    before: &[ChangeHash],
) {
    if message.changes.is_empty() {
        // Nothing to spare: exactly what automerge does.
        let _ = doc.receive_sync_message(state, message);
        return;
    }
    // With changes, automerge first advances the shared heads over what they added, and
    // leaves `last_sent_heads` alone (a changeless message with our heads would set it).
    state.shared_heads = advance_heads(before, &doc.get_heads(), &state.shared_heads);
    let last_sent = state.last_sent_heads.clone();
    message.changes = sync::ChunkList::empty();
    // Without changes to apply, receiving cannot fail.
    let _ = doc.receive_sync_message(state, message);
    state.last_sent_heads = last_sent;
}

/// automerge 0.6.1's `sync::advance_heads` (private there): our new heads, plus the shared
/// heads that are still heads, sorted.
fn advance_heads(old: &[ChangeHash], new: &[ChangeHash], shared: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut heads: Vec<ChangeHash> = new
        .iter()
        .filter(|h| !old.contains(h))
        .chain(shared.iter().filter(|h| new.contains(h)))
        .copied()
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

/// Decode, first step: the automerge sync message.
fn parse(a: &Answer<'_>, msg: &DocMessage) -> Step<sync::Message> {
    sync::Message::decode(&msg.data).map_err(|_| {
        a.reject(
            schema_codes::UNREADABLE,
            "not an automerge sync message".into(),
            Vec::new(),
        )
    })
}

/// Decode: the changes `message` carries. When the requester's document is loaded (`holds`)
/// and already has every head the sender has, the changes are all known: they are checked
/// for framing and limits but not loaded (peers resend whole documents they have sent).
fn decode(a: &Answer<'_>, message: sync::Message, holds: Option<&Automerge>) -> Step<Decoded> {
    let known = |doc: &Automerge| {
        !message.heads.is_empty()
            && message
                .heads
                .iter()
                .all(|h| doc.get_change_by_hash(h).is_some())
    };
    if holds.is_some_and(known) {
        for chunk in message.changes.iter() {
            if let Err(e) = changes::check_framing(chunk) {
                return Err(a.reject(e.code(), e.to_string(), Vec::new()));
            }
        }
        return Ok(Decoded {
            message,
            incoming: Vec::new(),
            document: None,
        });
    }
    let only_one = message.changes.len() == 1;
    let mut incoming = Vec::new();
    let mut document = None;
    for chunk in message.changes.iter() {
        match changes::decode_keeping_document(chunk) {
            Ok(d) => {
                incoming.extend(d.changes);
                document = d.document.filter(|_| only_one);
            }
            Err(e) => return Err(a.reject(e.code(), e.to_string(), Vec::new())),
        }
    }
    Ok(Decoded {
        message,
        incoming,
        document,
    })
}

/// Check: the changes the document does not have yet, if the schema and the writer's rights
/// allow them. The peer's sync state is left as it was before a refused message.
fn check(a: &Answer<'_>, loaded: &Loaded, incoming: Vec<Change>) -> Step<Vec<Change>> {
    let fresh: Vec<Change> = incoming
        .into_iter()
        .filter(|c| loaded.doc.get_change_by_hash(&c.hash()).is_none())
        .collect();
    match check_changes(&loaded.doc, &fresh) {
        Ok(_) => Ok(fresh),
        Err(r) => Err(a.reject(r.code, r.message, loaded.doc.get_heads())),
    }
}

/// Check the result: limits that hold for the whole document after the changes (text
/// lengths). A refused result is never stored: the in-memory copy is dropped and reloaded.
fn check_result(a: &Answer<'_>, held: &mut Held<'_>, before: &[ChangeHash]) -> Step<()> {
    let loaded = loaded(held)?;
    if let Err(r) = document_limits(&loaded.doc) {
        held.discard();
        return Err(a.reject(r.code, r.message, before.to_vec()));
    }
    Ok(())
}

/// The document's limits (text lengths) after applying: concurrent edits that each fit can
/// together exceed them.
fn document_limits(doc: &Automerge) -> Result<(), Rejection> {
    sotong_core::schema::validate::check_limits(doc)
}

#[cfg(test)]
mod tests {
    use sotong_core::schema::proposal::{self, ProposalEdit, TextField};

    use super::*;

    /// Everything a sync state holds that steers the next message, and that message.
    fn outcome(doc: &Automerge, state: &mut sync::State) -> (String, Option<Vec<u8>>) {
        let seen = format!(
            "{:?} {:?} {:?} {:?} {:?} {} {}",
            state.shared_heads,
            state.last_sent_heads,
            state.their_heads,
            state.their_need,
            state.sent_hashes,
            state.in_flight,
            state.have_responded
        );
        (seen, doc.generate_sync_message(state).map(|m| m.encode()))
    }

    /// A message from `peer` (whose state toward the server is `state`) after the server
    /// answered with `server`'s first message.
    fn exchange(
        server: &Automerge,
        peer: &mut Automerge,
        state: &mut sync::State,
    ) -> (sync::Message, sync::State) {
        let mut server_state = sync::State::new();
        let first = server.generate_sync_message(&mut server_state).unwrap();
        peer.receive_sync_message(state, first).unwrap();
        (peer.generate_sync_message(state).unwrap(), server_state)
    }

    #[test]
    fn a_whole_new_document_taken_as_loaded_leaves_the_same_sync_state() {
        let mut peer = proposal::create("title", &"본문 ".repeat(500), "c").unwrap();
        let (message, server_state) =
            exchange(&Automerge::new(), &mut peer, &mut sync::State::new());
        assert_eq!(message.changes.len(), 1);
        let decoded =
            changes::decode_keeping_document(message.changes.iter().next().unwrap()).unwrap();
        let whole = decoded
            .document
            .expect("automerge sends a new document whole");

        let (mut by_automerge, mut state_a) = (Automerge::new(), server_state.clone());
        by_automerge
            .receive_sync_message(&mut state_a, message.clone())
            .unwrap();
        let (mut taken, mut state_b) = (whole, server_state);
        receive_applied(&mut taken, &mut state_b, message, &[]);

        assert_eq!(taken.get_heads(), by_automerge.get_heads());
        assert_eq!(
            outcome(&by_automerge, &mut state_a),
            outcome(&taken, &mut state_b)
        );
    }

    #[test]
    fn a_whole_document_holding_more_leaves_the_same_document_and_sync_state() {
        let mut peer = proposal::create("title", &"본문 ".repeat(500), "c").unwrap();
        let mut server = Automerge::new();
        server
            .apply_changes(peer.get_changes(&[]).into_iter().cloned())
            .unwrap();
        proposal::apply(&mut peer, &ProposalEdit::insert(TextField::Body, 3, "x")).unwrap();
        // The peer has not heard from the server yet: it sends its whole document.
        let (message, server_state) =
            exchange(&Automerge::new(), &mut peer, &mut sync::State::new());
        let decoded =
            changes::decode_keeping_document(message.changes.iter().next().unwrap()).unwrap();
        let whole = decoded.document.expect("sent whole");
        let before = server.get_heads();
        assert!(before.iter().all(|h| whole.get_change_by_hash(h).is_some()));

        let (mut by_automerge, mut state_a) = (server, server_state.clone());
        by_automerge
            .receive_sync_message(&mut state_a, message.clone())
            .unwrap();
        let (mut taken, mut state_b) = (whole, server_state);
        receive_applied(&mut taken, &mut state_b, message, &before);

        assert_eq!(taken.get_heads(), by_automerge.get_heads());
        assert_eq!(
            proposal::read(&taken).unwrap(),
            proposal::read(&by_automerge).unwrap()
        );
        assert_eq!(
            outcome(&by_automerge, &mut state_a),
            outcome(&taken, &mut state_b)
        );
    }

    #[test]
    fn changes_already_held_leave_the_same_sync_state() {
        let mut peer = proposal::create("title", "body", "c").unwrap();
        let mut server = Automerge::new();
        server
            .apply_changes(peer.get_changes(&[]).into_iter().cloned())
            .unwrap();
        proposal::apply(&mut peer, &ProposalEdit::insert(TextField::Body, 0, "x")).unwrap();
        server
            .apply_changes(peer.get_changes(&[]).into_iter().cloned())
            .unwrap();
        // The peer thinks the server has nothing, so it sends everything again.
        let (message, server_state) =
            exchange(&Automerge::new(), &mut peer, &mut sync::State::new());
        assert!(!message.changes.is_empty());
        let before = server.get_heads();

        let (mut by_automerge, mut state_a) = (server.clone(), server_state.clone());
        by_automerge
            .receive_sync_message(&mut state_a, message.clone())
            .unwrap();
        let (mut spared, mut state_b) = (server, server_state);
        receive_applied(&mut spared, &mut state_b, message, &before);

        assert_eq!(
            outcome(&by_automerge, &mut state_a),
            outcome(&spared, &mut state_b)
        );
    }
}
