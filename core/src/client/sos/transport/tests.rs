//! The beacon sender against a small fake of the server's SOS routes (the real server is
//! exercised end to end in `tests/tests/sos_phone.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use super::*;
use crate::client::store::AccountRow;
use crate::clock::{Clock, ManualClock};
use crate::sos::{Beacon, Fix, FixMethod, IncidentEvent, SmsKey, TriggerMethod};

const T0: i64 = 1_764_448_000_000;

#[derive(Default)]
struct FakeState {
    /// Stored beacons by (incident, seq); the first copy wins.
    stored: BTreeMap<(String, u32), Beacon>,
    /// Requests to `POST /v1/sos/beacons` that fail with 503 before one succeeds.
    fail_posts: u32,
    /// Events every beacon answer carries.
    answer_events: Vec<ServerEvent>,
    /// Long-poll events, numbered from 1.
    polled: Vec<ServerEvent>,
    /// Bearer tokens seen.
    tokens: Vec<String>,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    changed: Arc<Notify>,
}

impl Fake {
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(self.clone().serve(conn));
            }
        });
        url
    }

    fn push_event(&self, event: ServerEvent) {
        self.state.lock().unwrap().polled.push(event);
        self.changed.notify_waiters();
    }

    fn seqs(&self) -> Vec<u32> {
        let st = self.state.lock().unwrap();
        st.stored.keys().map(|(_, s)| *s).collect()
    }

    async fn serve(self, mut conn: TcpStream) {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "short body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_end..head_end + length];
        let token = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Bearer "))
            .unwrap_or_default()
            .to_owned();
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        self.state.lock().unwrap().tokens.push(token);
        let (status, answer) = if head.starts_with("POST /v1/sos/beacons ") {
            self.beacons(body)
        } else if head.starts_with("GET /v1/sos/incidents/") {
            self.events(&target).await
        } else {
            (
                404,
                r#"{"error":"not_found","message":"no such route"}"#.to_owned(),
            )
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
        let _ = conn.shutdown().await;
    }

    fn beacons(&self, body: &[u8]) -> (u16, String) {
        let mut st = self.state.lock().unwrap();
        if st.fail_posts > 0 {
            st.fail_posts -= 1;
            return (
                503,
                r#"{"error":"unavailable","message":"later"}"#.to_owned(),
            );
        }
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap();
        let beacons: Vec<Beacon> = serde_json::from_value(parsed["beacons"].clone()).unwrap();
        let mut incidents = Vec::new();
        for b in beacons {
            let id = b.incident.to_string();
            if !incidents.contains(&id) {
                incidents.push(id.clone());
            }
            st.stored.entry((id, b.seq)).or_insert(b);
        }
        let acked: Vec<serde_json::Value> = incidents
            .iter()
            .map(|id| {
                let mut up_to = 0;
                while st.stored.contains_key(&(id.clone(), up_to + 1)) {
                    up_to += 1;
                }
                serde_json::json!({"incident": id, "up_to_seq": up_to})
            })
            .collect();
        let answer = serde_json::json!({"acked": acked, "events": st.answer_events});
        (200, answer.to_string())
    }

    async fn events(&self, target: &str) -> (u16, String) {
        let after: usize = target
            .split_once("after=")
            .and_then(|(_, rest)| rest.split('&').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        loop {
            let changed = self.changed.notified();
            {
                let st = self.state.lock().unwrap();
                if st.polled.len() > after {
                    let events: Vec<serde_json::Value> = st
                        .polled
                        .iter()
                        .enumerate()
                        .skip(after)
                        .map(|(i, e)| serde_json::json!({"id": i + 1, "event": e}))
                        .collect();
                    return (200, serde_json::json!({ "events": events }).to_string());
                }
            }
            changed.await;
        }
    }
}

#[derive(Debug)]
enum Seen {
    State(SosLinkState),
    Event(IncidentEvent),
    Sms(SmsText),
    Stopped(Option<String>),
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl SosListener for Recorder {
    fn state_changed(&self, state: SosLinkState) {
        let _ = self.0.send(Seen::State(state));
    }
    fn event(&self, event: ServerEvent) {
        let _ = self.0.send(Seen::Event(event.event));
    }
    fn send_sms(&self, sms: SmsText) {
        let _ = self.0.send(Seen::Sms(sms));
    }
    fn stopped(&self, error: Option<String>) {
        let _ = self.0.send(Seen::Stopped(error));
    }
}

fn options() -> SosOptions {
    SosOptions {
        first_retry: Duration::from_millis(5),
        max_retry: Duration::from_millis(20),
        events_wait: Duration::from_secs(30),
        batch: 2,
        live_ack_timeout: Duration::from_secs(5),
    }
}

fn registered(dir: &std::path::Path, url: &str, clock: &ManualClock) -> Client {
    let client = Client::open_with_clock(dir, url, Arc::new(clock.clone())).unwrap();
    client
        .inner
        .store()
        .save_account(&AccountRow {
            server_url: url.to_owned(),
            account_id: 1,
            device_id: 1,
            token: "device-token".into(),
            token_expires_at: T0 + 86_400_000,
            registered_at: T0,
        })
        .unwrap();
    client.sos_set_pins(None, "1234", Some("9999")).unwrap();
    client
}

fn fix(clock: &ManualClock, n: u32) -> Fix {
    Fix {
        lat: 37.5 + f64::from(n) * 0.001,
        lon: 127.0,
        accuracy_m: 10.0,
        altitude_m: None,
        speed_mps: None,
        heading_deg: None,
        time_ms: clock.now_unix_millis() - 100,
        method: FixMethod::Gps,
        battery_pct: Some(50),
    }
}

fn start(client: &Client) -> (SosTransport, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = client
        .sos_start_transport(Arc::new(Recorder(tx)), options())
        .unwrap();
    (sender, rx)
}

/// Waits for the first report `want` accepts, returning it.
async fn until(rx: &mut mpsc::UnboundedReceiver<Seen>, want: impl Fn(&Seen) -> bool) -> Seen {
    loop {
        let seen = rx.recv().await.expect("the sender ended without it");
        if want(&seen) {
            return seen;
        }
    }
}

#[tokio::test]
async fn sends_every_beacon_once_through_failures_shows_events_and_stops_when_cancelled() {
    let fake = Fake::default();
    {
        let mut st = fake.state.lock().unwrap();
        st.fail_posts = 2;
        st.answer_events = vec![];
    }
    let url = fake.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = registered(dir.path(), &url, &clock);

    // Offline: trigger and three fixes wait in the queue.
    let id = client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    for n in 0..3 {
        client.sos_push_fix(fix(&clock, n)).unwrap();
    }
    fake.state.lock().unwrap().answer_events = vec![
        ServerEvent {
            incident: id,
            event: IncidentEvent::Received,
        },
        ServerEvent {
            incident: id,
            event: IncidentEvent::Acknowledged,
        },
    ];
    let (sender, mut rx) = start(&client);

    // Two refused attempts are backed off from, then everything goes (two per request).
    until(&mut rx, |s| {
        matches!(s, Seen::State(SosLinkState::BackingOff { .. }))
    })
    .await;
    until(&mut rx, |s| {
        matches!(s, Seen::Event(IncidentEvent::Acknowledged))
    })
    .await;
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
    assert_eq!(fake.seqs(), [1, 2, 3, 4]);
    assert!(client.sos_pending_beacons(10).unwrap().is_empty());

    // A fix pushed while the sender long-polls goes at once.
    client.sos_push_fix(fix(&clock, 3)).unwrap();
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Sending))).await;
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
    assert_eq!(fake.seqs(), [1, 2, 3, 4, 5]);

    // Dispatch's message comes through the long-poll.
    fake.push_event(ServerEvent {
        incident: id,
        event: IncidentEvent::Message {
            id: 7,
            text: "Are you safe?".into(),
        },
    });
    let Seen::Event(IncidentEvent::Message { text, .. }) = until(&mut rx, |s| {
        matches!(s, Seen::Event(IncidentEvent::Message { .. }))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(text, "Are you safe?");
    let status = client.sos_status().unwrap().unwrap();
    assert_eq!(status.messages.len(), 1);

    // The real PIN ends it: the cancelled state is delivered, then the sender stops.
    client.sos_cancel("1234").unwrap();
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;
    let stored = fake.state.lock().unwrap().stored.clone();
    let seqs: Vec<u32> = stored.keys().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as u32).collect::<Vec<_>>());
    assert_eq!(
        stored.values().last().map(|b| b.state),
        Some(crate::sos::ReportedState::Cancelled)
    );
    assert!(client.sos_pending_beacons(10).unwrap().is_empty());
    assert!(fake
        .state
        .lock()
        .unwrap()
        .tokens
        .iter()
        .all(|t| t == "device-token"));
}

#[tokio::test]
async fn under_duress_the_sender_keeps_going_and_shows_nothing() {
    let fake = Fake::default();
    let url = fake.clone().start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = registered(dir.path(), &url, &clock);
    let id = client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    client.sos_push_fix(fix(&clock, 0)).unwrap();
    let (sender, mut rx) = start(&client);
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;

    client.sos_cancel("9999").unwrap();
    client.sos_push_fix(fix(&clock, 1)).unwrap();
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Sending))).await;
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
    let stored = fake.state.lock().unwrap().stored.clone();
    assert_eq!(
        stored.values().map(|b| b.state).collect::<Vec<_>>(),
        [
            crate::sos::ReportedState::Active,
            crate::sos::ReportedState::Active,
            crate::sos::ReportedState::Duress,
            crate::sos::ReportedState::Duress,
        ]
    );
    // Dispatch's message is stored but not shown under the cover.
    fake.push_event(ServerEvent {
        incident: id,
        event: IncidentEvent::Acknowledged,
    });
    fake.push_event(ServerEvent {
        incident: id,
        event: IncidentEvent::Message {
            id: 1,
            text: "Stay on".into(),
        },
    });
    // The long-poll takes both: the true state moves on, the phone shows nothing.
    while client
        .sos_true_state_for_tests(&id)
        .unwrap()
        .map(|s| s.phase())
        != Some(crate::sos::state::Phase::Acknowledged)
    {
        tokio::task::yield_now().await;
    }
    client.sos_push_fix(fix(&clock, 2)).unwrap();
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Sending))).await;
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
    assert!(!sender.is_finished());
    while let Ok(seen) = rx.try_recv() {
        assert!(
            !matches!(seen, Seen::Event(_)),
            "{seen:?} shown under duress"
        );
    }
    assert_eq!(
        client.sos_status().unwrap().unwrap().phase,
        crate::sos::state::Phase::Cancelled
    );
    sender.stop().await;
}

#[tokio::test]
async fn with_no_network_the_sms_text_is_handed_over_once_per_fix() {
    // A port nothing listens on.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client = registered(dir.path(), &url, &clock);
    client
        .sos_set_sms_channel("+82111", 3, &SmsKey::from_bytes(&[7; 32]).unwrap())
        .unwrap();
    client.sos_trigger(TriggerMethod::Watch).unwrap();
    client.sos_push_fix(fix(&clock, 0)).unwrap();
    let (sender, mut rx) = start(&client);
    let Seen::Sms(sms) = until(&mut rx, |s| matches!(s, Seen::Sms(_))).await else {
        unreachable!()
    };
    assert_eq!(sms.number, "+82111");
    assert!(sms.text.starts_with("SOS1;k=3;"), "{}", sms.text.len());
    // Several more failed attempts hand over nothing new until there is a new fix.
    for _ in 0..3 {
        until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Sending))).await;
    }
    client.sos_push_fix(fix(&clock, 1)).unwrap();
    let Seen::Sms(second) = until(&mut rx, |s| matches!(s, Seen::Sms(_))).await else {
        unreachable!()
    };
    assert_ne!(second.text, sms.text);
    while let Ok(seen) = rx.try_recv() {
        assert!(!matches!(seen, Seen::Sms(_)), "an SMS handed twice");
    }
    sender.stop().await;
    assert_eq!(
        client.sos_pending_beacons(10).unwrap().len(),
        3,
        "nothing lost"
    );
}

#[tokio::test]
async fn nothing_live_stops_at_once_and_an_unregistered_phone_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let client =
        Client::open_with_clock(dir.path(), "http://127.0.0.1:9", Arc::new(clock.clone())).unwrap();
    let (sender, mut rx) = start(&client);
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;

    client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    let (sender, mut rx) = start(&client);
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert!(error.unwrap().contains("not registered"));
    sender.finished().await;
    assert_eq!(client.sos_pending_beacons(10).unwrap().len(), 1);
}

#[test]
fn failures_are_sorted_into_refused_stop_and_later() {
    let server = |status: u16| {
        SosError::Server(ClientError::Server {
            status,
            message: "x".into(),
        })
    };
    for refused in [
        SosError::Server(ClientError::InvalidInput("bad beacon".into())),
        SosError::Server(ClientError::NotFound("no such incident".into())),
        server(410),
        server(400),
        server(404),
    ] {
        assert_eq!(classify(&refused), Retry::Refused, "{refused:?}");
    }
    for stop in [
        SosError::Server(ClientError::NotRegistered),
        SosError::Server(ClientError::Unauthorized("expired".into())),
        SosError::Server(ClientError::InsecureServer { host: "x".into() }),
    ] {
        assert_eq!(classify(&stop), Retry::Stop, "{stop:?}");
    }
    for later in [
        server(500),
        server(503),
        server(429),
        server(409),
        SosError::Server(ClientError::TimedOut),
        SosError::Server(ClientError::Protocol("garbled".into())),
        SosError::Store(crate::client::store::StoreError::Poisoned),
    ] {
        assert_eq!(classify(&later), Retry::Later, "{later:?}");
    }
}
