//! `sotong-bench`: end-to-end performance figures for Sotong on loopback, with the real server
//! binary (SQLite store) as a separate process and phones that are real `sotong_core` clients,
//! each over its own SQLite file.
//!
//! ```sh
//! cargo build --release -p sotong-server && cargo run --release -p sotong-bench -- [--quick]
//! ```
//!
//! Phases (each server-side phase starts its own fresh server process):
//! 1. phone edit+persist latency (`Client::edit_proposal`, 1-char splice) on 5k / 200k drafts;
//! 2. server sync throughput: many citizens upload their drafts concurrently, then a second
//!    device of each downloads them;
//! 3. server CPU per accepted remote edit (from `/proc/<pid>/stat`), edit + one-shot sync and
//!    through live sync;
//! 4. live-sync relay: latency from `edit_proposal` on device A to `draft_changed` on device B,
//!    sequential and as a burst;
//! 5. memory per open document: server RSS growth while a live session holds K documents, and
//!    the phone's RSS growth per loaded draft (measured in a fresh child process);
//! 6. side by side with the reference automerge-repo sync server (Node), the same JavaScript
//!    workload against both: server CPU per created document and per relayed edit, latency,
//!    RSS, ratios (`reference.rs`, `bench/js/`);
//! 7. server RSS with many idle authenticated WebSocket devices (`idle.rs`);
//! 8. instance-to-instance live edit latency, two servers on one PostgreSQL (`instances.rs`);
//! 9. the phone's peak RSS and time while syncing many drafts, in fresh child processes
//!    (`phone_sync.rs`);
//! 10. SOS: beacons from many simulated incidents at a fixed rate, beacon accepted → `fix`
//!     event on a dispatcher's SSE feed, server CPU per beacon, on SQLite and PostgreSQL; and a
//!     real phone core's trigger → first fix durably stored at the server (`sos.rs`).
//!
//! Only completed operations are timed or divided by; failures and timeouts are counted and
//! reported next to the figures.
//!
//! Prints a table and writes `target/bench-report.json`. No figure is asserted.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod accounts;
mod idle;
mod instances;
mod phone_sync;
mod reference;
mod sos;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sotong_core::client::{Client, SyncListener, SyncReport};
use sotong_core::privacy::mask_phone;
use sotong_core::schema::proposal::{ProposalEdit, TextField};
use sotong_core::DocumentId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Flag the bench passes to the server so that hundreds of codes can be requested from
/// 127.0.0.1 (the default allows 20 per client address per hour).
const CODES_FLAG: &str = "--codes-per-client-per-hour";
/// A server URL nothing listens on, for phones that never sync.
const OFFLINE_URL: &str = "http://127.0.0.1:9";
const SMALL: usize = 5_000;
/// Number of phases (`--only 1..=PHASES`).
const PHASES: u32 = 10;
const LARGE: usize = 200_000;
/// Longest wait for any single expected event (a code in the log, a relayed edit).
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much work each phase does.
struct Plan {
    quick: bool,
    /// Phase 1: timed edits per draft size.
    local_edits: usize,
    /// Phase 2: citizens, drafts each, characters per draft.
    citizens: usize,
    drafts_each: usize,
    draft_chars: usize,
    /// Phase 3: edits each followed by a one-shot `sync()`.
    oneshot_edits: usize,
    /// Phases 3/4: edits through live sync (sequential run and burst run each).
    live_edits: usize,
    /// Phase 5: 5k-char documents held open on the server.
    mem_docs: usize,
    /// Phase 6: citizens (two devices each), documents each creates, edits each relays.
    ref_pairs: usize,
    ref_docs_per_pair: usize,
    ref_edits_per_pair: usize,
    /// Phase 7: idle authenticated WebSocket devices, and how long they idle before the read.
    idle_devices: usize,
    idle_wait_s: u64,
    /// Phase 8: edits timed from instance 1 to instance 2.
    instance_edits: usize,
    /// Phase 9: drafts a phone syncs.
    phone_sync_drafts: usize,
    /// Phase 10: beacons per second in total, simulated incidents, seconds of load, and
    /// triggers timed on a real phone core.
    sos_rate: usize,
    sos_incidents: usize,
    sos_secs: usize,
    sos_triggers: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick,
                local_edits: 200,
                citizens: 20,
                drafts_each: 5,
                draft_chars: SMALL,
                oneshot_edits: 200,
                live_edits: 300,
                mem_docs: 50,
                ref_pairs: 5,
                ref_docs_per_pair: 4,
                ref_edits_per_pair: 20,
                idle_devices: 500,
                idle_wait_s: 3,
                instance_edits: 50,
                phone_sync_drafts: 100,
                sos_rate: 500,
                sos_incidents: 1_000,
                sos_secs: 4,
                sos_triggers: 10,
            }
        } else {
            Plan {
                quick,
                local_edits: 1_000,
                citizens: 100,
                drafts_each: 5,
                draft_chars: SMALL,
                oneshot_edits: 1_000,
                live_edits: 1_000,
                mem_docs: 200,
                ref_pairs: 20,
                ref_docs_per_pair: 10,
                ref_edits_per_pair: 50,
                idle_devices: 10_000,
                idle_wait_s: 10,
                instance_edits: 500,
                phone_sync_drafts: 1_000,
                sos_rate: 500,
                sos_incidents: 1_000,
                sos_secs: 20,
                sos_triggers: 50,
            }
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--phone-mem-child") {
        let dir = args
            .get(1)
            .ok_or_else(|| anyhow!("--phone-mem-child <dir>"))?;
        return phone_mem_child(Path::new(dir));
    }
    if args.first().map(String::as_str) == Some("--phone-child") {
        return phone_sync::phone_child(&args[1..]);
    }
    let mut quick = false;
    let mut only: Option<u32> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let n = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=PHASES).contains(n));
                only = Some(n.ok_or_else(|| anyhow!("--only takes a phase number 1 to 10"))?);
            }
            "-h" | "--help" => {
                println!("usage: sotong-bench [--quick] [--only PHASE]\n\nPhases: 1 phone edit latency, 2 sync throughput, 3 (and 4) server CPU per remote edit and live relay, 5 memory, 6 against the reference automerge-repo server, 7 idle devices, 8 instance to instance (PostgreSQL), 9 phone memory during sync, 10 SOS beacons and trigger (SQLite and PostgreSQL).\n\nNeeds target/release/sotong-server (cargo build --release -p sotong-server) or SOTONG_SERVER_BIN, Node 20 with bench/js installed (phase 6), PostgreSQL on 127.0.0.1:5432 (phases 8 and 10).\nscripts/bench.sh does all of it. Writes target/bench-report.json.");
                return Ok(());
            }
            other => {
                bail!("unknown argument {other:?} (usage: sotong-bench [--quick] [--only PHASE])")
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(Plan::new(quick), only))
}

async fn run(plan: Plan, only: Option<u32>) -> Result<()> {
    let want = |phase: u32| only.is_none_or(|o| o == phase || (o == 4 && phase == 3));
    let started = Instant::now();
    let exe = std::env::current_exe().context("locate the bench binary")?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot derive the target directory from {}", exe.display()))?
        .to_owned();
    let server_bin = match std::env::var_os("SOTONG_SERVER_BIN") {
        Some(p) => PathBuf::from(p),
        None => exe.with_file_name("sotong-server"),
    };
    if !server_bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p sotong-server` (or set SOTONG_SERVER_BIN)",
            server_bin.display()
        );
    }
    check_server_flag(&server_bin)?;
    let root = tempfile::Builder::new()
        .prefix("sotong-bench-")
        .tempdir()
        .context("temp dir")?;
    let tick = clock_ticks();
    let machine = machine(&tick);
    eprintln!(
        "sotong-bench{}: {} ; server {}",
        if plan.quick { " --quick" } else { "" },
        machine["summary"].as_str().unwrap_or(""),
        server_bin.display()
    );

    let mut report = json!({
        "quick": plan.quick,
        "machine": machine,
        "server_binary": server_bin.display().to_string(),
        "notes": [
            "loopback; server = separate process (release build, SQLite store); phones = real sotong_core clients in the bench process, each with its own SQLite file",
            "bench process and server share the same cores; client-side work competes with the server for CPU",
            "server CPU = utime+stime of the server process from /proc/<pid>/stat, in clock ticks converted to ms",
        ],
    });

    if want(1) {
        eprintln!("[1/9] phone edit+persist latency ...");
        let load = LoadProbe::start()?;
        report["phone_edit"] = phase_local_edits(&plan, root.path())?;
        report["phone_edit"]["other_load_cores"] = json!(load.other_cores()?);
    }
    if want(2) {
        eprintln!(
            "[2/9] server sync throughput ({} citizens x {} drafts) ...",
            plan.citizens, plan.drafts_each
        );
        let load = LoadProbe::start()?;
        report["sync_throughput"] =
            phase_throughput(&plan, &server_bin, root.path(), tick.hz).await?;
        report["sync_throughput"]["other_load_cores"] = json!(load.other_cores()?);
    }
    if want(3) {
        eprintln!("[3-4/9] server CPU per remote edit, live relay ...");
        let load = LoadProbe::start()?;
        report["remote_edits"] =
            phase_remote_edits(&plan, &server_bin, root.path(), tick.hz).await?;
        report["remote_edits"]["other_load_cores"] = json!(load.other_cores()?);
    }
    if want(5) {
        eprintln!("[5/9] memory per open document ...");
        let load = LoadProbe::start()?;
        report["memory"] = phase_memory(&plan, &server_bin, root.path(), &exe).await?;
        report["memory"]["other_load_cores"] = json!(load.other_cores()?);
    }
    // A phase that fails is reported as failed; the others still run.
    let phases: [(u32, &str, &str); 5] = [
        (
            6,
            "vs_reference",
            "against the reference automerge-repo server",
        ),
        (7, "idle_devices", "idle authenticated devices"),
        (
            8,
            "instance_to_instance",
            "instance-to-instance live latency (PostgreSQL)",
        ),
        (9, "phone_sync", "phone memory during sync"),
        (
            10,
            "sos",
            "SOS beacons -> dispatcher feed, trigger -> stored (SQLite, PostgreSQL)",
        ),
    ];
    for (n, key, what) in phases {
        if !want(n) {
            continue;
        }
        eprintln!("[{n}/{PHASES}] {what} ...");
        let load = LoadProbe::start()?;
        let got = match n {
            6 => reference::phase_reference(&plan, &server_bin, root.path(), tick.hz).await,
            7 => idle::phase_idle(&plan, &server_bin, root.path()).await,
            8 => instances::phase_instances(&plan, &server_bin, root.path()).await,
            9 => phone_sync::phase_phone_sync(&plan, &server_bin, root.path(), &exe).await,
            _ => sos::phase_sos(&plan, &server_bin, root.path(), tick.hz).await,
        };
        report[key] = match got {
            Ok(v) => v,
            Err(e) => {
                eprintln!("      phase {n} failed: {e:#}");
                json!({ "failed": format!("{e:#}") })
            }
        };
        report[key]["other_load_cores"] = json!(load.other_cores()?);
    }
    report["runtime_s"] = json!(round(started.elapsed().as_secs_f64(), 1));

    let path = match only {
        // A partial run does not overwrite the full report.
        Some(o) => target_dir.join(format!("bench-report-phase{o}.json")),
        None => target_dir.join("bench-report.json"),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", path.display()))?;
    print_table(&report);
    println!("\nJSON: {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 1: edit+persist latency on the phone

fn phase_local_edits(plan: &Plan, root: &Path) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for chars in [SMALL, LARGE] {
        let client = Client::open(&root.join(format!("local-{chars}")), OFFLINE_URL)?;
        let id = client.create_proposal("버스 노선 개편 제안", &text(chars, 1), "transport")?;
        let mut rng = Lcg(7);
        let mut len = chars;
        // Warm-up: first edits pay for statement preparation and page-cache misses.
        for i in 0..20 {
            client.edit_proposal(&id, splice(rng.next(len + 1), i))?;
            len += 1;
        }
        let mut times = Vec::with_capacity(plan.local_edits);
        for i in 0..plan.local_edits {
            let edit = splice(rng.next(len + 1), i);
            let t = Instant::now();
            client.edit_proposal(&id, edit)?;
            times.push(ms(t));
            len += 1;
        }
        // For reference: edit_proposal returns the whole proposal, so it includes one read.
        let mut reads = Vec::new();
        for _ in 0..(plan.local_edits / 10).max(20) {
            let t = Instant::now();
            client.read_proposal(&id)?;
            reads.push(ms(t));
        }
        let mut s = stats(times);
        s["read_proposal_ms"] = stats(reads);
        out.insert(key(chars), s);
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// Phase 2: sync throughput

async fn phase_throughput(plan: &Plan, bin: &Path, root: &Path, hz: f64) -> Result<Value> {
    let server = Server::spawn(bin, &root.join("srv-throughput"))?;
    let phones: Vec<String> = (0..plan.citizens).map(|_| new_phone()).collect();
    let dir = root.join("throughput");

    let t = Instant::now();
    let uploaders = register_many(&server, &dir, &phones, "a").await?;
    let register_s = t.elapsed().as_secs_f64();
    let mut seed = 1000;
    for (i, c) in uploaders.iter().enumerate() {
        for d in 0..plan.drafts_each {
            seed += 1;
            c.create_proposal(
                &format!("제안 {i}-{d}"),
                &text(plan.draft_chars, seed),
                "transport",
            )?;
        }
    }
    let total_docs = plan.citizens * plan.drafts_each;
    let up = sync_round(&server, &uploaders).await?;
    let sent: u64 = up.reports.iter().map(|r| u64::from(r.documents_sent)).sum();
    let rejected_up: usize = up.reports.iter().map(|r| r.rejected.len()).sum();
    drop(uploaders);

    let downloaders = register_many(&server, &dir, &phones, "b").await?;
    let down = sync_round(&server, &downloaders).await?;
    let received: u64 = down
        .reports
        .iter()
        .map(|r| u64::from(r.documents_received))
        .sum();
    let mut held = 0usize;
    for c in &downloaders {
        held += c.list_proposals()?.len();
    }
    drop(downloaders);
    let log_errors = server.log_lines_containing(&["ERROR", "WARN"])?;
    drop(server);

    // Rates and costs are over the documents that were transferred, not the ones planned.
    let round_json = |r: &Round, docs_done: u64| {
        let cpu_ms = r.server_ticks as f64 * 1000.0 / hz;
        let per_doc = if docs_done > 0 {
            json!(round(cpu_ms / docs_done as f64, 3))
        } else {
            Value::Null
        };
        json!({
            "documents": total_docs,
            "documents_done": docs_done,
            "syncs_failed": r.failures.len(),
            "first_failure": r.failures.first(),
            "wall_s": round(r.wall_s, 3),
            "docs_per_s": round(docs_done as f64 / r.wall_s, 1),
            "per_phone_sync_ms": stats(r.per_sync_ms.clone()),
            "server_cpu_ms": round(cpu_ms, 0),
            "server_cpu_ms_per_doc": per_doc,
            "bench_process_cpu_ms": round(r.self_ticks as f64 * 1000.0 / hz, 0),
        })
    };
    Ok(json!({
        "citizens": plan.citizens,
        "drafts_each": plan.drafts_each,
        "draft_chars": plan.draft_chars,
        "registration_s": round(register_s, 2),
        "upload": round_json(&up, sent),
        "upload_rejected": rejected_up,
        "download": round_json(&down, received),
        "download_docs_held": held,
        "server_log_warnings_errors": log_errors,
    }))
}

struct Round {
    wall_s: f64,
    per_sync_ms: Vec<f64>,
    server_ticks: u64,
    self_ticks: u64,
    /// Reports of the syncs that finished; failed ones are in `failures`.
    reports: Vec<SyncReport>,
    failures: Vec<String>,
}

/// Every client calls `sync()` at the same time; wall time until the last one returns.
async fn sync_round(server: &Server, clients: &[Client]) -> Result<Round> {
    let cpu0 = server.cpu_ticks()?;
    let self0 = proc_cpu_ticks("self")?;
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for c in clients {
        let c = c.clone();
        set.spawn(async move {
            let t = Instant::now();
            let r = c.sync().await;
            (r, ms(t))
        });
    }
    let mut reports = Vec::with_capacity(clients.len());
    let mut per_sync_ms = Vec::with_capacity(clients.len());
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (r, took) = joined.context("sync task")?;
        match r {
            Ok(r) => {
                reports.push(r);
                per_sync_ms.push(took);
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    Ok(Round {
        wall_s,
        per_sync_ms,
        server_ticks: server.cpu_ticks()?.saturating_sub(cpu0),
        self_ticks: proc_cpu_ticks("self")?.saturating_sub(self0),
        reports,
        failures,
    })
}

// ---------------------------------------------------------------------------------------------
// Phases 3 and 4: remote edits (server CPU, relay latency and throughput)

async fn phase_remote_edits(plan: &Plan, bin: &Path, root: &Path, hz: f64) -> Result<Value> {
    let server = Server::spawn(bin, &root.join("srv-edits"))?;
    let mut out = serde_json::Map::new();
    for chars in [SMALL, LARGE] {
        eprintln!("      {chars} chars ...");
        let phone = new_phone();
        let dir = root.join(format!("remote-{chars}"));
        let a = register(&server, &dir.join("a"), &phone, "device A").await?;
        let b = register(&server, &dir.join("b"), &phone, "device B").await?;
        let id = a.create_proposal("교통 제안", &text(chars, 11), "transport")?;
        a.sync().await.context("initial upload")?;
        let got = b.sync().await.context("initial download")?;
        if got.documents_received != 1 {
            bail!("device B did not receive the draft ({got:?})");
        }
        let mut ed = Editor {
            rng: Lcg(99),
            len: chars,
            i: 0,
        };

        // (3a) each edit followed by a one-shot sync (connect, exchange, close).
        let n = plan.oneshot_edits;
        let cpu0 = server.cpu_ticks()?;
        let t0 = Instant::now();
        let mut per = Vec::with_capacity(n);
        let (mut not_sent, mut failed, mut refused) = (0, 0, 0);
        for _ in 0..n {
            let t = Instant::now();
            a.edit_proposal(&id, ed.next())?;
            // Only a sync that delivered the edit counts (and is timed).
            match a.sync().await {
                Ok(r) if !r.rejected.is_empty() => refused += 1,
                Ok(r) if r.documents_sent != 1 => not_sent += 1,
                Ok(_) => per.push(ms(t)),
                Err(_) => failed += 1,
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        settle().await;
        let mut oneshot = cpu_json(server.cpu_ticks()? - cpu0, hz, per.len(), wall);
        oneshot["attempted"] = json!(n);
        oneshot["edit_plus_sync_ms"] = stats(per);
        oneshot["syncs_that_sent_nothing"] = json!(not_sent);
        oneshot["syncs_failed"] = json!(failed);
        oneshot["edits_refused"] = json!(refused);
        b.sync().await.context("device B catches up")?;

        // (3b/4) live sync on both devices.
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        let (tx_b, mut rx_b) = mpsc::unbounded_channel();
        let live_a = a
            .start_live_sync(Arc::new(Probe { tx: tx_a }))
            .await
            .context("live sync A")?;
        let live_b = b
            .start_live_sync(Arc::new(Probe { tx: tx_b }))
            .await
            .context("live sync B")?;
        settle().await;
        drain(&mut rx_b)?;

        // Sequential: one edit in flight; latency = edit_proposal call on A -> draft_changed on B.
        let n = plan.live_edits;
        let mut latency = Vec::with_capacity(n);
        let mut after_return = Vec::with_capacity(n);
        let mut extra_notifications = 0;
        let mut timeouts = 0;
        let cpu0 = server.cpu_ticks()?;
        let t0 = Instant::now();
        for _ in 0..n {
            extra_notifications += drain(&mut rx_b)?;
            let edit = ed.next();
            let t = Instant::now();
            a.edit_proposal(&id, edit)?;
            let returned = Instant::now();
            let Some(at) = wait_changed(&mut rx_b, id).await? else {
                timeouts += 1;
                continue;
            };
            latency.push(at.saturating_duration_since(t).as_secs_f64() * 1e3);
            if std::env::var_os("SOTONG_BENCH_TRACE").is_some()
                && (latency.len() <= 10 || at < returned)
            {
                eprintln!(
                    "edit took {:.3} ms; B notified at {:+.3} ms from edit start",
                    returned.duration_since(t).as_secs_f64() * 1e3,
                    if at >= t {
                        at.duration_since(t).as_secs_f64() * 1e3
                    } else {
                        -(t.duration_since(at).as_secs_f64() * 1e3)
                    }
                );
            }
            after_return.push(at.saturating_duration_since(returned).as_secs_f64() * 1e3);
        }
        let wall = t0.elapsed().as_secs_f64();
        settle().await;
        let mut sequential = cpu_json(server.cpu_ticks()? - cpu0, hz, latency.len(), wall);
        sequential["attempted"] = json!(n);
        sequential["timeouts"] = json!(timeouts);
        sequential["timeout_ms"] = json!(EVENT_TIMEOUT.as_millis() as u64);
        // Loopback relays normally take ~1 ms; count the ones near Linux's 40 ms delayed ACK.
        let slow = latency.iter().filter(|l| **l >= 35.0).count();
        sequential["relay_latency_ms"] = stats(latency);
        sequential["relays_over_35ms"] = json!(slow);
        // The same, counted from when edit_proposal returned (network + server + device B).
        sequential["relay_after_edit_returned_ms"] = stats(after_return);
        sequential["extra_notifications"] = json!(extra_notifications);

        // Burst: A edits as fast as edit_proposal returns; done when B holds A's final text.
        extra_notifications = drain(&mut rx_b)?;
        let cpu0 = server.cpu_ticks()?;
        let t0 = Instant::now();
        let mut expected = String::new();
        for k in 0..n {
            let p = a.edit_proposal(&id, ed.next())?;
            if k + 1 == n {
                expected = p.body;
            }
        }
        let edits_done = t0.elapsed().as_secs_f64();
        let arrival = wait_content(&mut rx_b, &b, id, &expected, n).await?;
        settle().await;
        let ticks = server.cpu_ticks()? - cpu0;
        let mut burst = match arrival {
            // B holds A's final text: every edit of the burst arrived.
            Ok((last, notifications)) => {
                let wall = last.saturating_duration_since(t0).as_secs_f64();
                let mut v = cpu_json(ticks, hz, n, wall);
                v["notifications_on_b"] = json!(notifications);
                v
            }
            Err(notifications) => json!({
                "edits": 0,
                "attempted": n,
                "timed_out": true,
                "notifications_on_b": notifications,
                "server_cpu_ms": round(ticks as f64 * 1000.0 / hz, 0),
            }),
        };
        burst["edits_issued_s"] = json!(round(edits_done, 3));
        burst["extra_notifications_before"] = json!(extra_notifications);

        live_a.stop().await;
        live_b.stop().await;
        let a_events = drain_events(&mut rx_a);
        let b_events = drain_events(&mut rx_b);
        let problems: Vec<String> = a_events
            .iter()
            .chain(b_events.iter())
            .filter_map(|e| match e {
                Event::Rejected(id, r) => Some(format!("{id} rejected: {r}")),
                Event::Stopped(Some(e)) => Some(format!("stopped: {e}")),
                _ => None,
            })
            .collect();
        if !problems.is_empty() {
            bail!("live sync reported problems: {problems:?}");
        }
        out.insert(
            key(chars),
            json!({ "oneshot_sync": oneshot, "live_sequential": sequential, "live_burst": burst }),
        );
        drop(a);
        drop(b);
    }
    out.insert(
        "server_log_warnings_errors".into(),
        json!(server.log_lines_containing(&["ERROR", "WARN"])?),
    );
    Ok(Value::Object(out))
}

/// Server CPU and rate over `edits`, the edits that completed.
fn cpu_json(ticks: u64, hz: f64, edits: usize, wall_s: f64) -> Value {
    let cpu_ms = ticks as f64 * 1000.0 / hz;
    let per_edit = if edits > 0 {
        json!(round(cpu_ms / edits as f64, 4))
    } else {
        Value::Null
    };
    json!({
        "edits": edits,
        "wall_s": round(wall_s, 3),
        "edits_per_s": round(edits as f64 / wall_s, 1),
        "server_cpu_ms": round(cpu_ms, 0),
        "server_cpu_ms_per_edit": per_edit,
    })
}

/// Makes 1-character splices at pseudo-random positions of the body.
struct Editor {
    rng: Lcg,
    len: usize,
    i: usize,
}

impl Editor {
    fn next(&mut self) -> ProposalEdit {
        let e = splice(self.rng.next(self.len + 1), self.i);
        self.len += 1;
        self.i += 1;
        e
    }
}

#[derive(Debug)]
enum Event {
    Changed(DocumentId, Instant),
    Rejected(DocumentId, String),
    Stopped(Option<String>),
}

struct Probe {
    tx: mpsc::UnboundedSender<Event>,
}

impl SyncListener for Probe {
    fn draft_changed(&self, id: DocumentId) {
        let _ = self.tx.send(Event::Changed(id, Instant::now()));
    }
    fn draft_rejected(&self, r: sotong_core::client::Rejected) {
        let _ = self.tx.send(Event::Rejected(r.id, r.reason));
    }
    fn stopped(&self, error: Option<String>) {
        let _ = self.tx.send(Event::Stopped(error));
    }
}

/// Discards pending change notifications; returns how many. A rejection or an ended session
/// is an error.
fn drain(rx: &mut mpsc::UnboundedReceiver<Event>) -> Result<usize> {
    let mut n = 0;
    while let Ok(e) = rx.try_recv() {
        match e {
            Event::Changed(..) => n += 1,
            other => bail!("live sync: {other:?}"),
        }
    }
    Ok(n)
}

fn drain_events(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    wait: Duration,
) -> Result<Option<Event>> {
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Some(e)) => Ok(Some(e)),
        Ok(None) => bail!("live sync listener dropped"),
        Err(_) => Ok(None),
    }
}

/// When the next change notification for `id` arrived; `None` if none came within
/// [`EVENT_TIMEOUT`].
async fn wait_changed(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    id: DocumentId,
) -> Result<Option<Instant>> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(rx, left).await? {
            Some(Event::Changed(got, at)) if got == id => return Ok(Some(at)),
            Some(Event::Changed(..)) => continue,
            Some(other) => bail!("live sync: {other:?}"),
            None => return Ok(None),
        }
    }
}

/// Waits until device B's body equals `expected`; returns when the last notification before
/// that arrived and how many notifications came, or (as `Err`) how many came before giving
/// up after 120 s. The body is compared only once `edits` notifications arrived or none came
/// for 300 ms, so the check does not slow device B down.
async fn wait_content(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    b: &Client,
    id: DocumentId,
    expected: &str,
    edits: usize,
) -> Result<std::result::Result<(Instant, usize), usize>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    let mut seen = 0usize;
    loop {
        if Instant::now() > deadline {
            return Ok(Err(seen));
        }
        let check = match next_event(rx, Duration::from_millis(300)).await? {
            Some(Event::Changed(got, at)) if got == id => {
                seen += 1;
                last = at;
                seen >= edits
            }
            Some(Event::Changed(..)) => false,
            Some(other) => bail!("live sync: {other:?}"),
            None => true,
        };
        if check && b.read_proposal(&id)?.body == expected {
            return Ok(Ok((last, seen)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase 5: memory per open document

async fn phase_memory(plan: &Plan, bin: &Path, root: &Path, exe: &Path) -> Result<Value> {
    let k = plan.mem_docs;
    let small = server_memory(bin, &root.join("mem-5k"), SMALL, k).await?;
    let large = server_memory(bin, &root.join("mem-200k"), LARGE, 1).await?;

    // The phone: a fresh child process opens a data directory and loads every draft.
    let phone_small = phone_memory(exe, &root.join("phone-mem-5k"), SMALL, k)?;
    let phone_large = phone_memory(exe, &root.join("phone-mem-200k"), LARGE, 1)?;
    Ok(json!({
        "server": { key(SMALL): small, key(LARGE): large },
        "phone": { key(SMALL): phone_small, key(LARGE): phone_large },
    }))
}

/// A fresh server; device A uploads `count` drafts, device B holds them open in a live
/// session; server RSS growth divided by `count`.
async fn server_memory(bin: &Path, dir: &Path, chars: usize, count: usize) -> Result<Value> {
    let server = Server::spawn(bin, &dir.join("srv"))?;
    let phone = new_phone();
    let a = register(&server, &dir.join("a"), &phone, "device A").await?;
    let b = register(&server, &dir.join("b"), &phone, "device B").await?;
    for i in 0..count {
        a.create_proposal(
            &format!("제안 {i}"),
            &text(chars, 5000 + i as u64),
            "transport",
        )?;
    }
    settle().await;
    let rss0 = server.rss_kb()?;
    let up = a.sync().await.context("upload")?;
    settle().await;
    let rss_uploaded = server.rss_kb()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let live = b
        .start_live_sync(Arc::new(Probe { tx }))
        .await
        .context("live sync B")?;
    let mut got = HashSet::new();
    while got.len() < count {
        match next_event(&mut rx, EVENT_TIMEOUT).await? {
            Some(Event::Changed(id, _)) => {
                got.insert(id);
            }
            Some(other) => bail!("live sync: {other:?}"),
            None => bail!("device B received {} of {count} drafts", got.len()),
        }
    }
    settle().await;
    let rss1 = server.rss_kb()?;
    live.stop().await;
    let per_kb = rss1.saturating_sub(rss0) as f64 / count as f64;
    Ok(json!({
        "documents": count,
        "chars": chars,
        "uploaded": up.documents_sent,
        "rss_before_kb": rss0,
        "rss_after_upload_kb": rss_uploaded,
        "rss_open_in_live_session_kb": rss1,
        "rss_growth_per_doc_kb": round(per_kb, 0),
    }))
}

/// Creates `count` drafts offline in `dir`, then a child process measures its RSS growth when
/// it loads them all.
fn phone_memory(exe: &Path, dir: &Path, chars: usize, count: usize) -> Result<Value> {
    {
        let c = Client::open(dir, OFFLINE_URL)?;
        for i in 0..count {
            c.create_proposal(
                &format!("제안 {i}"),
                &text(chars, 7000 + i as u64),
                "transport",
            )?;
        }
    }
    let out = Command::new(exe)
        .arg("--phone-mem-child")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("run the phone memory child")?;
    if !out.status.success() {
        bail!("phone memory child failed: {}", out.status);
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).context("phone memory child output")?;
    let before = v["rss_before_kb"].as_u64().unwrap_or(0);
    let after = v["rss_after_kb"].as_u64().unwrap_or(0);
    let n = v["drafts"].as_u64().unwrap_or(0).max(1);
    v["chars"] = json!(chars);
    v["rss_growth_per_draft_kb"] = json!(round(after.saturating_sub(before) as f64 / n as f64, 0));
    Ok(v)
}

fn phone_mem_child(dir: &Path) -> Result<()> {
    let client = Client::open(dir, OFFLINE_URL)?;
    let before = proc_rss_kb("self")?;
    // The list reads cached columns; reading each draft loads it (and keeps it loaded).
    let summaries = client.list_proposals()?;
    for s in &summaries {
        client.read_proposal(&s.id)?;
    }
    let drafts = summaries.len();
    let after = proc_rss_kb("self")?;
    println!(
        "{}",
        json!({ "drafts": drafts, "rss_before_kb": before, "rss_after_kb": after })
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    pid: u32,
    url: String,
    log: PathBuf,
    codes: Arc<CodeLog>,
}

impl Server {
    /// Starts the server binary on a free loopback port with its data in `dir`.
    fn spawn(bin: &Path, dir: &Path) -> Result<Self> {
        Self::spawn_with(bin, dir, &[], &[])
    }

    /// The same, with extra arguments and environment (e.g. `--database-url`).
    fn spawn_with(bin: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("server.log");
        let port_file = dir.join("addr");
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--port-file")
            .arg(&port_file)
            .arg(CODES_FLAG)
            .arg("1000000")
            .args(DEV_FLAG.get().copied().flatten())
            .args(extra)
            .envs(env.iter().copied())
            // Diagnostics: `SOTONG_BENCH_SERVER_LOG=info,sotong_timing=debug`, say.
            .env(
                "RUST_LOG",
                std::env::var("SOTONG_BENCH_SERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id();
        let mut server = Server {
            child,
            pid,
            url: String::new(),
            codes: Arc::new(CodeLog::new(log.clone())),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                let addr = addr.trim();
                if !addr.is_empty() {
                    server.url = format!("http://{addr}");
                    return Ok(server);
                }
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "the server exited ({status}) at start:\n{}",
                    server.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not write its port file within 30 s:\n{}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cpu_ticks(&self) -> Result<u64> {
        proc_cpu_ticks(&self.pid.to_string())
    }

    fn rss_kb(&self) -> Result<u64> {
        proc_rss_kb(&self.pid.to_string())
    }

    fn status_kb(&self, field: &str) -> Result<u64> {
        proc_status_kb(&self.pid.to_string(), field)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Number of log lines holding any of `needles`.
    fn log_lines_containing(&self, needles: &[&str]) -> Result<usize> {
        let text = std::fs::read_to_string(&self.log)?;
        Ok(text
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .count())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--dev` when the server has that flag: servers that refuse the log notifier without it
/// need it, and the bench reads one-time codes from the log.
static DEV_FLAG: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();

/// Fails early, with what to do, if the server binary lacks the flag the bench needs.
fn check_server_flag(bin: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .context("sotong-server --help")?;
    let help = String::from_utf8_lossy(&out.stdout);
    let has_dev = help
        .lines()
        .any(|l| l.trim_start().starts_with("--dev ") || l.trim() == "--dev");
    let _ = DEV_FLAG.set(has_dev.then_some("--dev"));
    if !help.contains(CODES_FLAG) {
        bail!(
            "{} has no {CODES_FLAG} flag; the bench registers hundreds of devices from 127.0.0.1 \
             and the default allows 20 codes per client address per hour",
            bin.display()
        );
    }
    Ok(())
}

/// One-time codes the development notifier writes to the server log
/// (`one-time code for ***1234: 123456`), by masked number, in order.
struct CodeLog {
    path: PathBuf,
    scan: Mutex<CodeScan>,
}

#[derive(Default)]
struct CodeScan {
    offset: u64,
    partial: Vec<u8>,
    codes: HashMap<String, Vec<String>>,
}

impl CodeLog {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            scan: Mutex::new(CodeScan::default()),
        }
    }

    /// Reads what the log gained and returns the codes seen so far for `mask`.
    fn codes_for(&self, mask: &str) -> Result<Vec<String>> {
        let mut s = self
            .scan
            .lock()
            .map_err(|_| anyhow!("code log lock poisoned"))?;
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(s.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        s.offset += buf.len() as u64;
        s.partial.extend_from_slice(&buf);
        while let Some(nl) = s.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = s.partial.drain(..=nl).collect();
            if let Some((m, code)) = parse_code_line(&String::from_utf8_lossy(&line)) {
                s.codes.entry(m).or_default().push(code);
            }
        }
        Ok(s.codes.get(mask).cloned().unwrap_or_default())
    }

    /// The `nth` code (0-based) sent to `mask`, waiting for it to be logged.
    async fn wait(&self, mask: &str, nth: usize) -> Result<String> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(c) = self.codes_for(mask)?.get(nth) {
                return Ok(c.clone());
            }
            if Instant::now() > deadline {
                bail!("no one-time code for {mask} in {}", self.path.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn parse_code_line(line: &str) -> Option<(String, String)> {
    const MARK: &str = "one-time code for ";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let colon = rest.find(": ")?;
    let mask: String = rest[..colon]
        .chars()
        .filter(|c| *c == '*' || c.is_ascii_digit())
        .collect();
    let code: String = rest[colon + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (code.len() == 6).then_some((mask, code))
}

static PHONES: AtomicU32 = AtomicU32::new(0);

/// `+8210` + 8 digits; the last four (all the log shows) are distinct within a run.
fn new_phone() -> String {
    let n = PHONES.fetch_add(1, Ordering::Relaxed) % 10_000;
    format!("+8210{:04}{:04}", std::process::id() % 10_000, n)
}

/// Registers a new install in `dir` as a device of `phone`, with the code from the log.
async fn register_at(
    url: &str,
    codes: &CodeLog,
    dir: &Path,
    phone: &str,
    device: &str,
) -> Result<Client> {
    let client = Client::open(dir, url)?;
    let m = mask_phone(phone);
    let nth = codes.codes_for(&m)?.len();
    client.request_code(phone).await.context("request a code")?;
    let code = codes.wait(&m, nth).await?;
    client
        .register(phone, &code, device)
        .await
        .context("register")?;
    Ok(client)
}

async fn register(server: &Server, dir: &Path, phone: &str, device: &str) -> Result<Client> {
    register_at(&server.url, &server.codes, dir, phone, device).await
}

/// Registers one device per number (8 at a time), in `<dir>/<index><suffix>`.
async fn register_many(
    server: &Server,
    dir: &Path,
    phones: &[String],
    suffix: &str,
) -> Result<Vec<Client>> {
    let mut out: Vec<Option<Client>> = vec![None; phones.len()];
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < phones.len() || !set.is_empty() {
        while next < phones.len() && set.len() < 8 {
            let (url, codes) = (server.url.clone(), server.codes.clone());
            let (phone, d) = (phones[next].clone(), dir.join(format!("{next}{suffix}")));
            let device = format!("phone {next}{suffix}");
            let i = next;
            set.spawn(async move { (i, register_at(&url, &codes, &d, &phone, &device).await) });
            next += 1;
        }
        if let Some(joined) = set.join_next().await {
            let (i, c) = joined.context("register task")?;
            out[i] = Some(c?);
        }
    }
    out.into_iter()
        .map(|c| c.ok_or_else(|| anyhow!("a registration did not finish")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// /proc, machine, statistics, output

/// CPU used on the machine by processes other than the bench and its (reaped) children,
/// while a phase ran: how noisy the machine was.
struct LoadProbe {
    at: Instant,
    busy: u64,
    ours: u64,
}

impl LoadProbe {
    fn start() -> Result<Self> {
        Ok(Self {
            at: Instant::now(),
            busy: system_busy_ticks()?,
            ours: own_and_children_ticks()?,
        })
    }

    /// Average number of cores other processes kept busy.
    fn other_cores(&self) -> Result<f64> {
        let busy = system_busy_ticks()?.saturating_sub(self.busy);
        let ours = own_and_children_ticks()?.saturating_sub(self.ours);
        let hz = clock_ticks().hz;
        Ok(round(
            busy.saturating_sub(ours) as f64 / hz / self.at.elapsed().as_secs_f64(),
            2,
        ))
    }
}

/// Non-idle CPU time of the whole machine (`/proc/stat`), in clock ticks.
fn system_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// utime + stime + cutime + cstime of the bench process (children count once reaped; the
/// servers are reaped when their phase ends).
fn own_and_children_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad /proc stat"))? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    Ok(f.iter().sum())
}

/// utime + stime of a process (`self` or a pid), in clock ticks.
fn proc_cpu_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad /proc stat"))? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        Ok(f.get(i)
            .ok_or_else(|| anyhow!("short /proc stat"))?
            .parse()?)
    };
    Ok(get(11)? + get(12)?)
}

fn proc_rss_kb(pid: &str) -> Result<u64> {
    proc_status_kb(pid, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: &str, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .ok_or_else(|| anyhow!("no {field} for {pid}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad {field} line"))?
        .parse()?)
}

struct Tick {
    hz: f64,
    source: &'static str,
}

fn clock_ticks() -> Tick {
    let got = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0);
    match got {
        Some(hz) => Tick {
            hz,
            source: "getconf CLK_TCK",
        },
        None => Tick {
            hz: 100.0,
            source: "assumed (getconf unavailable)",
        },
    }
}

fn machine(tick: &Tick) -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    json!({
        "cores": cores,
        "cpu": model,
        "memory_gb": round(mem_gb, 1),
        "clock_ticks_per_s": tick.hz,
        "clock_ticks_source": tick.source,
        "summary": format!("{cores} cores ({model}), {mem_gb:.0} GB; CPU times in ticks of 1/{} s ({})", tick.hz, tick.source),
    })
}

/// Median, p99 and friends of samples in milliseconds.
fn stats(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({ "n": 0 });
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({
        "n": v.len(),
        "median_ms": round(p(0.5), 4),
        "p99_ms": round(p(0.99), 4),
        "mean_ms": round(mean, 4),
        "min_ms": round(v[0], 4),
        "max_ms": round(v[v.len() - 1], 4),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn key(chars: usize) -> String {
    format!("{}k", chars / 1000)
}

/// Lets the server finish work triggered by the last message (its CPU time is then complete).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Pseudo-random text as in ADR 0001: 1/2 Hangul syllables, 1/3 ASCII letters, 1/6 spaces.
fn text(n: usize, seed: u64) -> String {
    let mut r = Lcg(seed);
    (0..n)
        .map(|_| match r.next(6) {
            0..=2 => char::from_u32(0xAC00 + r.next(11172) as u32).unwrap_or('가'),
            3 | 4 => (b'a' + r.next(26) as u8) as char,
            _ => ' ',
        })
        .collect()
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, m: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % m.max(1)
    }
}

fn splice(pos: usize, i: usize) -> ProposalEdit {
    ProposalEdit::Splice {
        field: TextField::Body,
        pos,
        delete: 0,
        insert: if i & 1 == 0 { "a" } else { "가" }.to_owned(),
    }
}

fn print_table(r: &Value) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) if x >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    };
    let pct = |s: &Value| format!("p50 {} / p99 {} ms", f(&s["median_ms"]), f(&s["p99_ms"]));
    let row = |name: String, value: String| println!("| {name:<60} | {value:<48} |");
    let quick = if r["quick"].as_bool() == Some(true) {
        " (--quick)"
    } else {
        ""
    };
    let machine = r["machine"]["summary"].as_str().unwrap_or("");
    println!("\nSotong bench{quick}: {machine}");
    println!("| {:<60} | {:<48} |", "measure", "value");
    println!("|{}|{}|", "-".repeat(62), "-".repeat(50));
    // Phases that did not run (`--only`) print no rows.
    let sizes = |phase: &str| -> &'static [&'static str] {
        if r[phase].is_null() {
            &[]
        } else {
            &["5k", "200k"]
        }
    };
    for k in sizes("phone_edit") {
        let s = &r["phone_edit"][k];
        let name = format!("1. phone edit_proposal (1-char splice+persist), {k} chars");
        row(name, format!("{} (n={})", pct(s), s["n"]));
        let name = format!("   for reference: read_proposal alone, {k}");
        row(name, pct(&s["read_proposal_ms"]));
    }
    let t = &r["sync_throughput"];
    let (c, d) = (&t["citizens"], &t["drafts_each"]);
    let rounds = [
        ("upload (first sync)", "upload"),
        ("2nd device download", "download"),
    ];
    for (label, k) in rounds.into_iter().filter(|_| !t.is_null()) {
        let s = &t[k];
        row(
            format!("2. {label}: {c} phones x {d} drafts, concurrent"),
            format!(
                "{} docs/s ({}/{} docs in {} s)",
                f(&s["docs_per_s"]),
                s["documents_done"],
                s["documents"],
                f(&s["wall_s"])
            ),
        );
        row(
            "   per-phone sync() time; server CPU per doc".into(),
            format!(
                "{}; {} ms",
                pct(&s["per_phone_sync_ms"]),
                f(&s["server_cpu_ms_per_doc"])
            ),
        );
    }
    for k in sizes("remote_edits") {
        let e = &r["remote_edits"][k];
        for (label, m) in [
            ("edit + one-shot sync()", "oneshot_sync"),
            ("live, sequential", "live_sequential"),
            ("live, burst", "live_burst"),
        ] {
            row(
                format!("3. server CPU per accepted edit, {k}, {label}"),
                format!(
                    "{} ms ({} edits/s, n={})",
                    f(&e[m]["server_cpu_ms_per_edit"]),
                    f(&e[m]["edits_per_s"]),
                    e[m]["edits"]
                ),
            );
        }
    }
    for k in sizes("remote_edits") {
        let e = &r["remote_edits"][k];
        let seq = &e["live_sequential"];
        row(
            format!("4. A edit_proposal -> B draft_changed, {k}, sequential"),
            format!(
                "{} ({}/s)",
                pct(&seq["relay_latency_ms"]),
                f(&seq["edits_per_s"])
            ),
        );
        row(
            "   same, counted from edit_proposal's return".into(),
            pct(&seq["relay_after_edit_returned_ms"]),
        );
        let b = &e["live_burst"];
        row(
            format!("4. burst, {k}: edits/s reaching B"),
            format!(
                "{}/s ({} edits, {} notifications on B)",
                f(&b["edits_per_s"]),
                b["edits"],
                b["notifications_on_b"]
            ),
        );
    }
    let m = &r["memory"];
    for k in sizes("memory") {
        let s = &m["server"][k];
        row(
            format!(
                "5. server RSS per doc open in a live session, {k} (x{})",
                s["documents"]
            ),
            format!("{} KB", f(&s["rss_growth_per_doc_kb"])),
        );
    }
    for k in sizes("memory") {
        let s = &m["phone"][k];
        row(
            format!("5. phone RSS per loaded draft, {k} (x{})", s["drafts"]),
            format!("{} KB", f(&s["rss_growth_per_draft_kb"])),
        );
    }
    print_new_phases(r, &f, &pct, &row);
    let loads: Vec<String> = [
        "phone_edit",
        "sync_throughput",
        "remote_edits",
        "memory",
        "vs_reference",
        "idle_devices",
        "instance_to_instance",
        "phone_sync",
        "sos",
    ]
    .iter()
    .map(|k| format!("{k} {}", f(&r[k]["other_load_cores"])))
    .collect();
    println!(
        "other processes' CPU during each phase, in cores busy (noise): {}",
        loads.join(", ")
    );
    println!("runtime {} s", r["runtime_s"]);
}

/// Rows of phases 6 to 10.
fn print_new_phases(
    r: &Value,
    f: &dyn Fn(&Value) -> String,
    pct: &dyn Fn(&Value) -> String,
    row: &dyn Fn(String, String),
) {
    let failed = |v: &Value, name: &str| {
        if let Some(e) = v["failed"].as_str() {
            row(format!("{name}: FAILED"), e.chars().take(48).collect());
            true
        } else {
            v.is_null()
        }
    };
    let v = &r["vs_reference"];
    if !failed(v, "6. vs reference") {
        let w = &v["workload"];
        for (label, k) in [("reference", "reference"), ("sotong", "sotong")] {
            let s = &v[k];
            row(
                format!("6. {label}: CPU per created doc; create latency"),
                format!(
                    "{} ms; {} ({}/{} done)",
                    f(&s["create"]["server_cpu_ms_per_doc"]),
                    pct(&s["create"]["latency_ms"]),
                    s["create"]["completed"],
                    s["create"]["attempted"]
                ),
            );
            row(
                format!("6. {label}: CPU per relayed edit; edit latency"),
                format!(
                    "{} ms; {} ({}/{} done)",
                    f(&s["edit"]["server_cpu_ms_per_edit"]),
                    pct(&s["edit"]["latency_ms"]),
                    s["edit"]["completed"],
                    s["edit"]["attempted"]
                ),
            );
            row(
                format!("6. {label}: server RSS after workload / peak"),
                format!(
                    "{} / {} MiB",
                    f(&json!(s["edit"]["rss_kb"].as_f64().unwrap_or(0.0) / 1024.0)),
                    f(&json!(s["edit"]["hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0))
                ),
            );
        }
        let q = &v["sotong_over_reference"];
        row(
            format!(
                "6. Sotong/reference ({} pairs x {} docs, {} edits each)",
                w["pairs"], w["docs_per_pair"], w["edits_per_pair"]
            ),
            format!(
                "CPU/doc {}x, CPU/edit {}x, RSS {}x",
                f(&q["cpu_per_created_doc"]),
                f(&q["cpu_per_relayed_edit"]),
                f(&q["rss_after_workload"])
            ),
        );
    }
    let v = &r["idle_devices"];
    if !failed(v, "7. idle devices") {
        row(
            format!(
                "7. server RSS, {} idle authenticated WebSocket devices",
                v["connected"]
            ),
            format!(
                "{} MiB ({} KB/device, {} open, {} failed)",
                f(&v["server_rss_idle_mib"]),
                f(&v["rss_per_idle_device_kb"]),
                v["open_when_measured"],
                v["connect_failures"]
            ),
        );
    }
    let v = &r["instance_to_instance"];
    if !failed(v, "8. instance to instance") {
        row(
            "8. A live on instance 1 -> B draft_changed on instance 2".into(),
            format!(
                "{} ({}/{} done, {} timeouts)",
                pct(&v["latency_ms"]),
                v["edits_completed"],
                v["edits_attempted"],
                v["timeouts"]
            ),
        );
    }
    let v = &r["phone_sync"];
    if !failed(v, "9. phone sync") {
        for (label, k) in [
            ("create offline", "create_offline"),
            ("upload sync()", "upload_sync"),
            ("upload sync() again", "upload_sync_again_after_failure"),
            ("2nd device download sync()", "download_sync"),
        ] {
            if v[k].is_null() {
                continue;
            }
            let outcome = if v[k]["failed"].is_string() {
                ", FAILED"
            } else {
                ""
            };
            row(
                format!("9. phone, {} drafts: {label}", v["drafts"]),
                format!(
                    "peak RSS {} MiB, {} s{outcome}",
                    f(&v[k]["peak_rss_mib"]),
                    f(&v[k]["wall_s"])
                ),
            );
        }
    }
    let v = &r["sos"];
    if !failed(v, "10. SOS") {
        for (label, k) in [("SQLite", "sqlite"), ("PostgreSQL", "postgres")] {
            let b = &v[k];
            if failed(b, &format!("10. SOS, {label}")) {
                continue;
            }
            let l = &b["load_over_https"];
            row(
                format!(
                    "10. SOS {label}: accepted -> SSE fix, {}/s x {} incidents",
                    l["target_rate_per_s"], l["incidents"]
                ),
                format!(
                    "{} ({}/{} on feed, {}/s)",
                    pct(&l["accepted_to_feed_ms"]),
                    l["on_feed"],
                    l["beacons_sent"],
                    f(&l["achieved_rate_per_s"])
                ),
            );
            row(
                format!("10. SOS {label}: beacon sent -> answered; server CPU"),
                format!(
                    "{}; {} ms/beacon",
                    pct(&l["sent_to_answer_ms"]),
                    f(&l["server_cpu_ms_per_beacon"])
                ),
            );
            let t = &b["trigger_to_first_fix_stored"];
            row(
                format!("10. SOS {label}: phone trigger -> first fix stored"),
                format!(
                    "{} ({}/{} done)",
                    pct(&t["latency_ms"]),
                    t["completed"],
                    t["triggers"]
                ),
            );
        }
    }
}
