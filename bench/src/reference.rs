//! Phase 6: Sotong side by side with the reference automerge-repo sync server, in one run,
//! driven by the same JavaScript workload (`bench/js/workload.mjs`): server CPU per created
//! document and per relayed edit, latency, RSS, and the ratios Sotong / reference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::accounts::{http_client, register_token};
use crate::{new_phone, round, stats, Plan, Server};

/// Where the JavaScript side lives (`npm ci` there, or `scripts/bench.sh`, installs it).
pub fn js_dir() -> PathBuf {
    match std::env::var_os("SOTONG_BENCH_JS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("js"),
    }
}

fn check_js(js: &Path) -> Result<()> {
    if !js.join("node_modules/@automerge/automerge-repo").exists() {
        bail!(
            "{} has no node_modules: run scripts/bench.sh, or `npm ci` in that directory",
            js.display()
        );
    }
    Ok(())
}

pub async fn phase_reference(plan: &Plan, bin: &Path, root: &Path, hz: f64) -> Result<Value> {
    let js = js_dir();
    check_js(&js)?;
    let node_version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    // The reference first, then Sotong: never both at once, so neither slows the other.
    eprintln!("      reference automerge-repo server ...");
    let reference = {
        let server = RefServer::spawn(&js, &root.join("ref-server"))?;
        let config = json!({
            "server": server.url,
            "auth": "none",
            "pairs": vec![json!({}); plan.ref_pairs],
        });
        let out = run_workload(
            plan,
            &js,
            &root.join("ref-config.json"),
            &config,
            server.pid,
        )?;
        summarise(out, hz)
    };
    eprintln!("      sotong-server ...");
    let sotong = {
        let server = Server::spawn(bin, &root.join("srv-vs-ref"))?;
        let pairs = register_pairs(&server, plan.ref_pairs).await?;
        let config = json!({ "server": server.url, "auth": "ticket", "pairs": pairs });
        let out = run_workload(
            plan,
            &js,
            &root.join("sotong-config.json"),
            &config,
            server.pid,
        )?;
        let mut s = summarise(out, hz);
        s["server_log_warnings_errors"] = json!(server.log_lines_containing(&["ERROR", "WARN"])?);
        if std::env::var_os("SOTONG_BENCH_TRACE").is_some() {
            // Diagnostics: keep the server's log.
            let log = root.join("srv-vs-ref").join("server.log");
            let _ = std::fs::copy(log, "target/bench-reference-sotong.log");
        }
        s
    };

    let ratio = |path: &[&str]| -> Value {
        let get = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).as_f64();
        match (get(&sotong), get(&reference)) {
            (Some(s), Some(r)) if r > 0.0 => json!(round(s / r, 3)),
            _ => Value::Null,
        }
    };
    let ratios = json!({
        "cpu_per_created_doc": ratio(&["create", "server_cpu_ms_per_doc"]),
        "cpu_per_relayed_edit": ratio(&["edit", "server_cpu_ms_per_edit"]),
        "create_latency_p50": ratio(&["create", "latency_ms", "median_ms"]),
        "edit_latency_p50": ratio(&["edit", "latency_ms", "median_ms"]),
        "rss_after_workload": ratio(&["edit", "rss_kb"]),
        "peak_rss": ratio(&["edit", "hwm_kb"]),
    });
    Ok(json!({
        "workload": {
            "pairs": plan.ref_pairs,
            "docs_per_pair": plan.ref_docs_per_pair,
            "edits_per_pair": plan.ref_edits_per_pair,
            "chars": plan.draft_chars,
            "client": "@automerge/automerge-repo 2.5.6 (bench/js/workload.mjs), one Repo + WebSocket per device",
            "reference_server": "bench/js/ref_server.mjs: automerge-repo 2.5.6, NodeWSServerAdapter, NodeFSStorageAdapter, sharePolicy false",
            "node": node_version,
        },
        "reference": reference,
        "sotong": sotong,
        "sotong_over_reference": ratios,
    }))
}

/// `count` citizens, each with two registered devices: `[{"a": token, "b": token}]`.
async fn register_pairs(server: &Server, count: usize) -> Result<Vec<Value>> {
    let http = http_client()?;
    let mut set = JoinSet::new();
    for i in 0..count {
        let (http, url, codes) = (http.clone(), server.url.clone(), server.codes.clone());
        let phone = new_phone();
        set.spawn(async move {
            let a = register_token(&http, &url, &codes, &phone, &format!("js {i} A")).await?;
            let b = register_token(&http, &url, &codes, &phone, &format!("js {i} B")).await?;
            Ok::<_, anyhow::Error>((i, json!({ "a": a, "b": b })))
        });
    }
    let mut pairs = vec![Value::Null; count];
    while let Some(joined) = set.join_next().await {
        let (i, p) = joined.context("register task")??;
        pairs[i] = p;
    }
    Ok(pairs)
}

fn run_workload(
    plan: &Plan,
    js: &Path,
    config_path: &Path,
    config: &Value,
    pid: u32,
) -> Result<Value> {
    std::fs::write(config_path, serde_json::to_vec(config)?)?;
    let out = Command::new("node")
        .arg(js.join("workload.mjs"))
        .arg("--config")
        .arg(config_path)
        .arg("--pid")
        .arg(pid.to_string())
        .arg("--docs-per-pair")
        .arg(plan.ref_docs_per_pair.to_string())
        .arg("--edits-per-pair")
        .arg(plan.ref_edits_per_pair.to_string())
        .arg("--chars")
        .arg(plan.draft_chars.to_string())
        .current_dir(js)
        .stderr(Stdio::inherit())
        .output()
        .context("run node workload.mjs (is Node 20 installed?)")?;
    if !out.status.success() {
        bail!("the JS workload failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("JS workload output")
}

/// Turns the workload's raw figures into per-operation costs over completed operations.
fn summarise(mut out: Value, hz: f64) -> Value {
    let mut stage = |name: &str, per: &str| {
        let s = &mut out[name];
        let done = s["completed"].as_u64().unwrap_or(0);
        let cpu_ms = s["server_ticks"].as_f64().unwrap_or(0.0) * 1000.0 / hz;
        let samples: Vec<f64> = s["latency_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        s["latency_ms"] = stats(samples);
        if let Some(split) = s.get_mut("split").and_then(Value::as_object_mut) {
            for v in split.values_mut() {
                let samples = v
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                *v = stats(samples);
            }
        }
        s["server_cpu_ms"] = json!(round(cpu_ms, 0));
        s[per] = if done > 0 {
            json!(round(cpu_ms / done as f64, 4))
        } else {
            Value::Null
        };
        let wall = s["wall_s"].as_f64().unwrap_or(0.0);
        s["wall_s"] = json!(round(wall, 3));
        s["per_s"] = if wall > 0.0 {
            json!(round(done as f64 / wall, 1))
        } else {
            Value::Null
        };
    };
    stage("create", "server_cpu_ms_per_doc");
    stage("edit", "server_cpu_ms_per_edit");
    out
}

/// The reference server (`node bench/js/ref_server.mjs`), killed on drop.
struct RefServer {
    child: Child,
    pid: u32,
    url: String,
}

impl RefServer {
    fn spawn(js: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port_file = dir.join("addr");
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = Command::new("node")
            .arg(js.join("ref_server.mjs"))
            .arg("--dir")
            .arg(dir.join("data"))
            .arg("--port-file")
            .arg(&port_file)
            .current_dir(js)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start node ref_server.mjs")?;
        let pid = child.id();
        let mut server = RefServer {
            child,
            pid,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                if !addr.trim().is_empty() {
                    server.url = format!("http://{}", addr.trim());
                    return Ok(server);
                }
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(anyhow!("the reference server exited ({status}) at start"));
            }
            if Instant::now() > deadline {
                bail!("the reference server did not write its port file within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
