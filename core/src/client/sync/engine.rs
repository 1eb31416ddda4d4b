//! The per-document sync state machine shared by one-shot and live sync. It does no I/O of
//! its own: it takes the server's messages and local changes, and leaves the messages to send
//! in [`Engine::take_outgoing`] and what happened in [`Engine::take_events`].
//!
//! Memory stays bounded: a draft is loaded (held through [`Drafts`]) only while a message
//! about it is in flight, and released once both sides hold the same heads. The first
//! messages go out through a window of [`WINDOW`] documents: enough to keep the connection
//! busy (not one round trip per draft), few enough to keep a few dozen drafts loaded at most.
//! Every document keeps its small `sync::State` for the whole session.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use super::{Rejected, SyncReport};
use crate::client::drafts::Drafts;
use crate::client::error::ClientError;
use crate::client::recover::recover;
use crate::schema::read_kind;
use crate::wire::WireMessage;
use crate::DocumentId;

/// Sync states are kept per (document, peer); every server instance shares one store, so the
/// phone keys them by this name rather than by the instance's peer id.
pub(super) const SERVER_PEER: &str = "server";
/// Documents announced and not yet settled, at most (server-initiated exchanges come on top).
pub(super) const WINDOW: usize = 16;
/// Refusals of one document in a session after which it is left as the server has it.
const MAX_REFUSALS: u32 = 3;

/// A message to send.
pub(super) struct Outgoing {
    pub(super) id: DocumentId,
    pub(super) msg: sync::Message,
    /// The device lacks the document: ask for it.
    pub(super) request: bool,
}

/// What the engine saw happen.
pub(super) enum Event {
    /// The server's changes were applied to a draft and persisted.
    Changed(DocumentId),
    /// The server refused a draft's changes; it was rewound and its valid content replayed.
    Rejected(Rejected),
}

/// Per-document progress within one session.
struct Progress {
    state: sync::State,
    /// The device did not have the document: what has arrived of it so far.
    pending: Option<Automerge>,
    sent: bool,
    received: bool,
    refusals: u32,
}

impl Progress {
    fn new(state: sync::State, pending: bool) -> Self {
        Self {
            state,
            pending: pending.then(Automerge::new),
            sent: false,
            received: false,
            refusals: 0,
        }
    }
}

/// One session's documents.
pub(super) struct Engine<'a> {
    drafts: &'a Drafts,
    docs: HashMap<DocumentId, Progress>,
    /// Not yet announced: (id, the device lacks it).
    queue: VecDeque<(DocumentId, bool)>,
    /// Announced or spoken about, not yet known to be identical on both sides.
    in_flight: HashSet<DocumentId>,
    /// Drafts this engine holds loaded.
    held: HashSet<DocumentId>,
    report: SyncReport,
    outgoing: Vec<Outgoing>,
    events: Vec<Event>,
}

impl<'a> Engine<'a> {
    /// An engine for every document on the device, then every one of `remote` it lacks.
    pub(super) fn new(drafts: &'a Drafts, remote: &[DocumentId]) -> Result<Self, ClientError> {
        let local = drafts.ids()?;
        let known: HashSet<DocumentId> = local.iter().copied().collect();
        let queue = local
            .into_iter()
            .map(|id| (id, false))
            .chain(
                remote
                    .iter()
                    .filter(|id| !known.contains(id))
                    .map(|id| (*id, true)),
            )
            .collect();
        Ok(Self {
            drafts,
            docs: HashMap::new(),
            queue,
            in_flight: HashSet::new(),
            held: HashSet::new(),
            report: SyncReport::default(),
            outgoing: Vec::new(),
            events: Vec::new(),
        })
    }

    /// Announces queued documents while the window has room.
    pub(super) fn fill(&mut self) -> Result<(), ClientError> {
        while self.in_flight.len() < WINDOW {
            let Some((id, requested)) = self.queue.pop_front() else {
                break;
            };
            self.announce(id, requested)?;
        }
        Ok(())
    }

    /// Whether every document is settled.
    pub(super) fn done(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// Messages to send, in order.
    pub(super) fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outgoing)
    }

    /// What happened since the last call.
    pub(super) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// A draft changed on the device: send the server what it lacks at once.
    pub(super) fn local_change(&mut self, id: DocumentId) -> Result<(), ClientError> {
        // A queued document goes now; the queue must not announce it twice.
        self.queue.retain(|(q, _)| *q != id);
        self.announce(id, false)
    }

    /// Ends the session's work: releases every held draft and returns what it did.
    pub(super) fn finish(mut self) -> SyncReport {
        self.release_all();
        std::mem::take(&mut self.report)
    }

    /// Sends the server what it may be missing of `id` (or asks for it, if `requested`).
    fn announce(&mut self, id: DocumentId, requested: bool) -> Result<(), ClientError> {
        let drafts = self.drafts;
        if let Entry::Vacant(e) = self.docs.entry(id) {
            let state = if requested {
                sync::State::new()
            } else {
                drafts.sync_state(&id, SERVER_PEER)?
            };
            e.insert(Progress::new(state, requested));
        }
        let Some(p) = self.docs.get_mut(&id) else {
            return Ok(());
        };
        let msg = match p.pending.as_mut() {
            Some(doc) => doc.generate_sync_message(&mut p.state),
            None => {
                self.held.insert(id);
                drafts
                    .hold(&id, |doc| Ok(doc.generate_sync_message(&mut p.state)))?
                    .flatten()
            }
        };
        match msg {
            Some(msg) => {
                p.sent |= !msg.changes.is_empty();
                let request = p.pending.is_some();
                self.in_flight.insert(id);
                self.outgoing.push(Outgoing { id, msg, request });
            }
            // Nothing to say and nothing awaited: no reason to keep it loaded.
            None if !self.in_flight.contains(&id) => self.release(&id)?,
            None => {}
        }
        Ok(())
    }

    /// Takes one message from the server.
    pub(super) fn handle(&mut self, msg: WireMessage) -> Result<(), ClientError> {
        match msg {
            WireMessage::Sync(d) => {
                let msg = sync::Message::decode(&d.data)
                    .map_err(|e| ClientError::Protocol(format!("sync message: {e}")))?;
                self.receive(d.document_id, msg)?;
            }
            WireMessage::DocUnavailable { document_id, .. } => {
                // Not on the server yet (nothing to fetch), or not ours to read.
                self.in_flight.remove(&document_id);
                if self
                    .docs
                    .get(&document_id)
                    .is_some_and(|p| p.pending.is_some())
                {
                    self.docs.remove(&document_id);
                }
                self.release(&document_id)?;
            }
            WireMessage::Rejected {
                document_id,
                code,
                reason,
                heads,
                ..
            } => self.rejected(
                Rejected {
                    id: document_id,
                    code,
                    reason,
                },
                heads,
            )?,
            WireMessage::Error { message, .. } => {
                return Err(ClientError::Server { status: 0, message })
            }
            _ => {}
        }
        Ok(())
    }

    fn receive(&mut self, id: DocumentId, msg: sync::Message) -> Result<(), ClientError> {
        if !self.docs.contains_key(&id) {
            // The server offers a document this session has not mentioned: one just created
            // on another of the citizen's devices, or one changed there.
            let known = self.drafts.contains(&id)?;
            let state = if known {
                self.drafts.sync_state(&id, SERVER_PEER)?
            } else {
                sync::State::new()
            };
            self.docs.insert(id, Progress::new(state, !known));
        }
        let drafts = self.drafts;
        let Some(p) = self.docs.get_mut(&id) else {
            return Ok(());
        };
        let outcome = match p.pending.as_mut() {
            Some(doc) => {
                apply(doc, &mut p.state, msg)?;
                if doc.get_heads().is_empty() {
                    Some((step(doc, &mut p.state), false))
                } else {
                    // Its first content: store it as a draft from now on.
                    let doc = p.pending.take().unwrap_or_default();
                    let kind = read_kind(&doc).unwrap_or_else(|_| "unknown".into());
                    drafts.insert_received(id, &kind, doc)?;
                    self.held.insert(id);
                    drafts
                        .hold(&id, |doc| Ok(step(doc, &mut p.state)))?
                        .map(|s| (s, true))
                }
            }
            None => {
                self.held.insert(id);
                drafts.hold(&id, |doc| {
                    let before = doc.get_heads();
                    apply(doc, &mut p.state, msg)?;
                    let changed = doc.get_heads() != before;
                    Ok((step(doc, &mut p.state), changed))
                })?
            }
        };
        // The draft is gone from the device (signed out meanwhile): nothing to do.
        let Some(((reply, settled), changed)) = outcome else {
            self.in_flight.remove(&id);
            return self.release(&id);
        };
        if changed {
            p.received = true;
            self.events.push(Event::Changed(id));
        }
        if let Some(reply) = reply {
            p.sent |= !reply.changes.is_empty();
            self.outgoing.push(Outgoing {
                id,
                msg: reply,
                request: false,
            });
        }
        if settled {
            self.settle(&id)
        } else {
            self.in_flight.insert(id);
            Ok(())
        }
    }

    fn rejected(&mut self, r: Rejected, heads: Vec<ChangeHash>) -> Result<(), ClientError> {
        let drafts = self.drafts;
        let id = r.id;
        let Some(p) = self.docs.get_mut(&id) else {
            return Ok(());
        };
        tracing::warn!(doc = %id, code = %r.code, reason = %r.reason, "server refused a draft's changes");
        p.refusals += 1;
        self.held.insert(id);
        let rewound = drafts.rewrite(&id, |doc| recover(doc, &heads))?;
        p.state = sync::State::new();
        drafts.save_sync_state(&id, SERVER_PEER, &p.state)?;
        let next = match rewound {
            // Nothing valid to replay: the draft is now exactly the server's.
            Some(now) if now != heads && p.refusals < MAX_REFUSALS => drafts
                .hold(&id, |doc| Ok(doc.generate_sync_message(&mut p.state)))?
                .flatten(),
            _ => None,
        };
        self.events.push(Event::Rejected(r.clone()));
        self.report.rejected.push(r);
        match next {
            Some(msg) => {
                self.in_flight.insert(id);
                self.outgoing.push(Outgoing {
                    id,
                    msg,
                    request: false,
                });
                Ok(())
            }
            // Settled on the server's state, or refused again after rewinding: stop here
            // rather than loop.
            None => {
                self.in_flight.remove(&id);
                self.release(&id)
            }
        }
    }

    fn settle(&mut self, id: &DocumentId) -> Result<(), ClientError> {
        self.in_flight.remove(id);
        if let Some(p) = self.docs.get_mut(id) {
            // A document that never arrived has nothing worth remembering.
            if p.pending.is_none() {
                self.drafts.save_sync_state(id, SERVER_PEER, &p.state)?;
            }
            self.report.documents_sent += u32::from(std::mem::take(&mut p.sent));
            self.report.documents_received += u32::from(std::mem::take(&mut p.received));
        }
        self.release(id)
    }

    fn release(&mut self, id: &DocumentId) -> Result<(), ClientError> {
        if self.held.remove(id) {
            self.drafts.release(id)?;
        }
        Ok(())
    }

    fn release_all(&mut self) {
        for id in std::mem::take(&mut self.held) {
            if let Err(e) = self.drafts.release(&id) {
                tracing::warn!(error = %e, "cannot release a draft");
            }
        }
    }
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        // A session that failed half way must not leave its drafts loaded.
        self.release_all();
    }
}

fn apply(
    doc: &mut Automerge,
    state: &mut sync::State,
    msg: sync::Message,
) -> Result<(), ClientError> {
    doc.receive_sync_message(state, msg)
        .map_err(|e| ClientError::Protocol(format!("server sent changes that do not apply: {e}")))
}

/// The reply to send, and whether both sides now hold the same heads.
fn step(doc: &mut Automerge, state: &mut sync::State) -> (Option<sync::Message>, bool) {
    let reply = doc.generate_sync_message(state);
    let settled = state.their_heads.as_deref() == Some(&doc.get_heads()[..])
        && reply.as_ref().map(|m| m.changes.is_empty()).unwrap_or(true);
    (reply, settled)
}
