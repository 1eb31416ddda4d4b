//! The staff console in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`tests/console/flows.mjs`), against a real server on port 0, on SQLite and on a fresh
//! PostgreSQL database. Staff members are created through the admin command's logic; the
//! flows sign in as each role, are refused the other roles' pages, sign out (the old cookie
//! then opens nothing), post a form without its CSRF token, switch languages, read the audit
//! log, and check every page for basic accessibility. A screenshot of each page goes to
//! `target/console-shots/<store>/`.
//!
//! Needs `scripts/console-deps.sh` (run by `scripts/test.sh`; the test runs it too).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sotong_e2e::{Backend, TestServer};
use sotong_server::console::i18n::{Label, Lang};
use sotong_server::staff::admin_cli::{self, AddStaff, PasswordSource};
use sotong_server::staff::audit::{actions, AuditFilter};
use sotong_server::staff::{Grant, Role};

/// A bound on the whole browser run (it takes well under a minute); past it the run is
/// killed and the test fails, so no browser is left behind.
const FLOWS_TIMEOUT: Duration = Duration::from_secs(300);

/// Every check `flows.mjs` must report, passed: a flow that silently stopped running fails.
const EXPECTED_CHECKS: &[&str] = &[
    "anonymous is sent to sign in",
    "sign-in page in Korean",
    "keyboard reaches the username field",
    "language switch shows English",
    "language switch shows Korean again",
    "wrong password shows the error summary",
    "error summary links to a field",
    "error summary takes the focus",
    "empty form names both fields",
    "sign-in without its CSRF token refused",
    "officer lands on home",
    "officer home has the agency card",
    "officer home has no dispatch or admin card",
    "officer opens the agency page",
    "officer refused the dispatch page",
    "refused page keeps the header of who is signed in",
    "officer refused the audit page",
    "officer refused another agency",
    "form without CSRF token refused",
    "still signed in after the refused post",
    "form with a forged CSRF token refused",
    "session cookie is HttpOnly, Secure, SameSite=Strict",
    "sign out lands on the sign-in page",
    "old cookie refused after sign out",
    "old cookie gets no page",
    "sign-in page follows Accept-Language",
    "dispatcher lands on home",
    "dispatcher home has the region card",
    "dispatcher opens the region page",
    "dispatcher refused the agency page",
    "deep link asks to sign in",
    "admin comes back to the deep link",
    "admin home has the audit and staff cards",
    "audit page opens",
    "audit lists the officer sign-in",
    "audit lists the dispatcher sign-in",
    "audit lists the admin sign-in",
    "audit lists the failed sign-in",
    "audit lists the refused pages",
    "audit filter by actor",
    "audit CSV downloads",
    "audit page in English keeps the filter",
    "audit page back in Korean",
    "staff page lists the members",
    "viewing the audit log is audited",
    "unknown console page is a 404 page",
    "no script errors or CSP violations",
];

/// The labels the flows look for, from the server's own table.
const LABELS: &[Label] = &[
    Label::LoginTitle,
    Label::Username,
    Label::LoginRefused,
    Label::LoginFormRenewed,
    Label::SignedOut,
    Label::HomeTitle,
    Label::Denied403Title,
    Label::Denied404Title,
    Label::CsrfTitle,
    Label::AuditTitle,
    Label::StaffTitle,
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Installs Chromium and playwright-core if needed, once per test process.
fn install_console_deps() {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INSTALLED.get_or_init(|| {
        Command::new("bash")
            .arg(repo_root().join("scripts/console-deps.sh"))
            .status()
            .expect("run scripts/console-deps.sh (needs apt-get, node and npm)")
            .success()
    });
    assert!(ok, "installing the console test dependencies failed");
}

struct Member {
    username: String,
    password: String,
}

async fn add_member(server: &TestServer, username: &str, name: &str, grant: Grant) -> Member {
    let password = format!("dev-{:016x}-pass", rand::random::<u64>());
    let store = server.store();
    let mut stdin = std::io::Cursor::new(format!("{password}\n").into_bytes());
    let mut out = Vec::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    admin_cli::add(
        store.as_ref(),
        now,
        AddStaff {
            username: username.into(),
            display_name: name.into(),
            grants: vec![grant],
            password: PasswordSource::Stdin,
            totp: false,
        },
        &mut stdin,
        &mut out,
    )
    .await
    .expect("staff add");
    Member {
        username: username.into(),
        password,
    }
}

fn labels() -> Value {
    let table = |lang: Lang| -> Value {
        LABELS
            .iter()
            .map(|l| (format!("{l:?}"), Value::from(l.text(lang))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({ "ko": table(Lang::Ko), "en": table(Lang::En) })
}

/// Runs flows.mjs to its end (or the timeout) and returns its exit success, its JSON and
/// its standard error.
fn run_flows(base: &str, shots: &Path, input: &Value) -> (bool, Value, String) {
    let mut child = Command::new("node")
        .arg(repo_root().join("tests/console/flows.mjs"))
        .arg(base)
        .arg(shots)
        .arg(input.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > FLOWS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let Some(status) = status else {
        panic!("flows.mjs ran past {FLOWS_TIMEOUT:?}; stderr:\n{err}\nstdout:\n{out}");
    };
    let report = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("flows.mjs printed no JSON ({e}): {out}\nstderr:\n{err}"));
    (status.success(), report, err)
}

async fn console_in_chromium(backend: Backend, store_name: &str) {
    tokio::task::spawn_blocking(install_console_deps)
        .await
        .expect("install");
    let server = TestServer::start(backend).await;
    let admin = add_member(
        &server,
        "admin.park",
        "박관리",
        Grant::new(Role::Admin, None).unwrap(),
    )
    .await;
    let officer = add_member(
        &server,
        "officer.kim",
        "김담당",
        Grant::new(Role::AgencyOfficer, Some("MOLIT")).unwrap(),
    )
    .await;
    let dispatcher = add_member(
        &server,
        "dispatch.lee",
        "이상황",
        Grant::new(Role::Dispatcher, Some("seoul-north")).unwrap(),
    )
    .await;
    let input = json!({
        "admin": { "username": admin.username, "password": admin.password },
        "officer": { "username": officer.username, "password": officer.password, "agency": "MOLIT" },
        "dispatcher": { "username": dispatcher.username, "password": dispatcher.password, "region": "seoul-north" },
        "labels": labels(),
    });
    let shots = repo_root().join("target/console-shots").join(store_name);
    // This test's shots only: the SOS console test keeps its `sos-*.png` here too.
    for entry in std::fs::read_dir(&shots).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("sos-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // localhost, not 127.0.0.1: a secure context, where Chromium keeps `__Host-` cookies.
    let base = format!("http://localhost:{}", server.addr().port());
    let started = Instant::now();
    let (success, report, stderr) =
        tokio::task::spawn_blocking(move || run_flows(&base, &shots, &input))
            .await
            .expect("flows");
    eprintln!(
        "{store_name}: browser flows took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
    assert!(
        failed.is_empty() && report["error"].is_null(),
        "{store_name}: failed checks {failed:#?}\nerror: {}\nstderr:\n{stderr}",
        report["error"]
    );
    for name in EXPECTED_CHECKS {
        assert!(
            checks.iter().any(|c| c["name"] == *name && c["ok"] == true),
            "{store_name}: check {name:?} did not run"
        );
    }
    let a11y = report["a11y"].as_array().cloned().unwrap_or_default();
    assert!(
        a11y.len() >= 12,
        "{store_name}: {} pages checked",
        a11y.len()
    );
    assert!(success, "{store_name}: flows.mjs exited with failure");
    assert_eq!(report["ok"], true);
    let dir = repo_root().join("target/console-shots").join(store_name);
    for shot in report["shots"].as_array().cloned().unwrap_or_default() {
        let path = dir.join(shot.as_str().unwrap_or_default());
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            path.display()
        );
    }

    // The log the admin read holds what the browser did.
    let store = server.store();
    let denied = store
        .query_audit(&AuditFilter {
            actor: Some(officer.username.clone()),
            action: Some(actions::ACCESS_DENIED.into()),
            ..AuditFilter::default()
        })
        .await
        .expect("query audit");
    assert!(denied.len() >= 3, "{store_name}: {} denials", denied.len());
    server.stop().await;
}

/// One browser at a time: the machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_on_sqlite() {
    let _one = ONE_BROWSER.lock().await;
    console_in_chromium(Backend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_on_postgres() {
    let _one = ONE_BROWSER.lock().await;
    console_in_chromium(Backend::Postgres, "postgres").await;
}
