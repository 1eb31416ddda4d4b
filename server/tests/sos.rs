//! SOS end to end: real servers on port 0 (SQLite and PostgreSQL), a phone speaking the
//! contract's HTTP API, dispatchers on the SSE feed and the JSON routes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sotong_core::clock::{Clock as _, ManualClock, SystemClock};
use sotong_core::sos::sms::{self, SmsKey};
use sotong_core::sos::{IncidentId, ReportedState};
use sotong_server::notifier::LogNotifier;
use sotong_server::sos::{retention, sms_gateway};
use sotong_server::staff::audit::AuditFilter;
use sotong_server::staff::{password, Grant, Role};
use sotong_server::store::{NewStaffMember, Store};
use sotong_server::{auth, serve, AppState, Config, ServerHandle};

const PASSWORD: &str = "correct horse battery staple";
const SMS_SECRET: &[u8] = b"gateway secret for tests";
/// Guards every wait on the network so that a broken server fails the test instead of
/// hanging it (never an assertion on speed).
const GUARD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Server {
    handle: ServerHandle,
    http: Client,
    clock: ManualClock,
    config: Config,
    _dir: tempfile::TempDir,
}

/// One database for one or more servers.
struct Db {
    pg: Option<common::PgDb>,
}

impl Db {
    async fn new(backend: Backend) -> Option<Self> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(common::PgDb::create().await?),
        };
        Some(Self { pg })
    }
}

impl Server {
    async fn start(db: &Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        config.database_url = db.pg.as_ref().map(|p| p.url.clone());
        let clock = ManualClock::new(SystemClock.now_unix_millis() / 1000 * 1000);
        config.clock = Arc::new(clock.clone());
        config.sos.sms_gateway_secret = Some(SMS_SECRET.to_vec());
        config.sos.sms_gateway_number = Some("+8210555000112".into());
        config.sos.feed_heartbeat = Duration::from_millis(50);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = serve(listener, config.clone()).await.unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            handle,
            http: Client::new(),
            clock,
            config,
            _dir: dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.handle.store()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.addr())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_unix_millis()
    }

    /// A citizen device token for `phone` (one-time code registration).
    async fn citizen(&self, phone: &str) -> String {
        let res = self
            .http
            .post(self.url("/v1/auth/code"))
            .json(&json!({ "phone": phone }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let code = self
            .handle
            .latest_dev_code(&auth::normalize_phone(phone).unwrap())
            .unwrap();
        let res = self
            .http
            .post(self.url("/v1/auth/register"))
            .json(&json!({ "phone": phone, "code": code, "device_name": "phone" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A staff member with `grants`, logged in: their bearer token.
    async fn staff(&self, username: &str, grants: Vec<Grant>) -> String {
        self.store()
            .add_staff(&NewStaffMember {
                username: username.into(),
                display_name: username.into(),
                password_hash: password::hash(PASSWORD.into()).await.unwrap(),
                grants,
                totp_secret: None,
                created_at: self.now_ms() / 1000,
            })
            .await
            .unwrap()
            .unwrap();
        let res = self
            .http
            .post(self.url("/v1/staff/login"))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn dispatcher(&self, username: &str, region: &str) -> String {
        self.staff(
            username,
            vec![Grant::new(Role::Dispatcher, Some(region)).unwrap()],
        )
        .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn beacons(&self, token: &str, beacons: Vec<Value>) -> (StatusCode, Value) {
        self.post("/v1/sos/beacons", token, json!({ "beacons": beacons }))
            .await
    }

    /// Opens the dispatcher feed, after `last_id` if given.
    async fn feed(&self, token: &str, last_id: Option<i64>) -> reqwest::Response {
        let mut req = self
            .http
            .get(self.url("/v1/dispatch/feed"))
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        req.send().await.unwrap()
    }

    async fn stop(self) {
        self.handle.shutdown().await;
    }
}

const SEOUL: (f64, f64) = (37.5665, 126.978);
const BUSAN: (f64, f64) = (35.1151, 129.0422);
const SEA: (f64, f64) = (36.0, 125.0);

fn beacon(id: &IncidentId, seq: u32, state: &str, at: (f64, f64), now_ms: i64) -> Value {
    json!({
        "incident": id.to_string(),
        "seq": seq,
        "state": state,
        "trigger": "power_key",
        "triggered_at": now_ms - 5_000,
        "fix": {
            "lat": at.0, "lon": at.1, "accuracy_m": 12.0,
            "time_ms": now_ms - 1_000, "method": "gps", "battery_pct": 80
        }
    })
}

fn up_to(answer: &Value, id: &IncidentId) -> u64 {
    answer["acked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["incident"] == id.to_string())
        .unwrap()["up_to_seq"]
        .as_u64()
        .unwrap()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// Reads a feed response event by event (comments, i.e. heartbeats, skipped).
struct SseReader {
    res: reqwest::Response,
    buf: String,
}

impl SseReader {
    fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK);
        let ct = res.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            res,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Sse { id, event, data };
                }
                continue; // a heartbeat comment
            }
            let chunk = tokio::time::timeout(GUARD, self.res.chunk())
                .await
                .expect("the feed went silent")
                .unwrap()
                .expect("the feed ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Waits for a heartbeat comment.
    async fn heartbeat(&mut self) {
        loop {
            if self
                .buf
                .lines()
                .any(|l| l.starts_with(':') && l.contains("heartbeat"))
            {
                return;
            }
            let chunk = tokio::time::timeout(GUARD, self.res.chunk())
                .await
                .expect("the feed went silent")
                .unwrap()
                .expect("the feed ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event about `incident` (skipping others').
    async fn next_about(&mut self, incident: &IncidentId) -> Sse {
        loop {
            let ev = self.next().await;
            if ev.data["incident"] == incident.to_string() {
                return ev;
            }
        }
    }
}

// ---- beacons ---------------------------------------------------------------------------

async fn beacons_stored_once(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500001").await;
    let id = IncidentId::random();
    let now = s.now_ms();
    // 1, 3, and 1 again (a different position: the first copy wins).
    let (status, a) = s
        .beacons(
            &phone,
            vec![
                beacon(&id, 1, "active", SEOUL, now),
                beacon(&id, 3, "active", SEOUL, now),
                beacon(&id, 1, "active", BUSAN, now),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(up_to(&a, &id), 1);
    assert_eq!(a["events"][0]["event"]["type"], "received");
    // 2 arrives late: everything up to 3 is held.
    let (_, a) = s
        .beacons(&phone, vec![beacon(&id, 2, "active", SEOUL, now)])
        .await;
    assert_eq!(up_to(&a, &id), 3);
    // Resent: acknowledged, not stored again.
    let (_, a) = s
        .beacons(&phone, vec![beacon(&id, 2, "active", BUSAN, now)])
        .await;
    assert_eq!(up_to(&a, &id), 3);
    let trail = s.store().sos_beacons(&id).await.unwrap();
    assert_eq!(
        trail.iter().map(|b| b.beacon.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(trail
        .iter()
        .all(|b| b.beacon.fix.as_ref().unwrap().lat == SEOUL.0));
    let incident = s.store().sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.region.as_deref(), Some("seoul"));

    // A beacon failing validation: 400, and nothing of its request is stored.
    let mut bad = beacon(&id, 5, "active", SEOUL, now);
    bad["fix"]["lat"] = json!(100.0);
    let (status, body) = s
        .beacons(&phone, vec![beacon(&id, 4, "active", SEOUL, now), bad])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_beacon");
    assert_eq!(s.store().sos_beacons(&id).await.unwrap().len(), 3);
    let (status, _) = s.beacons(&phone, vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Another account: 404 as for an unknown incident, and nothing stored.
    let other = s.citizen("+821055500002").await;
    let (status, body) = s
        .beacons(&other, vec![beacon(&id, 4, "active", SEOUL, now)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = s
        .get(&format!("/v1/sos/incidents/{id}/events"), &other)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.store().sos_beacons(&id).await.unwrap().len(), 3);
    // No token at all.
    let res = s
        .http
        .post(s.url("/v1/sos/beacons"))
        .json(&json!({ "beacons": [beacon(&id, 4, "active", SEOUL, now)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A phone whose clock runs two hours ahead, then one reset to 2001: still located.
    let mut ahead = beacon(&id, 4, "active", SEOUL, now);
    ahead["fix"]["time_ms"] = json!(now + 2 * 3_600_000);
    let mut reset = beacon(&id, 5, "active", SEOUL, now);
    reset["fix"]["time_ms"] = json!(978_307_200_000_i64);
    let (status, a) = s.beacons(&phone, vec![ahead, reset]).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(up_to(&a, &id), 5);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_are_stored_once_with_a_contiguous_ack_sqlite() {
    beacons_stored_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_are_stored_once_with_a_contiguous_ack_postgres() {
    beacons_stored_once(Backend::Postgres).await;
}

// ---- dispatcher actions reach the phone ----------------------------------------------------

async fn actions_reach_the_phone(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500003").await;
    let seoul = s.dispatcher("seoul.d", "seoul").await;
    let busan = s.dispatcher("busan.d", "busan").await;
    let id = IncidentId::random();
    let now = s.now_ms();
    s.beacons(&phone, vec![beacon(&id, 1, "active", SEOUL, now)])
        .await;
    let events = format!("/v1/sos/incidents/{id}/events");
    let (status, body) = s.get(&events, &phone).await;
    assert_eq!(status, StatusCode::OK);
    let received = body["events"][0]["id"].as_i64().unwrap();
    assert_eq!(body["events"][0]["event"]["event"]["type"], "received");

    // The phone waits; the dispatcher acknowledges; the wait ends with it.
    let poll = {
        let http = s.http.clone();
        let url = s.url(&format!("{events}?after={received}&wait=30"));
        let phone = phone.clone();
        tokio::spawn(async move {
            http.get(url)
                .header(AUTHORIZATION, format!("Bearer {phone}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let base = format!("/v1/dispatch/incidents/{id}");
    // The Busan dispatcher may not act on a Seoul incident.
    let (status, _) = s
        .post(&format!("{base}/acknowledge"), &busan, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = s
        .post(&format!("{base}/acknowledge"), &seoul, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let polled = tokio::time::timeout(GUARD, poll).await.unwrap().unwrap();
    assert_eq!(
        polled["events"][0]["event"]["event"]["type"],
        "acknowledged"
    );

    let (status, _) = s
        .post(
            &format!("{base}/assign"),
            &seoul,
            json!({ "unit": "Jongno 12" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .post(
            &format!("{base}/message"),
            &seoul,
            json!({ "text": "Are you safe?" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .post(
            &format!("{base}/note"),
            &seoul,
            json!({ "text": "whispering" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .post(&format!("{base}/message"), &seoul, json!({ "text": " " }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The next beacon's answer carries every dispatch event (the note is not one).
    let (_, a) = s
        .beacons(&phone, vec![beacon(&id, 2, "active", SEOUL, now)])
        .await;
    let kinds: Vec<&str> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["received", "acknowledged", "unit_assigned", "message"]
    );
    assert_eq!(a["events"][2]["event"]["unit"], "Jongno 12");
    assert_eq!(a["events"][3]["event"]["text"], "Are you safe?");

    // The view: trail and messages; the list: the open incident.
    let (status, view) = s.get(&base, &seoul).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["trail"].as_array().unwrap().len(), 2);
    assert_eq!(view["messages"].as_array().unwrap().len(), 2);
    assert_eq!(view["incident"]["phase"], "unit_assigned");
    let (_, list) = s.get("/v1/dispatch/incidents", &seoul).await;
    assert_eq!(list["incidents"][0]["incident"], id.to_string());
    let (_, list) = s.get("/v1/dispatch/incidents", &busan).await;
    assert!(list["incidents"].as_array().unwrap().is_empty());

    // Exports: PIDF-LO parses as XML with the position; AML fields.
    let res = s
        .http
        .get(s.url(&format!("{base}/pidf-lo")))
        .header(AUTHORIZATION, format!("Bearer {seoul}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/pidf+xml");
    let xml = res.text().await.unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    reader.config_mut().check_end_names = true;
    let mut elements = 0;
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_) => {
                elements += 1
            }
            _ => {}
        }
    }
    assert!(elements >= 8, "{xml}");
    assert!(
        xml.contains("<gml:pos>37.566500 126.978000</gml:pos>"),
        "{xml}"
    );
    let (_, aml) = s.get(&format!("{base}/aml"), &seoul).await;
    assert_eq!(aml["lt"], "+37.56650");
    assert_eq!(aml["pm"], "G");

    let (status, _) = s
        .post(
            &format!("{base}/close"),
            &seoul,
            json!({ "outcome": "assisted" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = s.get(&format!("{events}?after={received}"), &phone).await;
    let last = a["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["event"]["type"], "resolved");

    // Every view and action is in the audit log.
    for action in [
        "incident_view",
        "sos_acknowledge",
        "sos_assign",
        "sos_message",
        "sos_note",
        "sos_close",
        "sos_export",
        "sos_incident_list",
    ] {
        let entries = s
            .store()
            .query_audit(&AuditFilter {
                action: Some(action.into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!entries.is_empty(), "{action} not audited");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_actions_reach_the_phone_sqlite() {
    actions_reach_the_phone(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_actions_reach_the_phone_postgres() {
    actions_reach_the_phone(Backend::Postgres).await;
}

// ---- the feed ------------------------------------------------------------------------------

async fn feed_scoped(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500004").await;
    let seoul = s.dispatcher("seoul.d", "seoul").await;
    let busan = s.dispatcher("busan.d", "busan").await;
    let all = s.dispatcher("all.d", "all").await;
    let officer = s
        .staff(
            "officer",
            vec![Grant::new(Role::AgencyOfficer, Some("MOIS")).unwrap()],
        )
        .await;
    // A citizen token and an agency officer cannot open the feed.
    assert_eq!(
        s.feed(&phone, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.feed(&officer, None).await.status(), StatusCode::FORBIDDEN);

    let mut seoul_feed = SseReader::new(s.feed(&seoul, None).await);
    // An idle feed sends heartbeat comments.
    seoul_feed.heartbeat().await;
    let mut busan_feed = SseReader::new(s.feed(&busan, None).await);
    let mut all_feed = SseReader::new(s.feed(&all, None).await);
    let now = s.now_ms();
    let (in_seoul, in_busan, at_sea) = (
        IncidentId::random(),
        IncidentId::random(),
        IncidentId::random(),
    );
    s.beacons(&phone, vec![beacon(&in_seoul, 1, "active", SEOUL, now)])
        .await;
    s.beacons(&phone, vec![beacon(&at_sea, 1, "active", SEA, now)])
        .await;
    s.beacons(&phone, vec![beacon(&in_busan, 1, "duress", BUSAN, now)])
        .await;
    let first = seoul_feed.next().await;
    assert_eq!(first.event, "incident");
    assert_eq!(first.data["incident"], in_seoul.to_string());
    assert_eq!(first.data["data"]["region"], "seoul");
    assert_eq!(seoul_feed.next().await.event, "fix");
    // Busan's feed skips Seoul's and the sea's: its first event is its own incident, duress.
    let first = busan_feed.next().await;
    assert_eq!(first.data["incident"], in_busan.to_string());
    assert_eq!(first.data["data"]["duress"], true);
    // "all" sees everything, the unrouted one included, in id order.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        seen.push(all_feed.next().await);
    }
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
    assert!(seen
        .iter()
        .any(|e| e.data["incident"] == at_sea.to_string() && e.data["region"] == "unrouted"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_shows_only_the_dispatchers_regions_sqlite() {
    feed_scoped(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_shows_only_the_dispatchers_regions_postgres() {
    feed_scoped(Backend::Postgres).await;
}

async fn feed_resumes(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500005").await;
    let seoul = s.dispatcher("seoul.d", "seoul").await;
    let id = IncidentId::random();
    let now = s.now_ms();
    let mut feed = SseReader::new(s.feed(&seoul, None).await);
    s.beacons(&phone, vec![beacon(&id, 1, "active", SEOUL, now)])
        .await;
    let mut got = vec![feed.next().await, feed.next().await];
    // Disconnect; meanwhile more happens.
    drop(feed);
    for seq in 2..=6 {
        let state = if seq == 4 { "duress" } else { "active" };
        s.beacons(&phone, vec![beacon(&id, seq, state, SEOUL, now)])
            .await;
    }
    s.post(
        &format!("/v1/dispatch/incidents/{id}/message"),
        &seoul,
        json!({ "text": "stay on the line" }),
    )
    .await;
    let last = got.last().unwrap().id;
    let mut resumed = SseReader::new(s.feed(&seoul, Some(last)).await);
    let everything = s
        .store()
        .sos_events_after(0, Some(&["seoul".to_owned()]), 1000)
        .await
        .unwrap();
    while got.len() < everything.len() {
        got.push(resumed.next().await);
    }
    // Exactly the store's events, each once, in order: nothing missed, nothing repeated.
    let ids: Vec<i64> = got.iter().map(|e| e.id).collect();
    let want: Vec<i64> = everything.iter().map(|e| e.id).collect();
    assert_eq!(ids, want);
    assert_eq!(got.last().unwrap().event, "message");
    assert!(got
        .iter()
        .any(|e| e.event == "incident" && e.data["data"]["duress"] == true));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_resumed_with_last_event_id_misses_nothing_sqlite() {
    feed_resumes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_resumed_with_last_event_id_misses_nothing_postgres() {
    feed_resumes(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_on_one_instance_sees_a_beacon_through_another() {
    let Some(db) = Db::new(Backend::Postgres).await else {
        return;
    };
    let one = Server::start(&db).await;
    let two = Server::start(&db).await;
    let phone = one.citizen("+821055500006").await;
    let seoul = two.dispatcher("seoul.d", "seoul").await;
    let mut feed = SseReader::new(two.feed(&seoul, None).await);
    let id = IncidentId::random();
    let (status, _) = one
        .beacons(&phone, vec![beacon(&id, 1, "active", SEOUL, one.now_ms())])
        .await;
    assert_eq!(status, StatusCode::OK);
    let ev = feed.next_about(&id).await;
    assert_eq!(ev.event, "incident");
    // And back: the dispatcher on instance 2 acknowledges, the phone on instance 1 learns it.
    let (status, _) = two
        .post(
            &format!("/v1/dispatch/incidents/{id}/acknowledge"),
            &seoul,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = one
        .get(
            &format!("/v1/sos/incidents/{id}/events?after=0&wait=5"),
            &phone,
        )
        .await;
    let types: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["received", "acknowledged"]);
    one.stop().await;
    two.stop().await;
}

// ---- SMS -----------------------------------------------------------------------------------

async fn sms_round_trip(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500007").await;
    let (status, channel) = s.post("/v1/sos/sms-channel", &phone, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{channel}");
    assert_eq!(channel["number"], "+8210555000112");
    // Asking again gives the same key.
    let (_, again) = s.post("/v1/sos/sms-channel", &phone, json!({})).await;
    assert_eq!(again, channel);
    use base64::Engine;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(channel["key"].as_str().unwrap())
        .unwrap();
    let key = SmsKey::from_bytes(&key).unwrap();
    let key_id = channel["key_id"].as_u64().unwrap() as u32;

    // The incident starts over HTTPS; seq 2 comes by SMS into the same incident.
    let id = IncidentId::random();
    let now = s.now_ms();
    s.beacons(&phone, vec![beacon(&id, 1, "active", SEOUL, now)])
        .await;
    let fix: sotong_core::sos::Fix =
        serde_json::from_value(beacon(&id, 2, "active", SEOUL, now)["fix"].clone()).unwrap();
    let text = sms::encode(&fix, &id, 2, ReportedState::Duress, key_id, &key, now).unwrap();
    let webhook = |text: &str, sign_with: &[u8]| {
        let body = serde_json::to_vec(&json!({ "from": "+821055500007", "text": text })).unwrap();
        let sig = sms_gateway::sign(sign_with, &body).unwrap();
        s.http
            .post(s.url("/v1/sos/sms-gateway"))
            .header(CONTENT_TYPE, "application/json")
            .header("x-sotong-signature", sig)
            .body(body)
            .send()
    };
    let res = webhook(&text, SMS_SECRET).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let a: Value = res.json().await.unwrap();
    assert_eq!(up_to(&a, &id), 2);
    let trail = s.store().sos_beacons(&id).await.unwrap();
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[1].via, sotong_server::store::Via::Sms);
    let incident = s.store().sos_incident(&id).await.unwrap().unwrap();
    assert!(incident.duress);

    // Forged (wrong webhook secret), altered (a digit of the position), unknown key.
    let res = webhook(&text, b"not the secret").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let altered = text.replacen("lt=+37.5", "lt=+37.6", 1);
    assert_ne!(altered, text);
    let altered = altered.replacen("sq=2", "sq=3", 1);
    let res = webhook(&altered, SMS_SECRET).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let other_key = SmsKey::random();
    let forged = sms::encode(
        &fix,
        &id,
        3,
        ReportedState::Cancelled,
        key_id,
        &other_key,
        now,
    )
    .unwrap();
    let res = webhook(&forged, SMS_SECRET).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Not an SOS text at all: a clear 400.
    let res = webhook("hello", SMS_SECRET).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.store().sos_beacons(&id).await.unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_round_trips_through_the_gateway_and_forgeries_are_refused_sqlite() {
    sms_round_trip(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_round_trips_through_the_gateway_and_forgeries_are_refused_postgres() {
    sms_round_trip(Backend::Postgres).await;
}

// ---- retention -------------------------------------------------------------------------------

async fn purge(backend: Backend) {
    let Some(db) = Db::new(backend).await else {
        return;
    };
    let s = Server::start(&db).await;
    let phone = s.citizen("+821055500008").await;
    let seoul = s.dispatcher("seoul.d", "seoul").await;
    let (closed, open) = (IncidentId::random(), IncidentId::random());
    let now = s.now_ms();
    s.beacons(
        &phone,
        vec![
            beacon(&closed, 1, "active", SEOUL, now),
            beacon(&open, 1, "active", SEOUL, now),
        ],
    )
    .await;
    s.post(
        &format!("/v1/dispatch/incidents/{closed}/message"),
        &seoul,
        json!({ "text": "help is coming" }),
    )
    .await;
    s.post(
        &format!("/v1/dispatch/incidents/{closed}/close"),
        &seoul,
        json!({ "outcome": "arrest" }),
    )
    .await;
    // The purge uses the server's store and clock.
    let state = AppState::new(s.config.clone(), s.store(), Arc::new(LogNotifier::new()));
    s.clock.advance(Duration::from_secs(29 * 24 * 3600));
    assert_eq!(retention::purge_once(&state).await.unwrap(), 0);
    assert_eq!(s.store().sos_beacons(&closed).await.unwrap().len(), 1);
    s.clock.advance(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(retention::purge_once(&state).await.unwrap(), 1);
    assert!(s.store().sos_beacons(&closed).await.unwrap().is_empty());
    assert!(s.store().sos_messages(&closed).await.unwrap().is_empty());
    let kept = s.store().sos_incident(&closed).await.unwrap().unwrap();
    assert_eq!(kept.outcome.as_deref(), Some("arrest"));
    assert_eq!(s.store().sos_beacons(&open).await.unwrap().len(), 1);
    let audit = s
        .store()
        .query_audit(&AuditFilter {
            action: Some("sos_close".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].target_id.as_deref(),
        Some(closed.to_string().as_str())
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_trail_after_retention_and_keeps_the_audit_log_sqlite() {
    purge(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_trail_after_retention_and_keeps_the_audit_log_postgres() {
    purge(Backend::Postgres).await;
}
