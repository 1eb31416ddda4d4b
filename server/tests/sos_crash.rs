//! The crash test: the real `sotong-server` binary is killed with SIGKILL while 50
//! phones stream beacons; after a restart, every beacon the server had acknowledged
//! (`up_to_seq`) is there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sotong_core::clock::{Clock as _, SystemClock};
use sotong_core::hash::sha256;
use sotong_core::sos::IncidentId;
use sotong_server::store::{NewDevice, SosStore, SqliteStore, Store};

const PHONES: usize = 50;
/// Acknowledged beacons (all phones) before the kill.
const ACKS_BEFORE_KILL: usize = 500;
/// Guards waits so that a broken server fails instead of hanging (never a speed assertion).
const GUARD: Duration = Duration::from_secs(120);

/// A server process, killed (SIGKILL) on drop so that none is left running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path) -> (Proc, String) {
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new(env!("CARGO_BIN_EXE_sotong-server"))
        .args(["--dev", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--port-file")
        .arg(&port_file)
        .env("RUST_LOG", "warn")
        .env_remove("SOTONG_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sotong-server");
    let proc = Proc(child);
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if text.ends_with('\n') {
                return (proc, format!("http://{}", text.trim()));
            }
        }
        assert!(started.elapsed() < GUARD, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn token(i: usize) -> String {
    format!("crashtestphone{i:029}")
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("data").join("sotong.db")
}

fn beacon(id: &IncidentId, seq: u32) -> Value {
    let now = SystemClock.now_unix_millis();
    json!({ "beacons": [{
        "incident": id.to_string(), "seq": seq, "state": "active", "trigger": "button_hold",
        "triggered_at": now - 1_000,
        "fix": { "lat": 37.5665, "lon": 126.978, "accuracy_m": 10.0, "time_ms": now,
                 "method": "gps" }
    }]})
}

async fn post(http: &Client, base: &str, phone: usize, body: &Value) -> Option<Value> {
    let res = http
        .post(format!("{base}/v1/sos/beacons"))
        .header(AUTHORIZATION, format!("Bearer {}", token(phone)))
        .json(body)
        .send()
        .await
        .ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    res.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_fifty_phones_stream_loses_no_acknowledged_fix() {
    let dir = tempfile::tempdir().unwrap();
    // The phones' devices, registered in the store before the server starts.
    {
        let store = SqliteStore::open(&db_path(dir.path())).await.unwrap();
        for i in 0..PHONES {
            store
                .register_device(&NewDevice {
                    phone_key: sha256(format!("phone {i}").as_bytes()),
                    name: "phone",
                    token_hash: sha256(token(i).as_bytes()),
                    token_expires_at: i64::MAX,
                    now: 0,
                })
                .await
                .unwrap();
        }
    }
    let (server, base) = start_server(dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Client::new();
    let incidents: Vec<IncidentId> = (0..PHONES).map(|_| IncidentId::random()).collect();
    // Per incident, the highest up_to_seq the server acknowledged.
    let acked: Arc<Mutex<HashMap<IncidentId, u64>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut phones = Vec::new();
    for (i, id) in incidents.iter().copied().enumerate() {
        let (http, base, acked, total, stop) = (
            http.clone(),
            base.clone(),
            acked.clone(),
            total.clone(),
            stop.clone(),
        );
        phones.push(tokio::spawn(async move {
            let mut seq = 1;
            while !stop.load(Ordering::Relaxed) {
                let Some(answer) = post(&http, &base, i, &beacon(&id, seq)).await else {
                    return; // the server is gone
                };
                let up_to = answer["acked"][0]["up_to_seq"].as_u64().unwrap();
                assert_eq!(up_to, u64::from(seq));
                acked.lock().unwrap().insert(id, up_to);
                total.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
        }));
    }
    let started = std::time::Instant::now();
    while total.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
        assert!(started.elapsed() < GUARD, "the phones got too few answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGKILL mid-stream: requests are in flight.
    drop(server);
    stop.store(true, Ordering::Relaxed);
    for p in phones {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.values().sum::<u64>() >= ACKS_BEFORE_KILL as u64);

    // Restart on the same data: each incident holds at least what was acknowledged.
    let (server, base) = start_server(dir.path());
    for (i, id) in incidents.iter().enumerate() {
        let Some(&before) = acked.get(id) else {
            continue;
        };
        // A resent first beacon: stored once, and the answer says what the server holds.
        let answer = post(&http, &base, i, &beacon(id, 1)).await.unwrap();
        let now = answer["acked"][0]["up_to_seq"].as_u64().unwrap();
        assert!(
            now >= before,
            "incident {i}: acknowledged {before}, holds {now}"
        );
    }
    drop(server);
    // And row by row, with the server stopped.
    let store = SqliteStore::open(&db_path(dir.path())).await.unwrap();
    for (id, before) in &acked {
        let seqs: Vec<u64> = store
            .sos_beacons(id)
            .await
            .unwrap()
            .iter()
            .map(|b| u64::from(b.beacon.seq))
            .collect();
        assert!(seqs.len() as u64 >= *before);
        assert_eq!(&seqs[..*before as usize], (1..=*before).collect::<Vec<_>>());
    }
    eprintln!(
        "{} beacons acknowledged by {} phones before SIGKILL; none missing after restart",
        acked.values().sum::<u64>(),
        acked.len()
    );
}
