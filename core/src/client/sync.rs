//! The phone's side of sync: one WebSocket session with the server speaking the
//! automerge-repo protocol, run until every draft is settled (both sides hold the same heads).
//!
//! Per-document sync state is persisted per (document, "server"), so a later session starts
//! from what both sides were known to share. When the server refuses a message, the draft is
//! rewound to the server's heads and its still-valid content replayed on top (see
//! [`recover`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::ClientError;
use super::recover::recover;
use super::{Inner, Rejected, SyncReport};
use crate::schema::read_kind;
use crate::wire::{DocMessage, PeerMetadata, WireMessage, PROTOCOL_VERSION};
use crate::DocumentId;

/// Sync states are kept per (document, peer); every server instance shares one store, so the
/// phone keys them by this name rather than by the instance's peer id.
const SERVER_PEER: &str = "server";
/// How long a sync waits for the server's next message before it gives up (it can be
/// retried; nothing is lost). An idle limit rather than a total one, so that a device with
/// many drafts can take as long as it keeps making progress.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Session {
    socket: Socket,
    me: String,
    server: String,
}

impl Session {
    async fn connect(inner: &Inner, token: &str, me: String) -> Result<Self, ClientError> {
        let url = inner.api.sync_url()?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Internal(format!("sync request: {e}")))?;
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Internal("token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", auth);
        // No Nagle: sync messages are small and latency-bound (40 ms delayed-ACK stalls).
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp)
                    if resp.status().as_u16() == 401 =>
                {
                    ClientError::Unauthorized("the server refused this device's token".into())
                }
                other => ClientError::Network(other.to_string()),
            })?;
        let mut session = Session {
            socket,
            me,
            server: String::new(),
        };
        session
            .send(&WireMessage::Join {
                sender_id: session.me.clone(),
                supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some(session.me.clone()),
                    is_ephemeral: false,
                }),
            })
            .await?;
        match session.recv().await? {
            WireMessage::Peer { sender_id, .. } => session.server = sender_id,
            WireMessage::Error { message, .. } => {
                return Err(ClientError::Server { status: 0, message })
            }
            other => {
                return Err(ClientError::Server {
                    status: 0,
                    message: format!("unexpected answer to join: {}", kind_name(&other)),
                })
            }
        }
        Ok(session)
    }

    async fn send(&mut self, msg: &WireMessage) -> Result<(), ClientError> {
        self.socket
            .send(Message::Binary(msg.encode().into()))
            .await
            .map_err(|e| ClientError::Network(e.to_string()))
    }

    async fn recv(&mut self) -> Result<WireMessage, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Binary(b))) => {
                    return WireMessage::decode(&b).map_err(|e| ClientError::Server {
                        status: 0,
                        message: format!("malformed message from the server: {e}"),
                    })
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(ClientError::Network(
                        "the server closed the connection".into(),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Network(e.to_string())),
            }
        }
    }

    async fn send_doc(
        &mut self,
        id: DocumentId,
        msg: sync::Message,
        request: bool,
    ) -> Result<(), ClientError> {
        let d = DocMessage {
            sender_id: self.me.clone(),
            target_id: self.server.clone(),
            document_id: id,
            data: msg.encode(),
        };
        let wire = if request {
            WireMessage::Request(d)
        } else {
            WireMessage::Sync(d)
        };
        self.send(&wire).await
    }
}

/// Per-document progress within one session.
struct Progress {
    state: sync::State,
    /// The device did not have the document when the session started: what has arrived of it
    /// so far.
    pending: Option<Automerge>,
    sent_changes: bool,
    received_changes: bool,
    refusals: u32,
}

/// Receives what a live sync session does.
pub trait SyncListener: Send + Sync + 'static {
    /// Changes from the server were applied to a draft and persisted.
    fn draft_changed(&self, id: DocumentId);
    /// The server refused a draft's changes; the draft was rewound and its valid content
    /// replayed.
    fn draft_rejected(&self, id: DocumentId, reason: String);
    /// The session ended: `None` when the app stopped it, else why.
    fn stopped(&self, error: Option<String>);
}

/// One session's state machine, shared by [`sync_once`] and live sync.
struct Engine<'a> {
    inner: &'a Inner,
    session: Session,
    docs: HashMap<DocumentId, Progress>,
    /// Documents not yet known to be identical on both sides.
    unsettled: HashSet<DocumentId>,
    report: SyncReport,
    listener: Option<&'a dyn SyncListener>,
    /// Drafts in memory before the session: a one-shot sync unloads the others once settled,
    /// so syncing many drafts does not keep them all loaded (automerge 0.6 holds ~2 MB per
    /// 5,000-character draft).
    preloaded: HashSet<DocumentId>,
}

impl<'a> Engine<'a> {
    async fn start(inner: &'a Inner, token: &str) -> Result<Engine<'a>, ClientError> {
        let remote = inner.api.documents(token).await?;
        let me = inner.store.peer_id()?;
        let session = Session::connect(inner, token, me).await?;
        let mut engine = Engine {
            inner,
            session,
            docs: HashMap::new(),
            unsettled: HashSet::new(),
            report: SyncReport::default(),
            listener: None,
            preloaded: inner.drafts.loaded_ids()?,
        };
        let local: HashSet<DocumentId> = inner
            .store
            .list_documents()?
            .into_iter()
            .map(|r| r.id)
            .collect();
        for id in &local {
            engine.announce(*id, false).await?;
        }
        for id in remote.iter().filter(|id| !local.contains(id)) {
            engine.announce(*id, true).await?;
        }
        Ok(engine)
    }

    /// Sends the server what it may be missing of `id` (or asks for it, if `requested`).
    async fn announce(&mut self, id: DocumentId, requested: bool) -> Result<(), ClientError> {
        let inner = self.inner;
        let p = match self.docs.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let state = if requested {
                    sync::State::new()
                } else {
                    inner
                        .store
                        .load_sync_state(&id, SERVER_PEER)?
                        .unwrap_or_default()
                };
                e.insert(Progress {
                    state,
                    pending: requested.then(Automerge::new),
                    sent_changes: false,
                    received_changes: false,
                    refusals: 0,
                })
            }
        };
        let msg = match p.pending.as_mut() {
            Some(doc) => doc.generate_sync_message(&mut p.state),
            None => inner
                .drafts
                .with_draft_opt(&inner.store, &id, |d| {
                    Ok(d.doc.generate_sync_message(&mut p.state))
                })?
                .flatten(),
        };
        if let Some(msg) = msg {
            p.sent_changes |= !msg.changes.is_empty();
            let request = p.pending.is_some();
            self.unsettled.insert(id);
            self.session.send_doc(id, msg, request).await?;
        }
        Ok(())
    }

    /// Starts tracking a document the server brought up.
    fn adopt(&mut self, id: DocumentId) -> Result<(), ClientError> {
        let known = self.inner.store.load_document(&id)?.is_some();
        let state = if known {
            self.inner
                .store
                .load_sync_state(&id, SERVER_PEER)?
                .unwrap_or_default()
        } else {
            sync::State::new()
        };
        self.docs.insert(
            id,
            Progress {
                state,
                pending: (!known).then(Automerge::new),
                sent_changes: false,
                received_changes: false,
                refusals: 0,
            },
        );
        self.unsettled.insert(id);
        Ok(())
    }

    async fn handle(&mut self, msg: WireMessage) -> Result<(), ClientError> {
        match msg {
            WireMessage::Sync(d) => {
                if !self.docs.contains_key(&d.document_id) {
                    // The server offers a draft this session has not mentioned: one just
                    // created on another of the citizen's devices.
                    self.adopt(d.document_id)?;
                }
                let Some(p) = self.docs.get_mut(&d.document_id) else {
                    return Ok(());
                };
                let msg = sync::Message::decode(&d.data).map_err(|e| ClientError::Server {
                    status: 0,
                    message: format!("malformed sync message: {e}"),
                })?;
                let had = p.received_changes;
                let (reply, settled) = receive(self.inner, d.document_id, p, msg)?;
                let changed = p.received_changes && !had;
                if let Some(reply) = reply {
                    p.sent_changes |= !reply.changes.is_empty();
                    self.session.send_doc(d.document_id, reply, false).await?;
                }
                if settled {
                    self.settle(&d.document_id)?;
                }
                if let (true, Some(l)) = (changed, self.listener) {
                    l.draft_changed(d.document_id);
                }
                // In a live session every later change counts again.
                if self.listener.is_some() {
                    if let Some(p) = self.docs.get_mut(&d.document_id) {
                        p.received_changes = false;
                    }
                }
            }
            WireMessage::DocUnavailable { document_id, .. } => {
                // Not on the server yet (nothing to fetch), or not ours to read.
                self.unsettled.remove(&document_id);
                if self
                    .docs
                    .get(&document_id)
                    .is_some_and(|p| p.pending.is_some())
                {
                    self.docs.remove(&document_id);
                }
            }
            WireMessage::Rejected {
                document_id,
                reason,
                heads,
                ..
            } => self.rejected(document_id, reason, heads).await?,
            WireMessage::Error { message, .. } => {
                return Err(ClientError::Server { status: 0, message })
            }
            _ => {}
        }
        Ok(())
    }

    async fn rejected(
        &mut self,
        id: DocumentId,
        reason: String,
        heads: Vec<ChangeHash>,
    ) -> Result<(), ClientError> {
        let inner = self.inner;
        let Some(p) = self.docs.get_mut(&id) else {
            return Ok(());
        };
        tracing::warn!(doc = %id, %reason, "server refused a draft's changes");
        p.refusals += 1;
        let next = inner
            .drafts
            .with_draft_opt(&inner.store, &id, |draft| {
                draft.doc = recover(&draft.doc, &heads)?;
                inner.store.replace_document(&id, &draft.doc)?;
                draft.saved_heads = draft.doc.get_heads();
                p.state = sync::State::new();
                inner.store.save_sync_state(&id, SERVER_PEER, &p.state)?;
                // Nothing valid to replay: the draft is now exactly the server's.
                if draft.doc.get_heads() == heads {
                    return Ok(None);
                }
                Ok(draft.doc.generate_sync_message(&mut p.state))
            })?
            .flatten();
        let refusals = p.refusals;
        if let Some(l) = self.listener {
            l.draft_rejected(id, reason.clone());
        }
        self.report.rejected.push(Rejected { id, reason });
        match next {
            Some(msg) if refusals < 3 => self.session.send_doc(id, msg, false).await?,
            // Settled on the server's state, or refused again after rewinding: stop here
            // rather than loop.
            _ => {
                self.unsettled.remove(&id);
            }
        }
        Ok(())
    }

    fn settle(&mut self, id: &DocumentId) -> Result<(), ClientError> {
        self.unsettled.remove(id);
        if let Some(p) = self.docs.get_mut(id) {
            self.inner
                .store
                .save_sync_state(id, SERVER_PEER, &p.state)?;
            self.report.documents_sent += u32::from(std::mem::take(&mut p.sent_changes));
            self.report.documents_received += u32::from(p.received_changes);
        }
        if self.listener.is_none() && !self.preloaded.contains(id) {
            self.inner.drafts.unload(id)?;
        }
        Ok(())
    }

    async fn close(mut self) -> SyncReport {
        let _ = self
            .session
            .send(&WireMessage::Leave {
                sender_id: self.session.me.clone(),
            })
            .await;
        let _ = self.session.socket.close(None).await;
        self.report
    }
}

pub(crate) async fn sync_once(inner: &Inner) -> Result<SyncReport, ClientError> {
    let account = inner.store.account()?.ok_or(ClientError::NotRegistered)?;
    let run = async {
        let timed_out = || ClientError::Network("sync timed out waiting for the server".into());
        let mut engine = tokio::time::timeout(IDLE_TIMEOUT, Engine::start(inner, &account.token))
            .await
            .map_err(|_| timed_out())??;
        while !engine.unsettled.is_empty() {
            let msg = tokio::time::timeout(IDLE_TIMEOUT, engine.session.recv())
                .await
                .map_err(|_| timed_out())??;
            engine.handle(msg).await?;
        }
        Ok(engine.close().await)
    };
    let result = run.await;
    // A sync writes many small transactions; fold the WAL back while the app is idle-ish.
    if let Err(e) = inner.store.checkpoint() {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
    result
}

/// A running live sync session; dropping it (or [`LiveSync::stop`]) ends it.
pub struct LiveSync {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LiveSync {
    /// Ends the session and waits for it to close its connection.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LiveSync {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Connects, syncs every draft, then stays connected: local edits are pushed at once and
/// the server's pushes are applied as they come. Returns once the session is connected.
pub(crate) async fn start_live(
    inner: std::sync::Arc<Inner>,
    listener: std::sync::Arc<dyn SyncListener>,
) -> Result<LiveSync, ClientError> {
    let account = inner.store.account()?.ok_or(ClientError::NotRegistered)?;
    let (local_tx, mut local_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), ClientError>>();
    let task = tokio::spawn(async move {
        let mut engine = match Engine::start(&inner, &account.token).await {
            Ok(e) => e,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        engine.listener = Some(listener.as_ref());
        inner.set_live(Some(local_tx));
        let _ = ready_tx.send(Ok(()));
        let outcome: Result<(), ClientError> = loop {
            tokio::select! {
                _ = &mut stop_rx => break Ok(()),
                Some(id) = local_rx.recv() => {
                    if let Err(e) = engine.announce(id, false).await {
                        break Err(e);
                    }
                }
                msg = engine.session.recv() => {
                    match msg {
                        Ok(m) => if let Err(e) = engine.handle(m).await { break Err(e) },
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        inner.set_live(None);
        for id in engine.docs.keys().copied().collect::<Vec<_>>() {
            if let Some(p) = engine.docs.get(&id) {
                let _ = inner.store.save_sync_state(&id, SERVER_PEER, &p.state);
            }
        }
        engine.close().await;
        listener.stopped(outcome.err().map(|e| e.to_string()));
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(LiveSync {
            stop: Some(stop_tx),
            task: Some(task),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClientError::Internal("live sync failed to start".into())),
    }
}

/// Applies one message from the server; returns the reply and whether the document is settled.
fn receive(
    inner: &Inner,
    id: DocumentId,
    p: &mut Progress,
    msg: sync::Message,
) -> Result<(Option<sync::Message>, bool), ClientError> {
    if let Some(doc) = p.pending.as_mut() {
        // A draft made on another device, not stored here until its first content arrives.
        apply(doc, &mut p.state, msg)?;
        if doc.get_heads().is_empty() {
            return Ok(step(doc, &mut p.state));
        }
        let doc = p.pending.take().unwrap_or_default();
        let kind = read_kind(&doc).unwrap_or_else(|_| "unknown".into());
        inner.drafts.insert_new(&inner.store, id, &kind, doc)?;
        p.received_changes = true;
        return inner
            .drafts
            .with_draft_opt(&inner.store, &id, |d| Ok(step(&mut d.doc, &mut p.state)))?
            .ok_or_else(|| ClientError::Internal("draft vanished".into()));
    }
    let out = inner.drafts.with_draft_opt(&inner.store, &id, |draft| {
        let before = draft.doc.get_heads();
        apply(&mut draft.doc, &mut p.state, msg)?;
        let changed = draft.doc.get_heads() != before;
        if changed {
            inner
                .store
                .save_document(&id, &draft.doc, &mut draft.saved_heads)?;
        }
        Ok((changed, step(&mut draft.doc, &mut p.state)))
    })?;
    let (changed, result) =
        out.ok_or_else(|| ClientError::NotFound(format!("no draft {id} on this device")))?;
    p.received_changes |= changed;
    Ok(result)
}

fn apply(
    doc: &mut Automerge,
    state: &mut sync::State,
    msg: sync::Message,
) -> Result<(), ClientError> {
    doc.receive_sync_message(state, msg)
        .map_err(|e| ClientError::Server {
            status: 0,
            message: format!("server sent changes that do not apply: {e}"),
        })
}

/// The reply to send, and whether both sides now hold the same heads.
fn step(doc: &mut Automerge, state: &mut sync::State) -> (Option<sync::Message>, bool) {
    let reply = doc.generate_sync_message(state);
    let settled = state.their_heads.as_deref() == Some(&doc.get_heads()[..])
        && reply.as_ref().map(|m| m.changes.is_empty()).unwrap_or(true);
    (reply, settled)
}

fn kind_name(m: &WireMessage) -> &'static str {
    match m {
        WireMessage::Join { .. } => "join",
        WireMessage::Peer { .. } => "peer",
        WireMessage::Leave { .. } => "leave",
        WireMessage::Error { .. } => "error",
        WireMessage::Request(_) => "request",
        WireMessage::Sync(_) => "sync",
        WireMessage::DocUnavailable { .. } => "doc-unavailable",
        WireMessage::Rejected { .. } => "sotong-rejected",
        WireMessage::Ignored { .. } => "ignored",
    }
}
