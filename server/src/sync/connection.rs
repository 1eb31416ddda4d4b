//! One WebSocket connection speaking the automerge-repo protocol for one authenticated device:
//! a reader (frames in: limits, decode, dispatch), a document worker (the hub's work, one
//! message at a time, in order), SOS beacon batches on tasks of their own
//! ([`crate::sos::live`]), and a writer task (frames out, pings, the close frame). The reader
//! only queues document work, so a beacon frame behind a long document message is read and
//! stored at once.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use sotong_core::wire::{DocMessage, PeerMetadata, WireMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::hub::{ConnId, Hub, HubError, Requester};
use super::link::{close, CloseReason, Link};
use crate::sos::live::LiveBeacons;
use crate::store::AccountId;

/// How long a closing connection waits for the close frame to go out and for the peer's
/// answer before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Document messages read but not yet handled: few, so that a connection holds at most a
/// couple of frames beyond the one being handled, yet the reader moves on past a long one.
const DOC_QUEUE: usize = 2;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Serves one connection until the peer leaves, the server closes it, or the socket fails.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, account: AccountId, sos: LiveBeacons) {
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (link, outgoing) = Link::new(hub.limits().outbox_frames);
    let link = Arc::new(link);
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_frames(
        sink,
        outgoing,
        link.clone(),
        hub.limits().ping_interval,
    ));
    match hub.admit(account) {
        Some(_admission) => {
            let (docs, queued) = mpsc::channel(DOC_QUEUE);
            let worker = tokio::spawn(document_worker(
                hub.clone(),
                conn,
                account,
                link.clone(),
                queued,
            ));
            let mut reader = Reader::new(&hub, conn, account, &link, &sos, docs);
            reader.run(&mut stream).await;
            // The queue closes with the reader; the worker ends after what it holds.
            drop(reader);
            let _ = worker.await;
            hub.disconnect(conn).await;
        }
        None => link.close(
            close::POLICY,
            &format!(
                "too_many_connections: the account has {} open connections, the most it may",
                hub.limits().connections_per_account
            ),
        ),
    }
    if !link.is_closed() {
        link.close(close::GOING_AWAY, "closing");
    }
    // The closing handshake: the peer's remaining frames are read and dropped until it
    // answers the close frame (or the grace period ends).
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let _ = writer.await;
}

/// What the writer does next.
enum Next {
    Write,
    Close(CloseReason),
    /// The socket failed or every sender is gone: nothing more can be written.
    Gone,
}

/// Sends queued frames and pings; on close, sends the close frame with its reason.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    link: Arc<Link>,
    ping_interval: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    loop {
        let next = tokio::select! {
            reason = link.closed() => Next::Close(reason),
            frame = outgoing.recv() => match frame {
                // A send blocked by a peer that does not read is abandoned when the link closes.
                Some(frame) => tokio::select! {
                    reason = link.closed() => Next::Close(reason),
                    sent = sink.send(Message::Binary(frame.into())) => match sent {
                        Ok(()) => Next::Write,
                        Err(_) => Next::Gone,
                    },
                },
                None => Next::Gone,
            },
            _ = ping.tick() => match sink.send(Message::Ping(Default::default())).await {
                Ok(()) => Next::Write,
                Err(_) => Next::Gone,
            },
        };
        match next {
            Next::Write => continue,
            Next::Close(reason) => {
                let frame = CloseFrame {
                    code: reason.code,
                    reason: reason.reason.into(),
                };
                let send = sink.send(Message::Close(Some(frame)));
                let _ = tokio::time::timeout(CLOSE_GRACE, send).await;
                return;
            }
            Next::Gone => {
                link.close(close::GOING_AWAY, "socket closed");
                return;
            }
        }
    }
}

/// A token bucket: `rate` messages per second, bursts of `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The reading side of one connection.
struct Reader<'a> {
    hub: &'a Arc<Hub>,
    conn: ConnId,
    account: AccountId,
    link: &'a Arc<Link>,
    sos: &'a LiveBeacons,
    docs: mpsc::Sender<DocWork>,
    peer_id: Option<String>,
    bucket: Bucket,
}

impl<'a> Reader<'a> {
    fn new(
        hub: &'a Arc<Hub>,
        conn: ConnId,
        account: AccountId,
        link: &'a Arc<Link>,
        sos: &'a LiveBeacons,
        docs: mpsc::Sender<DocWork>,
    ) -> Self {
        let limits = hub.limits();
        Self {
            hub,
            conn,
            account,
            link,
            sos,
            docs,
            peer_id: None,
            bucket: Bucket::new(limits.messages_per_sec, limits.message_burst),
        }
    }

    /// Reads frames until the connection ends; every way out closes the link with a reason.
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) {
        let mut closing = self.hub.closing();
        let idle = self.hub.limits().idle_timeout;
        loop {
            let deadline = Instant::now() + idle;
            let frame = tokio::select! {
                frame = tokio::time::timeout_at(deadline, stream.next()) => frame,
                _ = closing.wait_for(|c| *c) => {
                    return self.link.close(close::GOING_AWAY, "server_shutdown");
                }
                _ = self.link.closed() => return,
            };
            let frame = match frame {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => return self.read_failed(&e),
                Ok(None) => return self.link.close(close::GOING_AWAY, "peer gone"),
                Err(_) => {
                    let reason = format!("idle: nothing received for {} s", idle.as_secs());
                    return self.link.close(close::GOING_AWAY, &reason);
                }
            };
            if !self.on_frame(frame).await {
                return;
            }
        }
    }

    /// tungstenite refuses an oversized frame while it arrives (`max_message_size`); the
    /// stream cannot be read further after that.
    fn read_failed(&self, e: &axum::Error) {
        let text = e.to_string();
        if text.contains("too long") || text.contains("Space limit") {
            let reason = format!("too_big: a message may hold at most {MAX_FRAME_BYTES} bytes");
            self.link.close(close::TOO_BIG, &reason);
        } else {
            self.link.close(close::GOING_AWAY, "read failed");
        }
    }

    /// Handles one frame; false ends the connection.
    async fn on_frame(&mut self, frame: Message) -> bool {
        let bytes = match frame {
            Message::Binary(b) => b,
            Message::Close(_) => return false,
            Message::Text(_) => {
                self.error("frames must be binary CBOR");
                return true;
            }
            Message::Ping(_) | Message::Pong(_) => return true, // answered by axum
        };
        if !self.bucket.take(Instant::now()) {
            let limits = self.hub.limits();
            let reason = format!(
                "rate_limited: more than {} messages per second (bursts of {})",
                limits.messages_per_sec, limits.message_burst
            );
            self.link.close(close::POLICY, &reason);
            return false;
        }
        match WireMessage::decode(&bytes) {
            Ok(msg) => self.dispatch(msg).await,
            Err(e) => {
                self.error(&e.to_string());
                true
            }
        }
    }

    async fn dispatch(&mut self, msg: WireMessage) -> bool {
        let Some(peer_id) = self.peer_id.clone() else {
            return match msg {
                WireMessage::Join {
                    sender_id,
                    supported_protocol_versions,
                    ..
                } => self.join(sender_id, &supported_protocol_versions),
                _ => {
                    self.error("send \"join\" first");
                    true
                }
            };
        };
        match msg {
            WireMessage::Join { .. } => self.error("already joined"),
            WireMessage::Request(d) => self.document(peer_id, d, true).await,
            WireMessage::Sync(d) => self.document(peer_id, d, false).await,
            WireMessage::SosBeacon { batch, data, .. } => self.sos.spawn(
                self.link.clone(),
                self.hub.peer_id().to_owned(),
                peer_id,
                batch,
                data,
            ),
            WireMessage::Leave { .. } => return false,
            WireMessage::Ignored { .. } => {}
            WireMessage::Error { message, .. } => {
                tracing::info!(%message, "peer reported an error");
            }
            _ => self.error("unexpected message type from a client"),
        }
        true
    }

    fn join(&mut self, sender_id: String, versions: &[String]) -> bool {
        if !versions.iter().any(|v| v == PROTOCOL_VERSION) {
            self.peer_id = Some(sender_id);
            self.error("unsupported protocol version");
            return false;
        }
        self.link.send(&WireMessage::Peer {
            sender_id: self.hub.peer_id().to_owned(),
            target_id: sender_id.clone(),
            selected_protocol_version: PROTOCOL_VERSION.to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            }),
        });
        self.hub
            .join(self.conn, self.account, &sender_id, self.link);
        self.peer_id = Some(sender_id);
        true
    }

    /// Queues a document message for the worker (waiting while the queue is full).
    async fn document(&self, peer_id: String, msg: DocMessage, is_request: bool) {
        let work = DocWork {
            peer_id,
            msg,
            is_request,
        };
        // The worker only ends after the reader: an error here means it failed; the link
        // closes with the connection.
        let _ = self.docs.send(work).await;
    }

    fn error(&self, message: &str) {
        self.link.send(&WireMessage::Error {
            sender_id: Some(self.hub.peer_id().to_owned()),
            target_id: self.peer_id.clone(),
            message: message.to_owned(),
        });
    }
}

/// A document message for the worker.
struct DocWork {
    peer_id: String,
    msg: DocMessage,
    is_request: bool,
}

/// Handles the connection's document messages one at a time, in the order read, until the
/// reader is done (or the link closes).
async fn document_worker(
    hub: Arc<Hub>,
    conn: ConnId,
    account: AccountId,
    link: Arc<Link>,
    mut queued: mpsc::Receiver<DocWork>,
) {
    loop {
        let work = tokio::select! {
            work = queued.recv() => match work {
                Some(work) => work,
                None => return,
            },
            _ = link.closed() => return,
        };
        let who = Requester {
            conn,
            peer_id: &work.peer_id,
            account,
        };
        let d = &work.msg;
        // A panic inside automerge must cost this message, not the connection; the document
        // is dropped from memory (the hub's slot guard does that) and reloaded from the store.
        let handled = AssertUnwindSafe(hub.handle(&who, d, work.is_request))
            .catch_unwind()
            .await
            .unwrap_or(Err(HubError::Internal));
        match handled {
            Ok(replies) => {
                for r in &replies {
                    link.send(r);
                }
            }
            Err(e) => {
                tracing::error!(doc = %d.document_id, error = %e, "sync failed");
                link.send(&WireMessage::Error {
                    sender_id: Some(hub.peer_id().to_owned()),
                    target_id: Some(work.peer_id.clone()),
                    message: "the server could not process this document now; retry later"
                        .to_owned(),
                });
            }
        }
    }
}
