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
use automerge::ReadDoc;
use automerge::{Automerge, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::ClientError;
use super::{Inner, Rejected, SyncReport};
use crate::schema::proposal::{self, ProposalEdit, TextField};
use crate::schema::read_kind;
use crate::wire::{DocMessage, PeerMetadata, WireMessage, PROTOCOL_VERSION};
use crate::DocumentId;

/// Sync states are kept per (document, peer); every server instance shares one store, so the
/// phone keys them by this name rather than by the instance's peer id.
const SERVER_PEER: &str = "server";
/// How long one sync may take before it gives up (it can be retried; nothing is lost).
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

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
        let (socket, _) = tokio_tungstenite::connect_async(request)
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
                    return Err(ClientError::Network("the server closed the connection".into()))
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
}

pub(crate) async fn sync_once(inner: &Inner) -> Result<SyncReport, ClientError> {
    let account = inner.store.account()?.ok_or(ClientError::NotRegistered)?;
    match tokio::time::timeout(SYNC_TIMEOUT, run(inner, &account.token)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Network("sync timed out".into())),
    }
}

async fn run(inner: &Inner, token: &str) -> Result<SyncReport, ClientError> {
    let remote = inner.api.documents(token).await?;
    let me = inner.store.peer_id()?;
    let mut session = Session::connect(inner, token, me).await?;

    let local: HashSet<DocumentId> = inner
        .store
        .list_documents()?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut all: Vec<DocumentId> = local.iter().copied().collect();
    all.extend(remote.iter().filter(|id| !local.contains(id)));

    let mut progress: HashMap<DocumentId, Progress> = HashMap::new();
    let mut report = SyncReport::default();
    for id in all {
        let requested = !local.contains(&id);
        let mut state = if requested {
            sync::State::new()
        } else {
            inner
                .store
                .load_sync_state(&id, SERVER_PEER)?
                .unwrap_or_default()
        };
        let first = if requested {
            Automerge::new().generate_sync_message(&mut state)
        } else {
            inner
                .drafts
                .with_draft_opt(&inner.store, &id, |d| Ok(d.doc.generate_sync_message(&mut state)))?
                .flatten()
        };
        if let Some(msg) = first {
            session.send_doc(id, msg, requested).await?;
            progress.insert(
                id,
                Progress {
                    state,
                    pending: requested.then(Automerge::new),
                    sent_changes: false,
                    received_changes: false,
                },
            );
        }
    }

    while !progress.is_empty() {
        match session.recv().await? {
            WireMessage::Sync(d) => {
                let Some(p) = progress.get_mut(&d.document_id) else {
                    continue;
                };
                let msg = sync::Message::decode(&d.data).map_err(|e| ClientError::Server {
                    status: 0,
                    message: format!("malformed sync message: {e}"),
                })?;
                let (reply, settled) = receive(inner, d.document_id, p, msg)?;
                if let Some(reply) = reply {
                    p.sent_changes |= !reply.changes.is_empty();
                    session.send_doc(d.document_id, reply, false).await?;
                }
                if settled {
                    finish(inner, &d.document_id, &mut progress, &mut report)?;
                }
            }
            WireMessage::DocUnavailable { document_id, .. } => {
                // Not on the server yet (nothing to fetch), or not ours to read.
                progress.remove(&document_id);
            }
            WireMessage::Rejected {
                document_id,
                reason,
                heads,
                ..
            } => {
                let Some(p) = progress.get_mut(&document_id) else {
                    continue;
                };
                tracing::warn!(doc = %document_id, %reason, "server refused a draft's changes");
                report.rejected.push(Rejected {
                    id: document_id,
                    reason,
                });
                let next = inner
                    .drafts
                    .with_draft_opt(&inner.store, &document_id, |draft| {
                        draft.doc = recover(&draft.doc, &heads)?;
                        inner.store.replace_document(&document_id, &draft.doc)?;
                        draft.saved_heads = draft.doc.get_heads();
                        p.state = sync::State::new();
                        inner
                            .store
                            .save_sync_state(&document_id, SERVER_PEER, &p.state)?;
                        // Nothing valid to replay: the draft is now exactly the server's.
                        if draft.doc.get_heads() == heads {
                            return Ok(None);
                        }
                        Ok(draft.doc.generate_sync_message(&mut p.state))
                    })?
                    .flatten();
                let refusals = report
                    .rejected
                    .iter()
                    .filter(|r| r.id == document_id)
                    .count();
                match next {
                    Some(msg) if refusals < 3 => session.send_doc(document_id, msg, false).await?,
                    // Settled on the server's state, or refused again after rewinding: stop
                    // here rather than loop.
                    _ => {
                        progress.remove(&document_id);
                    }
                }
            }
            WireMessage::Error { message, .. } => {
                return Err(ClientError::Server { status: 0, message })
            }
            _ => {}
        }
    }
    let _ = session
        .send(&WireMessage::Leave {
            sender_id: session.me.clone(),
        })
        .await;
    let _ = session.socket.close(None).await;
    Ok(report)
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

fn apply(doc: &mut Automerge, state: &mut sync::State, msg: sync::Message) -> Result<(), ClientError> {
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

fn finish(
    inner: &Inner,
    id: &DocumentId,
    progress: &mut HashMap<DocumentId, Progress>,
    report: &mut SyncReport,
) -> Result<(), ClientError> {
    if let Some(p) = progress.remove(id) {
        inner.store.save_sync_state(id, SERVER_PEER, &p.state)?;
        report.documents_sent += u32::from(p.sent_changes);
        report.documents_received += u32::from(p.received_changes);
    }
    Ok(())
}

/// Rewinds a refused draft to the server's heads and replays its still-valid content on top,
/// as new changes the server will accept. Heads the phone does not know yet are skipped; the
/// sync that follows brings them.
pub(crate) fn recover(
    doc: &Automerge,
    server_heads: &[ChangeHash],
) -> Result<Automerge, ClientError> {
    let known: Vec<ChangeHash> = server_heads
        .iter()
        .copied()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .collect();
    // Field by field: a tampered field must not cost the valid ones.
    let local = proposal::read_fields(doc);
    let category = local
        .category
        .filter(|c| c.len() <= proposal::MAX_CATEGORY_BYTES);
    if known.is_empty() {
        // Nothing of this draft reached the server: start it again from its valid content.
        return Ok(proposal::create(
            local.title.as_deref().unwrap_or_default(),
            local.body.as_deref().unwrap_or_default(),
            category.as_deref().unwrap_or_default(),
        )?);
    }
    let mut base = doc
        .fork_at(&known)
        .map_err(|e| ClientError::Internal(format!("cannot rewind draft: {e}")))?;
    let server = proposal::read_fields(&base);
    let replays = [
        (local.title, server.title, TextField::Title),
        (local.body, server.body, TextField::Body),
    ];
    for (mine, theirs, field) in replays {
        if let (Some(text), Some(theirs)) = (mine, theirs) {
            if text != theirs {
                proposal::apply(&mut base, &ProposalEdit::Replace { field, text })?;
            }
        }
    }
    if let Some(c) = category.filter(|c| Some(c) != server.category.as_ref()) {
        proposal::apply(&mut base, &ProposalEdit::SetCategory(c))?;
    }
    Ok(base)
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
