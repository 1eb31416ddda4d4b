//! Harness for the end-to-end tests: a real server (in-process, on port 0) over SQLite or a
//! fresh PostgreSQL database, and phones that are real cores with their own SQLite files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sotong_core::client::Client;
use sotong_server::app::{serve, ServerHandle};
use sotong_server::config::Config;
use tempfile::TempDir;

/// Where the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// PostgreSQL on 127.0.0.1:5432, a database made for the test and dropped after.
    Postgres,
}

/// Both backends, for tests that run on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// The PostgreSQL server tests use (trust auth on loopback).
pub fn postgres_admin_url() -> String {
    std::env::var("SOTONG_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL database that exists for one test and is dropped when this is dropped.
pub struct TempPgDb {
    name: String,
    url: String,
}

impl TempPgDb {
    /// Creates `sotong_test_<random>`.
    pub async fn create() -> Self {
        let name = format!("sotong_test_{:016x}", rand::random::<u64>());
        let (client, conn) = tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        drop(client);
        let _ = task.await;
        let base = postgres_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("bad admin url"),
        };
        Self { name, url }
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TempPgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running server and what it needs to restart on the same data.
pub struct TestServer {
    handle: Option<ServerHandle>,
    data: TempDir,
    pg: Option<TempPgDb>,
    /// Where the server listened before [`TestServer::go_down`].
    down_at: Option<std::net::SocketAddr>,
    /// Adjusts the configuration on every (re)start.
    pub tweak: fn(&mut Config),
}

impl TestServer {
    /// Starts a server on `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server on `backend` with a configuration tweak.
    pub async fn start_with(backend: Backend, tweak: fn(&mut Config)) -> Self {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TempPgDb::create().await),
        };
        let mut server = Self {
            handle: None,
            data: tempfile::tempdir().expect("tempdir"),
            pg,
            down_at: None,
            tweak,
        };
        server.boot().await;
        server
    }

    fn config(&self) -> Config {
        let mut config = Config::for_tests(self.data.path());
        config.database_url = self.pg.as_ref().map(|p| p.url().to_owned());
        (self.tweak)(&mut config);
        config
    }

    async fn boot(&mut self) {
        // Port 0 the first time; a restart takes the port the system gave the first server,
        // as a real server restarts at the same address.
        let addr = self
            .handle
            .as_ref()
            .map(|h| h.addr())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the server port");
        self.handle = Some(serve(listener, self.config()).await.expect("server starts"));
    }

    /// A second server instance on the same PostgreSQL database (scale-out), on its own port.
    pub async fn second_instance(&self) -> SecondInstance {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let handle = serve(listener, self.config())
            .await
            .expect("second instance starts");
        SecondInstance { handle }
    }

    /// Stops the server (gracefully) and starts a new one on the same data and address.
    pub async fn restart(&mut self) {
        let addr = self.handle().addr();
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.serve_again(addr).await;
    }

    /// Stops the server for an outage, keeping its data and address for
    /// [`TestServer::come_back`].
    pub async fn go_down(&mut self) {
        if let Some(h) = self.handle.take() {
            self.down_at = Some(h.addr());
            h.shutdown().await;
        }
    }

    /// Starts the server again after [`TestServer::go_down`], on the same data and address.
    pub async fn come_back(&mut self) {
        let addr = self.down_at.take().expect("the server went down first");
        self.serve_again(addr).await;
    }

    /// Serves again on the same data and `addr` (the port phones know).
    async fn serve_again(&mut self, addr: std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("rebind the server port");
        self.handle = Some(
            serve(listener, self.config())
                .await
                .expect("server starts again"),
        );
    }

    fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server running")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.handle().addr())
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle().addr()
    }

    /// `ws://127.0.0.1:PORT/v1/sync`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/sync", self.handle().addr())
    }

    /// The server's store, as tests read it.
    pub fn store(&self) -> std::sync::Arc<dyn sotong_server::store::Store> {
        self.handle().store()
    }

    /// The server's sync hub (loaded documents, connections).
    pub fn hub(&self) -> std::sync::Arc<sotong_server::sync::Hub> {
        self.handle().hub()
    }

    /// The last one-time code the development notifier sent to `phone`.
    pub async fn dev_code(&self, phone: &str) -> String {
        self.handle()
            .latest_dev_code(phone)
            .expect("a code was sent")
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// Another instance sharing a [`TestServer`]'s database.
pub struct SecondInstance {
    handle: ServerHandle,
}

impl ServerLike for SecondInstance {
    fn url(&self) -> String {
        format!("http://{}", self.handle.addr())
    }
    fn store(&self) -> std::sync::Arc<dyn sotong_server::store::Store> {
        self.handle.store()
    }
    fn latest_dev_code(&self, phone: &str) -> Option<String> {
        self.handle.latest_dev_code(phone)
    }
}

impl SecondInstance {
    /// Its sync hub.
    pub fn hub(&self) -> std::sync::Arc<sotong_server::sync::Hub> {
        self.handle.hub()
    }

    /// Stops it.
    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// What phones need of a server.
pub trait ServerLike {
    /// Its base URL.
    fn url(&self) -> String;
    /// Its store.
    fn store(&self) -> std::sync::Arc<dyn sotong_server::store::Store>;
    /// The last one-time code its development notifier sent to `phone`.
    fn latest_dev_code(&self, phone: &str) -> Option<String>;
}

impl ServerLike for TestServer {
    fn url(&self) -> String {
        TestServer::url(self)
    }
    fn store(&self) -> std::sync::Arc<dyn sotong_server::store::Store> {
        TestServer::store(self)
    }
    fn latest_dev_code(&self, phone: &str) -> Option<String> {
        self.handle().latest_dev_code(phone)
    }
}

static PHONE_NUMBERS: AtomicU32 = AtomicU32::new(0);

/// A fresh phone number for a test citizen.
pub fn new_phone_number() -> String {
    let n = PHONE_NUMBERS.fetch_add(1, Ordering::Relaxed);
    format!("+82105{:03}{:04}", std::process::id() % 1000, n)
}

/// A simulated phone: a real core over its own SQLite file.
pub struct Phone {
    /// The core.
    pub client: Client,
    dir: TempDir,
}

impl Phone {
    /// A new install talking to `server`.
    pub fn new(server: &impl ServerLike) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = Client::open(dir.path(), &server.url()).expect("open core");
        Self { client, dir }
    }

    /// Registers this phone as (a device of) the citizen with `number`.
    pub async fn register(&self, server: &impl ServerLike, number: &str) {
        self.client
            .request_code(number)
            .await
            .expect("request code");
        let code = server.latest_dev_code(number).expect("a code was sent");
        self.client
            .register(number, &code, "test phone")
            .await
            .expect("register");
    }

    /// Reopens the core on the same files (an app restart).
    pub fn reopen(&mut self, server: &TestServer) {
        self.client = Client::open(self.dir.path(), &server.url()).expect("reopen core");
    }

    /// Its data directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The bearer token this phone holds (for tests that speak HTTP or WebSocket directly).
    pub fn token(&self) -> String {
        let store = sotong_core::client::store::Store::open(
            &self.dir.path().join(sotong_core::client::DATABASE_FILE),
        )
        .expect("open store");
        store.account().expect("account").expect("registered").token
    }
}

/// Repeats `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hand-driven WebSocket peer, for tests that speak the protocol directly (a tampered client,
/// garbage input).
pub struct RawPeer {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The peer id it joined with.
    pub peer_id: String,
}

impl RawPeer {
    /// Connects with a bearer token (no join yet). Returns the HTTP status on refusal.
    pub async fn connect(server: &impl ServerLike, token: Option<&str>) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let ws_url = format!("{}/v1/sync", server.url().replacen("http://", "ws://", 1));
        let mut req = ws_url.into_client_request().expect("request");
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((socket, _)) => Ok(Self {
                socket,
                peer_id: format!("raw-{:08x}", rand::random::<u32>()),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// Connects and joins.
    pub async fn join(server: &impl ServerLike, token: &str) -> Self {
        let mut peer = Self::connect(server, Some(token)).await.expect("connect");
        peer.send(&sotong_core::wire::WireMessage::Join {
            sender_id: peer.peer_id.clone(),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: None,
        })
        .await;
        match peer.recv().await {
            Some(sotong_core::wire::WireMessage::Peer { .. }) => peer,
            other => panic!("expected peer, got {other:?}"),
        }
    }

    /// Sends a message.
    pub async fn send(&mut self, msg: &sotong_core::wire::WireMessage) {
        self.send_bytes(msg.encode()).await;
    }

    /// Sends raw bytes as one binary frame.
    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                bytes.into(),
            ))
            .await
            .expect("send");
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Reads until the server's close frame (skipping messages) and returns its code and
    /// reason; `None` if the socket ended without one or nothing came within 30 s.
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        read_close_frame(&mut self.socket).await
    }

    /// The socket itself, for tests that split it into a sending and a reading half.
    pub fn into_socket(
        self,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        self.socket
    }

    /// The next message, or `None` if the socket closed or nothing came within 5 s.
    pub async fn recv(&mut self) -> Option<sotong_core::wire::WireMessage> {
        self.recv_within(Duration::from_secs(5)).await
    }

    /// The next message, or `None` if the socket closed or nothing came within `timeout`.
    pub async fn recv_within(
        &mut self,
        timeout: Duration,
    ) -> Option<sotong_core::wire::WireMessage> {
        use futures_util::StreamExt;
        loop {
            let next = tokio::time::timeout(timeout, self.socket.next())
                .await
                .ok()??;
            match next {
                Ok(tokio_tungstenite::tungstenite::Message::Binary(b)) => {
                    return Some(
                        sotong_core::wire::WireMessage::decode(&b)
                            .expect("server sends valid frames"),
                    )
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }
}

/// Reads a WebSocket until the close frame and returns its code and reason (see
/// [`RawPeer::close_frame`]).
pub async fn read_close_frame<S>(socket: &mut S) -> Option<(u16, String)>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .ok()??;
        match next {
            Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Resident memory of this process, in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// An HTTP client for tests (installs the process's TLS crypto provider first).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// What a live sync session reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// A state change.
    State(sotong_core::client::LiveState),
    /// A draft received the server's changes.
    Changed(sotong_core::DocumentId),
    /// A draft's changes were refused.
    Rejected(sotong_core::client::Rejected),
}

/// A live-sync listener that ignores everything, for phones whose events a test does not read.
pub struct Quiet;

impl sotong_core::client::SyncListener for Quiet {
    fn draft_changed(&self, _id: sotong_core::DocumentId) {}
    fn draft_rejected(&self, _rejected: sotong_core::client::Rejected) {}
    fn stopped(&self, _error: Option<String>) {}
}

/// A live sync listener that forwards everything it hears to a [`LiveEvents`] stream.
pub struct LiveRecorder {
    tx: tokio::sync::mpsc::UnboundedSender<LiveEvent>,
}

/// The events a [`LiveRecorder`] heard, for a test to await.
pub struct LiveEvents {
    rx: tokio::sync::mpsc::UnboundedReceiver<LiveEvent>,
    seen: Vec<LiveEvent>,
}

impl LiveRecorder {
    /// A recorder and the stream of what it hears.
    pub fn new() -> (std::sync::Arc<Self>, LiveEvents) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            std::sync::Arc::new(Self { tx }),
            LiveEvents {
                rx,
                seen: Vec::new(),
            },
        )
    }
}

impl sotong_core::client::SyncListener for LiveRecorder {
    fn state_changed(&self, state: sotong_core::client::LiveState) {
        let _ = self.tx.send(LiveEvent::State(state));
    }
    fn draft_changed(&self, id: sotong_core::DocumentId) {
        let _ = self.tx.send(LiveEvent::Changed(id));
    }
    fn draft_rejected(&self, rejected: sotong_core::client::Rejected) {
        let _ = self.tx.send(LiveEvent::Rejected(rejected));
    }
}

impl LiveEvents {
    /// Awaits the next event matching `wanted` and returns it. The 60 s limit only keeps a
    /// broken build from hanging; it is no assertion on speed.
    pub async fn until(&mut self, what: &str, wanted: impl Fn(&LiveEvent) -> bool) -> LiveEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if wanted(&e) {
                        return e;
                    }
                }
                Ok(None) => panic!("the session ended before {what}; saw {:?}", self.seen),
                Err(_) => panic!("no {what}; saw {:?}", self.seen),
            }
        }
    }

    /// Awaits the session's next state matching `wanted`.
    pub async fn state(
        &mut self,
        what: &str,
        wanted: impl Fn(&sotong_core::client::LiveState) -> bool,
    ) -> sotong_core::client::LiveState {
        match self
            .until(what, |e| matches!(e, LiveEvent::State(s) if wanted(s)))
            .await
        {
            LiveEvent::State(s) => s,
            _ => unreachable!("filtered to states"),
        }
    }

    /// Everything heard so far.
    pub fn seen(&self) -> &[LiveEvent] {
        &self.seen
    }
}
