//! The phone's SOS API end to end on a real SQLite file, with a manual clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::sos::{FixMethod, QuickReply, ReportedState};

const T0: i64 = 1_764_448_000_000;

fn open(dir: &Path, clock: &ManualClock) -> Client {
    // Nothing listens there: everything below is offline.
    Client::open_with_clock(dir, "http://127.0.0.1:9", Arc::new(clock.clone())).unwrap()
}

fn fix_at(clock: &ManualClock, n: u32) -> Fix {
    Fix {
        lat: 37.5 + f64::from(n) * 0.001,
        lon: 127.0,
        accuracy_m: 8.0 + f64::from(n),
        altitude_m: Some(30.0),
        speed_mps: None,
        heading_deg: Some(90.0),
        time_ms: clock.now_unix_millis() - 200,
        method: FixMethod::Gps,
        battery_pct: Some(77),
    }
}

fn seqs(beacons: &[Beacon]) -> Vec<u32> {
    beacons.iter().map(|b| b.seq).collect()
}

#[test]
fn trigger_offline_then_reopen_keeps_every_fix_once_in_order_and_the_queue_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = open(dir.path(), &clock);
    assert_eq!(client.sos_status().unwrap(), None);
    assert_eq!(client.sos_next_fix_due().unwrap(), None);

    let id = client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    // The first beacon (state only) is queued at once, and the first fix is due at once.
    let first = client.sos_pending_beacons(10).unwrap();
    assert_eq!(seqs(&first), [1]);
    assert_eq!(
        (first[0].state, first[0].trigger, first[0].fix),
        (ReportedState::Active, TriggerMethod::PowerKey, None)
    );
    assert_eq!(client.sos_next_fix_due().unwrap(), Some(T0));

    let mut pushed = Vec::new();
    for n in 0..5 {
        clock.advance(Duration::from_secs(5));
        let fix = fix_at(&clock, n);
        assert_eq!(client.sos_push_fix(fix).unwrap(), n + 2);
        pushed.push(fix);
    }
    assert_eq!(
        client.sos_next_fix_due().unwrap(),
        Some(clock.now_unix_millis() + 5_000),
        "every 5 s at first"
    );
    assert_eq!(client.sos_mark_delivered(&id, 3).unwrap(), 3);
    // The platform re-triggering (a second press) changes nothing.
    assert_eq!(client.sos_trigger(TriggerMethod::Widget).unwrap(), id);
    drop(client);

    let client = open(dir.path(), &clock);
    let log = client.sos_beacon_log(&id).unwrap();
    assert_eq!(seqs(&log), [1, 2, 3, 4, 5, 6]);
    let fixes: Vec<Fix> = log.iter().filter_map(|b| b.fix).collect();
    assert_eq!(fixes, pushed, "every fix exactly once, in order, unchanged");
    assert!(log.iter().all(|b| b.incident == id && b.reply.is_none()));
    assert_eq!(seqs(&client.sos_pending_beacons(10).unwrap()), [4, 5, 6]);
    assert_eq!(seqs(&client.sos_pending_beacons(2).unwrap()), [4, 5]);

    clock.advance(Duration::from_secs(5));
    assert_eq!(client.sos_push_fix(fix_at(&clock, 9)).unwrap(), 7);
    assert_eq!(seqs(&client.sos_pending_beacons(10).unwrap()), [4, 5, 6, 7]);
    assert_eq!(client.sos_mark_delivered(&id, 7).unwrap(), 4);
    assert!(client.sos_pending_beacons(10).unwrap().is_empty());
    assert_eq!(client.sos_mark_delivered(&id, 7).unwrap(), 0, "idempotent");

    let status = client.sos_status().unwrap().unwrap();
    assert_eq!(
        (
            status.incident,
            status.phase,
            status.trigger,
            status.triggered_at
        ),
        (id, Phase::Active, TriggerMethod::PowerKey, T0)
    );
}

#[test]
fn concurrent_pushes_get_distinct_gapless_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = open(dir.path(), &clock);
    let id = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (client, clock) = (client.clone(), clock.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|n| client.sos_push_fix(fix_at(&clock, t * 10 + n)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut got: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (2..=41).collect::<Vec<_>>());
    assert_eq!(
        seqs(&client.sos_beacon_log(&id).unwrap()),
        (1..=41).collect::<Vec<_>>()
    );
}

#[test]
fn invalid_fixes_and_fixes_without_a_live_incident_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = open(dir.path(), &clock);
    assert!(matches!(
        client.sos_push_fix(fix_at(&clock, 0)),
        Err(SosError::NoLiveIncident)
    ));
    let id = client.sos_trigger(TriggerMethod::Watch).unwrap();
    let bad = Fix {
        lat: f64::NAN,
        ..fix_at(&clock, 0)
    };
    assert!(matches!(
        client.sos_push_fix(bad),
        Err(SosError::Fix(crate::sos::FixError::NotFinite("lat")))
    ));
    let future = Fix {
        time_ms: T0 + 3_600_000,
        ..fix_at(&clock, 0)
    };
    assert!(matches!(client.sos_push_fix(future), Err(SosError::Fix(_))));
    assert_eq!(seqs(&client.sos_beacon_log(&id).unwrap()), [1]);
    assert!(matches!(
        client.sos_reply(Reply::Text("  ".into())),
        Err(SosError::Message(_))
    ));
}

fn pinned(dir: &Path, clock: &ManualClock) -> Client {
    let client = open(dir, clock);
    client.sos_set_pins(None, "2468", Some("1357")).unwrap();
    client
}

#[test]
fn real_pin_cancels_reports_it_and_a_new_trigger_starts_a_new_incident() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    let id = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    client.sos_push_fix(fix_at(&clock, 0)).unwrap();
    let status = client.sos_cancel("2468").unwrap();
    assert_eq!(status.phase, Phase::Cancelled);
    let last = client.sos_pending_beacons(10).unwrap().pop().unwrap();
    assert_eq!((last.seq, last.state), (3, ReportedState::Cancelled));
    assert_eq!(
        last.fix,
        Some(fix_at(&clock, 0)),
        "repeats the last position"
    );
    assert!(matches!(
        client.sos_push_fix(fix_at(&clock, 1)),
        Err(SosError::NoLiveIncident)
    ));
    assert_eq!(client.sos_next_fix_due().unwrap(), None);
    assert!(matches!(
        client.sos_cancel("2468"),
        Err(SosError::Transition(TransitionError::NotLive))
    ));
    let next = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    assert_ne!(next, id);
    assert_eq!(client.sos_status().unwrap().unwrap().phase, Phase::Active);
    assert_eq!(seqs(&client.sos_beacon_log(&next).unwrap()), [1]);
}

#[test]
fn duress_pin_looks_cancelled_while_the_incident_stays_live_and_reports_duress() {
    let clock = ManualClock::new(T0);
    // One phone cancels for real, the other under duress: what the app sees must match.
    let (real_dir, duress_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let real = pinned(real_dir.path(), &clock);
    let duress = pinned(duress_dir.path(), &clock);
    let mut ids = Vec::new();
    for phone in [&real, &duress] {
        let id = phone.sos_trigger(TriggerMethod::PowerKey).unwrap();
        phone.sos_push_fix(fix_at(&clock, 0)).unwrap();
        let ack = ServerEvent {
            incident: id,
            event: IncidentEvent::Acknowledged,
        };
        assert_eq!(phone.sos_apply_server_event(&ack).unwrap(), Some(ack.event));
        ids.push(id);
    }
    let shown_real = real.sos_cancel("2468").unwrap();
    let shown_duress = duress.sos_cancel("1357").unwrap();
    let without_id = |s: SosStatus| SosStatus {
        incident: ids[0],
        ..s
    };
    assert_eq!(
        without_id(shown_real.clone()),
        without_id(shown_duress.clone())
    );
    assert_eq!(shown_duress.phase, Phase::Cancelled);

    // The truth: still live, reported as duress, fixes keep flowing and are due.
    let id = ids[1];
    let truth = duress.sos_true_state_for_tests(&id).unwrap().unwrap();
    assert!(truth.is_live() && truth.duress());
    assert_eq!(truth.phase(), Phase::Acknowledged);
    let last = duress.sos_pending_beacons(10).unwrap().pop().unwrap();
    assert_eq!(last.state, ReportedState::Duress);
    clock.advance(Duration::from_secs(5));
    let seq = duress.sos_push_fix(fix_at(&clock, 1)).unwrap();
    let queued = duress.sos_pending_beacons(10).unwrap().pop().unwrap();
    assert_eq!((queued.seq, queued.state), (seq, ReportedState::Duress));
    assert!(duress.sos_next_fix_due().unwrap().is_some());

    // Dispatch carries on, silently; the phone shows none of it.
    for event in [
        IncidentEvent::UnitAssigned {
            unit: Some("Jongno 12".into()),
        },
        IncidentEvent::Message {
            id: 1,
            text: "Police are coming. Stay hidden.".into(),
        },
    ] {
        let ev = ServerEvent {
            incident: id,
            event,
        };
        assert_eq!(duress.sos_apply_server_event(&ev).unwrap(), None);
    }
    let shown = duress.sos_status().unwrap().unwrap();
    assert_eq!((shown.phase, &shown.unit), (Phase::Cancelled, &None));
    assert!(shown.messages.is_empty());

    // Whatever a person tries answers as for a cancelled incident, on both phones.
    for pin in ["2468", "1357", "0000"] {
        for phone in [&real, &duress] {
            assert!(matches!(
                phone.sos_cancel(pin),
                Err(SosError::Transition(TransitionError::NotLive))
            ));
        }
    }
    for phone in [&real, &duress] {
        assert!(matches!(
            phone.sos_reply(Reply::Quick(QuickReply::Yes)),
            Err(SosError::Transition(TransitionError::NotLive))
        ));
    }
    // Changing the PINs "with" the duress PIN pretends to work and changes nothing.
    let truth = duress.sos_true_state_for_tests(&id).unwrap().unwrap();
    assert_eq!((truth.phase(), truth.duress()), (Phase::UnitAssigned, true));
    duress.sos_set_pins(Some("1357"), "9999", None).unwrap();
    assert!(matches!(
        duress.sos_cancel("9999"),
        Err(SosError::Transition(TransitionError::NotLive))
    ));
    assert_eq!(duress.sos_true_state_for_tests(&id).unwrap(), Some(truth));

    // Triggering again brings the same incident back into view, as it truly stands.
    assert_eq!(duress.sos_trigger(TriggerMethod::ButtonHold).unwrap(), id);
    let shown = duress.sos_status().unwrap().unwrap();
    assert_eq!(shown.phase, Phase::UnitAssigned);
    assert_eq!(shown.unit.as_deref(), Some("Jongno 12"));
    assert_eq!(
        shown.messages.len(),
        0,
        "what arrived under cover stays hidden"
    );
    let last = duress.sos_pending_beacons(10).unwrap().pop().unwrap();
    assert_eq!(last.state, ReportedState::Active);
}

#[test]
fn wrong_pins_never_say_which_pin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = open(dir.path(), &clock);
    let id = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    assert!(matches!(
        client.sos_cancel("2468"),
        Err(SosError::PinNotSet)
    ));

    // With and without a duress PIN, a wrong PIN gets the same answer, and changes nothing.
    client.sos_set_pins(None, "2468", None).unwrap();
    for wrong in ["1357", "0000", "24680"] {
        assert!(matches!(
            client.sos_cancel(wrong),
            Err(SosError::Transition(TransitionError::WrongPin))
        ));
    }
    client
        .sos_set_pins(Some("2468"), "2468", Some("1357"))
        .unwrap();
    assert!(matches!(
        client.sos_cancel("0000"),
        Err(SosError::Transition(TransitionError::WrongPin))
    ));
    assert_eq!(client.sos_status().unwrap().unwrap().phase, Phase::Active);
    assert_eq!(seqs(&client.sos_beacon_log(&id).unwrap()), [1]);

    // Changing the PINs needs the current one.
    for current in [None, Some("0000")] {
        assert!(matches!(
            client.sos_set_pins(current, "1111", None),
            Err(SosError::Transition(TransitionError::WrongPin))
        ));
    }
    assert!(matches!(
        client.sos_set_pins(Some("2468"), "1111", Some("1111")),
        Err(SosError::SamePins)
    ));
    assert!(matches!(
        client.sos_set_pins(Some("2468"), "12", None),
        Err(SosError::PinFormat)
    ));
    client.sos_set_pins(Some("2468"), "1111", None).unwrap();
    assert!(matches!(
        client.sos_cancel("2468"),
        Err(SosError::Transition(TransitionError::WrongPin))
    ));
    assert_eq!(client.sos_cancel("1111").unwrap().phase, Phase::Cancelled);
}

#[test]
fn pin_entry_locks_after_five_wrong_pins_whatever_the_incident_state() {
    let clock = ManualClock::new(T0);
    let (live_dir, duress_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let live = pinned(live_dir.path(), &clock);
    let duress = pinned(duress_dir.path(), &clock);
    live.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    duress.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    duress.sos_cancel("1357").unwrap();
    for _ in 0..5 {
        assert!(matches!(
            live.sos_cancel("0000"),
            Err(SosError::Transition(TransitionError::WrongPin))
        ));
        assert!(matches!(
            duress.sos_cancel("0000"),
            Err(SosError::Transition(TransitionError::NotLive))
        ));
    }
    for phone in [&live, &duress] {
        // Locked, even for the right PIN, for 30 s; and the lock survives a restart.
        for pin in ["0000", "2468"] {
            assert!(
                matches!(phone.sos_cancel(pin), Err(SosError::PinLocked { until }) if until == T0 + 30_000)
            );
        }
    }
    let live = open(live_dir.path(), &clock);
    assert!(matches!(
        live.sos_cancel("2468"),
        Err(SosError::PinLocked { .. })
    ));
    assert_eq!(live.sos_status().unwrap().unwrap().phase, Phase::Active);

    clock.advance(Duration::from_secs(30));
    // One more wrong PIN: locked for twice as long.
    assert!(matches!(
        live.sos_cancel("0000"),
        Err(SosError::Transition(TransitionError::WrongPin))
    ));
    assert!(matches!(
        live.sos_cancel("2468"),
        Err(SosError::PinLocked { until }) if until == T0 + 90_000
    ));
    clock.advance(Duration::from_secs(60));
    // The right PIN works and resets the count.
    assert_eq!(live.sos_cancel("2468").unwrap().phase, Phase::Cancelled);
    live.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    assert!(matches!(
        live.sos_cancel("0000"),
        Err(SosError::Transition(TransitionError::WrongPin))
    ));
    assert_eq!(live.sos_cancel("2468").unwrap().phase, Phase::Cancelled);
}

#[test]
fn server_events_move_forward_once_and_the_conversation_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    let id = client.sos_trigger(TriggerMethod::Voice).unwrap();
    let ev = |event| ServerEvent {
        incident: id,
        event,
    };

    let unit = IncidentEvent::UnitAssigned {
        unit: Some("Mapo 3".into()),
    };
    // An assignment arriving before "received" implies it.
    assert_eq!(
        client.sos_apply_server_event(&ev(unit.clone())).unwrap(),
        Some(unit.clone())
    );
    assert_eq!(
        client
            .sos_apply_server_event(&ev(IncidentEvent::Received))
            .unwrap(),
        None
    );
    assert_eq!(
        client.sos_apply_server_event(&ev(unit)).unwrap(),
        None,
        "duplicate"
    );
    let shown = client.sos_status().unwrap().unwrap();
    assert_eq!(
        (shown.phase, shown.unit.as_deref()),
        (Phase::UnitAssigned, Some("Mapo 3"))
    );

    clock.advance(Duration::from_secs(1));
    let msg = IncidentEvent::Message {
        id: 41,
        text: "Can you talk?".into(),
    };
    assert_eq!(
        client.sos_apply_server_event(&ev(msg.clone())).unwrap(),
        Some(msg.clone())
    );
    assert_eq!(
        client.sos_apply_server_event(&ev(msg)).unwrap(),
        None,
        "stored once"
    );
    clock.advance(Duration::from_secs(1));
    let seq = client
        .sos_reply(Reply::Quick(QuickReply::CantTalk))
        .unwrap();
    clock.advance(Duration::from_secs(1));
    client.sos_reply(Reply::Text("back room".into())).unwrap();
    let replies: Vec<_> = client
        .sos_pending_beacons(10)
        .unwrap()
        .into_iter()
        .filter_map(|b| b.reply.map(|r| (b.seq, r)))
        .collect();
    assert_eq!(
        replies,
        [
            (seq, Reply::Quick(QuickReply::CantTalk)),
            (seq + 1, Reply::Text("back room".into()))
        ]
    );
    let conversation: Vec<_> = client
        .sos_status()
        .unwrap()
        .unwrap()
        .messages
        .into_iter()
        .map(|m| (m.from_dispatcher, m.content, m.at - T0))
        .collect();
    assert_eq!(
        conversation,
        [
            (true, Reply::Text("Can you talk?".into()), 1_000),
            (false, Reply::Quick(QuickReply::CantTalk), 2_000),
            (false, Reply::Text("back room".into()), 3_000),
        ]
    );

    assert_eq!(
        client
            .sos_apply_server_event(&ev(IncidentEvent::Resolved))
            .unwrap(),
        Some(IncidentEvent::Resolved)
    );
    assert_eq!(client.sos_status().unwrap().unwrap().phase, Phase::Resolved);
    assert!(matches!(
        client.sos_cancel("2468"),
        Err(SosError::Transition(TransitionError::NotLive))
    ));
    assert!(matches!(
        client.sos_apply_server_event(&ServerEvent {
            incident: IncidentId::random(),
            event: IncidentEvent::Received
        }),
        Err(SosError::UnknownIncident)
    ));
    let bad = ev(IncidentEvent::Message {
        id: 42,
        text: String::new(),
    });
    assert!(matches!(
        client.sos_apply_server_event(&bad),
        Err(SosError::Message(_))
    ));
    assert_ne!(client.sos_trigger(TriggerMethod::Voice).unwrap(), id);
}

#[test]
fn sms_text_carries_the_latest_position_and_state_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    assert!(client.sos_sms_text().unwrap().is_none(), "no incident");
    let id = client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    assert!(matches!(
        client.sos_sms_text(),
        Err(SosError::SmsNotConfigured)
    ));
    let key = SmsKey::random();
    assert!(client.sos_set_sms_channel("112 ", 5, &key).is_err());
    client.sos_set_sms_channel("+8210555", 5, &key).unwrap();
    assert!(client.sos_sms_text().unwrap().is_none(), "no position yet");

    let fix = fix_at(&clock, 3);
    let seq = client.sos_push_fix(fix).unwrap();
    client.sos_reply(Reply::Quick(QuickReply::No)).unwrap();
    let sms = client.sos_sms_text().unwrap().unwrap();
    assert_eq!(sms.number, "+8210555");
    assert!(!format!("{sms:?}").contains("37.5"));
    let got = sms::decode_verified(&sms.text, |k| (k == 5).then(|| key.clone())).unwrap();
    assert_eq!(
        (got.incident, got.seq, got.state),
        (id, seq, ReportedState::Active)
    );
    assert!((got.fix.lat - fix.lat).abs() < 0.00001);

    client.sos_cancel("1357").unwrap();
    let sms = client.sos_sms_text().unwrap().unwrap();
    let got = sms::decode_verified(&sms.text, |_| Some(key.clone())).unwrap();
    assert_eq!((got.seq, got.state), (seq + 2, ReportedState::Duress));

    // After a real cancel, only until the cancel is delivered.
    client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    client.sos_cancel("2468").unwrap();
    let got = sms::decode_verified(&client.sos_sms_text().unwrap().unwrap().text, |_| {
        Some(key.clone())
    })
    .unwrap();
    assert_eq!(got.state, ReportedState::Cancelled);
    let last = client.sos_pending_beacons(100).unwrap().pop().unwrap();
    client.sos_mark_delivered(&id, last.seq).unwrap();
    assert!(client.sos_sms_text().unwrap().is_none());
}

#[test]
fn purge_removes_only_ended_delivered_incidents_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    let retention = Duration::from_secs(3600);

    // An incident cancelled for real, all delivered.
    let cancelled = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    client.sos_push_fix(fix_at(&clock, 0)).unwrap();
    client
        .sos_apply_server_event(&ServerEvent {
            incident: cancelled,
            event: IncidentEvent::Message {
                id: 1,
                text: "ok".into(),
            },
        })
        .unwrap();
    client.sos_cancel("2468").unwrap();
    let last = client.sos_beacon_log(&cancelled).unwrap().len() as u32;
    // A live incident under the duress cover, older than the retention.
    let live = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    client.sos_cancel("1357").unwrap();

    clock.advance(retention + Duration::from_secs(1));
    assert_eq!(
        client.sos_purge_ended(retention).unwrap(),
        0,
        "still queued"
    );
    client.sos_mark_delivered(&cancelled, last).unwrap();
    assert_eq!(
        client.sos_purge_ended(Duration::from_secs(7200)).unwrap(),
        0,
        "too recent"
    );
    assert_eq!(client.sos_purge_ended(retention).unwrap(), 1);
    assert!(client.sos_beacon_log(&cancelled).unwrap().is_empty());
    assert_eq!(client.sos_true_state_for_tests(&cancelled).unwrap(), None);
    assert!(client
        .sos_true_state_for_tests(&live)
        .unwrap()
        .unwrap()
        .is_live());
    assert_eq!(client.sos_beacon_log(&live).unwrap().len(), 2);
}

#[test]
fn the_queue_lists_older_incidents_first_each_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    let first = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    client.sos_push_fix(fix_at(&clock, 0)).unwrap();
    client.sos_cancel("2468").unwrap();
    let second = client.sos_trigger(TriggerMethod::Widget).unwrap();
    client.sos_push_fix(fix_at(&clock, 1)).unwrap();
    let order: Vec<_> = client
        .sos_pending_beacons(100)
        .unwrap()
        .into_iter()
        .map(|b| (b.incident == first, b.seq, b.state))
        .collect();
    assert_eq!(
        order,
        [
            (true, 1, ReportedState::Active),
            (true, 2, ReportedState::Active),
            (true, 3, ReportedState::Cancelled),
            (false, 1, ReportedState::Active),
            (false, 2, ReportedState::Active),
        ]
    );
    assert_eq!(client.sos_mark_delivered(&second, 1).unwrap(), 1);
    assert_eq!(client.sos_pending_beacons(100).unwrap().len(), 4);
}

fn feedback(rating: u8) -> Feedback {
    Feedback {
        rating,
        felt_safe: Some(false),
        comment: Some("늦었어요".into()),
    }
}

#[test]
fn feedback_waits_for_an_ended_incident_is_checked_and_a_second_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    let real = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    assert!(matches!(
        client.sos_feedback(&real, feedback(3)),
        Err(SosError::NotEnded)
    ));
    assert!(matches!(
        client.sos_feedback(&IncidentId::random(), feedback(3)),
        Err(SosError::UnknownIncident)
    ));
    client.sos_cancel("2468").unwrap();
    for bad in [0, 6] {
        assert!(matches!(
            client.sos_feedback(&real, feedback(bad)),
            Err(SosError::Feedback(_))
        ));
    }
    let mut long = feedback(3);
    long.comment = Some("a".repeat(1_001));
    assert!(matches!(
        client.sos_feedback(&real, long),
        Err(SosError::Feedback(_))
    ));
    assert_eq!(client.sos_status().unwrap().unwrap().feedback, None);
    client.sos_feedback(&real, feedback(3)).unwrap();
    let first = client.sos_pending_feedback().unwrap().unwrap();
    client.sos_feedback(&real, feedback(5)).unwrap();
    let second = client.sos_pending_feedback().unwrap().unwrap();
    assert_eq!(second.feedback.rating, 5);
    assert!(second.written_at > first.written_at, "a new version");
    // A confirmation of the first version does not mark the second as sent.
    assert!(!client
        .sos_mark_feedback_sent(&real, first.written_at)
        .unwrap());
    assert!(client.sos_pending_feedback().unwrap().is_some());
    assert!(client
        .sos_mark_feedback_sent(&real, second.written_at)
        .unwrap());
    assert_eq!(client.sos_pending_feedback().unwrap(), None);
    let shown = client.sos_status().unwrap().unwrap().feedback.unwrap();
    assert_eq!((shown.feedback.rating, shown.sent), (5, true));

    // Under the duress cover the phone answers exactly as for the real cancel: the
    // feedback is kept and queued; the server decides (it refuses while live).
    let covered = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    client.sos_cancel("1357").unwrap();
    client.sos_feedback(&covered, feedback(4)).unwrap();
    assert_eq!(
        client.sos_pending_feedback().unwrap().unwrap().incident,
        covered
    );
    assert!(client
        .sos_true_state_for_tests(&covered)
        .unwrap()
        .unwrap()
        .is_live());
}

fn sign_in(client: &Client) {
    client
        .inner
        .store()
        .save_account(&crate::client::store::AccountRow {
            server_url: "http://127.0.0.1:9".into(),
            account_id: 1,
            device_id: 2,
            token: "kept-token".into(),
            token_expires_at: i64::MAX,
            registered_at: T0,
        })
        .unwrap();
}

#[test]
fn sign_out_wipes_ended_incidents_and_keeps_an_unfinished_one_until_it_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    sign_in(&client);
    // Over and delivered.
    let done = client.sos_trigger(TriggerMethod::Widget).unwrap();
    client.sos_cancel("2468").unwrap();
    client.sos_feedback(&done, feedback(2)).unwrap();
    client.sos_mark_delivered(&done, 10).unwrap();
    // Live, under the duress cover, fixes not delivered.
    let live = client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    client.sos_push_fix(fix_at(&clock, 0)).unwrap();
    client.sos_cancel("1357").unwrap();

    client.sign_out().unwrap();
    assert_eq!(client.account().unwrap(), None);
    assert!(client.sos_beacon_log(&done).unwrap().is_empty());
    assert_eq!(client.sos_true_state_for_tests(&done).unwrap(), None);
    assert_eq!(seqs(&client.sos_pending_beacons(10).unwrap()), [1, 2, 3]);
    assert_eq!(
        client.sos_status().unwrap().unwrap().phase,
        Phase::Cancelled
    );
    // The sender keeps the account's token; a reopened client its server.
    assert_eq!(client.sos_token().unwrap(), "kept-token");
    drop(client);
    let client =
        Client::open_with_clock(dir.path(), "http://127.0.0.1:1", Arc::new(clock.clone())).unwrap();
    assert_eq!(client.server_url(), "http://127.0.0.1:9");
    // Fixes keep coming; nothing is wiped while it is unfinished.
    client.sos_push_fix(fix_at(&clock, 1)).unwrap();
    assert!(!client.sos_finish_signed_out().unwrap());
    // Dispatch resolves it and everything is delivered: now it goes, with the token.
    client
        .sos_apply_server_event(&ServerEvent {
            incident: live,
            event: IncidentEvent::Resolved,
        })
        .unwrap();
    client.sos_mark_delivered(&live, 10).unwrap();
    assert!(client.sos_finish_signed_out().unwrap());
    assert_eq!(client.sos_status().unwrap(), None);
    assert!(matches!(
        client.sos_token(),
        Err(SosError::Server(crate::client::ClientError::NotRegistered))
    ));
}

#[test]
fn sign_out_with_nothing_unfinished_keeps_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = pinned(dir.path(), &clock);
    sign_in(&client);
    let id = client.sos_trigger(TriggerMethod::Widget).unwrap();
    client.sos_cancel("2468").unwrap();
    // The cancel report is not delivered yet: kept, with the token.
    client.sign_out().unwrap();
    assert_eq!(client.sos_token().unwrap(), "kept-token");
    client.sos_mark_delivered(&id, 2).unwrap();
    assert!(client.sos_finish_signed_out().unwrap());
    // A second sign-out (nothing left) stores no token.
    sign_in(&client);
    client.sign_out().unwrap();
    assert!(client.sos_token().is_err());
    assert!(!client.sos_finish_signed_out().unwrap());
}
