//! Storage of SOS incidents (issue 7, ADR 0005): incidents, the beacons the phone sends
//! (stored once per `(incident, seq)`), the server's events (a store-wide increasing id, the
//! cursor of the dispatcher feed and of the phone's long-poll), dispatcher messages and
//! notes, and per-device SMS keys. Implemented by both stores and run through the same
//! test suite (`server/tests/store.rs`).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Value};
use sotong_core::sos::{
    Beacon, Feedback, IncidentEvent, IncidentId, Outcome, ReportedState, ServerEvent, TriggerMethod,
};

use super::{DeviceRef, StoreError, StoreResult};

/// How a beacon reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `POST /v1/sos/beacons`.
    Https,
    /// The phone's open sync connection (`sotong-sos-beacon`).
    Live,
    /// The SMS gateway's webhook.
    Sms,
}

impl Via {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Https => "https",
            Via::Live => "live",
            Via::Sms => "sms",
        }
    }
}

/// A validated beacon with the region of its fix (routing is the caller's).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedBeacon {
    /// The beacon.
    pub beacon: Beacon,
    /// The region its fix lies in (`None` without a fix).
    pub region: Option<String>,
    /// How it arrived.
    pub via: Via,
}

/// What the server holds of one incident after an ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Acked {
    /// The incident.
    pub incident: IncidentId,
    /// Every seq `1..=up_to_seq` is durably stored.
    pub up_to_seq: u32,
}

/// Outcome of [`SosStore::sos_ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SosIngest {
    /// Every beacon is stored (or was already); per incident, in first-seen order.
    Stored(Vec<Acked>),
    /// The incident belongs to another account; nothing of the batch was stored.
    NotOwner(IncidentId),
}

/// The dispatch side's progress, which only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchPhase {
    /// Stored, nobody has taken it yet.
    Received,
    /// A dispatcher took it on.
    Acknowledged,
    /// A unit is on the way.
    UnitAssigned,
    /// Closed with an outcome.
    Resolved,
}

impl DispatchPhase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchPhase::Received => "received",
            DispatchPhase::Acknowledged => "acknowledged",
            DispatchPhase::UnitAssigned => "unit_assigned",
            DispatchPhase::Resolved => "resolved",
        }
    }

    /// The inverse of [`DispatchPhase::as_str`].
    pub fn parse(s: &str) -> StoreResult<Self> {
        [
            DispatchPhase::Received,
            DispatchPhase::Acknowledged,
            DispatchPhase::UnitAssigned,
            DispatchPhase::Resolved,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown dispatch phase {s:?}")))
    }
}

/// One incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SosIncident {
    /// Its id.
    pub id: IncidentId,
    /// The account of the device that sent its first beacon.
    pub account_id: i64,
    /// That device.
    pub device_id: i64,
    /// How it was triggered.
    pub trigger: TriggerMethod,
    /// When, ms since the epoch (phone clock).
    pub triggered_at: i64,
    /// Its region, from its first fix.
    pub region: Option<String>,
    /// The state the phone last reported (by seq).
    pub reported_state: ReportedState,
    /// Dispatch's progress.
    pub phase: DispatchPhase,
    /// The duress PIN was used: urgent, whatever the phone shows.
    pub duress: bool,
    /// The assigned unit.
    pub unit: Option<String>,
    /// The outcome recorded at close.
    pub outcome: Option<String>,
    /// Every seq `1..=up_to_seq` is stored.
    pub up_to_seq: u32,
    /// Unix seconds (server clock).
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds, once closed.
    pub closed_at: Option<i64>,
}

impl SosIncident {
    /// The feed's summary of it.
    pub fn summary(&self) -> Value {
        json!({
            "incident": self.id,
            "trigger": self.trigger,
            "triggered_at": self.triggered_at,
            "region": self.region,
            "reported_state": self.reported_state,
            "phase": self.phase,
            "duress": self.duress,
            "unit": self.unit,
            "outcome": self.outcome,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
        })
    }
}

/// One stored beacon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredBeacon {
    /// The beacon, as received.
    pub beacon: Beacon,
    /// How it arrived.
    pub via: Via,
    /// Unix seconds (server clock).
    pub received_at: i64,
}

/// One server event: a line of the dispatcher feed and, if `phone_event` is set, something
/// the phone learns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SosEvent {
    /// Store-wide increasing id.
    pub id: i64,
    /// The incident.
    pub incident: IncidentId,
    /// The incident's region when the event happened.
    pub region: Option<String>,
    /// `incident`, `fix`, `state`, `message` or `note`.
    pub kind: String,
    /// The feed's JSON.
    pub body: Value,
    /// What the phone gets, if anything.
    pub phone_event: Option<ServerEvent>,
    /// Unix seconds.
    pub at: i64,
}

/// A dispatcher message or note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SosMessage {
    /// Its id (the phone stores each message id once).
    pub id: i64,
    /// `message` (the phone gets it) or `note` (dispatch only).
    pub kind: String,
    /// The staff member who wrote it.
    pub author_id: i64,
    /// The text.
    pub text: String,
    /// Unix seconds.
    pub at: i64,
}

/// What a dispatcher does to an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchAction {
    /// Takes it on.
    Acknowledge,
    /// Sends a unit.
    Assign {
        /// Its call sign, if shared.
        unit: Option<String>,
    },
    /// Writes to the person.
    Message {
        /// The text.
        text: String,
    },
    /// Writes a note for dispatch only.
    Note {
        /// The text.
        text: String,
    },
    /// Closes it.
    Close {
        /// What happened, from the closed set.
        outcome: Outcome,
    },
}

/// A device's SMS key.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsKeyRow {
    /// The `k` field of the SMS text.
    pub key_id: u32,
    /// The device holding it.
    pub device: DeviceRef,
    /// 32 bytes.
    pub key: Vec<u8>,
}

// By hand: the key never reaches a log.
impl std::fmt::Debug for SmsKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsKeyRow")
            .field("key_id", &self.key_id)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The SOS side of the store. A supertrait of [`Store`](super::Store).
#[async_trait]
pub trait SosStore: Send + Sync {
    /// Stores the beacons in one transaction, each `(incident, seq)` at most once (the first
    /// copy wins), creating incidents owned by `device`'s account, and appends the events
    /// they cause. Returns only after the commit.
    async fn sos_ingest(
        &self,
        device: DeviceRef,
        beacons: &[RoutedBeacon],
        now: i64,
    ) -> StoreResult<SosIngest>;
    /// An incident.
    async fn sos_incident(&self, id: &IncidentId) -> StoreResult<Option<SosIncident>>;
    /// Open incidents (not closed), in `regions` (`None`: every region, unrouted included).
    async fn sos_open_incidents(&self, regions: Option<&[String]>)
        -> StoreResult<Vec<SosIncident>>;
    /// The incident's beacons, by seq.
    async fn sos_beacons(&self, id: &IncidentId) -> StoreResult<Vec<StoredBeacon>>;
    /// The incident's messages and notes, oldest first.
    async fn sos_messages(&self, id: &IncidentId) -> StoreResult<Vec<SosMessage>>;
    /// Up to `limit` events with an id above `after`, in `regions` (`None`: all), by id.
    async fn sos_events_after(
        &self,
        after: i64,
        regions: Option<&[String]>,
        limit: u32,
    ) -> StoreResult<Vec<SosEvent>>;
    /// The incident's events the phone gets, with an id above `after`, by id.
    async fn sos_phone_events(&self, id: &IncidentId, after: i64) -> StoreResult<Vec<SosEvent>>;
    /// Applies a dispatcher's action and appends its event, atomically. `None` if there is
    /// no such incident.
    async fn sos_dispatch(
        &self,
        id: &IncidentId,
        author_id: i64,
        action: &DispatchAction,
        now: i64,
    ) -> StoreResult<Option<SosEvent>>;
    /// The device's SMS key, stored from `new_key` (with a fresh key id) if it has none.
    async fn sos_sms_key(
        &self,
        device: DeviceRef,
        new_key: &[u8],
        now: i64,
    ) -> StoreResult<SmsKeyRow>;
    /// An SMS key by its id.
    async fn sos_sms_key_by_id(&self, key_id: u32) -> StoreResult<Option<SmsKeyRow>>;
    /// Deletes the beacons, messages and events of incidents closed before `closed_before`
    /// (the incident rows, with their outcome, stay). Returns how many incidents were purged.
    async fn sos_purge(&self, closed_before: i64) -> StoreResult<u64>;
    /// The id of the latest event (0 when there is none): where a feed that wants only
    /// what happens from now on starts (the dispatch console's first paint).
    async fn sos_last_event_id(&self) -> StoreResult<i64>;
    /// Stores the person's feedback on a closed incident, sent by `device`: only the device
    /// that sent the incident's first beacon may ([`FeedbackPut::NotFound`] for any other,
    /// as for an unknown id), only once dispatch closed it ([`FeedbackPut::StillOpen`]). A
    /// second feedback replaces the first. Not purged with the trail.
    async fn sos_put_feedback(
        &self,
        id: &IncidentId,
        device: DeviceRef,
        feedback: &Feedback,
        now: i64,
    ) -> StoreResult<FeedbackPut>;
    /// The feedback on an incident, if any.
    async fn sos_feedback(&self, id: &IncidentId) -> StoreResult<Option<FeedbackRow>>;
    /// Per (region, month) of creation, for incidents created in `range`: counts, median
    /// time to acknowledge, outcomes and feedback, computed in SQL. Months are Korea
    /// Standard Time ([`SUMMARY_UTC_OFFSET_SECS`]); sorted by month, then region.
    async fn sos_summary(&self, range: MonthRange) -> StoreResult<Vec<SummaryRow>>;
}

/// Months of the admins' summary are in Korea Standard Time (UTC+9, no daylight saving).
pub const SUMMARY_UTC_OFFSET_SECS: i64 = 9 * 3600;

/// The region key of incidents without a fix yet (no region) in the summary.
pub const NO_REGION: &str = "none";

/// Outcome of [`SosStore::sos_put_feedback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackPut {
    /// Stored; `replaced` when it replaced earlier feedback.
    Stored {
        /// Whether feedback was already there.
        replaced: bool,
    },
    /// No such incident for this device.
    NotFound,
    /// Dispatch has not closed the incident yet.
    StillOpen,
}

/// Stored feedback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackRow {
    /// The incident.
    pub incident: IncidentId,
    /// The device that sent it.
    pub device_id: i64,
    /// What the person said.
    pub feedback: Feedback,
    /// First stored, Unix seconds.
    pub created_at: i64,
    /// Last replaced, Unix seconds.
    pub updated_at: i64,
}

/// Incidents created in `[from, to)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    /// First second included.
    pub from: i64,
    /// First second excluded.
    pub to: i64,
}

impl MonthRange {
    /// From the first instant of month `from` to the end of month `to` (both `(year,
    /// month)`, inclusive, Korea Standard Time). `None` when a month is invalid or `to` is
    /// before `from`.
    pub fn months(from: (i32, u32), to: (i32, u32)) -> Option<Self> {
        let start = month_start(from.0, from.1)?;
        let (ny, nm) = if to.1 == 12 {
            (to.0.checked_add(1)?, 1)
        } else {
            (to.0, to.1 + 1)
        };
        let end = month_start(ny, nm)?;
        (start < end).then_some(Self {
            from: start,
            to: end,
        })
    }
}

/// Unix seconds of the first instant of `year-month` in Korea Standard Time.
fn month_start(year: i32, month: u32) -> Option<i64> {
    if !(1970..=9998).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let utc =
        crate::staff::admin_cli::parse_since(&format!("{year:04}-{month:02}-01T00:00:00Z")).ok()?;
    Some(utc - SUMMARY_UTC_OFFSET_SECS)
}

/// `YYYY-MM` as `(year, month)`; `None` unless four digits, a dash and a month 01 to 12.
pub fn parse_month(text: &str) -> Option<(i32, u32)> {
    let (y, m) = text.trim().split_once('-')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if y.len() != 4 || m.len() != 2 || !digits(y) || !digits(m) {
        return None;
    }
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1970..=9998).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

#[cfg(test)]
mod month_tests {
    use super::*;

    #[test]
    fn month_ranges_are_korean_months() {
        assert_eq!(parse_month("2026-11"), Some((2026, 11)));
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-00",
            "１２３４-01",
        ] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
        let r = MonthRange::months((2026, 11), (2026, 12)).unwrap();
        // 2026-11-01 00:00 KST is 2026-10-31 15:00 UTC.
        assert_eq!(r.from, 1_793_458_800);
        // 2027-01-01 00:00 KST.
        assert_eq!(r.to, 1_798_729_200);
        assert!(MonthRange::months((2026, 12), (2026, 11)).is_none());
        assert!(MonthRange::months((2026, 12), (2026, 12)).is_some());
    }
}

/// One line of the admins' summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// The region ([`NO_REGION`] for incidents without a fix).
    pub region: String,
    /// `YYYY-MM`, Korea Standard Time.
    pub month: String,
    /// Incidents created.
    pub incidents: i64,
    /// Of which under duress.
    pub duress: i64,
    /// Median seconds from creation to the first acknowledgment (or assignment), over the
    /// incidents acknowledged; `None` if none was.
    pub median_ack_secs: Option<f64>,
    /// Closed incidents per outcome (only outcomes that occur).
    pub closed_by_outcome: std::collections::BTreeMap<String, i64>,
    /// Incidents with feedback.
    pub feedback: i64,
    /// Mean rating of that feedback.
    pub mean_rating: Option<f64>,
    /// Share (0 to 1) who felt safe, among feedback that answered the question.
    pub felt_safe_share: Option<f64>,
}

/// Merges the three grouped queries of a summary: the base counts, the medians, the outcome
/// counts, each keyed by `(region, month)`.
pub(crate) fn merge_summary(
    base: Vec<SummaryRow>,
    medians: Vec<(String, String, f64)>,
    outcomes: Vec<(String, String, String, i64)>,
) -> Vec<SummaryRow> {
    let mut rows = base;
    for row in &mut rows {
        row.median_ack_secs = medians
            .iter()
            .find(|(r, m, _)| *r == row.region && *m == row.month)
            .map(|(_, _, d)| *d);
        for (r, m, o, n) in &outcomes {
            if *r == row.region && *m == row.month {
                row.closed_by_outcome.insert(o.clone(), *n);
            }
        }
    }
    rows.sort_by(|a, b| (&a.month, &a.region).cmp(&(&b.month, &b.region)));
    rows
}

/// The events a newly stored beacon causes: `(kind, body, phone_event)`.
pub(crate) fn beacon_events(
    before: Option<&SosIncident>,
    after: &SosIncident,
    beacon: &Beacon,
) -> Vec<(&'static str, Value, Option<ServerEvent>)> {
    let mut out = Vec::new();
    match before {
        None => out.push((
            "incident",
            after.summary(),
            Some(ServerEvent {
                incident: after.id,
                event: IncidentEvent::Received,
            }),
        )),
        Some(b)
            if b.reported_state != after.reported_state
                || b.duress != after.duress
                || b.region != after.region =>
        {
            out.push(("incident", after.summary(), None));
        }
        Some(_) => {}
    }
    if let Some(fix) = &beacon.fix {
        out.push((
            "fix",
            json!({"incident": after.id, "seq": beacon.seq, "fix": fix}),
            None,
        ));
    }
    if let Some(reply) = &beacon.reply {
        out.push((
            "message",
            json!({"incident": after.id, "from": "citizen", "seq": beacon.seq, "reply": reply}),
            None,
        ));
    }
    out
}

/// What a dispatcher action changes: the new phase (forward only), unit, outcome.
pub(crate) fn phase_after(current: DispatchPhase, action: &DispatchAction) -> DispatchPhase {
    let to = match action {
        DispatchAction::Acknowledge => DispatchPhase::Acknowledged,
        DispatchAction::Assign { .. } => DispatchPhase::UnitAssigned,
        DispatchAction::Close { .. } => DispatchPhase::Resolved,
        DispatchAction::Message { .. } | DispatchAction::Note { .. } => current,
    };
    current.max(to)
}

/// The phone's event for a dispatcher action (`message_id` for a message).
pub(crate) fn action_phone_event(
    id: IncidentId,
    action: &DispatchAction,
    message_id: i64,
) -> Option<ServerEvent> {
    let event = match action {
        DispatchAction::Acknowledge => IncidentEvent::Acknowledged,
        DispatchAction::Assign { unit } => IncidentEvent::UnitAssigned { unit: unit.clone() },
        DispatchAction::Close { .. } => IncidentEvent::Resolved,
        DispatchAction::Message { text } => IncidentEvent::Message {
            id: message_id,
            text: text.clone(),
        },
        DispatchAction::Note { .. } => return None,
    };
    Some(ServerEvent {
        incident: id,
        event,
    })
}

/// The feed kind and body of a dispatcher action.
pub(crate) fn action_feed(
    after: &SosIncident,
    action: &DispatchAction,
    author_id: i64,
    message_id: i64,
) -> (&'static str, Value) {
    match action {
        DispatchAction::Message { text } => (
            "message",
            json!({"incident": after.id, "from": "dispatcher", "id": message_id,
                   "author_id": author_id, "text": text}),
        ),
        DispatchAction::Note { text } => (
            "note",
            json!({"incident": after.id, "id": message_id, "author_id": author_id, "text": text}),
        ),
        _ => ("state", after.summary()),
    }
}

/// Decodes stored incident columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn incident_from_parts(
    id: &[u8],
    account_id: i64,
    device_id: i64,
    trigger: &str,
    triggered_at: i64,
    region: Option<String>,
    reported_state: &str,
    phase: &str,
    duress: bool,
    unit: Option<String>,
    outcome: Option<String>,
    up_to_seq: i64,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
) -> StoreResult<SosIncident> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("sos incident: bad {what}"));
    Ok(SosIncident {
        id: incident_id(id)?,
        account_id,
        device_id,
        trigger: TriggerMethod::from_name(trigger).ok_or_else(|| corrupt("trigger"))?,
        triggered_at,
        region,
        reported_state: ReportedState::from_name(reported_state).ok_or_else(|| corrupt("state"))?,
        phase: DispatchPhase::parse(phase)?,
        duress,
        unit,
        outcome,
        up_to_seq: u32::try_from(up_to_seq).map_err(|_| corrupt("up_to_seq"))?,
        created_at,
        updated_at,
        closed_at,
    })
}

/// An incident id from its stored bytes.
pub(crate) fn incident_id(bytes: &[u8]) -> StoreResult<IncidentId> {
    IncidentId::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes stored event columns.
pub(crate) fn event_from_parts(
    id: i64,
    incident: &[u8],
    region: Option<String>,
    kind: String,
    body: &str,
    phone_event: Option<&str>,
    at: i64,
) -> StoreResult<SosEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("sos event {id}: bad {what}"));
    Ok(SosEvent {
        id,
        incident: incident_id(incident)?,
        region,
        kind,
        body: serde_json::from_str(body).map_err(|_| corrupt("body"))?,
        phone_event: phone_event
            .map(|p| serde_json::from_str(p).map_err(|_| corrupt("phone event")))
            .transpose()?,
        at,
    })
}

/// Decodes a stored beacon.
pub(crate) fn beacon_from_parts(
    body: &str,
    via: &str,
    received_at: i64,
) -> StoreResult<StoredBeacon> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("sos beacon: bad {what}"));
    Ok(StoredBeacon {
        beacon: serde_json::from_str(body).map_err(|_| corrupt("body"))?,
        via: match via {
            "https" => Via::Https,
            "live" => Via::Live,
            "sms" => Via::Sms,
            _ => return Err(corrupt("via")),
        },
        received_at,
    })
}

/// JSON text of a value the store writes.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
