//! The hub's handle on one connection: a bounded queue of outgoing frames and a way to close
//! the connection with a WebSocket close code and reason.

use std::sync::OnceLock;

use sotong_core::wire::WireMessage;
use tokio::sync::{mpsc, Notify};

/// WebSocket close codes the server uses, each with a reason a client can show or act on.
pub mod close {
    /// 1008: a limit of this service (messages per second, connections per account).
    pub const POLICY: u16 = 1008;
    /// 1009: a frame larger than the protocol allows.
    pub const TOO_BIG: u16 = 1009;
    /// 1011: the server failed; reconnect.
    pub const INTERNAL: u16 = 1011;
    /// 1013: the peer could not keep up or the server is overloaded; reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// 1001: the server is shutting down, or the peer stopped answering pings.
    pub const GOING_AWAY: u16 = 1001;
}

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code (see [`close`]).
    pub code: u16,
    /// Short machine-readable reason, sent in the close frame (at most 123 bytes).
    pub reason: String,
}

/// One connection as the hub sees it.
pub struct Link {
    frames: mpsc::Sender<Vec<u8>>,
    closed: OnceLock<CloseReason>,
    wake: Notify,
}

impl Link {
    /// A link whose queue holds `capacity` frames, and the receiving end of that queue.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (frames, rx) = mpsc::channel(capacity.max(1));
        let link = Self {
            frames,
            closed: OnceLock::new(),
            wake: Notify::new(),
        };
        (link, rx)
    }

    /// Queues a message. A peer whose queue is full reads too slowly: it is closed (1013)
    /// rather than silently missing messages; it resyncs when it reconnects.
    pub fn send(&self, msg: &WireMessage) {
        self.send_frame(msg.encode());
    }

    /// Queues an encoded frame (see [`Link::send`]).
    pub fn send_frame(&self, frame: Vec<u8>) {
        if self.is_closed() {
            return;
        }
        if self.frames.try_send(frame).is_err() {
            self.close(
                close::TRY_AGAIN_LATER,
                "too_slow: the peer does not read its messages fast enough",
            );
        }
    }

    /// Asks the connection to close with `code` and `reason`; the first call wins.
    pub fn close(&self, code: u16, reason: &str) {
        let mut reason = reason.to_owned();
        // A close frame's reason holds at most 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        if self.closed.set(CloseReason { code, reason }).is_ok() {
            tracing::info!(code, "closing a sync connection");
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
    }

    /// Whether [`Link::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get().is_some()
    }

    /// Resolves with the reason once [`Link::close`] is called.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.wake.notified();
            if let Some(r) = self.closed.get() {
                return r.clone();
            }
            notified.await;
        }
    }
}
