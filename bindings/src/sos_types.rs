//! SOS records and enums crossing the FFI, and their conversions from and to the core's
//! types. Incident ids cross as base58 strings.

use sotong_core::client as core;
use sotong_core::sos::{self, state::Phase};

/// How the person triggered the SOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SosTrigger {
    /// Holding the in-app SOS button.
    ButtonHold,
    /// Pressing the power key several times.
    PowerKey,
    /// A volume-key sequence.
    VolumeKeys,
    /// A home-screen widget.
    Widget,
    /// A paired watch.
    Watch,
    /// A voice assistant shortcut.
    Voice,
    /// Anything else the platform offers.
    Other,
}

impl From<SosTrigger> for sos::TriggerMethod {
    fn from(t: SosTrigger) -> Self {
        match t {
            SosTrigger::ButtonHold => Self::ButtonHold,
            SosTrigger::PowerKey => Self::PowerKey,
            SosTrigger::VolumeKeys => Self::VolumeKeys,
            SosTrigger::Widget => Self::Widget,
            SosTrigger::Watch => Self::Watch,
            SosTrigger::Voice => Self::Voice,
            SosTrigger::Other => Self::Other,
        }
    }
}

impl From<sos::TriggerMethod> for SosTrigger {
    fn from(t: sos::TriggerMethod) -> Self {
        use sos::TriggerMethod as T;
        match t {
            T::ButtonHold => Self::ButtonHold,
            T::PowerKey => Self::PowerKey,
            T::VolumeKeys => Self::VolumeKeys,
            T::Widget => Self::Widget,
            T::Watch => Self::Watch,
            T::Voice => Self::Voice,
            T::Other => Self::Other,
        }
    }
}

/// How a position was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SosFixMethod {
    /// Satellite positioning.
    Gps,
    /// Wi-Fi access points.
    Wifi,
    /// Cell towers.
    Cell,
    /// The platform's fused provider.
    Fused,
}

/// A location fix from the platform.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SosFix {
    /// Latitude, degrees (WGS 84).
    pub lat: f64,
    /// Longitude, degrees (WGS 84).
    pub lon: f64,
    /// Accuracy radius, metres.
    pub accuracy_m: f64,
    /// Altitude, metres.
    pub altitude_m: Option<f64>,
    /// Speed, metres per second.
    pub speed_mps: Option<f64>,
    /// Heading, degrees from north.
    pub heading_deg: Option<f64>,
    /// When the fix was taken, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// How it was found.
    pub method: SosFixMethod,
    /// Battery level, percent.
    pub battery_pct: Option<u8>,
}

impl From<SosFix> for sos::Fix {
    fn from(f: SosFix) -> Self {
        Self {
            lat: f.lat,
            lon: f.lon,
            accuracy_m: f.accuracy_m,
            altitude_m: f.altitude_m,
            speed_mps: f.speed_mps,
            heading_deg: f.heading_deg,
            time_ms: f.time_ms,
            method: match f.method {
                SosFixMethod::Gps => sos::FixMethod::Gps,
                SosFixMethod::Wifi => sos::FixMethod::Wifi,
                SosFixMethod::Cell => sos::FixMethod::Cell,
                SosFixMethod::Fused => sos::FixMethod::Fused,
            },
            battery_pct: f.battery_pct,
        }
    }
}

/// The incident's phase as the phone shows it (`Cancelled` under the duress cover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SosPhase {
    /// Triggered; the server has not confirmed it yet.
    Active,
    /// The server has stored it.
    Received,
    /// A dispatcher took it on.
    Acknowledged,
    /// A unit is on the way.
    UnitAssigned,
    /// Dispatch closed it.
    Resolved,
    /// Cancelled.
    Cancelled,
}

impl From<Phase> for SosPhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Active => Self::Active,
            Phase::Received => Self::Received,
            Phase::Acknowledged => Self::Acknowledged,
            Phase::UnitAssigned => Self::UnitAssigned,
            Phase::Resolved => Self::Resolved,
            Phase::Cancelled => Self::Cancelled,
        }
    }
}

/// The person's answer to dispatch, or a line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SosReply {
    /// Free text.
    Text {
        /// What it says.
        text: String,
    },
    /// Yes.
    Yes,
    /// No.
    No,
    /// I can't talk.
    CantTalk,
}

impl From<SosReply> for sos::Reply {
    fn from(r: SosReply) -> Self {
        match r {
            SosReply::Text { text } => Self::Text(text),
            SosReply::Yes => Self::Quick(sos::QuickReply::Yes),
            SosReply::No => Self::Quick(sos::QuickReply::No),
            SosReply::CantTalk => Self::Quick(sos::QuickReply::CantTalk),
        }
    }
}

impl From<sos::Reply> for SosReply {
    fn from(r: sos::Reply) -> Self {
        match r {
            sos::Reply::Text(text) => Self::Text { text },
            sos::Reply::Quick(sos::QuickReply::Yes) => Self::Yes,
            sos::Reply::Quick(sos::QuickReply::No) => Self::No,
            sos::Reply::Quick(sos::QuickReply::CantTalk) => Self::CantTalk,
        }
    }
}

/// One line of the conversation with dispatch.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SosMessage {
    /// True for dispatch's messages, false for the person's replies.
    pub from_dispatcher: bool,
    /// What it says.
    pub content: SosReply,
    /// When, milliseconds since the Unix epoch.
    pub at: i64,
}

/// What the app may show about the latest incident.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SosStatus {
    /// The incident id (base58).
    pub incident: String,
    /// Its phase as shown (`Cancelled` under the duress cover).
    pub phase: SosPhase,
    /// How it was triggered.
    pub trigger: SosTrigger,
    /// When, milliseconds since the Unix epoch.
    pub triggered_at: i64,
    /// The assigned unit's call sign, if dispatch shared one.
    pub unit: Option<String>,
    /// The conversation that may be shown, oldest first.
    pub messages: Vec<SosMessage>,
    /// Why the server refused this incident's fixes for good (they are kept, no longer
    /// sent), if it did.
    pub send_error: Option<String>,
    /// The person's feedback, once given.
    pub feedback: Option<SosFeedbackStatus>,
}

/// The person's feedback on an ended incident.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SosFeedback {
    /// 1 (bad) to 5 (good).
    pub rating: u8,
    /// Whether they felt safe; null if they would rather not say.
    pub felt_safe: Option<bool>,
    /// At most 1,000 characters.
    pub comment: Option<String>,
}

impl From<SosFeedback> for sotong_core::sos::Feedback {
    fn from(f: SosFeedback) -> Self {
        Self {
            rating: f.rating,
            felt_safe: f.felt_safe,
            comment: f.comment,
        }
    }
}

/// The feedback given and where its sending stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SosFeedbackStatus {
    /// What was said.
    pub feedback: SosFeedback,
    /// Whether the server has it.
    pub sent: bool,
    /// Why the server refused it for good, if it did.
    pub send_error: Option<String>,
}

/// What the server refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SosSendFailure {
    /// The incident's fixes (kept on the phone, no longer sent).
    Beacons,
    /// The feedback.
    Feedback,
}

impl From<core::SendFailure> for SosSendFailure {
    fn from(f: core::SendFailure) -> Self {
        match f {
            core::SendFailure::Beacons => Self::Beacons,
            core::SendFailure::Feedback => Self::Feedback,
        }
    }
}

impl From<core::SosStatus> for SosStatus {
    fn from(s: core::SosStatus) -> Self {
        Self {
            incident: s.incident.to_string(),
            phase: s.phase.into(),
            trigger: s.trigger.into(),
            triggered_at: s.triggered_at,
            unit: s.unit,
            messages: s
                .messages
                .into_iter()
                .map(|m| SosMessage {
                    from_dispatcher: m.from_dispatcher,
                    content: m.content.into(),
                    at: m.at,
                })
                .collect(),
            send_error: s.send_error,
            feedback: s.feedback.map(|f| SosFeedbackStatus {
                feedback: SosFeedback {
                    rating: f.feedback.rating,
                    felt_safe: f.feedback.felt_safe,
                    comment: f.feedback.comment,
                },
                sent: f.sent,
                send_error: f.send_error,
            }),
        }
    }
}

/// Something dispatch did, for the app to show discreetly (the core makes no sound).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SosEvent {
    /// The server stored the incident.
    Received,
    /// A dispatcher took it on.
    Acknowledged,
    /// A unit is on the way.
    UnitAssigned {
        /// Its call sign, if shared.
        unit: Option<String>,
    },
    /// Dispatch closed the incident.
    Resolved,
    /// A short message from the dispatcher.
    Message {
        /// What it says.
        text: String,
    },
}

impl From<sos::IncidentEvent> for SosEvent {
    fn from(e: sos::IncidentEvent) -> Self {
        match e {
            sos::IncidentEvent::Received => Self::Received,
            sos::IncidentEvent::Acknowledged => Self::Acknowledged,
            sos::IncidentEvent::UnitAssigned { unit } => Self::UnitAssigned { unit },
            sos::IncidentEvent::Resolved => Self::Resolved,
            sos::IncidentEvent::Message { text, .. } => Self::Message { text },
        }
    }
}

/// Where the SOS sender stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SosLinkState {
    /// Sending queued beacons.
    Sending,
    /// Everything delivered; waiting for dispatch or the next fix.
    Waiting,
    /// The last attempt failed; the next starts at `until_ms` (or with the next fix).
    BackingOff {
        /// Milliseconds since the Unix epoch.
        until_ms: i64,
        /// Why the last attempt failed.
        error: String,
    },
    /// The sender ended: no error when the incident is over or the app stopped it.
    Stopped {
        /// Why, if it failed for good.
        error: Option<String>,
    },
}

impl From<core::SosLinkState> for SosLinkState {
    fn from(s: core::SosLinkState) -> Self {
        match s {
            core::SosLinkState::Sending => Self::Sending,
            core::SosLinkState::Waiting => Self::Waiting,
            core::SosLinkState::BackingOff { until_ms, error } => {
                Self::BackingOff { until_ms, error }
            }
            core::SosLinkState::Stopped { error } => Self::Stopped { error },
        }
    }
}
