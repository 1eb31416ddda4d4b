//! The SOS dispatch console in a real browser (Debian's headless Chromium driven by
//! playwright-core, `tests/console/sos_flow.mjs`) against a real server on port 0, on SQLite
//! and on a fresh PostgreSQL database, with real simulated phones (a `sotong_core` client each,
//! with its own SQLite file) sending their beacons over HTTPS.
//!
//! The script and this test take turns over the script's stdin/stdout (one JSON line each
//! way): the Seoul and Busan dispatchers' pages are open first; then a phone triggers in
//! Seoul and the Seoul page shows it without a reload (the latency from the beacon accepted
//! to the row visible is measured and printed, not asserted); the dispatcher opens it,
//! acknowledges and sends a message by clicking, and the phone receives both; the phone
//! answers "can't talk"; a newer Seoul incident under duress is listed first with its badge;
//! a Busan incident shows on the Busan page, which never shows the Seoul ones; closing
//! without an outcome shows the error summary. Screenshots go to
//! `target/console-shots/<store>/sos-*.png`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sotong_core::client::{Client, SosLinkState, SosListener, SosOptions, SosTransport};
use sotong_core::sos::state::Phase;
use sotong_core::sos::{
    Fix, FixMethod, IncidentEvent, IncidentId, QuickReply, Reply, ServerEvent, TriggerMethod,
};
use sotong_e2e::{new_phone_number, Backend, Phone, TestServer};
use sotong_server::console::i18n::{Label, Lang};
use sotong_server::staff::admin_cli::{self, AddStaff, PasswordSource};
use sotong_server::staff::audit::{actions, AuditFilter};
use sotong_server::staff::{Grant, Role};
use tokio::sync::mpsc;

/// A bound on each wait for the other side; past it the test fails (and kills the browser).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Every check the script must report, passed.
const EXPECTED_CHECKS: &[&str] = &[
    "seoul page opens with an empty list",
    "busan page opens",
    "sound toggle and banner shown",
    "seoul page shows the incident live",
    "new incident alert shown",
    "busan page does not show the seoul incident",
    "incident opens with its map",
    "map draws the position without tiles",
    "acknowledge by click",
    "message sent by click appears in the thread",
    "caller's one-tap reply appears in the thread",
    "duress incident listed first with its badge",
    "busan page shows the busan incident live",
    "busan page never shows the seoul incidents",
    "close without an outcome shows the error summary",
    "close with an outcome removes the row",
    "no script errors or CSP violations",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn install_console_deps() {
    let ok = Command::new("bash")
        .arg(repo_root().join("scripts/console-deps.sh"))
        .status()
        .expect("run scripts/console-deps.sh (needs apt-get, node and npm)")
        .success();
    assert!(ok, "installing the console test dependencies failed");
}

fn unix_ms() -> i64 {
    sotong_core::clock::unix_millis_now()
}

async fn add_dispatcher(server: &TestServer, username: &str, region: &str) -> Value {
    let password = format!("dev-{:016x}-pass", rand::random::<u64>());
    let mut stdin = std::io::Cursor::new(format!("{password}\n").into_bytes());
    let mut out = Vec::new();
    admin_cli::add(
        server.store().as_ref(),
        unix_ms() / 1000,
        AddStaff {
            username: username.into(),
            display_name: format!("Dispatcher {region}"),
            grants: vec![Grant::new(Role::Dispatcher, Some(region)).expect("grant")],
            password: PasswordSource::Stdin,
            totp: false,
        },
        &mut stdin,
        &mut out,
    )
    .await
    .expect("staff add");
    json!({ "username": username, "password": password, "region": region })
}

// ---- The simulated phones ----

#[derive(Debug)]
enum Seen {
    State(SosLinkState),
    Event(IncidentEvent),
    Stopped,
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl SosListener for Recorder {
    fn state_changed(&self, state: SosLinkState) {
        let _ = self.0.send(Seen::State(state));
    }
    fn event(&self, event: ServerEvent) {
        let _ = self.0.send(Seen::Event(event.event));
    }
    fn stopped(&self, _error: Option<String>) {
        let _ = self.0.send(Seen::Stopped);
    }
}

struct LivePhone {
    phone: Phone,
    sender: SosTransport,
    rx: mpsc::UnboundedReceiver<Seen>,
    id: IncidentId,
}

impl LivePhone {
    /// A registered phone that triggers, pushes one fix at (`lat`, `lon`) and starts sending.
    async fn trigger(server: &TestServer, lat: f64, lon: f64) -> Self {
        let phone = Phone::new(server);
        phone.register(server, &new_phone_number()).await;
        phone
            .client
            .sos_set_pins(None, "2468", Some("1357"))
            .expect("pins");
        let id = phone
            .client
            .sos_trigger(TriggerMethod::ButtonHold)
            .expect("trigger");
        phone.client.sos_push_fix(fix(lat, lon, 12.0)).expect("fix");
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = phone
            .client
            .sos_start_transport(
                Arc::new(Recorder(tx)),
                SosOptions {
                    first_retry: Duration::from_millis(20),
                    max_retry: Duration::from_millis(200),
                    events_wait: Duration::from_secs(25),
                    batch: 100,
                    ..SosOptions::default()
                },
            )
            .expect("start the SOS sender");
        Self {
            phone,
            sender,
            rx,
            id,
        }
    }

    fn client(&self) -> &Client {
        &self.phone.client
    }

    async fn until(&mut self, want: impl Fn(&Seen) -> bool) {
        let wait = async {
            loop {
                let seen = self.rx.recv().await.expect("the sender ended");
                if want(&seen) {
                    return;
                }
                assert!(!matches!(seen, Seen::Stopped), "the sender stopped");
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait)
            .await
            .expect("the phone waited too long");
    }

    /// Waits until everything queued is at the server; returns when that was seen (ms).
    async fn delivered(&mut self) -> i64 {
        loop {
            self.until(|s| matches!(s, Seen::State(SosLinkState::Waiting)))
                .await;
            if self
                .client()
                .sos_pending_beacons(1)
                .expect("pending")
                .is_empty()
            {
                return unix_ms();
            }
        }
    }
}

fn fix(lat: f64, lon: f64, accuracy_m: f64) -> Fix {
    Fix {
        lat,
        lon,
        accuracy_m,
        altitude_m: None,
        speed_mps: Some(0.8),
        heading_deg: None,
        time_ms: unix_ms() - 300,
        method: FixMethod::Gps,
        battery_pct: Some(64),
    }
}

// ---- The browser script ----

struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Script {
    fn start(base: &str, shots: &std::path::Path, input: &Value) -> Self {
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/console/sos_flow.mjs"))
            .arg(base)
            .arg(shots)
            .arg(input.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Self {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// The script's next line, parsed; a final report (`"checks"`) or the end of its output
    /// before `step` fails the test with everything it said.
    async fn expect(&mut self, step: &str) -> Value {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.recv())
            .await
            .ok()
            .flatten();
        let parsed: Value = line
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        if parsed["step"] != step {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("sos_flow.mjs: expected step {step:?}, got {line:?}");
        }
        parsed
    }

    fn send(&mut self, value: Value) {
        writeln!(self.stdin, "{value}").expect("write to sos_flow.mjs");
        self.stdin.flush().expect("flush");
    }

    /// The final report.
    async fn finish(mut self) -> (Value, String) {
        let report = self.expect("done").await;
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().expect("wait for node");
            (status, self.stderr.join().unwrap_or_default())
        })
        .await
        .expect("join");
        let (status, stderr) = status;
        if !status.success() {
            eprintln!("sos_flow.mjs exited with {status}");
        }
        (report, stderr)
    }
}

fn labels() -> Value {
    const USED: &[Label] = &[
        Label::NoIncidents,
        Label::SoundOff,
        Label::SoundOn,
        Label::NewIncidentAlert,
        Label::SosStateDuress,
        Label::SosStateAcknowledged,
        Label::QuickCantTalk,
        Label::OutcomeMissing,
        Label::ErrorSummaryTitle,
        Label::LiveOn,
    ];
    let table: serde_json::Map<String, Value> = USED
        .iter()
        .map(|l| (format!("{l:?}"), Value::from(l.text(Lang::En))))
        .collect();
    Value::from(table)
}

async fn sos_console(backend: Backend, store_name: &str) {
    tokio::task::spawn_blocking(install_console_deps)
        .await
        .expect("install");
    let server = TestServer::start(backend).await;
    let seoul = add_dispatcher(&server, "dispatch.seoul", "seoul").await;
    let busan = add_dispatcher(&server, "dispatch.busan", "busan").await;
    let shots = repo_root().join("target/console-shots").join(store_name);
    // Only this test's shots: the other console test writes into the same directory.
    for entry in std::fs::read_dir(&shots).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("sos-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let input = json!({ "seoul": seoul, "busan": busan, "labels": labels() });
    // localhost: a secure context, where Chromium keeps `__Host-` cookies.
    let base = format!("http://localhost:{}", server.addr().port());
    let mut script = Script::start(&base, &shots, &input);

    // Both pages are open before anything happens.
    script.expect("ready").await;
    let mut a = LivePhone::trigger(&server, 37.5665, 126.978).await;
    let accepted_ms = a.delivered().await;
    script.send(json!({ "incident": a.id.to_string(), "accepted_ms": accepted_ms }));

    // The dispatcher acknowledged and wrote; the phone gets both.
    let acted = script.expect("acted").await;
    let text = acted["message"].as_str().expect("message").to_owned();
    a.until(|s| matches!(s, Seen::Event(IncidentEvent::Acknowledged)))
        .await;
    a.until(|s| matches!(s, Seen::Event(IncidentEvent::Message { text: t, .. }) if *t == text))
        .await;
    let status = a.client().sos_status().expect("status").expect("incident");
    assert_eq!(status.phase, Phase::Acknowledged, "{store_name}");
    assert!(
        status
            .messages
            .iter()
            .any(|m| m.from_dispatcher && m.content == Reply::Text(text.clone())),
        "{store_name}: the phone's events hold the message: {:?}",
        status.messages
    );
    // The person answers with one tap; a second Seoul incident comes under duress; one in
    // Busan.
    a.client()
        .sos_reply(Reply::Quick(QuickReply::CantTalk))
        .expect("reply");
    a.delivered().await;
    let mut b = LivePhone::trigger(&server, 37.55, 127.0).await;
    b.delivered().await;
    b.client().sos_cancel("1357").expect("duress cancel");
    b.client()
        .sos_push_fix(fix(37.5505, 127.001, 9.0))
        .expect("fix");
    b.delivered().await;
    let mut c = LivePhone::trigger(&server, 35.1796, 129.0756).await;
    c.delivered().await;
    script.send(json!({
        "duress": b.id.to_string(),
        "busan": c.id.to_string(),
    }));

    let (report, stderr) = script.finish().await;
    eprintln!(
        "{store_name}: beacon accepted -> row visible on the open page: {} ms",
        report["latency_ms"]
    );
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
    assert!(
        failed.is_empty() && report["error"].is_null(),
        "{store_name}: failed checks {failed:#?}\nerror: {}\nstderr:\n{stderr}",
        report["error"]
    );
    for name in EXPECTED_CHECKS {
        assert!(
            checks.iter().any(|c| c["name"] == *name && c["ok"] == true),
            "{store_name}: check {name:?} did not run"
        );
    }
    for shot in report["shots"].as_array().cloned().unwrap_or_default() {
        let path = shots.join(shot.as_str().unwrap_or_default());
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            path.display()
        );
    }

    // The server holds what the clicks did, and every read and action is in the audit log.
    let incident = server
        .store()
        .sos_incident(&a.id)
        .await
        .expect("incident")
        .expect("stored");
    assert!(incident.closed_at.is_some(), "{store_name}: closed");
    assert_eq!(incident.outcome.as_deref(), Some("assisted"));
    for action in [
        actions::SOS_FEED_OPEN,
        actions::SOS_INCIDENT_LIST,
        actions::INCIDENT_VIEW,
        actions::SOS_ACKNOWLEDGE,
        actions::SOS_MESSAGE,
        actions::SOS_CLOSE,
    ] {
        let rows = server
            .store()
            .query_audit(&AuditFilter {
                actor: Some("dispatch.seoul".into()),
                action: Some(action.into()),
                ..AuditFilter::default()
            })
            .await
            .expect("audit");
        assert!(
            !rows.is_empty(),
            "{store_name}: no {action} in the audit log"
        );
    }
    for phone in [a, b, c] {
        phone.sender.stop().await;
    }
    server.stop().await;
}

/// One browser at a time: the machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sos_console_in_chromium_on_sqlite() {
    let _one = ONE_BROWSER.lock().await;
    sos_console(Backend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sos_console_in_chromium_on_postgres() {
    let _one = ONE_BROWSER.lock().await;
    sos_console(Backend::Postgres, "postgres").await;
}
