//! The phone's SOS sender against a real server, each scenario on SQLite and on PostgreSQL
//! (a temporary database): fixes taken offline across an app restart arrive once and in
//! order; dispatch's acknowledgment and message reach the phone as events; under the duress
//! PIN the phone looks cancelled while the server has duress and fixes keep arriving;
//! feedback waits for dispatch to close and then arrives once; an incident the server
//! refuses for good is kept and marked, not retried; signing out mid-incident loses no fix.

use std::sync::Arc;
use std::time::Duration;

use sotong_core::client::{
    Client, SendFailure, SosLinkState, SosListener, SosOptions, SosTransport,
};
use sotong_core::hash::sha256;
use sotong_core::sos::state::Phase;
use sotong_core::sos::{
    Feedback, Fix, FixMethod, IncidentEvent, IncidentId, ReportedState, ServerEvent, TriggerMethod,
};
use sotong_e2e::{new_phone_number, Backend, Phone, TestServer};
use sotong_server::staff::session::{self, SessionKind};
use sotong_server::staff::{password, Grant, Role};
use sotong_server::store::{NewStaffMember, NewStaffSession};
use tokio::sync::mpsc;

/// Generates `sqlite::<name>` and `postgres::<name>` for each scenario.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_stores!(
    fixes_taken_offline_across_an_app_restart_arrive_once_in_order,
    dispatch_acknowledgment_and_message_reach_the_phone_as_events,
    under_duress_the_phone_looks_cancelled_while_the_server_has_duress_and_fixes_go_on,
    feedback_waits_for_dispatch_to_close_then_arrives_once,
    an_incident_the_server_refuses_is_kept_marked_and_not_retried,
    signing_out_mid_incident_loses_no_fix_and_wipes_once_done,
);

#[derive(Debug)]
enum Seen {
    State(SosLinkState),
    Event(IncidentEvent),
    Failed(IncidentId, SendFailure, String),
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
    fn send_failed(&self, incident: IncidentId, what: SendFailure, reason: String) {
        let _ = self.0.send(Seen::Failed(incident, what, reason));
    }
    fn stopped(&self, error: Option<String>) {
        let _ = self.0.send(Seen::Stopped(error));
    }
}

fn start(client: &Client) -> (SosTransport, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = SosOptions {
        first_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(200),
        events_wait: Duration::from_secs(25),
        batch: 100,
        live_ack_timeout: Duration::from_secs(5),
    };
    let sender = client
        .sos_start_transport(Arc::new(Recorder(tx)), options)
        .expect("start the SOS sender");
    (sender, rx)
}

/// Waits for the first report `want` accepts (the sender reports until it stops).
async fn until(rx: &mut mpsc::UnboundedReceiver<Seen>, want: impl Fn(&Seen) -> bool) -> Seen {
    loop {
        let seen = rx.recv().await.expect("the sender ended without it");
        if want(&seen) {
            return seen;
        }
    }
}

/// Waits until everything queued is at the server.
async fn delivered(client: &Client, rx: &mut mpsc::UnboundedReceiver<Seen>) {
    loop {
        until(rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
        if client.sos_pending_beacons(1).unwrap().is_empty() {
            return;
        }
    }
}

fn fix(n: u32) -> Fix {
    Fix {
        lat: 37.5665 + f64::from(n) * 0.0004,
        lon: 126.978,
        accuracy_m: 8.0 + f64::from(n),
        altitude_m: Some(40.0),
        speed_mps: Some(1.2),
        heading_deg: None,
        time_ms: sotong_core::clock::unix_millis_now() - 200,
        method: FixMethod::Gps,
        battery_pct: Some(80),
    }
}

async fn registered_phone(server: &TestServer) -> Phone {
    let phone = Phone::new(server);
    phone.register(server, &new_phone_number()).await;
    phone
        .client
        .sos_set_pins(None, "2468", Some("1357"))
        .unwrap();
    phone
}

/// A Seoul dispatcher with a bearer session, acting through the dispatcher JSON API.
struct Dispatcher {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Dispatcher {
    async fn new(server: &TestServer) -> Self {
        let store = server.store();
        let now = sotong_core::clock::unix_millis_now() / 1000;
        let member = store
            .add_staff(&NewStaffMember {
                username: format!("dispatch.{}", rand::random::<u32>()),
                display_name: "Dispatcher".into(),
                password_hash: password::hash("correct horse battery".into())
                    .await
                    .unwrap(),
                grants: vec![Grant::new(Role::Dispatcher, Some("seoul")).unwrap()],
                totp_secret: None,
                created_at: now,
            })
            .await
            .unwrap()
            .expect("new member");
        let token = session::new_token();
        store
            .create_staff_session(&NewStaffSession {
                token_hash: sha256(token.as_bytes()),
                member_id: member.id,
                kind: SessionKind::Bearer,
                csrf_token: session::new_token(),
                now,
                expires_at: now + 3600,
            })
            .await
            .unwrap();
        Self {
            base: server.url(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /v1/dispatch/incidents/{id}/{action}` with `body`.
    async fn act(&self, id: &IncidentId, action: &str, body: serde_json::Value) {
        let resp = self
            .http
            .post(format!(
                "{}/v1/dispatch/incidents/{id}/{action}",
                self.base.trim_end_matches('/')
            ))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{action}: {status} {text}");
    }
}

async fn fixes_taken_offline_across_an_app_restart_arrive_once_in_order(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut phone = registered_phone(&server).await;

    let url = server.url();
    // No network: the trigger and the first fixes are stored and the sender backs off.
    server.go_down().await;
    let id = phone.client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    let (sender, mut rx) = start(&phone.client);
    for n in 0..4 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }
    until(&mut rx, |s| {
        matches!(s, Seen::State(SosLinkState::BackingOff { .. }))
    })
    .await;

    // The app dies mid-sequence and is reopened on the same file.
    sender.stop().await;
    drop(rx);
    phone.client = Client::open(&phone.dir(), &url).unwrap();
    for n in 4..8 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }

    // The network returns.
    server.come_back().await;
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;

    let stored = server.store().sos_beacons(&id).await.unwrap();
    let seqs: Vec<u32> = stored.iter().map(|b| b.beacon.seq).collect();
    assert_eq!(
        seqs,
        (1..=9).collect::<Vec<_>>(),
        "every beacon once, in order"
    );
    let sent: Vec<Fix> = phone
        .client
        .sos_beacon_log(&id)
        .unwrap()
        .into_iter()
        .filter_map(|b| b.fix)
        .collect();
    let arrived: Vec<Fix> = stored.iter().filter_map(|b| b.beacon.fix).collect();
    assert_eq!(arrived, sent, "every fix unchanged");
    assert_eq!(arrived.len(), 8);
    let incident = server.store().sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.up_to_seq, 9);

    // The real PIN ends it: the cancel reaches the server and the sender stops by itself.
    phone.client.sos_cancel("2468").unwrap();
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;
    let incident = server.store().sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.reported_state, ReportedState::Cancelled);
    server.stop().await;
}

async fn dispatch_acknowledgment_and_message_reach_the_phone_as_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let phone = registered_phone(&server).await;
    let id = phone.client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;

    let dispatcher = Dispatcher::new(&server).await;
    dispatcher
        .act(&id, "acknowledge", serde_json::json!({}))
        .await;
    until(&mut rx, |s| {
        matches!(s, Seen::Event(IncidentEvent::Acknowledged))
    })
    .await;
    dispatcher
        .act(
            &id,
            "message",
            serde_json::json!({"text": "Are you able to talk?"}),
        )
        .await;
    let Seen::Event(IncidentEvent::Message { text, .. }) = until(&mut rx, |s| {
        matches!(s, Seen::Event(IncidentEvent::Message { .. }))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(text, "Are you able to talk?");
    let status = phone.client.sos_status().unwrap().unwrap();
    assert_eq!(status.phase, Phase::Acknowledged);
    assert_eq!(status.messages.len(), 1);
    sender.stop().await;
    server.stop().await;
}

async fn under_duress_the_phone_looks_cancelled_while_the_server_has_duress_and_fixes_go_on(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let phone = registered_phone(&server).await;
    let id = phone.client.sos_trigger(TriggerMethod::Watch).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;

    let shown = phone.client.sos_cancel("1357").unwrap();
    assert_eq!(shown.phase, Phase::Cancelled);
    for n in 1..4 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }
    delivered(&phone.client, &mut rx).await;

    assert_eq!(
        phone.client.sos_status().unwrap().unwrap().phase,
        Phase::Cancelled
    );
    let incident = server.store().sos_incident(&id).await.unwrap().unwrap();
    assert!(incident.duress, "the server has duress");
    assert_eq!(incident.reported_state, ReportedState::Duress);
    let stored = server.store().sos_beacons(&id).await.unwrap();
    assert_eq!(stored.iter().filter(|b| b.beacon.fix.is_some()).count(), 5);
    assert_eq!(
        stored.iter().map(|b| b.beacon.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    // A dispatcher's message is kept but not shown under the cover; the sender goes on.
    Dispatcher::new(&server)
        .await
        .act(&id, "message", serde_json::json!({"text": "We see you"}))
        .await;
    phone.client.sos_push_fix(fix(5)).unwrap();
    delivered(&phone.client, &mut rx).await;
    assert!(!sender.is_finished());
    while let Ok(seen) = rx.try_recv() {
        assert!(
            !matches!(seen, Seen::Event(_)),
            "{seen:?} shown under duress"
        );
    }
    assert!(phone
        .client
        .sos_status()
        .unwrap()
        .unwrap()
        .messages
        .is_empty());
    sender.stop().await;
    server.stop().await;
}

async fn feedback_waits_for_dispatch_to_close_then_arrives_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let phone = registered_phone(&server).await;
    let id = phone.client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;
    // Not while it is shown as live.
    let feedback = Feedback {
        rating: 4,
        felt_safe: Some(true),
        comment: Some("경찰관이 빨리 왔습니다".into()),
    };
    assert!(phone.client.sos_feedback(&id, feedback.clone()).is_err());
    // Cancelled by the person; dispatch has not closed it: the server answers 409 and the
    // sender waits for dispatch's events instead of giving up or spinning.
    sender.stop().await;
    phone.client.sos_cancel("2468").unwrap();
    phone.client.sos_feedback(&id, feedback.clone()).unwrap();
    let dispatcher = Dispatcher::new(&server).await;
    let (sender, mut rx) = start(&phone.client);
    until(&mut rx, |s| matches!(s, Seen::State(SosLinkState::Waiting))).await;
    assert!(server.store().sos_feedback(&id).await.unwrap().is_none());
    assert!(!sender.is_finished());
    dispatcher
        .act(
            &id,
            "close",
            serde_json::json!({"outcome": "caller_cancelled"}),
        )
        .await;
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;
    let stored = server.store().sos_feedback(&id).await.unwrap().unwrap();
    assert_eq!(stored.feedback, feedback);
    let status = phone.client.sos_status().unwrap().unwrap();
    let shown = status.feedback.unwrap();
    assert!(shown.sent && shown.send_error.is_none());
    let incident = server.store().sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.outcome.as_deref(), Some("caller_cancelled"));
    // An outcome outside the closed set is refused.
    let other = phone_with_incident(&server).await;
    let resp = dispatcher
        .http
        .post(format!(
            "{}/v1/dispatch/incidents/{}/close",
            dispatcher.base.trim_end_matches('/'),
            other
        ))
        .bearer_auth(&dispatcher.token)
        .json(&serde_json::json!({"outcome": "person safe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
    server.stop().await;
}

/// Another registered phone with a delivered incident; returns its id.
async fn phone_with_incident(server: &TestServer) -> IncidentId {
    let phone = registered_phone(server).await;
    let id = phone.client.sos_trigger(TriggerMethod::Widget).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;
    sender.stop().await;
    id
}

async fn an_incident_the_server_refuses_is_kept_marked_and_not_retried(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut phone = registered_phone(&server).await;
    let id = phone.client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;
    sender.stop().await;
    // The phone is signed out mid-incident and registered as someone else: the incident
    // belongs to the first account, so the server answers its beacons 404, for good.
    phone.client.sign_out().unwrap();
    phone.reopen(&server);
    phone.register(&server, &new_phone_number()).await;
    phone.client.sos_push_fix(fix(1)).unwrap();
    phone.client.sos_push_fix(fix(2)).unwrap();
    let (sender, mut rx) = start(&phone.client);
    let Seen::Failed(failed, what, reason) =
        until(&mut rx, |s| matches!(s, Seen::Failed(..))).await
    else {
        unreachable!()
    };
    assert_eq!((failed, what), (id, SendFailure::Beacons));
    assert!(reason.contains("no such incident"), "{reason}");
    // Not retried: with nothing else to do the sender ends by itself, without an error.
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;
    // Kept and shown: every beacon is still on the phone; the server has only the first.
    let status = phone.client.sos_status().unwrap().unwrap();
    assert_eq!(status.send_error.as_deref(), Some(reason.as_str()));
    assert_eq!(phone.client.sos_beacon_log(&id).unwrap().len(), 4);
    assert_eq!(server.store().sos_beacons(&id).await.unwrap().len(), 2);
    server.stop().await;
}

async fn signing_out_mid_incident_loses_no_fix_and_wipes_once_done(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut phone = registered_phone(&server).await;
    // An earlier incident, over and delivered.
    let old = phone.client.sos_trigger(TriggerMethod::Widget).unwrap();
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;
    phone.client.sos_cancel("2468").unwrap();
    until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await;
    sender.finished().await;
    // Offline, a new incident under the duress cover; then a sign-out, by mistake or forced.
    let url = server.url();
    server.go_down().await;
    let id = phone.client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    for n in 0..3 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }
    phone.client.sos_cancel("1357").unwrap();
    phone.client.sign_out().unwrap();
    assert_eq!(phone.client.account().unwrap(), None);
    // The ended incident is gone, the live one is kept with every fix, and the app shows
    // what it showed before (cancelled).
    assert!(phone.client.sos_beacon_log(&old).unwrap().is_empty());
    assert_eq!(phone.client.sos_pending_beacons(100).unwrap().len(), 5);
    assert_eq!(
        phone.client.sos_status().unwrap().unwrap().phase,
        Phase::Cancelled
    );
    // The app restarts, the network returns: the fixes arrive.
    phone.client = Client::open(&phone.dir(), &url).unwrap();
    phone.client.sos_push_fix(fix(3)).unwrap();
    server.come_back().await;
    let (sender, mut rx) = start(&phone.client);
    delivered(&phone.client, &mut rx).await;
    let stored = server.store().sos_beacons(&id).await.unwrap();
    assert_eq!(
        stored.iter().map(|b| b.beacon.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(
        server
            .store()
            .sos_incident(&id)
            .await
            .unwrap()
            .unwrap()
            .duress
    );
    // Dispatch closes it: the sender finishes and wipes what the signed-out phone held.
    Dispatcher::new(&server)
        .await
        .act(&id, "close", serde_json::json!({"outcome": "assisted"}))
        .await;
    let Seen::Stopped(error) = until(&mut rx, |s| matches!(s, Seen::Stopped(_))).await else {
        unreachable!()
    };
    assert_eq!(error, None);
    sender.finished().await;
    assert_eq!(phone.client.sos_status().unwrap(), None);
    assert!(phone.client.sos_beacon_log(&id).unwrap().is_empty());
    server.stop().await;
}
