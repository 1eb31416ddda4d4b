//! What the dispatch console's incident list shows, and in which order. One row per open
//! incident: region, age, state, the last fix (time and accuracy), battery and the person's
//! unread replies. The order is decided here, in one function ([`by_urgency`]: duress
//! first, then oldest); the page's script only renders what the server sends.

use std::cmp::Ordering;

use sotong_core::sos::ReportedState;

use crate::sos::regions::ALL_REGIONS;
use crate::state::AppState;
use crate::store::{DispatchPhase, SosIncident, SosMessage, StoreResult, StoredBeacon};

use super::i18n::Label;

/// The last position of an incident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastFix {
    /// When it was measured, ms since the epoch (phone clock).
    pub time_ms: i64,
    /// Radius of the confidence circle, metres.
    pub accuracy_m: f64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// One line of the incident list.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    /// The incident id (base58check).
    pub id: String,
    /// Its region (`None` before its first fix).
    pub region: Option<String>,
    /// When the server first stored it, Unix seconds (server clock): its age.
    pub created_at: i64,
    /// Dispatch's progress.
    pub phase: DispatchPhase,
    /// What the phone last reported.
    pub reported_state: ReportedState,
    /// The duress PIN was used.
    pub duress: bool,
    /// The unit sent, if any.
    pub unit: Option<String>,
    /// The latest fix (by seq), if any.
    pub last_fix: Option<LastFix>,
    /// The battery level the latest fix carried.
    pub battery_pct: Option<u8>,
    /// The person's replies since dispatch last wrote to them.
    pub unread: u32,
}

impl BoardRow {
    /// The row of `incident` from its stored beacons (by seq) and messages (oldest first).
    ///
    /// Unread: the person's replies received after the last dispatcher message (a reply
    /// usually answers one; the store keeps no per-dispatcher read marks). Times are whole
    /// seconds, so a reply stored in the same second as a message counts as read.
    pub fn new(incident: &SosIncident, beacons: &[StoredBeacon], messages: &[SosMessage]) -> Self {
        let latest = beacons
            .iter()
            .rev()
            .find_map(|b| b.beacon.fix.as_ref())
            .copied();
        let last_written = messages
            .iter()
            .filter(|m| m.kind == "message")
            .map(|m| m.at)
            .max();
        let unread = beacons
            .iter()
            .filter(|b| b.beacon.reply.is_some())
            .filter(|b| last_written.is_none_or(|at| b.received_at > at))
            .count();
        Self {
            id: incident.id.to_string(),
            region: incident.region.clone(),
            created_at: incident.created_at,
            phase: incident.phase,
            reported_state: incident.reported_state,
            duress: incident.duress,
            unit: incident.unit.clone(),
            last_fix: latest.map(|f| LastFix {
                time_ms: f.time_ms,
                accuracy_m: f.accuracy_m,
                lat: f.lat,
                lon: f.lon,
            }),
            battery_pct: latest.and_then(|f| f.battery_pct),
            unread: u32::try_from(unread).unwrap_or(u32::MAX),
        }
    }

    /// What the state column says: duress above all (the phone shows "cancelled" then),
    /// else dispatch's progress, else a cancel the phone reported.
    pub fn state_label(&self) -> Label {
        if self.duress {
            return Label::SosStateDuress;
        }
        match (self.phase, self.reported_state) {
            (DispatchPhase::Received, ReportedState::Cancelled) => Label::SosStateCancelled,
            (DispatchPhase::Received, _) => Label::SosStateNew,
            (DispatchPhase::Acknowledged, _) => Label::SosStateAcknowledged,
            (DispatchPhase::UnitAssigned, _) => Label::SosStateUnitAssigned,
            (DispatchPhase::Resolved, _) => Label::SosStateResolved,
        }
    }
}

/// The urgency order of the list: duress first, then the oldest (longest waiting) first;
/// the id breaks ties so the order is total and stable across refreshes.
pub fn urgency(a: &BoardRow, b: &BoardRow) -> Ordering {
    b.duress
        .cmp(&a.duress)
        .then(a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// Sorts rows by [`urgency`].
pub fn by_urgency(rows: &mut [BoardRow]) {
    rows.sort_by(urgency);
}

/// The regions the page of `region` lists: every one (unrouted included) for [`ALL_REGIONS`],
/// else that region alone. The access check already made sure the dispatcher holds it.
pub fn page_regions(region: &str) -> Option<Vec<String>> {
    (region != ALL_REGIONS).then(|| vec![region.to_owned()])
}

/// The open incidents of `regions` (`None`: all), by urgency.
///
/// Reads each incident's beacons and messages (no summary query exists yet): fine for a
/// desk's few open incidents; a store query returning only the last fix, battery and reply
/// count would make it cheaper for long trails.
pub async fn load(state: &AppState, regions: Option<&[String]>) -> StoreResult<Vec<BoardRow>> {
    let incidents = state.store.sos_open_incidents(regions).await?;
    let mut rows = Vec::with_capacity(incidents.len());
    for incident in &incidents {
        let beacons = state.store.sos_beacons(&incident.id).await?;
        let messages = state.store.sos_messages(&incident.id).await?;
        rows.push(BoardRow::new(incident, &beacons, &messages));
    }
    by_urgency(&mut rows);
    Ok(rows)
}

/// An age as the list shows it: `lang`'s "{0} min" under an hour, else "{h} h {m} min".
pub fn age_text(lang: super::Lang, secs: i64) -> String {
    let minutes = secs.max(0) / 60;
    if minutes < 60 {
        Label::AgeMinutes.fill(lang, &minutes.to_string())
    } else {
        Label::AgeHours
            .fill(lang, &(minutes / 60).to_string())
            .replace("{1}", &(minutes % 60).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::Lang;
    use crate::store::Via;
    use sotong_core::sos::{Beacon, Fix, FixMethod, IncidentId, QuickReply, Reply, TriggerMethod};

    fn row(id: &str, duress: bool, created_at: i64) -> BoardRow {
        BoardRow {
            id: id.into(),
            region: Some("seoul".into()),
            created_at,
            phase: DispatchPhase::Received,
            reported_state: ReportedState::Active,
            duress,
            unit: None,
            last_fix: None,
            battery_pct: None,
            unread: 0,
        }
    }

    #[test]
    fn duress_first_then_oldest_then_id() {
        let mut rows = vec![
            row("c", false, 300),
            row("a", false, 100),
            row("young-duress", true, 900),
            row("b", false, 100),
            row("old-duress", true, 50),
        ];
        by_urgency(&mut rows);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["old-duress", "young-duress", "a", "b", "c"]);
    }

    #[test]
    fn the_order_is_the_same_whatever_the_input_order() {
        let base = vec![
            row("x", false, 5),
            row("y", true, 9),
            row("z", false, 1),
            row("w", true, 9),
        ];
        let mut expected = base.clone();
        by_urgency(&mut expected);
        let mut reversed: Vec<BoardRow> = base.into_iter().rev().collect();
        by_urgency(&mut reversed);
        assert_eq!(reversed, expected);
        assert_eq!(
            expected.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["w", "y", "z", "x"]
        );
    }

    fn incident(duress: bool) -> SosIncident {
        SosIncident {
            id: IncidentId::from_bytes(&[7; 16]).unwrap(),
            account_id: 1,
            device_id: 1,
            trigger: TriggerMethod::ButtonHold,
            triggered_at: 1_000,
            region: Some("seoul".into()),
            reported_state: if duress {
                ReportedState::Duress
            } else {
                ReportedState::Active
            },
            phase: DispatchPhase::Received,
            duress,
            unit: None,
            outcome: None,
            up_to_seq: 3,
            created_at: 100,
            updated_at: 100,
            closed_at: None,
        }
    }

    fn beacon(seq: u32, fix: Option<(f64, u8)>, reply: Option<Reply>, at: i64) -> StoredBeacon {
        StoredBeacon {
            beacon: Beacon {
                incident: IncidentId::from_bytes(&[7; 16]).unwrap(),
                seq,
                state: ReportedState::Active,
                trigger: TriggerMethod::ButtonHold,
                triggered_at: 1_000,
                fix: fix.map(|(acc, battery)| Fix {
                    lat: 37.5,
                    lon: 127.0,
                    accuracy_m: acc,
                    altitude_m: None,
                    speed_mps: None,
                    heading_deg: None,
                    time_ms: i64::from(seq) * 1000,
                    method: FixMethod::Gps,
                    battery_pct: Some(battery),
                }),
                reply,
            },
            via: Via::Https,
            received_at: at,
        }
    }

    fn message(kind: &str, at: i64) -> SosMessage {
        SosMessage {
            id: at,
            kind: kind.into(),
            author_id: 1,
            text: "x".into(),
            at,
        }
    }

    #[test]
    fn a_row_has_the_latest_fix_battery_and_replies_since_dispatch_last_wrote() {
        let beacons = [
            beacon(1, Some((30.0, 90)), None, 100),
            beacon(2, Some((8.0, 80)), Some(Reply::Quick(QuickReply::Yes)), 110),
            beacon(3, None, Some(Reply::Text("help".into())), 130),
            beacon(4, None, Some(Reply::Quick(QuickReply::CantTalk)), 140),
        ];
        let none_written = BoardRow::new(&incident(false), &beacons, &[message("note", 200)]);
        assert_eq!(
            none_written.unread, 3,
            "a note is not written to the person"
        );
        assert_eq!(none_written.battery_pct, Some(80));
        let fix = none_written.last_fix.unwrap();
        assert_eq!((fix.time_ms, fix.accuracy_m), (2000, 8.0));
        let written = BoardRow::new(&incident(false), &beacons, &[message("message", 120)]);
        assert_eq!(written.unread, 2);
        assert_eq!(written.state_label(), Label::SosStateNew);
        let empty = BoardRow::new(&incident(true), &[], &[]);
        assert_eq!(
            (empty.unread, empty.last_fix, empty.battery_pct),
            (0, None, None)
        );
        assert_eq!(empty.state_label(), Label::SosStateDuress);
    }

    #[test]
    fn the_state_says_duress_over_the_phase() {
        let mut r = row("a", false, 1);
        r.phase = DispatchPhase::UnitAssigned;
        assert_eq!(r.state_label(), Label::SosStateUnitAssigned);
        r.duress = true;
        assert_eq!(r.state_label(), Label::SosStateDuress);
        let mut c = row("b", false, 1);
        c.reported_state = ReportedState::Cancelled;
        assert_eq!(c.state_label(), Label::SosStateCancelled);
    }

    #[test]
    fn page_regions_and_ages() {
        assert_eq!(page_regions("all"), None);
        assert_eq!(page_regions("busan"), Some(vec!["busan".to_owned()]));
        assert_eq!(age_text(Lang::En, 59), "0 min");
        assert_eq!(age_text(Lang::En, 61 * 60 + 5), "1 h 1 min");
        assert_eq!(age_text(Lang::Ko, 600), "10분");
        assert_eq!(age_text(Lang::En, -5), "0 min");
    }
}
