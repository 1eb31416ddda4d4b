//! SOS silent call: what the phone and the server share about an incident.
//!
//! - [`incident_id`]: the incident's id (16 random bytes, base58check text), chosen on the
//!   phone so that everything can be stored before the server has heard of it;
//! - [`fix`]: a location fix, its validation, and distances between fixes;
//! - [`beacon`]: the beacon the phone sends (incident, per-incident seq, state it reports, fix,
//!   reply) and the events dispatch sends back, as serde types with a stable JSON form;
//! - [`state`]: the incident state machine, including the duress cover;
//! - [`feedback`]: the person's feedback after close and dispatch's closed set of outcomes;
//! - [`sms`]: the compact, MAC-signed SMS text for when there is no data network.
//!
//! The phone's side (store, PINs, cadence, the `Client` API) is in `client::sos`.

pub mod beacon;
pub mod feedback;
pub mod fix;
pub mod incident_id;
pub mod sms;
pub mod state;

pub use beacon::{
    Beacon, BeaconError, IncidentEvent, QuickReply, Reply, ReportedState, ServerEvent,
    TriggerMethod,
};
pub use feedback::{Feedback, FeedbackError, Outcome};
pub use fix::{Fix, FixError, FixMethod};
pub use incident_id::{IncidentId, IncidentIdError};
pub use sms::{SmsBeacon, SmsError, SmsKey};
pub use state::{IncidentState, Input, Phase, Step, TransitionError};
