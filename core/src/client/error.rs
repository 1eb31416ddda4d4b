//! The client's error type. Causes stay typed (store, schema, HTTP, WebSocket errors) so that
//! callers can tell a refused token from a dropped connection; the FFI flattens them. Messages
//! never hold draft text, tokens or phone numbers.

use std::time::Duration;

use super::store::StoreError;
use crate::schema::SchemaError;

/// What can go wrong on the phone.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller passed something invalid (a bad id, a malformed server URL…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server URL is plain `http://` to a machine other than this one: tokens and drafts
    /// would cross the network unencrypted.
    #[error("refusing plain http:// to {host}: use https:// (plain http is for loopback only)")]
    InsecureServer {
        /// The host that was refused.
        host: String,
    },
    /// The device has not registered with a server yet (or signed out).
    #[error("this device is not registered")]
    NotRegistered,
    /// The server refused our credentials (expired or revoked token, wrong code).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// An HTTPS call failed before the server answered (no network, DNS, TLS, timeout).
    #[error("cannot reach the server: {0}")]
    Http(#[source] reqwest::Error),
    /// The sync connection could not be opened or broke.
    #[error("sync connection failed: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server closed the sync connection.
    #[error("the server closed the connection{}", close_detail(*.code, .reason))]
    Closed {
        /// The WebSocket close code, if the server sent one.
        code: Option<u16>,
        /// The server's reason, if any.
        reason: String,
    },
    /// The server sent nothing, not even a pong, for this long: the connection is taken for
    /// lost.
    #[error("the server was silent for {} s", .0.as_secs())]
    Silent(Duration),
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    TimedOut,
    /// The server answered with an error.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status, or 0 for a sync protocol error.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// The server sent something this client cannot read.
    #[error("malformed message from the server: {0}")]
    Protocol(String),
    /// No such draft on this device.
    #[error("not found: {0}")]
    NotFound(String),
    /// A document operation was refused (an edit out of range, an over-long field…).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The local database failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// A file of the install could not be created or read.
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ClientError {
    /// Whether retrying cannot help until the user acts (signs in again, fixes the server
    /// address): live sync stops on these instead of backing off.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ClientError::NotRegistered
                | ClientError::Unauthorized(_)
                | ClientError::InsecureServer { .. }
                | ClientError::InvalidInput(_)
        )
    }

    /// Whether this is a failure to reach or stay connected to the server.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            ClientError::Http(_)
                | ClientError::WebSocket(_)
                | ClientError::Closed { .. }
                | ClientError::Silent(_)
                | ClientError::TimedOut
        )
    }
}

fn close_detail(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (None, _) => String::new(),
        (Some(c), true) => format!(" ({c})"),
        (Some(c), false) => format!(" ({c}: {reason})"),
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it may carry a ticket.
        let e = e.without_url();
        if e.is_timeout() {
            ClientError::TimedOut
        } else {
            ClientError::Http(e)
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}
