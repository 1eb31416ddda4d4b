//! What can go wrong in the phone's SOS API. Messages carry no PIN, position or message text.

use crate::client::store::StoreError;
use crate::client::ClientError;
use crate::sos::{BeaconError, FeedbackError, FixError, SmsError, TransitionError};

/// An error from the SOS API.
#[derive(Debug, thiserror::Error)]
pub enum SosError {
    /// The state machine refused the input (not live, ended, wrong PIN).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// This phone has never triggered an incident.
    #[error("no SOS incident on this phone")]
    NoIncident,
    /// No incident is live, so there is nothing to attach a fix to.
    #[error("no live SOS incident")]
    NoLiveIncident,
    /// A server event names an incident this phone does not have.
    #[error("unknown SOS incident")]
    UnknownIncident,
    /// The platform pushed an invalid fix.
    #[error(transparent)]
    Fix(#[from] FixError),
    /// A reply or a dispatcher's message is invalid.
    #[error(transparent)]
    Message(#[from] BeaconError),
    /// The SMS text could not be written.
    #[error(transparent)]
    Sms(#[from] SmsError),
    /// Cancelling needs a PIN, and none is set.
    #[error("no SOS PIN is set")]
    PinNotSet,
    /// A PIN must be 4 to 64 characters, not all spaces.
    #[error("a PIN must be 4 to 64 characters")]
    PinFormat,
    /// The duress PIN must differ from the PIN.
    #[error("the duress PIN must differ from the PIN")]
    SamePins,
    /// Too many wrong PINs in a row: PIN entry is locked until `until` (milliseconds since
    /// the Unix epoch). The incident is unaffected.
    #[error("too many wrong PINs; try again later")]
    PinLocked {
        /// When PIN entry opens again.
        until: i64,
    },
    /// Hashing or checking a PIN failed (a corrupt stored hash).
    #[error("PIN check failed: {0}")]
    PinHash(String),
    /// Feedback is invalid (rating outside 1 to 5, comment too long or empty).
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    /// Feedback is for an incident that has ended; this one is still shown as live.
    #[error("feedback can be left once the incident has ended")]
    NotEnded,
    /// The SMS fallback has no number or key yet.
    #[error("the SMS fallback is not configured")]
    SmsNotConfigured,
    /// The local database failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// Talking to the server failed (the beacon sender retries these).
    #[error(transparent)]
    Server(#[from] ClientError),
}

impl From<rusqlite::Error> for SosError {
    fn from(e: rusqlite::Error) -> Self {
        SosError::Store(StoreError::from(e))
    }
}
