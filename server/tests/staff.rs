//! The officials' side end to end: real servers on port 0 (SQLite and PostgreSQL), an
//! injected clock, HTTP requests as a browser (cookie + CSRF) and a script (bearer) make them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sotong_core::clock::{Clock as _, ManualClock, SystemClock};
use sotong_core::hash::sha256;
use sotong_core::sos::{Beacon, Fix, FixMethod, IncidentId, ReportedState, TriggerMethod};
use sotong_server::staff::access::{staff_router, Need, ACCESS_HEADER};
use sotong_server::staff::admin_cli;
use sotong_server::staff::audit::{Actor, AuditFilter, AuditRecord, Outcome};
use sotong_server::staff::session::{self, SessionKind, SESSION_COOKIE};
use sotong_server::staff::{password, totp, Grant, Role, StaffMember};
use sotong_server::store::{NewDevice, NewStaffMember, NewStaffSession, RoutedBeacon, Store, Via};
use sotong_server::{auth, serve, Config, ServerHandle};

const PASSWORD: &str = "river stone lamp 42";

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

struct Server {
    handle: ServerHandle,
    http: Client,
    clock: ManualClock,
    config: Config,
    password_hash: String,
    _dir: tempfile::TempDir,
    _pg: Option<common::PgDb>,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
enum Cred {
    None,
    Bearer(String),
    Cookie { token: String, csrf: Option<String> },
}

impl Server {
    /// A server on `backend` with a manual clock; `None` when PostgreSQL tests are off.
    async fn start(backend: Backend, tweak: fn(&mut Config)) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(common::PgDb::create().await?),
        };
        config.database_url = pg.as_ref().map(|p| p.url.clone());
        // On a whole second, so that expiry arithmetic in seconds is exact.
        let clock = ManualClock::new(SystemClock.now_unix_millis() / 1000 * 1000);
        config.clock = Arc::new(clock.clone());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = serve(listener, config.clone()).await.unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Some(Self {
            handle,
            http,
            clock,
            config,
            password_hash: password::hash(PASSWORD.into()).await.unwrap(),
            _dir: dir,
            _pg: pg,
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        self.handle.store()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.addr())
    }

    fn now(&self) -> i64 {
        self.clock.now_unix_millis() / 1000
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A member with `grants` and the test password (and a TOTP secret if given).
    async fn member(
        &self,
        username: &str,
        grants: Vec<Grant>,
        totp: Option<Vec<u8>>,
    ) -> StaffMember {
        self.store()
            .add_staff(&NewStaffMember {
                username: username.into(),
                display_name: username.to_uppercase(),
                password_hash: self.password_hash.clone(),
                grants,
                totp_secret: totp,
                created_at: self.now(),
            })
            .await
            .unwrap()
            .expect("new member")
    }

    /// A session made straight in the store (no login, no password hashing).
    async fn session(&self, member_id: i64, kind: SessionKind) -> Cred {
        let token = session::new_token();
        let csrf = session::new_token();
        let now = self.now();
        self.store()
            .create_staff_session(&NewStaffSession {
                token_hash: sha256(token.as_bytes()),
                member_id,
                kind,
                csrf_token: csrf.clone(),
                now,
                expires_at: now + self.config.staff_session_lifetime_secs as i64,
            })
            .await
            .unwrap();
        match kind {
            SessionKind::Bearer => Cred::Bearer(token),
            SessionKind::Cookie => Cred::Cookie {
                token,
                csrf: Some(csrf),
            },
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<(&'static str, String)>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self.http.request(method, self.url(path));
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header(AUTHORIZATION, format!("Bearer {t}")),
            Cred::Cookie { token, csrf } => {
                req = req.header(COOKIE, format!("{SESSION_COOKIE}={token}"));
                if let Some(csrf) = csrf {
                    req = req.header("x-csrf-token", csrf);
                }
            }
        }
        if let Some((content_type, body)) = body {
            req = req.header(CONTENT_TYPE, content_type).body(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let streaming = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            // The SOS feed never ends: its head is the answer.
            return (status, headers, Value::Null);
        }
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, cred: &Cred) -> (StatusCode, Value) {
        let (s, _, v) = self.send(Method::GET, path, cred, None).await;
        (s, v)
    }

    async fn post_json(
        &self,
        path: &str,
        cred: &Cred,
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        self.send(
            Method::POST,
            path,
            cred,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    async fn login(
        &self,
        username: &str,
        password: &str,
        totp: Option<&str>,
    ) -> (StatusCode, Value) {
        let (s, _, v) = self
            .post_json(
                "/v1/staff/login",
                &Cred::None,
                json!({ "username": username, "password": password, "totp": totp }),
            )
            .await;
        (s, v)
    }

    /// Logs in through the API; the bearer credential.
    async fn bearer_login(&self, username: &str) -> Cred {
        let (status, body) = self.login(username, PASSWORD, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Cred::Bearer(body["token"].as_str().unwrap().to_owned())
    }

    /// A citizen's device token (one-time code registration).
    async fn citizen_token(&self) -> String {
        let phone = "+821055501234";
        let (s, _, b) = self
            .post_json("/v1/auth/code", &Cred::None, json!({ "phone": phone }))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let code = self
            .handle
            .latest_dev_code(&auth::normalize_phone(phone).unwrap())
            .unwrap();
        let (s, _, b) = self
            .post_json(
                "/v1/auth/register",
                &Cred::None,
                json!({ "phone": phone, "code": code, "device_name": "phone" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    async fn audit(&self, filter: AuditFilter) -> Vec<AuditRecord> {
        self.store().query_audit(&filter).await.unwrap()
    }

    async fn stop(self) {
        self.handle.shutdown().await;
    }
}

fn g(role: Role, scope: Option<&str>) -> Grant {
    Grant::new(role, scope).unwrap()
}

// ---- every role × every staff route ------------------------------------------------------

/// Who calls.
enum Principal {
    Nobody,
    Citizen(String),
    Member { member: StaffMember, disabled: bool },
}

/// The SOS incident fixtures of the table: one in Seoul, one in Busan.
fn seoul_incident() -> IncidentId {
    IncidentId::from_bytes(&[0x51; 16]).unwrap()
}

fn busan_incident() -> IncidentId {
    IncidentId::from_bytes(&[0xb5; 16]).unwrap()
}

/// The region of a fixture incident id (path parameter value).
fn fixture_region(id: &str) -> Option<&'static str> {
    if id == seoul_incident().to_string() {
        Some("seoul")
    } else if id == busan_incident().to_string() {
        Some("busan")
    } else {
        None
    }
}

/// Stores the Seoul and Busan incidents, as a phone's first beacons would.
async fn sos_fixtures(store: &dyn Store) {
    let device = store
        .register_device(&NewDevice {
            phone_key: [0x5a; 32],
            name: "fixture phone",
            token_hash: sha256(b"sos fixture"),
            token_expires_at: i64::MAX,
            now: 0,
        })
        .await
        .unwrap();
    let beacon = |id: IncidentId, lat: f64, lon: f64, region: &str| RoutedBeacon {
        beacon: Beacon {
            incident: id,
            seq: 1,
            state: ReportedState::Active,
            trigger: TriggerMethod::ButtonHold,
            triggered_at: 1_000,
            fix: Some(Fix {
                lat,
                lon,
                accuracy_m: 10.0,
                altitude_m: None,
                speed_mps: None,
                heading_deg: None,
                time_ms: 2_000,
                method: FixMethod::Gps,
                battery_pct: None,
            }),
            reply: None,
        },
        region: Some(region.to_owned()),
        via: Via::Https,
    };
    store
        .sos_ingest(
            device,
            &[
                beacon(seoul_incident(), 37.5665, 126.978, "seoul"),
                beacon(busan_incident(), 35.1151, 129.0422, "busan"),
            ],
            1,
        )
        .await
        .unwrap();
}

/// Path parameter values: the first set is the scopes the test members hold (agency MOIS,
/// region seoul, the Seoul incident), the second set nobody's first choice.
fn variants(path: &str) -> Vec<(String, Vec<(String, String)>)> {
    let values = |name: &str| match name {
        "agency" => ["MOIS".to_owned(), "MOLIT".to_owned()],
        "region" => ["seoul".to_owned(), "busan".to_owned()],
        "id" => [seoul_incident().to_string(), busan_incident().to_string()],
        _ => ["x".to_owned(), "y".to_owned()],
    };
    let names: Vec<String> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.trim_start_matches('*').to_owned())
        .collect();
    (0..if names.is_empty() { 1 } else { 2 })
        .map(|i| {
            let mut concrete = path.to_owned();
            let mut params = Vec::new();
            for name in &names {
                let v = values(name)[i].clone();
                concrete = concrete
                    .replace(&format!("{{{name}}}"), &v)
                    .replace(&format!("{{*{name}}}"), &v);
                params.push((name.clone(), v));
            }
            (concrete, params)
        })
        .collect()
}

/// What the check layer should answer: `None` when the handler is reached, else the value of
/// the access header.
fn expected(need: &Need, who: &Principal, params: &[(String, String)]) -> Option<&'static str> {
    if *need == Need::Public {
        return None;
    }
    match who {
        Principal::Nobody | Principal::Citizen(_) => Some("unauthenticated"),
        Principal::Member { disabled: true, .. } => Some("unauthenticated"),
        Principal::Member { member, .. } => {
            // From the grants as data, not through the code under test.
            let holds = |role: Role, scope: Option<&str>| {
                member
                    .grants
                    .iter()
                    .any(|g| g.role == role && (scope.is_none() || g.scope.as_deref() == scope))
            };
            let allowed = match need {
                Need::Public | Need::AnyStaff => true,
                Need::Role(role) => holds(*role, None),
                Need::RoleInScope(role, param) => {
                    let value = params.iter().find(|(k, _)| k == param).map(|(_, v)| v);
                    value.is_some_and(|v| holds(*role, Some(v)))
                }
                // The incident's region (from the fixtures), or the scope that sees all.
                Need::RoleInIncidentRegion(role, param) => {
                    let region = params
                        .iter()
                        .find(|(k, _)| k == param)
                        .and_then(|(_, v)| fixture_region(v));
                    holds(*role, Some("all")) || region.is_some_and(|r| holds(*role, Some(r)))
                }
            };
            if allowed {
                None
            } else {
                Some("forbidden")
            }
        }
    }
}

async fn role_route_table(backend: Backend) {
    let Some(server) = Server::start(backend, |_| {}).await else {
        return;
    };
    sos_fixtures(&*server.store()).await;
    let admin = server
        .member("admin1", vec![g(Role::Admin, None)], None)
        .await;
    let officer_a = server
        .member(
            "officer.a",
            vec![g(Role::AgencyOfficer, Some("MOIS"))],
            None,
        )
        .await;
    let officer_b = server
        .member(
            "officer.b",
            vec![g(Role::AgencyOfficer, Some("MOLIT"))],
            None,
        )
        .await;
    let dispatcher_r = server
        .member("dispatch.r", vec![g(Role::Dispatcher, Some("seoul"))], None)
        .await;
    let dispatcher_other = server
        .member("dispatch.o", vec![g(Role::Dispatcher, Some("busan"))], None)
        .await;
    let dispatcher_all = server
        .member("dispatch.all", vec![g(Role::Dispatcher, Some("all"))], None)
        .await;
    // Disabled while holding every grant: nothing may pass.
    let gone = server
        .member(
            "gone",
            vec![
                g(Role::Admin, None),
                g(Role::AgencyOfficer, Some("MOIS")),
                g(Role::Dispatcher, Some("seoul")),
            ],
            None,
        )
        .await;
    let rules = staff_router().rules().to_vec();
    // The disabled member's sessions are old ones: made before the member was disabled.
    let cases: usize = rules.iter().map(|r| variants(r.path).len()).sum();
    let mut old_sessions = Vec::new();
    for _ in 0..cases {
        old_sessions.push((
            server.session(gone.id, SessionKind::Bearer).await,
            server.session(gone.id, SessionKind::Cookie).await,
        ));
    }
    server
        .store()
        .set_staff_disabled(gone.id, true)
        .await
        .unwrap();
    let principals = vec![
        ("nobody", Principal::Nobody),
        ("citizen", Principal::Citizen(server.citizen_token().await)),
        (
            "admin",
            Principal::Member {
                member: admin,
                disabled: false,
            },
        ),
        (
            "officer A",
            Principal::Member {
                member: officer_a,
                disabled: false,
            },
        ),
        (
            "officer B",
            Principal::Member {
                member: officer_b,
                disabled: false,
            },
        ),
        (
            "dispatcher R",
            Principal::Member {
                member: dispatcher_r,
                disabled: false,
            },
        ),
        (
            "dispatcher other",
            Principal::Member {
                member: dispatcher_other,
                disabled: false,
            },
        ),
        (
            "dispatcher all",
            Principal::Member {
                member: dispatcher_all,
                disabled: false,
            },
        ),
        (
            "disabled",
            Principal::Member {
                member: gone,
                disabled: true,
            },
        ),
    ];
    assert!(rules.len() >= 4, "{rules:?}");
    let mut checked = 0;
    for rule in &rules {
        for (path, params) in variants(rule.path) {
            for (label, who) in &principals {
                // Each way the principal can present itself.
                let creds: Vec<Cred> = match who {
                    Principal::Nobody => vec![Cred::None],
                    Principal::Citizen(t) => vec![
                        Cred::Bearer(t.clone()),
                        Cred::Cookie {
                            token: t.clone(),
                            csrf: None,
                        },
                    ],
                    Principal::Member { disabled: true, .. } => {
                        let (bearer, cookie) = old_sessions.pop().unwrap();
                        vec![bearer, cookie]
                    }
                    Principal::Member { member, .. } => vec![
                        server.session(member.id, SessionKind::Bearer).await,
                        server.session(member.id, SessionKind::Cookie).await,
                    ],
                };
                for cred in creds {
                    let body = (rule.method == Method::POST)
                        .then(|| ("application/json", "{}".to_owned()));
                    let (status, headers, answer) =
                        server.send(rule.method.clone(), &path, &cred, body).await;
                    let got = headers
                        .get(ACCESS_HEADER)
                        .map(|v| v.to_str().unwrap().to_owned());
                    let want = expected(&rule.need, who, &params);
                    let case = format!(
                        "{backend:?} {} {path} ({:?}) as {label} via {cred:?}: {status} {answer}",
                        rule.method, rule.need
                    );
                    assert_eq!(got.as_deref(), want, "{case}");
                    match want {
                        None => assert!(
                            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                            "{case}"
                        ),
                        Some("forbidden") => assert_eq!(status, StatusCode::FORBIDDEN, "{case}"),
                        Some(_) if path.starts_with("/v1/") || rule.method != Method::GET => {
                            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}")
                        }
                        Some(_) => {
                            assert_eq!(status, StatusCode::SEE_OTHER, "{case}");
                            let to = headers["location"].to_str().unwrap();
                            assert!(to.starts_with("/console/login?next="), "{case}");
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    // Every refusal for lack of role or scope is in the audit log.
    let denied = server
        .audit(AuditFilter {
            action: Some("access_denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await;
    assert!(!denied.is_empty());
    assert!(denied.iter().all(|r| r.outcome == Outcome::Denied
        && matches!(r.actor, Actor::Staff { .. })
        && r.target_kind.as_deref() == Some("route")));
    eprintln!(
        "{backend:?}: {checked} role × route cases over {} rules",
        rules.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_staff_route_sqlite() {
    role_route_table(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_staff_route_postgres() {
    role_route_table(Backend::Postgres).await;
}

/// Scoped routes (the console's agency and dispatch pages) on a router of their own, until
/// the console registers its pages in `staff_router()`: the scope comes from the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_routes_check_the_path_parameter() {
    use axum::routing::{get, post};
    use sotong_server::staff::access::StaffRouter;

    let Some(server) = Server::start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let state = sotong_server::AppState::new(
        server.config.clone(),
        server.store(),
        Arc::new(sotong_server::notifier::LogNotifier::new()),
    );
    let router = StaffRouter::new()
        .route(
            Method::GET,
            "/console/agency/{agency}",
            Need::RoleInScope(Role::AgencyOfficer, "agency"),
            get(|| async { "agency page" }),
        )
        .route(
            Method::POST,
            "/console/dispatch/{region}/ack",
            Need::RoleInScope(Role::Dispatcher, "region"),
            post(|| async { "acknowledged" }),
        );
    let app = router.into_router(state.clone()).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let officer = server
        .member(
            "officer.a",
            vec![g(Role::AgencyOfficer, Some("MOIS"))],
            None,
        )
        .await;
    let dispatcher = server
        .member("dispatch.r", vec![g(Role::Dispatcher, Some("seoul"))], None)
        .await;
    let http = &server.http;
    let cookie_of = |cred: &Cred| match cred {
        Cred::Cookie { token, csrf } => (token.clone(), csrf.clone().unwrap()),
        _ => unreachable!(),
    };
    let (officer_cookie, _) = cookie_of(&server.session(officer.id, SessionKind::Cookie).await);
    let get_page = |path: &str, cookie: Option<&str>| {
        let mut req = http.get(format!("http://{addr}{path}"));
        if let Some(c) = cookie {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        req.send()
    };
    let res = get_page("/console/agency/MOIS", Some(&officer_cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "agency page");
    let res = get_page("/console/agency/MOLIT", Some(&officer_cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()[ACCESS_HEADER], "forbidden");
    // The console's 403 page, in the default language.
    let denied = sotong_server::console::i18n::Label::Denied403Title;
    let title = format!("<h1>{}</h1>", denied.text(sotong_server::console::Lang::Ko));
    assert!(res.text().await.unwrap().contains(&title));
    // No session: the console sends the browser to the login page, and back afterwards.
    let res = get_page("/console/agency/MOIS", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()["location"],
        "/console/login?next=%2Fconsole%2Fagency%2FMOIS"
    );

    // A form post: the region is checked, and the CSRF token is needed.
    let (dispatcher_cookie, csrf) =
        cookie_of(&server.session(dispatcher.id, SessionKind::Cookie).await);
    let post_form = |path: &str, body: String| {
        http.post(format!("http://{addr}{path}"))
            .header(COOKIE, format!("{SESSION_COOKIE}={dispatcher_cookie}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let res = post_form("/console/dispatch/seoul/ack", "note=x".into())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()[ACCESS_HEADER], "csrf");
    let res = post_form("/console/dispatch/busan/ack", format!("_csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()[ACCESS_HEADER], "forbidden");
    let res = post_form(
        "/console/dispatch/seoul/ack",
        format!("note=x&_csrf={csrf}"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "acknowledged");
    // Without a session, a console post is a 401 page (not a redirect).
    let res = http
        .post(format!("http://{addr}/console/dispatch/seoul/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    task.abort();
    server.stop().await;
}

// ---- lock-out ------------------------------------------------------------------------------

async fn ten_wrong_passwords_lock_the_name(backend: Backend) {
    let Some(server) = Server::start(backend, |_| {}).await else {
        return;
    };
    let kim = server.member("kim", vec![g(Role::Admin, None)], None).await;
    for n in 1..=10 {
        let (status, body) = server
            .login("Kim", &format!("wrong password {n}"), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{n}: {body}");
        assert_eq!(body["error"], "login_refused");
    }
    // The right password now waits out the lock, and says how long.
    let (status, body) = server.login("kim", PASSWORD, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let lock = server.config.staff_lockout_secs;
    server.advance(lock - 1);
    let (status, _) = server.login("kim", PASSWORD, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let as_kim = |r: &AuditRecord| {
        r.actor
            == Actor::Staff {
                id: kim.id,
                username: "kim".into(),
            }
    };
    let failed = server
        .audit(AuditFilter {
            action: Some("login_failed".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(failed.len(), 10);
    assert!(failed
        .iter()
        .all(|r| as_kim(r) && r.outcome == Outcome::Failure));
    assert!(failed
        .iter()
        .all(|r| r.client_ip.is_some_and(|ip| ip.is_loopback())));
    let locked = server
        .audit(AuditFilter {
            action: Some("login_locked".into()),
            ..Default::default()
        })
        .await;
    let events: Vec<&str> = locked
        .iter()
        .rev()
        .map(|r| r.detail.as_ref().unwrap()["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["locked", "attempt_while_locked", "attempt_while_locked"]
    );
    assert!(locked.iter().all(as_kim));
    // No entry holds a password.
    let everything = server
        .audit(AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await;
    for r in &everything {
        let text = r.to_json().to_string();
        assert!(
            !text.contains("wrong password") && !text.contains(PASSWORD),
            "{text}"
        );
    }

    server.advance(1);
    let (status, body) = server.login("kim", PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An unknown name locks the same way (so a lock tells nothing), and its entries keep
    // only a hash prefix of what was typed.
    let typed = "Not A Member Name";
    for _ in 0..10 {
        let (status, _) = server.login(typed, "whatever", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = server.login(typed, "whatever", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let unknown: Vec<AuditRecord> = server
        .audit(AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .into_iter()
        .filter(|r| r.actor == Actor::UnknownName)
        .collect();
    assert_eq!(
        unknown.len(),
        12,
        "10 failures, the lock, the refused attempt"
    );
    for r in &unknown {
        let detail = r.detail.as_ref().unwrap();
        let prefix = detail["name_key"].as_str().unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(!r
            .to_json()
            .to_string()
            .to_lowercase()
            .contains("not a member"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_passwords_lock_the_name_sqlite() {
    ten_wrong_passwords_lock_the_name(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_passwords_lock_the_name_postgres() {
    ten_wrong_passwords_lock_the_name(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_failing_on_many_names_is_locked() {
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, |c| c.staff_lockout_address_threshold = 5).await
        else {
            continue;
        };
        server.member("kim", vec![g(Role::Admin, None)], None).await;
        // One password tried on five names (no name reaches its own threshold).
        for n in 0..5 {
            let (status, _) = server.login(&format!("name{n}"), "Summer2026!", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // The address is locked: even a member with the right password waits.
        let (status, body) = server.login("kim", PASSWORD, None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let locked = server
            .audit(AuditFilter {
                action: Some("login_locked".into()),
                ..Default::default()
            })
            .await;
        let events: Vec<&str> = locked
            .iter()
            .rev()
            .map(|r| r.detail.as_ref().unwrap()["event"].as_str().unwrap())
            .collect();
        assert_eq!(events, ["address_locked", "attempt_from_locked_address"]);
        server.advance(server.config.staff_lockout_secs);
        assert_eq!(server.login("kim", PASSWORD, None).await.0, StatusCode::OK);
        server.stop().await;
    }
}

// ---- sessions ------------------------------------------------------------------------------

fn short_sessions(config: &mut Config) {
    config.staff_idle_timeout_secs = 600;
    config.staff_session_lifetime_secs = 3600;
}

async fn sessions_end_at_logout_idle_and_lifetime(backend: Backend) {
    let Some(server) = Server::start(backend, short_sessions).await else {
        return;
    };
    let m = server
        .member("lee", vec![g(Role::AgencyOfficer, Some("MOIS"))], None)
        .await;

    // A stolen cookie stops working once its owner logs out.
    let cookie = server.session(m.id, SessionKind::Cookie).await;
    let stolen = cookie.clone();
    let (status, me) = server.get("/v1/staff/me", &stolen).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "lee");
    assert_eq!(me["session"]["kind"], "cookie");
    let (status, _, _) = server
        .send(Method::POST, "/v1/staff/logout", &cookie, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.get("/v1/staff/me", &stolen).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthenticated");
    let logout = server
        .audit(AuditFilter {
            action: Some("logout".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(logout.len(), 1);

    // Idle: use keeps a session alive; 600 s without use ends it.
    let bearer = server.bearer_login("lee").await;
    for _ in 0..3 {
        server.advance(590);
        assert_eq!(server.get("/v1/staff/me", &bearer).await.0, StatusCode::OK);
    }
    server.advance(600);
    assert_eq!(
        server.get("/v1/staff/me", &bearer).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Ended for good: a clock set back does not revive it.
    server.clock.set((server.now() - 300) * 1000);
    assert_eq!(
        server.get("/v1/staff/me", &bearer).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.advance(300);

    // Absolute lifetime: in constant use, the session still ends 3600 s after login.
    let bearer = server.bearer_login("lee").await;
    for _ in 0..7 {
        server.advance(500);
        assert_eq!(server.get("/v1/staff/me", &bearer).await.0, StatusCode::OK);
    }
    server.advance(100);
    assert_eq!(
        server.get("/v1/staff/me", &bearer).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Disabling a member ends their sessions; so does a password reset.
    let bearer = server.bearer_login("lee").await;
    let mut out = Vec::new();
    admin_cli::disable(server.store().as_ref(), server.now(), "lee", &mut out)
        .await
        .unwrap();
    assert_eq!(
        server.get("/v1/staff/me", &bearer).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("lee", PASSWORD, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    server
        .member("park", vec![g(Role::Admin, None)], None)
        .await;
    let bearer = server.bearer_login("park").await;
    let new_password = "a brand new passphrase 7";
    admin_cli::reset_password(
        server.store().as_ref(),
        server.now(),
        "park",
        &admin_cli::PasswordSource::Stdin,
        &mut format!("{new_password}\n").as_bytes(),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        server.get("/v1/staff/me", &bearer).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("park", PASSWORD, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("park", new_password, None).await.0,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_logout_idle_and_lifetime_sqlite() {
    sessions_end_at_logout_idle_and_lifetime(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_logout_idle_and_lifetime_postgres() {
    sessions_end_at_logout_idle_and_lifetime(Backend::Postgres).await;
}

// ---- staff and citizen tokens do not mix -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_and_citizen_tokens_are_refused_on_each_others_routes() {
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, |_| {}).await else {
            continue;
        };
        server.member("kim", vec![g(Role::Admin, None)], None).await;
        let staff = server.bearer_login("kim").await;
        let Cred::Bearer(staff_token) = &staff else {
            unreachable!()
        };
        let citizen = server.citizen_token().await;
        // Each works where it belongs.
        assert_eq!(server.get("/v1/staff/me", &staff).await.0, StatusCode::OK);
        let citizen_cred = Cred::Bearer(citizen.clone());
        assert_eq!(
            server.get("/v1/documents", &citizen_cred).await.0,
            StatusCode::OK
        );
        // And nowhere else.
        assert_eq!(
            server.get("/v1/staff/me", &citizen_cred).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            server.get("/v1/staff/audit", &citizen_cred).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            server.get("/v1/documents", &staff).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, _, _) = server
            .send(Method::POST, "/v1/auth/ticket", &staff, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A WebSocket handshake to /v1/sync with the staff token.
        let res = server
            .http
            .get(server.url("/v1/sync"))
            .bearer_auth(staff_token)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header(
                "sec-websocket-key",
                HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{backend:?}");
        // The same handshake with the citizen's token is accepted (101).
        let res = server
            .http
            .get(server.url("/v1/sync"))
            .bearer_auth(&citizen)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header(
                "sec-websocket-key",
                HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS, "{backend:?}");
        drop(res);
        server.stop().await;
    }
}

// ---- CSRF ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_posts_need_the_csrf_token() {
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, |_| {}).await else {
            continue;
        };
        let m = server.member("kim", vec![g(Role::Admin, None)], None).await;
        let Cred::Cookie { token, csrf } = server.session(m.id, SessionKind::Cookie).await else {
            unreachable!()
        };
        let csrf = csrf.unwrap();
        let bare = Cred::Cookie {
            token: token.clone(),
            csrf: None,
        };
        let wrong = Cred::Cookie {
            token: token.clone(),
            csrf: Some(session::new_token()),
        };
        // Without the token, or with another one: 403 csrf, and the session lives on.
        for cred in [&bare, &wrong] {
            let (status, headers, body) = server
                .send(Method::POST, "/v1/staff/logout", cred, None)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(body["error"], "csrf");
            assert_eq!(headers[ACCESS_HEADER], "csrf");
        }
        // In a form body of another field only: refused too.
        let (status, _, _) = server
            .send(
                Method::POST,
                "/v1/staff/logout",
                &bare,
                Some(("application/x-www-form-urlencoded", "x=1".into())),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(server.get("/v1/staff/me", &bare).await.0, StatusCode::OK);
        // GET needs no token. A cookie session's token sent as a bearer is no session.
        assert_eq!(
            server
                .get("/v1/staff/me", &Cred::Bearer(token.clone()))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        // With the token in the form field `_csrf`: allowed.
        let form = format!("_csrf={csrf}&other=1");
        let (status, _, _) = server
            .send(
                Method::POST,
                "/v1/staff/logout",
                &bare,
                Some(("application/x-www-form-urlencoded", form)),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            server.get("/v1/staff/me", &bare).await.0,
            StatusCode::UNAUTHORIZED
        );
        // With the header: allowed.
        let with_header = server.session(m.id, SessionKind::Cookie).await;
        let (status, _, _) = server
            .send(Method::POST, "/v1/staff/logout", &with_header, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // Bearer sessions need none (a browser never adds the header by itself).
        let bearer = server.session(m.id, SessionKind::Bearer).await;
        let (status, _, _) = server
            .send(Method::POST, "/v1/staff/logout", &bearer, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        server.stop().await;
    }
}

// ---- TOTP, the audit API -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_codes_are_needed_and_single_use() {
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, |_| {}).await else {
            continue;
        };
        let secret = totp::new_secret();
        server
            .member(
                "choi",
                vec![g(Role::Dispatcher, Some("seoul"))],
                Some(secret.clone()),
            )
            .await;
        let code = totp::code_at(&secret, server.now()).unwrap();
        assert_eq!(
            server.login("choi", PASSWORD, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(
            server.login("choi", PASSWORD, Some(wrong)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            server.login("choi", PASSWORD, Some(&code)).await.0,
            StatusCode::OK
        );
        // The same code again, even within its window: refused.
        assert_eq!(
            server.login("choi", PASSWORD, Some(&code)).await.0,
            StatusCode::UNAUTHORIZED
        );
        server.advance(30);
        let next = totp::code_at(&secret, server.now()).unwrap();
        assert_eq!(
            server.login("choi", PASSWORD, Some(&next)).await.0,
            StatusCode::OK
        );
        let reasons: Vec<String> = server
            .audit(AuditFilter {
                action: Some("login_failed".into()),
                ..Default::default()
            })
            .await
            .iter()
            .rev()
            .map(|r| {
                r.detail.as_ref().unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(reasons, ["totp_missing", "totp_wrong", "totp_wrong"]);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_the_audit_log_and_the_read_is_audited() {
    let Some(server) = Server::start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    server
        .member("boss", vec![g(Role::Admin, None)], None)
        .await;
    server
        .member("kim", vec![g(Role::AgencyOfficer, Some("MOIS"))], None)
        .await;
    let boss = server.bearer_login("boss").await;
    let kim = server.bearer_login("kim").await;
    assert_eq!(
        server.get("/v1/staff/audit", &kim).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, page) = server
        .get("/v1/staff/audit?actor=kim&limit=10", &boss)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["access_denied", "login"]);
    let (status, body) = server.get("/v1/staff/audit?limit=abc", &boss).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let views = server
        .audit(AuditFilter {
            action: Some("audit_view".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(views.len(), 1);
    server.stop().await;
}

// ---- the command line ----------------------------------------------------------------------

#[test]
fn the_admin_command_line_adds_lists_and_exports_non_interactively() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let bin = env!("CARGO_BIN_EXE_sotong-server");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let pw = pw.to_str().unwrap();
    let (ok, out, err) = run(&[
        "staff",
        "add",
        "officer",
        "--name",
        "Kim Officer",
        "--role",
        "agency_officer",
        "--scope",
        "MOIS",
        "--role",
        "dispatcher",
        "--scope",
        "seoul",
        "--password-file",
        pw,
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "added officer (agency_officer:MOIS, dispatcher:seoul)"
    );
    let (ok, _, err) = run(&[
        "staff",
        "add",
        "officer",
        "--name",
        "x",
        "--role",
        "admin",
        "--password-file",
        pw,
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&[
        "staff",
        "add",
        "nobody",
        "--name",
        "x",
        "--role",
        "dispatcher",
        "--password-file",
        pw,
    ]);
    assert!(!ok && err.contains("needs a scope"), "{err}");
    let (ok, out, err) = run(&[
        "staff",
        "add",
        "boss",
        "--name",
        "Boss",
        "--role",
        "admin",
        "--generate-password",
        "--totp",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("password (shown once): "), "{out}");
    assert!(out.contains("otpauth://totp/Sotong:boss?secret="), "{out}");
    let (ok, out, _) = run(&["staff", "list"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("USERNAME"), "{out}");
    assert!(
        lines[1].starts_with("boss") && lines[1].ends_with("yes"),
        "{out}"
    );
    assert!(
        lines[2].contains("agency_officer:MOIS,dispatcher:seoul"),
        "{out}"
    );
    let (ok, _, _) = run(&["staff", "disable", "officer"]);
    assert!(ok);
    let (ok, out, _) = run(&["staff", "totp", "officer"]);
    assert!(
        ok && out.contains("otpauth://totp/Sotong:officer?secret="),
        "{out}"
    );
    let (ok, out, _) = run(&["staff", "list"]);
    let flags = |out: &str| -> Vec<String> {
        let row: Vec<&str> = out.lines().nth(2).unwrap().split_whitespace().collect();
        row[row.len() - 2..].iter().map(|s| s.to_string()).collect()
    };
    assert!(ok && flags(&out) == ["yes", "yes"], "{out}");
    let (ok, _, _) = run(&["staff", "totp", "officer", "--remove"]);
    assert!(ok);
    let (ok, _, _) = run(&["staff", "enable", "officer"]);
    assert!(ok);
    let (ok, out, _) = run(&["staff", "list"]);
    assert!(ok && flags(&out) == ["no", "no"], "{out}");
    let (ok, _, err) = run(&["staff", "enable", "nobody"]);
    assert!(!ok && err.contains("no staff member"), "{err}");
    let (ok, out, _) = run(&["audit", "export", "--format", "csv"]);
    assert!(ok);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 7, "{out}");
    assert!(rows[0].starts_with("id,at,time,actor"));
    assert!(
        rows[1].contains(",system,,,staff_add,staff,officer,success,"),
        "{out}"
    );
    assert!(rows[3].contains("staff_disable"));
    let (ok, out, _) = run(&["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(ok && out.is_empty(), "{out}");
    let (ok, out, _) = run(&["audit", "export"]);
    assert!(ok);
    // The exports are themselves audited: 6 actions + 2 exports.
    assert_eq!(out.lines().count(), 8, "{out}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "audit_export");
    assert_eq!(last["detail"]["via"], "cli");
    let (ok, _, err) = run(&["audit", "export", "--since", "yesterday"]);
    assert!(!ok && err.contains("RFC 3339"), "{err}");
}
