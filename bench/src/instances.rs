//! Phase 8: instance-to-instance live edit latency. Two `sotong-server` processes on one
//! fresh PostgreSQL database; device A live on instance 1, device B live on instance 2; each
//! edit on A is timed until B's `draft_changed`. Every wait is bounded: an edit that does not
//! reach B in time counts as a timeout, never as a latency.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{
    new_phone, next_event, register, round, settle, stats, text, Editor, Event, Lcg, Plan, Probe,
    Server, SMALL,
};

/// Longest wait for one edit to reach device B.
const EDIT_TIMEOUT: Duration = Duration::from_secs(5);
/// After this many timeouts in a row the run stops (cross-instance push is missing).
const GIVE_UP_AFTER: usize = 5;

/// The PostgreSQL server the bench uses (trust auth on loopback).
fn admin_url() -> String {
    std::env::var("SOTONG_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for this phase only.
pub(crate) struct TempDb {
    name: String,
    pub(crate) url: String,
}

impl TempDb {
    pub(crate) async fn create() -> Result<Self> {
        let name = format!("sotong_bench_{:016x}", rand::random::<u64>());
        admin(&format!("CREATE DATABASE {name}")).await?;
        let base = admin_url();
        let cut = base.rfind('/').map_or(base.len(), |i| i);
        let url = format!("{}/{name}", &base[..cut]);
        Ok(Self { name, url })
    }

    pub(crate) async fn drop_now(self) -> Result<()> {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }
}

async fn admin(sql: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .context("connect to PostgreSQL on 127.0.0.1:5432 (user postgres)")?;
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.context(sql.to_owned())?;
    drop(client);
    let _ = task.await;
    Ok(())
}

pub async fn phase_instances(plan: &Plan, bin: &Path, root: &Path) -> Result<Value> {
    let db = TempDb::create().await?;
    let result = measure(plan, bin, root, &db.url).await;
    // The servers are gone (dropped in `measure`) before the database is dropped.
    db.drop_now().await?;
    result
}

async fn measure(plan: &Plan, bin: &Path, root: &Path, db_url: &str) -> Result<Value> {
    // Every instance of one deployment shares the pepper.
    let pepper = format!("bench-pepper-{:016x}", rand::random::<u64>());
    let extra = ["--database-url", db_url];
    let env = [("SOTONG_PEPPER", pepper.as_str())];
    let one = Server::spawn_with(bin, &root.join("inst-1"), &extra, &env)?;
    let two = Server::spawn_with(bin, &root.join("inst-2"), &extra, &env)?;

    let phone = new_phone();
    let a = register(&one, &root.join("inst-a"), &phone, "device A").await?;
    let b = register(&two, &root.join("inst-b"), &phone, "device B").await?;
    let id = a.create_proposal("교통 제안", &text(SMALL, 21), "transport")?;
    a.sync().await.context("upload on instance 1")?;
    let got = b.sync().await.context("download on instance 2")?;

    let (tx_a, _rx_a) = mpsc::unbounded_channel();
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let live_a = a
        .start_live_sync(Arc::new(Probe { tx: tx_a }))
        .await
        .context("live sync A on instance 1")?;
    let live_b = b
        .start_live_sync(Arc::new(Probe { tx: tx_b }))
        .await
        .context("live sync B on instance 2")?;
    settle().await;
    while rx_b.try_recv().is_ok() {}

    let mut ed = Editor {
        rng: Lcg(31),
        len: SMALL,
        i: 0,
    };
    let mut latency = Vec::new();
    let (mut timeouts, mut in_a_row, mut late, mut attempted) = (0usize, 0usize, 0usize, 0usize);
    let mut problems = Vec::new();
    // Diagnostics: per-edit timings, and the servers' logs kept in target/.
    let trace = std::env::var_os("SOTONG_BENCH_TRACE").is_some();
    let t0 = Instant::now();
    for _ in 0..plan.instance_edits {
        attempted += 1;
        let t = Instant::now();
        let wall_t = std::time::SystemTime::now();
        if let Err(e) = a.edit_proposal(&id, ed.next()) {
            problems.push(format!("edit on A: {e}"));
            break;
        }
        let edited = t.elapsed();
        let deadline = t + EDIT_TIMEOUT;
        let mut arrived = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match next_event(&mut rx_b, left).await? {
                Some(Event::Changed(got, at)) if got == id => {
                    arrived = Some(at);
                    break;
                }
                Some(Event::Changed(..)) => {}
                Some(other) => {
                    problems.push(format!("device B: {other:?}"));
                    break;
                }
                None => break,
            }
        }
        match arrived {
            Some(at) => {
                if trace {
                    let since = |d: std::time::SystemTime| {
                        d.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or(0.0)
                    };
                    eprintln!(
                        "      edit {attempted}: start {:.6} edit_proposal {:.2} ms, B {:.2} ms",
                        since(wall_t),
                        edited.as_secs_f64() * 1e3,
                        at.saturating_duration_since(t).as_secs_f64() * 1e3
                    );
                }
                latency.push(at.saturating_duration_since(t).as_secs_f64() * 1e3);
                in_a_row = 0;
            }
            None => {
                timeouts += 1;
                in_a_row += 1;
                if in_a_row >= GIVE_UP_AFTER || !problems.is_empty() {
                    break;
                }
            }
        }
        // A notification for an edit that had already timed out arrives late: drain it so
        // that it is not taken for the next edit's.
        while let Ok(e) = rx_b.try_recv() {
            if matches!(e, Event::Changed(..)) {
                late += 1;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    if trace {
        for (i, dir) in ["inst-1", "inst-2"].iter().enumerate() {
            let to = format!("target/bench-instance-{}.log", i + 1);
            let _ = std::fs::copy(root.join(dir).join("server.log"), to);
        }
    }
    live_a.stop().await;
    live_b.stop().await;
    // Does B hold A's text once it asks (a one-shot sync on instance 2)?
    b.sync().await.context("final sync of B")?;
    let converged = a.read_proposal(&id)?.body == b.read_proposal(&id)?.body;
    let completed = latency.len();
    Ok(json!({
        "backend": "PostgreSQL (fresh database, dropped after)",
        "initial_download_on_instance_2": got.documents_received,
        "edits_attempted": attempted,
        "edits_completed": completed,
        "timeouts": timeouts,
        "timeout_ms": EDIT_TIMEOUT.as_millis() as u64,
        "stopped_after_consecutive_timeouts": in_a_row >= GIVE_UP_AFTER,
        "late_notifications": late,
        "latency_ms": stats(latency),
        "wall_s": round(wall, 2),
        "b_converged_after_one_shot_sync": converged,
        "problems": problems,
        "target": "p50 <= 20 ms instance to instance on loopback",
        "server_log_warnings_errors": one.log_lines_containing(&["ERROR", "WARN"])?
            + two.log_lines_containing(&["ERROR", "WARN"])?,
    }))
}
