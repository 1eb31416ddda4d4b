//! Phase 7: server RSS with many idle authenticated WebSocket devices: each device is
//! registered (one citizen each), connects to `/v1/sync` with its bearer token, joins, and
//! then only answers pings.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sotong_core::wire::{PeerMetadata, WireMessage, PROTOCOL_VERSION};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{http_client, register_token};
use crate::{round, Plan, Server};

/// Registrations and connections in flight at once.
const PARALLEL: usize = 32;

/// Raises this process's open-file limit to its hard limit (children, the server among
/// them, inherit it). Returns the new soft limit.
pub fn raise_nofile() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

pub async fn phase_idle(plan: &Plan, bin: &Path, root: &Path) -> Result<Value> {
    let n = plan.idle_devices;
    let nofile = raise_nofile()?;
    // Each connection is a socket in the server and one in the bench.
    if (nofile as usize) < n + 200 {
        bail!("open-file limit {nofile} is too low for {n} connections");
    }
    let server = Server::spawn(bin, &root.join("srv-idle"))?;
    let rss_start = server.rss_kb()?;

    eprintln!("      registering {n} devices ...");
    let t = Instant::now();
    let tokens = register_all(&server, n).await?;
    let register_s = t.elapsed().as_secs_f64();
    crate::settle().await;
    let rss_registered = server.rss_kb()?;

    eprintln!("      connecting {n} devices ...");
    let open = Arc::new(AtomicUsize::new(0));
    let ws_url = format!("{}/v1/sync", server.url.replacen("http://", "ws://", 1));
    let t = Instant::now();
    let mut readers = JoinSet::new();
    let mut failed = 0usize;
    let mut first_error = None;
    let mut pending = JoinSet::new();
    let mut next = 0;
    while next < tokens.len() || !pending.is_empty() {
        while next < tokens.len() && pending.len() < PARALLEL {
            let (url, token) = (ws_url.clone(), tokens[next].clone());
            pending.spawn(async move { connect_joined(&url, &token, next).await });
            next += 1;
        }
        if let Some(joined) = pending.join_next().await {
            match joined.context("connect task")? {
                Ok(stream) => {
                    let open = open.clone();
                    open.fetch_add(1, Ordering::Relaxed);
                    readers.spawn(async move {
                        idle(stream).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    let connect_s = t.elapsed().as_secs_f64();
    // Let the server finish what the connections started, then read its memory.
    tokio::time::sleep(Duration::from_secs(plan.idle_wait_s)).await;
    let rss_idle = server.rss_kb()?;
    let hwm = server.status_kb("VmHWM")?;
    let still_open = open.load(Ordering::Relaxed);
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    let connected = n - failed;
    let per_device = if connected > 0 {
        json!(round(
            rss_idle.saturating_sub(rss_registered) as f64 / connected as f64,
            2
        ))
    } else {
        Value::Null
    };
    Ok(json!({
        "devices": n,
        "connected": connected,
        "connect_failures": failed,
        "first_connect_error": first_error,
        "open_when_measured": still_open,
        "wait_before_measure_s": plan.idle_wait_s,
        "registration_s": round(register_s, 1),
        "connect_s": round(connect_s, 1),
        "server_rss_start_kb": rss_start,
        "server_rss_registered_kb": rss_registered,
        "server_rss_idle_kb": rss_idle,
        "server_rss_idle_mib": round(rss_idle as f64 / 1024.0, 1),
        "server_hwm_kb": hwm,
        "rss_per_idle_device_kb": per_device,
        "target": "server RSS <= 1 GiB with 10,000 idle devices",
        "server_log_warnings_errors": server.log_lines_containing(&["ERROR", "WARN"])?,
    }))
}

/// One citizen per device: the per-account connection limit must not be what is measured.
async fn register_all(server: &Server, n: usize) -> Result<Vec<String>> {
    if n > 10_000 {
        bail!("at most 10,000 devices: the log shows only a number's last four digits");
    }
    let http = http_client()?;
    let base = std::process::id() % 10_000;
    let mut out = vec![String::new(); n];
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < PARALLEL {
            let (http, url, codes) = (http.clone(), server.url.clone(), server.codes.clone());
            let i = next;
            let phone = format!("+8210{base:04}{i:04}");
            set.spawn(async move {
                let token = register_token(&http, &url, &codes, &phone, &format!("idle {i}")).await;
                (i, token)
            });
            next += 1;
        }
        if let Some(joined) = set.join_next().await {
            let (i, token) = joined.context("register task")?;
            out[i] = token.with_context(|| format!("register idle device {i}"))?;
        }
    }
    Ok(out)
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with a bearer token, sends `join`, and waits for the server's `peer`.
pub(crate) async fn connect_joined(url: &str, token: &str, i: usize) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // Small client buffers: the bench holds as many sockets as the server does.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    let join = WireMessage::Join {
        sender_id: format!("idle-{i}"),
        supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
        }),
    };
    ws.send(Message::Binary(join.encode().into())).await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .map_err(|_| anyhow!("no answer to join within 30 s"))?
        .ok_or_else(|| anyhow!("closed before answering join"))??;
    match answer {
        Message::Binary(b) => match WireMessage::decode(&b)? {
            WireMessage::Peer { .. } => Ok(ws),
            other => bail!("join answered with {other:?}"),
        },
        other => bail!("join answered with {other:?}"),
    }
}

/// Reads (and so answers pings) until the server closes the connection.
async fn idle(mut ws: Ws) {
    while let Some(Ok(_)) = ws.next().await {}
}
