//! The console's pages over HTTP, as a browser without JavaScript sees them: security
//! headers, embedded assets, the sign-in form's token, the lock-out message, redirects that
//! stay inside the console, and the language switch. (The flows in a real browser, on both
//! stores, are `tests/tests/console_browser.rs`.)

use reqwest::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION,
    REFERRER_POLICY, RETRY_AFTER, SET_COOKIE, X_FRAME_OPTIONS,
};
use reqwest::{Client, Response, StatusCode};
use sotong_server::console::i18n::{Label, Lang};
use sotong_server::staff::admin_cli::{self, AddStaff, PasswordSource};
use sotong_server::staff::{Grant, Role};
use sotong_server::{serve, Config, ServerHandle};

const PASSWORD: &str = "harbour lantern 7 oak";

struct Console {
    handle: ServerHandle,
    http: Client,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start(tweak: fn(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(dir.path());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = serve(listener, config).await.unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        for (username, grant) in [
            (
                "officer.kim",
                Grant::new(Role::AgencyOfficer, Some("MOLIT")).unwrap(),
            ),
            ("admin.park", Grant::new(Role::Admin, None).unwrap()),
        ] {
            let mut stdin = std::io::Cursor::new(format!("{PASSWORD}\n").into_bytes());
            admin_cli::add(
                handle.store().as_ref(),
                0,
                AddStaff {
                    username: username.into(),
                    display_name: "김담당".into(),
                    grants: vec![grant],
                    password: PasswordSource::Stdin,
                    totp: false,
                },
                &mut stdin,
                &mut Vec::new(),
            )
            .await
            .unwrap();
        }
        Self {
            handle,
            http,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.handle.addr())
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await.unwrap()
    }

    /// The sign-in form's token and the cookie it goes with.
    async fn login_form(&self) -> (String, String) {
        let resp = self.get("/console/login", None).await;
        let cookie = resp.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = resp.text().await.unwrap();
        (attr_after(&html, "name=\"_csrf\" value=\""), cookie)
    }

    async fn sign_in(&self, password: &str, next: &str, token: &str, cookie: &str) -> Response {
        self.sign_in_as("officer.kim", password, next, token, cookie)
            .await
    }

    /// The session cookie (`name=value`) of `username`, signed in through the form.
    async fn session_of(&self, username: &str) -> String {
        let (token, cookie) = self.login_form().await;
        let resp = self
            .sign_in_as(username, PASSWORD, "/console/", &token, &cookie)
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        resp.headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|v| v.starts_with("__Host-sotong-staff="))
            .expect("session cookie")
    }

    async fn sign_in_as(
        &self,
        username: &str,
        password: &str,
        next: &str,
        token: &str,
        cookie: &str,
    ) -> Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("_csrf", token),
                ("username", username),
                ("password", password),
                ("totp", ""),
                ("next", next),
            ])
            .finish();
        self.http
            .post(self.url("/console/login"))
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// The text after `marker` up to the next quote.
fn attr_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_assets_are_embedded_and_cached() {
    let c = Console::start(|_| {}).await;
    let resp = c.get("/console/login", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h[X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[REFERRER_POLICY], "no-referrer");
    assert_eq!(h[CACHE_CONTROL], "no-store");
    assert!(h[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"ko\">"));
    // No inline script or style: only files of this origin.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains(" style=") && !html.contains("<style"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    for (marker, content_type) in [
        ("rel=\"stylesheet\" href=\"", "text/css; charset=utf-8"),
        ("<script src=\"", "text/javascript; charset=utf-8"),
        (
            "rel=\"icon\" type=\"image/svg+xml\" href=\"",
            "image/svg+xml",
        ),
    ] {
        let path = attr_after(&html, marker);
        assert!(path.starts_with("/console/assets/"), "{path}");
        let asset = c.get(&path, None).await;
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert_eq!(asset.headers()[CONTENT_TYPE], content_type, "{path}");
        assert!(asset.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age=31536000"));
        assert!(!asset.bytes().await.unwrap().is_empty());
    }
    let stale = c
        .get("/console/assets/console-000000000000.css", None)
        .await;
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    // An unknown console page is the console's 404 page; elsewhere the API's JSON.
    let missing = c.get("/console/nothing-here", None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()[X_FRAME_OPTIONS], "DENY");
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains(Label::Denied404Title.text(Lang::Ko)));
    let api = c.get("/v1/nothing-here", None).await;
    assert!(api.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn signing_in_sets_the_session_and_goes_only_to_console_pages() {
    let c = Console::start(|_| {}).await;
    let (token, cookie) = c.login_form().await;
    // Without the form's cookie: the form again, nobody signed in.
    let resp = c.sign_in(PASSWORD, "/console/", &token, "a=b").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .all(|v| !v.to_str().unwrap().starts_with("__Host-sotong-staff=")));
    for (next, to) in [
        ("/console/agency/MOLIT", "/console/agency/MOLIT"),
        ("https://evil.example/", "/console/"),
        ("//evil.example/console/", "/console/"),
    ] {
        let resp = c.sign_in(PASSWORD, next, &token, &cookie).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(resp.headers()[LOCATION], to, "{next}");
        let session = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("__Host-sotong-staff="))
            .expect("session cookie");
        assert!(session.contains("HttpOnly") && session.contains("Secure"));
        assert!(session.contains("SameSite=Strict") && session.contains("Path=/"));
        let cookie = session.split(';').next().unwrap();
        let home = c.get("/console/", Some(cookie)).await;
        assert_eq!(home.status(), StatusCode::OK);
        let html = home.text().await.unwrap();
        assert!(html.contains("href=\"/console/agency/MOLIT\""));
        // Every form carries the session's CSRF token.
        assert_eq!(
            html.matches("<form").count(),
            html.matches("name=\"_csrf\"").count()
        );
    }
}

#[tokio::test]
async fn a_locked_name_is_told_to_wait() {
    let c = Console::start(|config| config.staff_lockout_threshold = 3).await;
    let (token, cookie) = c.login_form().await;
    for _ in 0..3 {
        let resp = c
            .sign_in("wrong password 1", "/console/", &token, &cookie)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let html = resp.text().await.unwrap();
        assert!(html.contains(Label::LoginRefused.text(Lang::Ko)));
        assert!(html.contains("class=\"error-summary\""));
    }
    // Locked: even the right password waits, and the page says for how long.
    let resp = c.sign_in(PASSWORD, "/console/", &token, &cookie).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: i64 = resp.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    let html = resp.text().await.unwrap();
    let minutes = (wait + 59) / 60;
    assert!(
        html.contains(&Label::LoginLocked.fill(Lang::Ko, &minutes.to_string())),
        "{html}"
    );
}

#[tokio::test]
async fn the_language_comes_from_the_switch_then_the_browser() {
    let c = Console::start(|_| {}).await;
    let english = c
        .http
        .get(c.url("/console/login"))
        .header(ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(english
        .text()
        .await
        .unwrap()
        .contains(&format!("<h1>{}</h1>", Label::LoginTitle.text(Lang::En))));
    let switch = c
        .get("/console/language?to=ko&next=%2Fconsole%2Flogin", None)
        .await;
    assert_eq!(switch.status(), StatusCode::SEE_OTHER);
    assert_eq!(switch.headers()[LOCATION], "/console/login");
    let set = switch.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("lang=ko;"), "{set}");
    let korean = c
        .http
        .get(c.url("/console/login"))
        .header(ACCEPT_LANGUAGE, "en")
        .header(COOKIE, "lang=ko")
        .send()
        .await
        .unwrap();
    assert!(korean
        .text()
        .await
        .unwrap()
        .contains(&format!("<h1>{}</h1>", Label::LoginTitle.text(Lang::Ko))));
    // The switch never leads out of the console.
    let away = c
        .get(
            "/console/language?to=en&next=https%3A%2F%2Fevil.example%2F",
            None,
        )
        .await;
    assert_eq!(away.headers()[LOCATION], "/console/");
}

#[tokio::test]
async fn the_audit_page_pages_back_by_entry_and_exports_csv() {
    use sotong_server::staff::audit::{Actor, AuditEntry, Outcome};
    let c = Console::start(|_| {}).await;
    let store = c.handle.store();
    for i in 0..60 {
        store
            .append_audit(
                1_700_000_000 + i,
                &AuditEntry::new(Actor::System, "staff_add", Outcome::Success)
                    .target("staff", format!("member{i:02}")),
            )
            .await
            .unwrap();
    }
    let admin = c.session_of("admin.park").await;
    let first = c
        .get("/console/admin/audit?action=staff_add", Some(&admin))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let html = first.text().await.unwrap();
    // Newest first, one page of 50, then a link to the older ones.
    assert_eq!(html.matches("data-col=\"time\"").count(), 50);
    assert!(html.contains("member59") && !html.contains("member09"));
    let older = attr_after(
        &html,
        "href=\"/console/admin/audit?action=staff_add&amp;before=",
    );
    let second = c
        .get(
            &format!("/console/admin/audit?action=staff_add&before={older}"),
            Some(&admin),
        )
        .await;
    let html = second.text().await.unwrap();
    // The two staff_add entries of Console::start, then member09..member00.
    assert_eq!(html.matches("data-col=\"time\"").count(), 12);
    assert!(html.contains("member09") && html.contains("member00") && !html.contains("member10"));
    assert!(html.contains(Label::NewestEntries.text(Lang::Ko)));
    assert!(!html.contains("rel=\"next\""));
    // A date that is not one: the error summary links to the field, nothing is listed.
    let bad = c
        .get("/console/admin/audit?from=2026-02-30", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(bad.contains("href=\"#from\""));
    assert_eq!(bad.matches("data-col=\"time\"").count(), 0);

    let csv = c
        .get("/console/admin/audit.csv?action=staff_add", Some(&admin))
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"sotong-audit-"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert!(lines[0].starts_with("id,at,time,"));
    assert_eq!(lines.len(), 1 + 62);
    // The officer may not read it.
    let officer = c.session_of("officer.kim").await;
    let refused = c.get("/console/admin/audit.csv", Some(&officer)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}
