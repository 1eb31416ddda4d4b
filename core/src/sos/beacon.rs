//! What phone and server say to each other about an incident: the beacon the phone sends
//! (one per per-incident sequence number) and the events the server sends back. These are the
//! wire types; their JSON form is stable and tested below.

use serde::{Deserialize, Serialize};

use super::fix::{Fix, FixError};
use super::incident_id::IncidentId;

/// Longest reply a person may send, in characters (a chat line, typed in a hurry).
pub const MAX_REPLY_CHARS: usize = 500;
/// Longest dispatcher message accepted by the phone, in characters.
pub const MAX_DISPATCH_MESSAGE_CHARS: usize = 1_000;

/// How the person triggered the SOS. Serialized in snake_case (`button_hold`, `power_key`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMethod {
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

impl TriggerMethod {
    /// Every method, in declaration order.
    pub const ALL: [TriggerMethod; 7] = [
        TriggerMethod::ButtonHold,
        TriggerMethod::PowerKey,
        TriggerMethod::VolumeKeys,
        TriggerMethod::Widget,
        TriggerMethod::Watch,
        TriggerMethod::Voice,
        TriggerMethod::Other,
    ];

    /// The stable snake_case name, as in JSON and SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerMethod::ButtonHold => "button_hold",
            TriggerMethod::PowerKey => "power_key",
            TriggerMethod::VolumeKeys => "volume_keys",
            TriggerMethod::Widget => "widget",
            TriggerMethod::Watch => "watch",
            TriggerMethod::Voice => "voice",
            TriggerMethod::Other => "other",
        }
    }

    /// The inverse of [`TriggerMethod::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// The incident's state as the phone reports it. The server's own progress (received,
/// acknowledged, unit assigned, resolved) is the server's to know; what only the phone knows
/// is whether the person cancelled, and whether they did so under duress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedState {
    /// Live, and the phone shows it as live.
    Active,
    /// Live, but the person entered the duress PIN: the phone shows "cancelled" while the
    /// incident must stay open (and be treated as urgent) at dispatch.
    Duress,
    /// Cancelled with the person's real PIN.
    Cancelled,
}

impl ReportedState {
    /// Every state, in declaration order.
    pub const ALL: [ReportedState; 3] = [
        ReportedState::Active,
        ReportedState::Duress,
        ReportedState::Cancelled,
    ];

    /// The stable snake_case name, as in JSON and SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportedState::Active => "active",
            ReportedState::Duress => "duress",
            ReportedState::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`ReportedState::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A one-tap answer for someone who cannot type (or must not be seen typing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuickReply {
    /// "Yes".
    Yes,
    /// "No".
    No,
    /// "I can't talk."
    CantTalk,
}

impl QuickReply {
    /// Every quick reply, in declaration order.
    pub const ALL: [QuickReply; 3] = [QuickReply::Yes, QuickReply::No, QuickReply::CantTalk];

    /// The stable snake_case name, as in JSON and SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            QuickReply::Yes => "yes",
            QuickReply::No => "no",
            QuickReply::CantTalk => "cant_talk",
        }
    }

    /// The inverse of [`QuickReply::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name)
    }
}

/// The person's answer to dispatch. JSON: `{"text":"…"}` or `{"quick":"cant_talk"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Free text, 1 to [`MAX_REPLY_CHARS`] characters.
    Text(String),
    /// A one-tap reply.
    Quick(QuickReply),
}

/// One message from the phone about an incident. Each carries the incident's next sequence
/// number; the server stores each `(incident, seq)` once, so sending one twice, out of order,
/// or both over HTTPS and SMS is harmless.
///
/// Every beacon carries the state the phone reports and, once the phone has a position, the
/// latest fix (a state change or a reply repeats the last fix: the server keeps a trail by
/// fix time and may ignore the repeat). A reply rides the same queue, so it is never stuck
/// behind drafts either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beacon {
    /// The incident.
    pub incident: IncidentId,
    /// Per-incident sequence number, from 1, without gaps.
    pub seq: u32,
    /// The state the phone reports.
    pub state: ReportedState,
    /// How the incident was triggered.
    pub trigger: TriggerMethod,
    /// When it was triggered, milliseconds since the Unix epoch (phone clock).
    pub triggered_at: i64,
    /// The position, if the phone has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
    /// The person's reply, if this beacon carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

/// Why a beacon (or a message in it) is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BeaconError {
    /// Its fix is invalid.
    #[error(transparent)]
    Fix(#[from] FixError),
    /// Sequence numbers start at 1.
    #[error("beacon sequence numbers start at 1")]
    SeqZero,
    /// A reply or message with no visible text.
    #[error("message text is empty")]
    EmptyText,
    /// A reply or message longer than allowed.
    #[error("message text is longer than {max} characters")]
    TextTooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// A reply or message with control characters other than newline or tab.
    #[error("message text contains control characters")]
    ControlCharacters,
}

impl Beacon {
    /// Checks the beacon; `now_ms` is the checking side's clock.
    pub fn validate(&self, now_ms: i64) -> Result<(), BeaconError> {
        if let Some(fix) = &self.fix {
            fix.validate(now_ms)?;
        }
        self.validate_received()
    }

    /// Checks a beacon as the server receives it: everything but the fix's time, which a
    /// phone with a wrong clock may get wrong ([`Fix::validate_position`]). A person in
    /// danger is never refused for their phone's clock.
    pub fn validate_received(&self) -> Result<(), BeaconError> {
        if self.seq == 0 {
            return Err(BeaconError::SeqZero);
        }
        if let Some(fix) = &self.fix {
            fix.validate_position()?;
        }
        if let Some(Reply::Text(text)) = &self.reply {
            check_text(text, MAX_REPLY_CHARS)?;
        }
        Ok(())
    }
}

/// Checks a chat text: not blank, at most `max` characters, no control characters but
/// newline and tab.
pub fn check_text(text: &str, max: usize) -> Result<(), BeaconError> {
    if text.trim().is_empty() {
        return Err(BeaconError::EmptyText);
    }
    if text.chars().count() > max {
        return Err(BeaconError::TextTooLong { max });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(BeaconError::ControlCharacters);
    }
    Ok(())
}

/// Something dispatch did about an incident, as the phone receives it. JSON:
/// `{"incident":"…","event":{"type":"unit_assigned","unit":"Jongno 12"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEvent {
    /// The incident it is about.
    pub incident: IncidentId,
    /// What happened.
    pub event: IncidentEvent,
}

/// What dispatch did. Events may arrive twice or out of order; the state machine
/// ([`super::state`]) only ever moves forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IncidentEvent {
    /// The server has durably stored the incident.
    Received,
    /// A dispatcher has seen it and taken it on.
    Acknowledged,
    /// A unit is on the way.
    UnitAssigned {
        /// The unit's call sign, if dispatch shares it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// Dispatch closed the incident.
    Resolved,
    /// A short message from the dispatcher.
    Message {
        /// The server's id for the message (the phone stores each id once).
        id: i64,
        /// The text, 1 to [`MAX_DISPATCH_MESSAGE_CHARS`] characters.
        text: String,
    },
}

impl ServerEvent {
    /// Checks what the phone would store or show.
    pub fn validate(&self) -> Result<(), BeaconError> {
        match &self.event {
            IncidentEvent::Message { text, .. } => check_text(text, MAX_DISPATCH_MESSAGE_CHARS),
            IncidentEvent::UnitAssigned { unit: Some(unit) } => check_text(unit, 100),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sos::fix::tests::{seoul, NOW};

    fn beacon() -> Beacon {
        Beacon {
            incident: IncidentId::from_bytes(&[7u8; 16]).unwrap(),
            seq: 3,
            state: ReportedState::Duress,
            trigger: TriggerMethod::PowerKey,
            triggered_at: NOW - 60_000,
            fix: Some(seoul()),
            reply: None,
        }
    }

    #[test]
    fn beacon_json_form_is_stable() {
        let json = serde_json::to_string(&beacon()).unwrap();
        assert_eq!(
            json,
            r#"{"incident":"6gMHXjsZ5cxdn4qSbgGYYY8CnKK","seq":3,"state":"duress","trigger":"power_key","triggered_at":1764448573123,"fix":{"lat":37.56654,"lon":126.97796,"accuracy_m":12.5,"altitude_m":38.0,"speed_mps":1.2,"heading_deg":270.0,"time_ms":1764448631623,"method":"gps","battery_pct":64}}"#
        );
        assert_eq!(serde_json::from_str::<Beacon>(&json).unwrap(), beacon());

        let reply = Beacon {
            fix: None,
            reply: Some(Reply::Quick(QuickReply::CantTalk)),
            ..beacon()
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert!(
            json.ends_with(r#""reply":{"quick":"cant_talk"}}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Beacon>(&json).unwrap(), reply);
        let text = Reply::Text("at the back door".into());
        assert_eq!(
            serde_json::to_string(&text).unwrap(),
            r#"{"text":"at the back door"}"#
        );
    }

    #[test]
    fn names_round_trip() {
        for t in TriggerMethod::ALL {
            assert_eq!(TriggerMethod::from_name(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        for s in ReportedState::ALL {
            assert_eq!(ReportedState::from_name(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for q in QuickReply::ALL {
            assert_eq!(QuickReply::from_name(q.as_str()), Some(q));
            assert_eq!(
                serde_json::to_string(&q).unwrap(),
                format!("\"{}\"", q.as_str())
            );
        }
        assert_eq!(TriggerMethod::from_name("nope"), None);
    }

    #[test]
    fn validation_refuses_bad_beacons() {
        beacon().validate(NOW).unwrap();
        assert_eq!(
            Beacon { seq: 0, ..beacon() }.validate(NOW),
            Err(BeaconError::SeqZero)
        );
        let bad_fix = Fix {
            lat: 100.0,
            ..seoul()
        };
        assert_eq!(
            Beacon {
                fix: Some(bad_fix),
                ..beacon()
            }
            .validate(NOW),
            Err(BeaconError::Fix(FixError::Latitude))
        );
        let with = |t: &str| Beacon {
            reply: Some(Reply::Text(t.to_owned())),
            ..beacon()
        };
        assert_eq!(with(" \n ").validate(NOW), Err(BeaconError::EmptyText));
        assert_eq!(
            with(&"가".repeat(MAX_REPLY_CHARS + 1)).validate(NOW),
            Err(BeaconError::TextTooLong {
                max: MAX_REPLY_CHARS
            })
        );
        with(&"가".repeat(MAX_REPLY_CHARS)).validate(NOW).unwrap();
        assert_eq!(
            with("a\u{7}b").validate(NOW),
            Err(BeaconError::ControlCharacters)
        );
        with("two\nlines\tok").validate(NOW).unwrap();
    }

    #[test]
    fn server_event_json_form_is_stable() {
        let incident = IncidentId::from_bytes(&[7u8; 16]).unwrap();
        let cases = [
            (IncidentEvent::Received, r#"{"type":"received"}"#),
            (IncidentEvent::Acknowledged, r#"{"type":"acknowledged"}"#),
            (
                IncidentEvent::UnitAssigned {
                    unit: Some("Jongno 12".into()),
                },
                r#"{"type":"unit_assigned","unit":"Jongno 12"}"#,
            ),
            (
                IncidentEvent::UnitAssigned { unit: None },
                r#"{"type":"unit_assigned"}"#,
            ),
            (IncidentEvent::Resolved, r#"{"type":"resolved"}"#),
            (
                IncidentEvent::Message {
                    id: 7,
                    text: "Are you safe?".into(),
                },
                r#"{"type":"message","id":7,"text":"Are you safe?"}"#,
            ),
        ];
        for (event, inner) in cases {
            let ev = ServerEvent { incident, event };
            let json = serde_json::to_string(&ev).unwrap();
            assert_eq!(
                json,
                format!(r#"{{"incident":"6gMHXjsZ5cxdn4qSbgGYYY8CnKK","event":{inner}}}"#)
            );
            assert_eq!(serde_json::from_str::<ServerEvent>(&json).unwrap(), ev);
            ev.validate().unwrap();
        }
        let empty = ServerEvent {
            incident,
            event: IncidentEvent::Message {
                id: 1,
                text: String::new(),
            },
        };
        assert_eq!(empty.validate(), Err(BeaconError::EmptyText));
        assert!(serde_json::from_str::<ServerEvent>(
            r#"{"incident":"6gMHXjsZ5cxdn4qSbgGYYY8CnKK","event":{"type":"exploded"}}"#
        )
        .is_err());
    }
}
