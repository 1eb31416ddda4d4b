//! Measurement, not a test (ignored; run with `--ignored --nocapture`): beacons sent at a
//! fixed rate from many incidents, time from sending a beacon to its `fix` event on a
//! dispatcher's SSE feed, p50 / p99. `SOS_RATE` (beacons/s, default 500), `SOS_INCIDENTS`
//! (default 1000), `SOS_BEACONS` (default 2000), `SOS_PG=1` for PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use reqwest::Client;
use serde_json::{json, Value};
use sotong_core::clock::{Clock as _, SystemClock};
use sotong_core::hash::sha256;
use sotong_core::sos::IncidentId;
use sotong_server::staff::{password, Grant, Role};
use sotong_server::store::{NewDevice, NewStaffMember};
use sotong_server::{serve, Config};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn beacon_to_feed_latency() {
    let (rate, incidents, total) = (
        env("SOS_RATE", 500),
        env("SOS_INCIDENTS", 1000),
        env("SOS_BEACONS", 2000),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    let pg = if std::env::var("SOS_PG").is_ok() {
        common::PgDb::create().await
    } else {
        None
    };
    config.database_url = pg.as_ref().map(|p| p.url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = serve(listener, config).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = format!("http://{}", handle.addr());
    let store = handle.store();
    let token = "latencytestphone000000000000000000000000000".to_owned();
    store
        .register_device(&NewDevice {
            phone_key: [9; 32],
            name: "phone",
            token_hash: sha256(token.as_bytes()),
            token_expires_at: i64::MAX,
            now: 0,
        })
        .await
        .unwrap();
    store
        .add_staff(&NewStaffMember {
            username: "all.d".into(),
            display_name: "all".into(),
            password_hash: password::hash("correct horse battery".into())
                .await
                .unwrap(),
            grants: vec![Grant::new(Role::Dispatcher, Some("all")).unwrap()],
            totp_secret: None,
            created_at: 0,
        })
        .await
        .unwrap()
        .unwrap();
    let http = Client::new();
    let login: Value = http
        .post(format!("{base}/v1/staff/login"))
        .json(&json!({ "username": "all.d", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let staff = login["token"].as_str().unwrap().to_owned();
    let sent: Arc<Mutex<HashMap<(String, u64), Instant>>> = Arc::default();
    let mut feed = http
        .get(format!("{base}/v1/dispatch/feed"))
        .header(AUTHORIZATION, format!("Bearer {staff}"))
        .send()
        .await
        .unwrap();
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            let mut buf = String::new();
            while latencies.len() < total {
                let Ok(Some(chunk)) = feed.chunk().await else {
                    break;
                };
                let arrived = Instant::now();
                buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if !block.contains("event: fix") && !block.contains("event:fix") {
                        continue;
                    }
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let v: Value = serde_json::from_str(data.trim()).unwrap();
                    let key = (
                        v["incident"].as_str().unwrap().to_owned(),
                        v["data"]["seq"].as_u64().unwrap(),
                    );
                    if let Some(t) = sent.lock().unwrap().get(&key) {
                        latencies.push(arrived - *t);
                    }
                }
            }
            latencies
        })
    };
    let ids: Vec<IncidentId> = (0..incidents).map(|_| IncidentId::random()).collect();
    let mut seqs = vec![0u64; incidents];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    let mut posts = Vec::with_capacity(total);
    for n in 0..total {
        tick.tick().await;
        let i = n % incidents;
        seqs[i] += 1;
        let now = SystemClock.now_unix_millis();
        let body = json!({ "beacons": [{
            "incident": ids[i].to_string(), "seq": seqs[i], "state": "active",
            "trigger": "button_hold", "triggered_at": now - 1000,
            "fix": { "lat": 37.5665, "lon": 126.978, "accuracy_m": 10.0, "time_ms": now,
                     "method": "gps" }
        }]});
        sent.lock()
            .unwrap()
            .insert((ids[i].to_string(), seqs[i]), Instant::now());
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        posts.push(tokio::spawn(async move {
            http.post(format!("{base}/v1/sos/beacons"))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .json(&body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }));
    }
    let mut ok = 0;
    for p in posts {
        ok += usize::from(p.await.unwrap());
    }
    let elapsed = started.elapsed();
    let mut latencies = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .unwrap()
        .unwrap();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    eprintln!(
        "store={} rate={rate}/s incidents={incidents} beacons={total} accepted={ok} \
         sent in {elapsed:?}; beacon sent -> fix on SSE: p50 {:?} p99 {:?} max {:?}",
        if pg.is_some() { "postgres" } else { "sqlite" },
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    handle.shutdown().await;
}
