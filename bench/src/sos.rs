//! Phase 10: SOS (issue 7 "Measured"). On a fresh server, SQLite then PostgreSQL (a fresh
//! database, dropped after):
//!
//! - load: simulated incidents (one registered device, plain HTTP like a phone's HTTPS) send
//!   beacons at a fixed total rate, one beacon per request, round-robin over the incidents,
//!   while one dispatcher (scope `all`) reads the Server-Sent Events feed. Per beacon: sent →
//!   answered (accepted, the fix durably stored), and answered → its `fix` event read on the
//!   feed; the server process's CPU (utime+stime) per accepted beacon, and on PostgreSQL the
//!   database backends' CPU too (they do part of the work);
//! - trigger: a real phone core (`sotong_core::client::Client`) triggers an incident, pushes
//!   its first fix at once and starts the beacon sender; timed until the sender reports
//!   everything delivered (the server's acknowledgment, after its commit); then the incident
//!   is cancelled with the PIN and the next trigger starts.
//!
//! Every wait is bounded; what did not complete is counted, never timed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sotong_core::client::sos::{SosLinkState, SosListener, SosOptions};
use sotong_core::client::Client;
use sotong_core::sos::{Fix, FixMethod, IncidentId, ServerEvent, TriggerMethod};
use tokio::sync::mpsc;

use crate::accounts::{http_client, register_token};
use crate::instances::TempDb;
use crate::{new_phone, proc_cpu_ticks, register, round, stats, Plan, Server};

/// Longest wait for the feed to deliver the last beacons after the load ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one trigger to be acknowledged, or one cancel to be delivered.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(10);
const DISPATCHER: &str = "bench.dispatch";
const PASSWORD: &str = "bench dispatcher password 0";
const PIN: &str = "2468";

/// The phase, on both stores; a store that fails is reported as failed.
pub async fn phase_sos(plan: &Plan, bin: &Path, root: &Path, hz: f64) -> Result<Value> {
    let sqlite = match measure(plan, bin, &root.join("sos-sqlite"), None, hz).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("      SOS on SQLite failed: {e:#}");
            json!({ "failed": format!("{e:#}") })
        }
    };
    let db = TempDb::create().await?;
    let pg = measure(plan, bin, &root.join("sos-pg"), Some(&db.url), hz).await;
    db.drop_now().await?;
    let pg = pg.unwrap_or_else(|e| {
        eprintln!("      SOS on PostgreSQL failed: {e:#}");
        json!({ "failed": format!("{e:#}") })
    });
    Ok(json!({
        "sqlite": sqlite,
        "postgres": pg,
        "targets": "beacon accepted -> event on the dispatcher's SSE feed p99 <= 25 ms at 500 beacons/s from 1,000 incidents; trigger -> first fix durably stored <= 1 s (loopback)",
    }))
}

async fn measure(
    plan: &Plan,
    bin: &Path,
    dir: &Path,
    db_url: Option<&str>,
    hz: f64,
) -> Result<Value> {
    std::fs::create_dir_all(dir)?;
    let mut extra: Vec<&str> = Vec::new();
    if let Some(url) = db_url {
        extra.extend(["--database-url", url]);
    }
    add_dispatcher(bin, dir, &extra)?;
    let server = Server::spawn_with(bin, dir, &extra, &[])?;
    let http = http_client()?;
    let token = register_token(
        &http,
        &server.url,
        &server.codes,
        &new_phone(),
        "sos simulator",
    )
    .await?;
    let staff = staff_login(&http, &server.url).await?;
    let https = load(
        plan,
        &server,
        &http,
        &Lane::Https(token.clone()),
        &staff,
        db_url,
        hz,
    )
    .await?;
    let ws = load(plan, &server, &http, &Lane::Ws(token), &staff, db_url, hz).await?;
    let trigger = triggers(plan, &server, dir, false).await?;
    let trigger_live = triggers(plan, &server, dir, true).await?;
    Ok(json!({
        "backend": if db_url.is_some() { "PostgreSQL (fresh database, dropped after)" } else { "SQLite" },
        "load_over_https": https,
        "load_over_ws": ws,
        "trigger_to_first_fix_stored": trigger,
        "trigger_to_first_fix_stored_live": trigger_live,
        "server_log_warnings_errors": server.log_lines_containing(&["ERROR", "WARN"])?,
    }))
}

/// `sotong-server staff add` on the store the server will use.
fn add_dispatcher(bin: &Path, dir: &Path, extra: &[&str]) -> Result<()> {
    let pw = dir.join("dispatcher-password");
    std::fs::write(&pw, format!("{PASSWORD}\n"))?;
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .args([
            "staff",
            "add",
            DISPATCHER,
            "--name",
            "Bench dispatcher",
            "--role",
            "dispatcher",
            "--scope",
            "all",
            "--password-file",
        ])
        .arg(&pw)
        .output()
        .context("sotong-server staff add")?;
    if !out.status.success() {
        bail!(
            "staff add failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn staff_login(http: &reqwest::Client, url: &str) -> Result<String> {
    let resp = http
        .post(format!("{url}/v1/staff/login"))
        .json(&json!({ "username": DISPATCHER, "password": PASSWORD }))
        .send()
        .await
        .context("POST /v1/staff/login")?;
    if !resp.status().is_success() {
        bail!("staff login answered {}", resp.status());
    }
    let body: Value = resp.json().await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("staff login answer without a token"))
}

type Key = (String, u64);

/// How the simulated incidents send.
enum Lane {
    /// `POST /v1/sos/beacons`, one request per beacon, with this device token.
    Https(String),
    /// `sotong-sos-beacon` frames over [`WS_CONNECTIONS`] joined sync connections of the
    /// device with this token, incidents spread over them; answered by `sotong-sos-ack`.
    Ws(String),
}

/// Sync connections the WebSocket lane uses (the server allows 16 per account, 200
/// messages per second each).
const WS_CONNECTIONS: usize = 10;

/// Timestamps of one beacon.
#[derive(Default, Clone, Copy)]
struct Times {
    sent: Option<Instant>,
    answered: Option<Instant>,
    on_feed: Option<Instant>,
}

async fn load(
    plan: &Plan,
    server: &Server,
    http: &reqwest::Client,
    lane: &Lane,
    staff: &str,
    db_url: Option<&str>,
    hz: f64,
) -> Result<Value> {
    let (rate, incidents, secs) = (plan.sos_rate, plan.sos_incidents, plan.sos_secs);
    let total = rate * secs;
    let times: Arc<Mutex<HashMap<Key, Times>>> = Arc::default();
    // The dispatcher's feed, read on its own task.
    let mut feed = http
        .get(format!("{}/v1/dispatch/feed", server.url))
        .bearer_auth(staff)
        .send()
        .await
        .context("GET /v1/dispatch/feed")?;
    if !feed.status().is_success() {
        bail!("the feed answered {}", feed.status());
    }
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<usize>();
    let reader = {
        let times = times.clone();
        tokio::spawn(async move {
            let mut buf = String::new();
            let mut fixes = 0usize;
            while let Ok(Some(chunk)) = feed.chunk().await {
                let arrived = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if !block.lines().any(|l| l.trim_end() == "event: fix") {
                        continue;
                    }
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    let (Some(incident), Some(seq)) =
                        (v["incident"].as_str(), v["data"]["seq"].as_u64())
                    else {
                        continue;
                    };
                    let mut t = times.lock().unwrap_or_else(|p| p.into_inner());
                    let entry = t.entry((incident.to_owned(), seq)).or_default();
                    if entry.on_feed.is_none() {
                        entry.on_feed = Some(arrived);
                        fixes += 1;
                        let _ = seen_tx.send(fixes);
                    }
                }
            }
        })
    };
    let ids: Vec<IncidentId> = (0..incidents).map(|_| IncidentId::random()).collect();
    let mut seqs = vec![0u64; incidents];
    let pg_before = match db_url {
        Some(url) => Some(pg_backend_ticks(url).await?),
        None => None,
    };
    let cpu_before = server.cpu_ticks()?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let (mut accepted, mut failed) = (0usize, 0usize);
    let ws = match lane {
        Lane::Https(_) => None,
        Lane::Ws(token) => Some(WsLane::open(server, token, times.clone()).await?),
    };
    for n in 0..total {
        tick.tick().await;
        let i = n % incidents;
        seqs[i] += 1;
        let now = wall_ms();
        let body = json!({ "beacons": [{
            "incident": ids[i].to_string(), "seq": seqs[i], "state": "active",
            "trigger": "button_hold", "triggered_at": now - 1000,
            "fix": { "lat": 37.5665, "lon": 126.978, "accuracy_m": 10.0, "time_ms": now,
                     "method": "gps" }
        }]});
        let key = (ids[i].to_string(), seqs[i]);
        let token = match lane {
            Lane::Https(token) => token,
            Lane::Ws(_) => {
                if let Some(ws) = &ws {
                    ws.send(i % WS_CONNECTIONS, key, &body)?;
                }
                continue;
            }
        };
        let (http, url, token, times) = (
            http.clone(),
            format!("{}/v1/sos/beacons", server.url),
            token.clone(),
            times.clone(),
        );
        posts.spawn(async move {
            let sent = Instant::now();
            let ok = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            let answered = Instant::now();
            let mut t = times.lock().unwrap_or_else(|p| p.into_inner());
            let entry = t.entry(key).or_default();
            entry.sent = Some(sent);
            if ok {
                entry.answered = Some(answered);
            }
            ok
        });
        // Reap finished requests as we go (bounded memory).
        while let Some(done) = posts.try_join_next() {
            if done.context("beacon task")? {
                accepted += 1;
            } else {
                failed += 1;
            }
        }
    }
    let sending_s = started.elapsed().as_secs_f64();
    while let Some(done) = posts.join_next().await {
        if done.context("beacon task")? {
            accepted += 1;
        } else {
            failed += 1;
        }
    }
    if let Some(ws) = ws {
        let (ok, refused) = ws.finish(total).await;
        accepted += ok;
        failed += refused;
    }
    let answered_s = started.elapsed().as_secs_f64();
    let cpu = server.cpu_ticks()?.saturating_sub(cpu_before);
    let pg_cpu = match (db_url, pg_before) {
        (Some(url), Some(before)) => {
            let after = pg_backend_ticks(url).await?;
            let used: u64 = after
                .iter()
                .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
                .sum();
            Some(used)
        }
        _ => None,
    };
    // Wait until the feed has every accepted beacon (bounded).
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut on_feed = 0;
    while on_feed < accepted {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some(n)) => on_feed = n,
            _ => break,
        }
    }
    reader.abort();
    let times = times.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (mut accepted_to_feed, mut sent_to_answer, mut sent_to_feed) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut feed_before_answer = 0usize;
    for t in times.values() {
        if let (Some(s), Some(a)) = (t.sent, t.answered) {
            sent_to_answer.push(ms(a - s));
        }
        if let (Some(s), Some(f)) = (t.sent, t.on_feed) {
            sent_to_feed.push(ms(f.saturating_duration_since(s)));
        }
        if let (Some(a), Some(f)) = (t.answered, t.on_feed) {
            if f < a {
                feed_before_answer += 1;
            }
            accepted_to_feed.push(ms(f.saturating_duration_since(a)));
        }
    }
    let cpu_ms = cpu as f64 * 1000.0 / hz;
    let mut out = json!({
        "lane": match lane {
            Lane::Https(_) => "HTTPS (plain HTTP on loopback), one beacon per request".to_owned(),
            Lane::Ws(_) => format!("sotong-sos-beacon frames over {WS_CONNECTIONS} joined sync connections, one beacon per frame"),
        },
        "incidents": incidents,
        "target_rate_per_s": rate,
        "beacons_sent": total,
        "accepted": accepted,
        "failed": failed,
        "sending_s": round(sending_s, 2),
        "achieved_rate_per_s": round(accepted as f64 / answered_s, 1),
        "on_feed": on_feed,
        "missing_on_feed": accepted.saturating_sub(on_feed),
        "accepted_to_feed_ms": stats(accepted_to_feed),
        "on_feed_before_answer_read": feed_before_answer,
        "sent_to_answer_ms": stats(sent_to_answer),
        "sent_to_feed_ms": stats(sent_to_feed),
        "server_cpu_ms_per_beacon": round(cpu_ms / accepted.max(1) as f64, 4),
        "server_cpu_cores": round(cpu_ms / 1000.0 / answered_s, 2),
    });
    if let Some(pg) = pg_cpu {
        let pg_ms = pg as f64 * 1000.0 / hz;
        out["postgres_backends_cpu_ms_per_beacon"] =
            json!(round(pg_ms / accepted.max(1) as f64, 4));
    }
    Ok(out)
}

/// CPU ticks of the database's backends, by pid (the server's pool and listener).
async fn pg_backend_ticks(url: &str) -> Result<HashMap<i32, u64>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connect to the bench database")?;
    let task = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    drop(client);
    let _ = task.await;
    let mut out = HashMap::new();
    for r in rows {
        let pid: i32 = r.try_get(0)?;
        // A backend may end between the query and the read.
        if let Ok(t) = proc_cpu_ticks(&pid.to_string()) {
            out.insert(pid, t);
        }
    }
    Ok(out)
}

/// Beacon frames over joined sync connections; acks matched by batch name
/// (`incident:seq`).
struct WsLane {
    senders: Vec<mpsc::UnboundedSender<(Key, Vec<u8>)>>,
    tasks: tokio::task::JoinSet<(usize, usize)>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
}

impl WsLane {
    async fn open(
        server: &Server,
        token: &str,
        times: Arc<Mutex<HashMap<Key, Times>>>,
    ) -> Result<Self> {
        use futures_util::{SinkExt, StreamExt};
        use sotong_core::wire::WireMessage;
        use tokio_tungstenite::tungstenite::Message;
        let url = format!("{}/v1/sync", server.url.replacen("http://", "ws://", 1));
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut senders = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..WS_CONNECTIONS {
            let ws = crate::idle::connect_joined(&url, token, 90_000 + c).await?;
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<(Key, Vec<u8>)>();
            senders.push(tx);
            let me = format!("idle-{}", 90_000 + c);
            let t = times.clone();
            let writer = async move {
                while let Some((key, data)) = rx.recv().await {
                    let frame = WireMessage::SosBeacon {
                        sender_id: me.clone(),
                        batch: format!("{}:{}", key.0, key.1),
                        data,
                    };
                    t.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(key)
                        .or_default()
                        .sent = Some(Instant::now());
                    if sink
                        .send(Message::Binary(frame.encode().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                let _ = sink.close().await;
            };
            let (t, acked) = (times.clone(), acked.clone());
            let reader = async move {
                let (mut ok, mut refused) = (0usize, 0usize);
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Binary(b) = msg else { continue };
                    let Ok(WireMessage::SosAck { batch, code, .. }) = WireMessage::decode(&b)
                    else {
                        continue;
                    };
                    let at = Instant::now();
                    let Some((incident, seq)) = batch.rsplit_once(':') else {
                        continue;
                    };
                    let Ok(seq) = seq.parse::<u64>() else {
                        continue;
                    };
                    if code.is_none() {
                        ok += 1;
                        t.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry((incident.to_owned(), seq))
                            .or_default()
                            .answered = Some(at);
                    } else {
                        refused += 1;
                    }
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (ok, refused)
            };
            tasks.spawn(async move {
                let (_, counts) = tokio::join!(writer, reader);
                counts
            });
        }
        Ok(Self {
            senders,
            tasks,
            acked,
        })
    }

    fn send(&self, conn: usize, key: Key, body: &Value) -> Result<()> {
        let data = serde_json::to_vec(body)?;
        self.senders[conn % self.senders.len()]
            .send((key, data))
            .map_err(|_| anyhow!("a WebSocket lane connection ended"))
    }

    /// Waits (bounded) for `total` acks, closes the connections; (stored, refused).
    async fn finish(mut self, total: usize) -> (usize, usize) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.acked.load(std::sync::atomic::Ordering::SeqCst) < total
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.senders.clear();
        let (mut ok, mut refused) = (0, 0);
        while let Ok(Some(joined)) =
            tokio::time::timeout(Duration::from_secs(15), self.tasks.join_next()).await
        {
            if let Ok((o, r)) = joined {
                ok += o;
                refused += r;
            }
        }
        self.tasks.abort_all();
        (ok, refused)
    }
}

/// The phone's sender state, as the bench sees it.
struct Probe {
    tx: mpsc::UnboundedSender<(SosLinkState, Instant)>,
}

impl SosListener for Probe {
    fn state_changed(&self, state: SosLinkState) {
        let _ = self.tx.send((state, Instant::now()));
    }
    fn event(&self, _event: ServerEvent) {}
}

/// Triggers on a real phone core; with `live`, the phone's live sync is online, so the
/// beacons go over it.
async fn triggers(plan: &Plan, server: &Server, dir: &Path, live: bool) -> Result<Value> {
    let name = if live { "phone-live" } else { "phone" };
    let phone = register(server, &dir.join(name), &new_phone(), "sos phone").await?;
    phone.sos_set_pins(None, PIN, None)?;
    let session = if live {
        let (tx, _rx) = mpsc::unbounded_channel();
        Some(
            phone
                .start_live_sync(Arc::new(crate::Probe { tx }))
                .await
                .context("live sync")?,
        )
    } else {
        None
    };
    let mut latency = Vec::new();
    let (mut timeouts, mut problems) = (0usize, Vec::new());
    for i in 0..plan.sos_triggers {
        match one_trigger(&phone, i).await {
            Ok(Some(d)) => latency.push(ms(d)),
            Ok(None) => timeouts += 1,
            Err(e) => {
                problems.push(format!("{e:#}"));
                break;
            }
        }
    }
    if let Some(session) = session {
        session.stop().await;
    }
    Ok(json!({
        "lane": if live { "live sync connection (sotong-sos-beacon)" } else { "HTTPS (no live sync)" },
        "triggers": plan.sos_triggers,
        "completed": latency.len(),
        "timeouts": timeouts,
        "timeout_ms": TRIGGER_TIMEOUT.as_millis() as u64,
        "latency_ms": stats(latency),
        "problems": problems,
        "how": "Client::sos_trigger, sos_push_fix at once (the platform's fix), sos_start_transport; until the sender reports Waiting (the server acknowledged every queued beacon after its commit)",
    }))
}

/// One trigger → stored; `None` on timeout.
async fn one_trigger(phone: &Client, i: usize) -> Result<Option<Duration>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    phone.sos_trigger(TriggerMethod::ButtonHold)?;
    phone.sos_push_fix(Fix {
        lat: 37.5665 + i as f64 * 1e-5,
        lon: 126.978,
        accuracy_m: 8.0,
        altitude_m: None,
        speed_mps: None,
        heading_deg: None,
        time_ms: wall_ms(),
        method: FixMethod::Gps,
        battery_pct: Some(80),
    })?;
    let options = SosOptions {
        events_wait: Duration::from_secs(1),
        ..SosOptions::default()
    };
    let sender = phone.sos_start_transport(Arc::new(Probe { tx }), options)?;
    let deadline = tokio::time::Instant::now() + TRIGGER_TIMEOUT;
    let mut stored = None;
    while let Ok(Some((state, at))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if state == SosLinkState::Waiting {
            stored = Some(at - t0);
            break;
        }
    }
    // Over: cancel (the sender delivers the cancel and stops by itself).
    phone.sos_cancel(PIN)?;
    if tokio::time::timeout(TRIGGER_TIMEOUT, sender.finished())
        .await
        .is_err()
    {
        bail!("the beacon sender did not stop after the cancel");
    }
    Ok(stored)
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
