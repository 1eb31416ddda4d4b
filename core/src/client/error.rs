//! The client's error type. Messages never hold draft text, tokens or phone numbers.

use super::store::StoreError;
use crate::schema::SchemaError;

/// What can go wrong on the phone.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller passed something invalid (a bad id, an out-of-range position…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The device has not registered with a server yet.
    #[error("this device is not registered yet")]
    NotRegistered,
    /// The server refused our credentials (expired or revoked token, wrong code).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The server could not be reached or the connection broke.
    #[error("network error: {0}")]
    Network(String),
    /// The server answered with an error.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status, or 0 for a sync protocol error.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// No such draft on this device.
    #[error("not found: {0}")]
    NotFound(String),
    /// The local database failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        ClientError::Storage(e.to_string())
    }
}

impl From<SchemaError> for ClientError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::Automerge(m) => ClientError::Internal(m),
            other => ClientError::InvalidInput(other.to_string()),
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it may carry a ticket.
        ClientError::Network(e.without_url().to_string())
    }
}
