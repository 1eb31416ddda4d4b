//! SOS beacons over the phone's open live sync connection (ADR 0005, amended): with the
//! connection online, beacons go over it and are stored exactly once; when the connection is
//! killed after the server stored a batch but before its acknowledgment reached the phone, or
//! when the acknowledgment does not come in time, the phone sends the batch over HTTPS at
//! once: nothing is lost and no beacon is stored twice.
//!
//! The phone reaches the server through a small TCP proxy that can cut the connection
//! carrying a `sotong-sos-ack` frame (server-to-client frames are not masked, so the proxy
//! sees the type), or swallow those frames.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sotong_core::client::{
    Client, LiveState, Rejected, SosLinkState, SosListener, SosOptions, SyncListener,
};
use sotong_core::sos::{Fix, FixMethod, IncidentId, ServerEvent, TriggerMethod};
use sotong_core::DocumentId;
use sotong_e2e::{new_phone_number, Backend, Phone, ServerLike, TestServer};
use sotong_server::store::{StoredBeacon, Via};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the proxy does to server-to-client bytes holding a `sotong-sos-ack` frame.
#[derive(Default)]
struct Faults {
    /// Cut the connection instead of forwarding the next one (once).
    kill_next_ack: AtomicBool,
    /// Drop every one, keeping the connection open.
    swallow_acks: AtomicBool,
    /// Connections cut.
    kills: AtomicUsize,
    /// Acks seen going to the phone (forwarded or not).
    acks_seen: AtomicUsize,
}

struct Proxy {
    url: String,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(target: std::net::SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let faults = Arc::new(Faults::default());
    let f = faults.clone();
    let task = tokio::spawn(async move {
        let mut pipes = tokio::task::JoinSet::new();
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            pipes.spawn(pipe(inbound, outbound, f.clone()));
        }
    });
    Proxy { url, faults, task }
}

async fn pipe(inbound: TcpStream, outbound: TcpStream, faults: Arc<Faults>) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut from_phone, mut to_phone) = inbound.into_split();
    let (mut from_server, mut to_server) = outbound.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_phone, &mut to_server).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if chunk.windows(14).any(|w| w == b"sotong-sos-ack") {
            faults.acks_seen.fetch_add(1, Ordering::SeqCst);
            if faults.kill_next_ack.swap(false, Ordering::SeqCst) {
                faults.kills.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if faults.swallow_acks.load(Ordering::SeqCst) {
                continue;
            }
        }
        if to_phone.write_all(chunk).await.is_err() {
            break;
        }
    }
    // Both directions end: the phone sees its connection die.
    up.abort();
}

/// The server as the phone sees it: through the proxy.
struct Proxied<'a> {
    server: &'a TestServer,
    url: String,
}

impl ServerLike for Proxied<'_> {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn store(&self) -> Arc<dyn sotong_server::store::Store> {
        self.server.store()
    }
    fn latest_dev_code(&self, phone: &str) -> Option<String> {
        self.server.latest_dev_code(phone)
    }
}

/// Live sync's states, as a channel.
struct LiveProbe(mpsc::UnboundedSender<LiveState>);

impl SyncListener for LiveProbe {
    fn draft_changed(&self, _id: DocumentId) {}
    fn draft_rejected(&self, _rejected: Rejected) {}
    fn state_changed(&self, state: LiveState) {
        let _ = self.0.send(state);
    }
}

/// The SOS sender's states, as a channel.
struct SosProbe(mpsc::UnboundedSender<SosLinkState>);

impl SosListener for SosProbe {
    fn state_changed(&self, state: SosLinkState) {
        let _ = self.0.send(state);
    }
    fn event(&self, _event: ServerEvent) {}
}

async fn until_online(rx: &mut mpsc::UnboundedReceiver<LiveState>) {
    while let Some(state) = rx.recv().await {
        if state == LiveState::Online {
            return;
        }
    }
    panic!("live sync ended before it was online");
}

/// Waits until the sender has delivered everything queued.
async fn delivered(client: &Client, rx: &mut mpsc::UnboundedReceiver<SosLinkState>) {
    loop {
        let state = rx.recv().await.expect("the sender ended");
        if state == SosLinkState::Waiting && client.sos_pending_beacons(1).unwrap().is_empty() {
            return;
        }
    }
}

fn fix(n: u32) -> Fix {
    Fix {
        lat: 37.5665 + f64::from(n) * 0.0004,
        lon: 126.978,
        accuracy_m: 8.0,
        altitude_m: None,
        speed_mps: None,
        heading_deg: None,
        time_ms: sotong_core::clock::unix_millis_now() - 100,
        method: FixMethod::Gps,
        battery_pct: Some(70),
    }
}

fn options(live_ack_timeout: Duration) -> SosOptions {
    SosOptions {
        first_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(200),
        events_wait: Duration::from_secs(25),
        batch: 100,
        live_ack_timeout,
    }
}

/// A registered phone behind a proxy, live sync online through it.
async fn live_phone(
    server: &TestServer,
) -> (
    Phone,
    Proxy,
    sotong_core::client::LiveSync,
    mpsc::UnboundedReceiver<LiveState>,
) {
    let proxy = proxy(server.addr()).await;
    let via = Proxied {
        server,
        url: proxy.url.clone(),
    };
    let phone = Phone::new(&via);
    phone.register(&via, &new_phone_number()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let live = phone
        .client
        .start_live_sync(Arc::new(LiveProbe(tx)))
        .await
        .expect("live sync");
    until_online(&mut rx).await;
    (phone, proxy, live, rx)
}

/// The incident's stored beacons: seqs 1..=n, each once.
async fn stored(server: &TestServer, id: &IncidentId, n: u32) -> Vec<StoredBeacon> {
    let trail = server.store().sos_beacons(id).await.unwrap();
    let seqs: Vec<u32> = trail.iter().map(|b| b.beacon.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "every beacon once");
    trail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_go_over_the_open_connection_and_are_stored_once() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::start(backend).await;
        let (phone, proxy, live, _states) = live_phone(&server).await;
        let id = phone.client.sos_trigger(TriggerMethod::ButtonHold).unwrap();
        for n in 0..3 {
            phone.client.sos_push_fix(fix(n)).unwrap();
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sender = phone
            .client
            .sos_start_transport(Arc::new(SosProbe(tx)), options(Duration::from_secs(10)))
            .unwrap();
        delivered(&phone.client, &mut rx).await;
        // More fixes while the sender waits for events: the same way.
        for n in 3..6 {
            phone.client.sos_push_fix(fix(n)).unwrap();
        }
        delivered(&phone.client, &mut rx).await;
        let trail = stored(&server, &id, 7).await;
        assert!(
            trail.iter().all(|b| b.via == Via::Live),
            "{backend:?}: every beacon came over the live connection"
        );
        assert!(proxy.faults.acks_seen.load(Ordering::SeqCst) >= 2);
        sender.stop().await;
        live.stop().await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_before_the_ack_falls_back_to_https() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (phone, proxy, live, mut states) = live_phone(&server).await;
    proxy.faults.kill_next_ack.store(true, Ordering::SeqCst);
    let id = phone.client.sos_trigger(TriggerMethod::PowerKey).unwrap();
    for n in 0..4 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    // A long ack timeout: only the closed connection can make the phone fall back in time.
    let sender = phone
        .client
        .sos_start_transport(Arc::new(SosProbe(tx)), options(Duration::from_secs(600)))
        .unwrap();
    delivered(&phone.client, &mut rx).await;
    assert_eq!(proxy.faults.kills.load(Ordering::SeqCst), 1);
    // The batch was stored over the connection before it was cut; the HTTPS copy that
    // followed was a duplicate, and the first copy won.
    let trail = stored(&server, &id, 5).await;
    assert!(trail.iter().all(|b| b.via == Via::Live));
    // Live sync comes back by itself; later beacons go over it again.
    until_online(&mut states).await;
    for n in 4..6 {
        phone.client.sos_push_fix(fix(n)).unwrap();
    }
    delivered(&phone.client, &mut rx).await;
    let trail = stored(&server, &id, 7).await;
    assert!(trail[5..].iter().all(|b| b.via == Via::Live));
    sender.stop().await;
    live.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_that_does_not_come_in_time_falls_back_to_https() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (phone, proxy, live, _states) = live_phone(&server).await;
    proxy.faults.swallow_acks.store(true, Ordering::SeqCst);
    let id = phone.client.sos_trigger(TriggerMethod::Widget).unwrap();
    phone.client.sos_push_fix(fix(0)).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sender = phone
        .client
        .sos_start_transport(Arc::new(SosProbe(tx)), options(Duration::from_millis(300)))
        .unwrap();
    delivered(&phone.client, &mut rx).await;
    assert!(proxy.faults.acks_seen.load(Ordering::SeqCst) >= 1);
    assert_eq!(proxy.faults.kills.load(Ordering::SeqCst), 0);
    stored(&server, &id, 2).await;
    sender.stop().await;
    live.stop().await;
    server.stop().await;
}
