//! The one error type of the FFI: every failure reaches Kotlin as a `SotongException.<Kind>`
//! and Swift as a `SotongError.<kind>`, each with a human-readable `reason`.

use sotong_core::client::{ClientError, SosError};
use sotong_core::schema::SchemaError;
use sotong_core::sos::TransitionError;

/// Why a Sotong call failed. Reasons are for logs and developers; show the user a message
/// chosen by the variant.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SotongError {
    /// An argument was refused: a malformed document id, a position past the end of a text,
    /// an over-long category, a malformed phone number, a wrong one-time code…
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What was wrong.
        reason: String,
    },
    /// The server address is plain `http://` to another machine; use `https://` (plain HTTP
    /// is accepted only for a server on this device, for development).
    #[error("insecure server: {reason}")]
    InsecureServer {
        /// Details.
        reason: String,
    },
    /// This install has no registered device (never registered, or signed out); call
    /// `register` first.
    #[error("not registered: {reason}")]
    NotRegistered {
        /// Details.
        reason: String,
    },
    /// The server refused this device's credentials (revoked or unknown token).
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// Details from the server.
        reason: String,
    },
    /// The server could not be reached, or the connection broke; retrying later may work.
    #[error("network error: {reason}")]
    Network {
        /// Details.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("server error {status}: {reason}")]
    Server {
        /// The HTTP status code, or 0 for an error in the sync protocol.
        status: u16,
        /// The server's message.
        reason: String,
    },
    /// No such document (or account) on this phone.
    #[error("not found: {reason}")]
    NotFound {
        /// What was looked for.
        reason: String,
    },
    /// The phone's database or files failed.
    #[error("storage error: {reason}")]
    Storage {
        /// Details.
        reason: String,
    },
    /// SOS: the PIN matched neither PIN (the same whichever PINs are set).
    #[error("wrong PIN")]
    WrongPin {
        /// Details.
        reason: String,
    },
    /// SOS: too many wrong PINs in a row; PIN entry opens again at `until_ms`.
    #[error("PIN entry locked: {reason}")]
    PinLocked {
        /// Milliseconds since the Unix epoch.
        until_ms: i64,
        /// Details.
        reason: String,
    },
    /// SOS: there is no incident, or none live, for this call.
    #[error("no SOS incident: {reason}")]
    NoIncident {
        /// Details.
        reason: String,
    },
    /// A bug in Sotong, including a caught Rust panic. Worth reporting.
    #[error("internal error: {reason}")]
    Internal {
        /// Details.
        reason: String,
    },
}

impl From<ClientError> for SotongError {
    fn from(e: ClientError) -> Self {
        // The one place where the core's typed causes become a kind and a reason.
        let reason = e.to_string();
        match e {
            ClientError::InvalidInput(reason) => SotongError::InvalidInput { reason },
            ClientError::InsecureServer { .. } => SotongError::InsecureServer { reason },
            ClientError::NotRegistered => SotongError::NotRegistered { reason },
            ClientError::Unauthorized(reason) => SotongError::Unauthorized { reason },
            ClientError::Http(_)
            | ClientError::WebSocket(_)
            | ClientError::Closed { .. }
            | ClientError::Silent(_)
            | ClientError::TimedOut => SotongError::Network { reason },
            ClientError::Server { status, message } => SotongError::Server {
                status,
                reason: message,
            },
            ClientError::Protocol(_) => SotongError::Server { status: 0, reason },
            ClientError::NotFound(reason) => SotongError::NotFound { reason },
            ClientError::Schema(SchemaError::Automerge(_)) => SotongError::Internal { reason },
            ClientError::Schema(_) => SotongError::InvalidInput { reason },
            ClientError::Store(_) | ClientError::Io(_) => SotongError::Storage { reason },
            ClientError::Internal(reason) => SotongError::Internal { reason },
        }
    }
}

impl From<SosError> for SotongError {
    fn from(e: SosError) -> Self {
        let reason = e.to_string();
        match e {
            SosError::Server(e) => e.into(),
            SosError::Transition(TransitionError::WrongPin) => SotongError::WrongPin { reason },
            SosError::PinLocked { until } => SotongError::PinLocked {
                until_ms: until,
                reason,
            },
            SosError::Transition(_)
            | SosError::NotEnded
            | SosError::NoIncident
            | SosError::NoLiveIncident
            | SosError::UnknownIncident => SotongError::NoIncident { reason },
            SosError::Fix(_)
            | SosError::Feedback(_)
            | SosError::Message(_)
            | SosError::Sms(_)
            | SosError::PinNotSet
            | SosError::PinFormat
            | SosError::SamePins
            | SosError::SmsNotConfigured => SotongError::InvalidInput { reason },
            SosError::PinHash(_) | SosError::Store(_) => SotongError::Storage { reason },
        }
    }
}
