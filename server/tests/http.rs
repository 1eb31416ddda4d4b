//! The HTTP API against real servers started in-process on port 0.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sotong_core::clock::{Clock as _, ManualClock, SystemClock};
use sotong_core::DocumentId;
use sotong_server::notifier::LogNotifier;
use sotong_server::store::DocumentMeta;
use sotong_server::{auth, serve, serve_with, AppState, Config, ServeError, ServerHandle};

const PHONE: &str = "+821012345678";

struct Server {
    handle: ServerHandle,
    http: Client,
    config: Config,
    /// The server's clock: time moves only when a test says so.
    clock: ManualClock,
}

impl Server {
    async fn start(mut config: Config) -> Self {
        // On a whole second, so that expiry arithmetic in seconds is exact.
        let clock = ManualClock::new(SystemClock.now_unix_millis() / 1000 * 1000);
        config.clock = Arc::new(clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = serve(listener, config.clone()).await.unwrap();
        // reqwest is built without a default crypto provider in this workspace.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            handle,
            http: Client::new(),
            config,
            clock,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.addr())
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get_authed(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn request_code(&self, phone: &str) -> String {
        let (status, body) = self.post("/v1/auth/code", json!({ "phone": phone })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.handle
            .latest_dev_code(&auth::normalize_phone(phone).unwrap())
            .expect("the dev notifier recorded the code")
    }

    /// Registers a device on `phone`; returns the answer.
    async fn register(&self, phone: &str, device: &str) -> Value {
        let code = self.request_code(phone).await;
        let (status, body) = self
            .post(
                "/v1/auth/register",
                json!({ "phone": phone, "code": code, "device_name": device }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The state a WebSocket handler would get (same store).
    fn state(&self) -> AppState {
        AppState::new(
            self.config.clone(),
            self.handle.store(),
            Arc::new(LogNotifier::new()),
        )
    }
}

fn sqlite_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(dir.path());
    (dir, config)
}

fn postgres_config(db: &common::PgDb) -> (tempfile::TempDir, Config) {
    let (dir, mut config) = sqlite_config();
    config.database_url = Some(db.url.clone());
    (dir, config)
}

fn token_of(body: &Value) -> String {
    body["token"].as_str().unwrap().to_owned()
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn registration_flow(server: &Server) {
    let first = server.register(PHONE, "Pixel 8").await;
    let token = token_of(&first);
    assert_eq!(token.len(), 43);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(
        first["expires_at"].as_i64().unwrap(),
        server.config.now_secs() + 90 * 24 * 3600
    );

    // A second device on the same number joins the same account. The number may be
    // written differently.
    let second = server.register("+82 10-1234-5678", "iPad").await;
    assert_eq!(second["account_id"], first["account_id"]);
    assert_ne!(second["device_id"], first["device_id"]);
    assert_ne!(token_of(&second), token);

    let other = server.register("+14155550100", "Other").await;
    assert_ne!(other["account_id"], first["account_id"]);

    let (status, body) = server.get_authed("/v1/documents", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "documents": [] }));

    let account = first["account_id"].as_i64().unwrap();
    let doc = DocumentMeta {
        id: DocumentId::random(),
        owner: account,
        kind: "proposal".into(),
        created_at: 1_700_000_000,
    };
    assert!(server.handle.store().create_document(&doc).await.unwrap());
    // Seen from either device of the account, not from another account.
    for t in [token.clone(), token_of(&second)] {
        let (status, body) = server.get_authed("/v1/documents", &t).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "documents": [{
                "id": doc.id.to_string(),
                "url": format!("automerge:{}", doc.id),
                "kind": "proposal",
                "created_at": 1_700_000_000,
            }] })
        );
    }
    let (_, body) = server.get_authed("/v1/documents", &token_of(&other)).await;
    assert_eq!(body, json!({ "documents": [] }));

    let device = auth::authenticate_token(&server.state(), &token)
        .await
        .unwrap();
    assert_eq!(device.account_id, account);
}

#[tokio::test]
async fn register_two_devices_on_one_account_sqlite() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
    registration_flow(&server).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn register_two_devices_on_one_account_postgres() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let (_dir, config) = postgres_config(&db);
    let server = Server::start(config).await;
    registration_flow(&server).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn forged_missing_and_malformed_tokens_are_401() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    server.register(PHONE, "Pixel").await;
    let forged = "A".repeat(43);
    for token in [forged.as_str(), "short", ""] {
        let (status, body) = server.get_authed("/v1/documents", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_error(&body, "invalid_token");
    }
    let res = server
        .http
        .get(server.url("/v1/documents"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_error(&res.json().await.unwrap(), "missing_token");
    let res = server
        .http
        .get(server.url("/v1/documents"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let (_dir, mut config) = sqlite_config();
    config.token_ttl = Duration::from_secs(1);
    let server = Server::start(config).await;
    let token = token_of(&server.register(PHONE, "Pixel").await);
    // Still valid for the last millisecond of its second, dead from the next.
    server.clock.advance(Duration::from_millis(999));
    let (status, body) = server.get_authed("/v1/documents", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.clock.advance(Duration::from_secs(1));
    let (status, body) = server.get_authed("/v1/documents", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "token_expired");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn wrong_codes_count_and_lock_out_after_five() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    let code = server.request_code(PHONE).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (0..5).rev() {
        let (status, body) = server
            .post(
                "/v1/auth/register",
                json!({ "phone": PHONE, "code": wrong, "device_name": "Pixel" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&body, "wrong_code");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} attempt")),
            "{body}"
        );
    }
    let (status, body) = server
        .post(
            "/v1/auth/register",
            json!({ "phone": PHONE, "code": code, "device_name": "Pixel" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "code_expired");

    // A new code works, once.
    let code = server.request_code(PHONE).await;
    let body = json!({ "phone": PHONE, "code": code, "device_name": "Pixel" });
    assert_eq!(
        server.post("/v1/auth/register", body.clone()).await.0,
        StatusCode::OK
    );
    let (status, again) = server.post("/v1/auth/register", body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&again, "code_expired");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn expired_code_is_refused() {
    let (_dir, mut config) = sqlite_config();
    config.code_ttl = Duration::from_secs(1);
    let server = Server::start(config).await;
    let code = server.request_code(PHONE).await;
    server.clock.advance(Duration::from_secs(2));
    let (status, body) = server
        .post(
            "/v1/auth/register",
            json!({ "phone": PHONE, "code": code, "device_name": "Pixel" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "code_expired");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn codes_are_rate_limited_per_number_and_per_client() {
    let (_dir, mut config) = sqlite_config();
    config.codes_per_client_per_hour = 8;
    let server = Server::start(config).await;
    for _ in 0..5 {
        server.request_code(PHONE).await;
    }
    let res = server
        .http
        .post(server.url("/v1/auth/code"))
        .json(&json!({ "phone": PHONE }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 3600);
    let body: Value = res.json().await.unwrap();
    assert_error(&body, "rate_limited");

    // Same client, other numbers: 3 more fit under 8 per client, the next does not.
    for n in 0..3 {
        server.request_code(&format!("+8210000000{n}")).await;
    }
    let (status, body) = server
        .post("/v1/auth/code", json!({ "phone": "+821099999999" }))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body["message"].as_str().unwrap().contains("address"),
        "{body}"
    );

    // An hour later the window has moved on: the number and the address may ask again.
    server.clock.advance(Duration::from_secs(3600));
    server.request_code(PHONE).await;
    server.request_code("+821099999999").await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    let raw = |body: &'static str| {
        server
            .http
            .post(server.url("/v1/auth/code"))
            .header("content-type", "application/json")
            .body(body)
    };
    for body in ["{not json", "{}", "[1,2]", r#"{"phone": 12}"#] {
        let res = raw(body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_error(&res.json().await.unwrap(), "invalid_json");
    }
    for phone in ["01012345678", "+82", "+82 10 abc", "+8210123456789012"] {
        let (status, body) = server
            .post("/v1/auth/code", json!({ "phone": phone }))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{phone}");
        assert_error(&body, "invalid_phone");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("international format"));
    }
    let (status, body) = server
        .post(
            "/v1/auth/register",
            json!({ "phone": PHONE, "code": "12ab56", "device_name": "Pixel" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_code_format");
    let (status, body) = server
        .post(
            "/v1/auth/register",
            json!({ "phone": PHONE, "code": "123456", "device_name": "  " }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_device_name");

    let res = server
        .http
        .post(server.url("/v1/auth/code"))
        .body(r#"{"phone":"+821012345678"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = json!({ "phone": PHONE, "padding": "x".repeat(100 * 1024) });
    let (status, body) = server.post("/v1/auth/code", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");

    let (status, body) = server.post("/v1/nowhere", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn tickets_are_single_use() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    let registered = server.register(PHONE, "Pixel").await;
    let token = token_of(&registered);

    let res = server
        .http
        .post(server.url("/v1/auth/ticket"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = server
        .http
        .post(server.url("/v1/auth/ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    let ticket = body["ticket"].as_str().unwrap();

    let state = server.state();
    let device = auth::redeem_ticket(&state, ticket).await.unwrap();
    assert_eq!(json!(device.account_id), registered["account_id"]);
    assert_eq!(json!(device.device_id), registered["device_id"]);
    let again = auth::redeem_ticket(&state, ticket).await.unwrap_err();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(again.code(), "invalid_ticket");
    // A ticket is not a token, nor a token a ticket.
    assert!(auth::redeem_ticket(&state, &token).await.is_err());
    let (status, _) = server.get_authed("/v1/documents", ticket).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.handle.shutdown().await;
}

#[tokio::test]
async fn expired_ticket_is_refused() {
    let (_dir, mut config) = sqlite_config();
    config.ticket_ttl = Duration::from_secs(1);
    let server = Server::start(config).await;
    let token = token_of(&server.register(PHONE, "Pixel").await);
    let res = server
        .http
        .post(server.url("/v1/auth/ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    server.clock.advance(Duration::from_secs(2));
    let err = auth::redeem_ticket(&server.state(), body["ticket"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_ticket");
    server.handle.shutdown().await;
}

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_accounts() {
    let (dir, config) = sqlite_config();
    let server = Server::start(config.clone()).await;
    let first = server.register(PHONE, "Pixel").await;
    server.handle.shutdown().await;

    let server = Server::start(config).await;
    let (status, _) = server.get_authed("/v1/documents", &token_of(&first)).await;
    assert_eq!(status, StatusCode::OK);
    let second = server.register(PHONE, "iPad").await;
    assert_eq!(second["account_id"], first["account_id"]);
    server.handle.shutdown().await;
    drop(dir);
}

/// Collects log output of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The global subscriber, not a thread-local one: tracing caches per call site whether
// anyone listens, and other tests running meanwhile without a subscriber could make this
// test's log lines vanish. Other tests' lines land here too; none may leak either.
#[tokio::test]
async fn logs_hold_no_numbers_tokens_or_tickets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    let registered = server.register(PHONE, "Pixel").await;
    let code = server.handle.latest_dev_code(PHONE).unwrap();
    let token = token_of(&registered);
    let res = server
        .http
        .post(server.url("/v1/auth/ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let ticket = res.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server
        .http
        .get(server.url(&format!("/healthz?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.handle.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&format!("one-time code for ***5678: {code}")),
        "{logs}"
    );
    assert!(logs.contains("/v1/auth/register"), "{logs}");
    assert!(logs.contains("status=200"), "{logs}");
    for secret in [PHONE, "1012345678", token.as_str(), ticket.as_str()] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn a_server_without_dev_mode_refuses_to_start() {
    let (dir, mut config) = sqlite_config();
    config.dev = false;
    let err = serve(listener().await, config.clone()).await.err().unwrap();
    assert!(matches!(err, ServeError::NoNotifier), "{err}");
    let message = err.to_string();
    assert!(message.contains("no production notifier"), "{message}");
    assert!(message.contains("--dev"), "{message}");
    // Refused before anything was written.
    assert!(!sotong_server::store::sqlite_path(dir.path()).exists());

    // Nor can the development notifier be slipped in by hand.
    let store = sotong_server::open_store(&config).await.unwrap();
    let err = serve_with(
        listener().await,
        config,
        store,
        Arc::new(LogNotifier::new()),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ServeError::DevelopmentNotifier), "{err}");
}

#[tokio::test]
async fn an_empty_pepper_is_refused() {
    let (_dir, mut config) = sqlite_config();
    config.pepper.clear();
    let err = serve(listener().await, config).await.err().unwrap();
    assert!(matches!(err, ServeError::EmptyPepper), "{err}");
    assert!(err.to_string().contains("SOTONG_PEPPER"), "{err}");
}

/// The binary, as an operator starts it: without --dev it exits at once and says why.
#[test]
fn the_binary_without_dev_exits_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sotong-server"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("SOTONG_DEV")
        .env_remove("SOTONG_PEPPER")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no production notifier"), "{stderr}");
    assert!(stderr.contains("--dev"), "{stderr}");
    assert!(!dir.path().join("pepper").exists());
}

async fn readyz_follows_the_store(server: &Server) -> (StatusCode, String) {
    let res = server.http.get(server.url("/readyz")).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn readyz_checks_the_sqlite_store() {
    let (_dir, config) = sqlite_config();
    let server = Server::start(config).await;
    assert_eq!(
        readyz_follows_the_store(&server).await,
        (StatusCode::OK, "ready".to_owned())
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn readyz_fails_when_postgres_is_gone_and_healthz_does_not() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let (_dir, config) = postgres_config(&db);
    let server = Server::start(config).await;
    assert_eq!(readyz_follows_the_store(&server).await.0, StatusCode::OK);

    db.drop_now().await;
    let (status, body) = readyz_follows_the_store(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error(&serde_json::from_str(&body).unwrap(), "store_unavailable");
    let res = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.handle.shutdown().await;
}

async fn request_code_from(server: &Server, phone: &str, forwarded_for: &str) -> StatusCode {
    server
        .http
        .post(server.url("/v1/auth/code"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // The test client is the "proxy" at 127.0.0.1.
    let (_dir, mut config) = sqlite_config();
    config.codes_per_client_per_hour = 2;
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let server = Server::start(config).await;
    let alice = "203.0.113.7";
    assert_eq!(
        request_code_from(&server, "+821000000001", alice).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request_code_from(&server, "+821000000002", alice).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request_code_from(&server, "+821000000003", alice).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own limit.
    assert_eq!(
        request_code_from(&server, "+821000000004", "198.51.100.9").await,
        StatusCode::ACCEPTED
    );
    // Alice cannot escape her limit by forging an earlier hop: the proxy appends her address.
    assert_eq!(
        request_code_from(&server, "+821000000005", &format!("192.0.2.1, {alice}")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.handle.shutdown().await;

    // Without a trusted proxy the header is ignored: every request is 127.0.0.1's.
    let (_dir, mut config) = sqlite_config();
    config.codes_per_client_per_hour = 2;
    let server = Server::start(config).await;
    assert_eq!(
        request_code_from(&server, "+821000000001", "203.0.113.1").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request_code_from(&server, "+821000000002", "203.0.113.2").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request_code_from(&server, "+821000000003", "203.0.113.3").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.handle.shutdown().await;
}
