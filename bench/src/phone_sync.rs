//! Phase 9: the phone's peak memory and time during a real sync. Fresh child processes, each
//! a real `Client` over its own SQLite file: one creates N drafts offline, one uploads them
//! with `sync()`, and one on the citizen's second device downloads them with `sync()`. Each
//! reports its VmHWM (peak RSS) and wall time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sotong_core::client::Client;

use crate::{new_phone, proc_status_kb, register, round, text, Plan, Server};

pub async fn phase_phone_sync(plan: &Plan, bin: &Path, root: &Path, exe: &Path) -> Result<Value> {
    let n = plan.phone_sync_drafts;
    let server = Server::spawn(bin, &root.join("srv-phone-sync"))?;
    let phone = new_phone();
    let (dir_a, dir_b) = (root.join("phone-sync-a"), root.join("phone-sync-b"));
    // Registered here, then closed: each child opens the same data directory afresh.
    drop(register(&server, &dir_a, &phone, "device A").await?);
    drop(register(&server, &dir_b, &phone, "device B").await?);

    eprintln!("      creating {n} drafts (child process) ...");
    let create = child(exe, &["create", &server.url, &n.to_string()], &dir_a)?;
    eprintln!("      device A uploads them with sync() ...");
    let upload = child(exe, &["sync", &server.url], &dir_a)?;
    // A second upload sync sends what a failed first one left.
    let upload_again = if upload["failed"].is_string() {
        eprintln!("      device A syncs again ...");
        child(exe, &["sync", &server.url], &dir_a)?
    } else {
        Value::Null
    };
    eprintln!("      device B downloads them with sync() ...");
    let download = child(exe, &["sync", &server.url], &dir_b)?;
    Ok(json!({
        "drafts": n,
        "chars": plan.draft_chars,
        "create_offline": create,
        "upload_sync": upload,
        "download_sync": download,
        "upload_sync_again_after_failure": upload_again,
        "target": "peak phone RSS <= 100 MiB while syncing 1,000 drafts of 5k characters",
        "server_log_warnings_errors": server.log_lines_containing(&["ERROR", "WARN"])?,
    }))
}

fn child(exe: &Path, args: &[&str], dir: &Path) -> Result<Value> {
    let out = Command::new(exe)
        .arg("--phone-child")
        .arg(dir)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("run the phone child")?;
    if !out.status.success() {
        bail!("phone child {args:?} failed: {}", out.status);
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).context("phone child output")?;
    if let Some(kb) = v["peak_rss_kb"].as_f64() {
        v["peak_rss_mib"] = json!(round(kb / 1024.0, 1));
    }
    Ok(v)
}

/// `--phone-child DIR create URL N` or `--phone-child DIR sync URL`: runs in a fresh process
/// and prints one JSON line.
pub fn phone_child(args: &[String]) -> Result<()> {
    let usage = || anyhow!("--phone-child DIR (create URL N | sync URL)");
    let dir = Path::new(args.first().ok_or_else(usage)?);
    let mode = args.get(1).ok_or_else(usage)?;
    let url = args.get(2).ok_or_else(usage)?;
    let client = Client::open(dir, url)?;
    let t = Instant::now();
    let mut out = match mode.as_str() {
        "create" => {
            let n: usize = args.get(3).ok_or_else(usage)?.parse()?;
            for i in 0..n {
                client.create_proposal(
                    &format!("제안 {i}"),
                    &text(crate::SMALL, 9000 + i as u64),
                    "transport",
                )?;
            }
            json!({ "created": n })
        }
        "sync" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // A failed sync still reports its time and peak memory, with the error.
            match rt.block_on(client.sync()) {
                Ok(report) => json!({
                    "documents_sent": report.documents_sent,
                    "documents_received": report.documents_received,
                    "rejected": report.rejected.len(),
                    "drafts_held": client.list_proposals()?.len(),
                }),
                Err(e) => json!({
                    "failed": e.to_string(),
                    "drafts_held": client.list_proposals()?.len(),
                }),
            }
        }
        _ => return Err(usage()),
    };
    out["wall_s"] = json!(round(t.elapsed().as_secs_f64(), 2));
    out["peak_rss_kb"] = json!(proc_status_kb("self", "VmHWM")?);
    out["rss_at_end_kb"] = json!(proc_status_kb("self", "VmRSS")?);
    println!("{out}");
    Ok(())
}
