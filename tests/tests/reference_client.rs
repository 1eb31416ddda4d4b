//! The reference JavaScript client (`@automerge/automerge-repo` with its WebSocket adapter, run
//! by Node) reads a citizen's draft through the server, authenticated by a single-use ticket,
//! and as another citizen gets nothing; it writes through the server's check: its edits reach
//! the phone and the phone's reach it, and an edit the schema refuses never reaches the phone.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sotong_core::automerge::{ReadDoc, ROOT};
use sotong_core::schema::proposal::{ProposalEdit, TextField};
use sotong_core::schema::validate::codes;
use sotong_core::DocumentId;
use sotong_e2e::{new_phone_number, Backend, Phone, TestServer};

/// How long the JS scripts wait for any one step (a bound, not a measure: steps take
/// milliseconds).
const JS_TIMEOUT_MS: &str = "15000";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Installs the pinned Node packages if needed, once per test process: the tests here run in
/// parallel, and two `npm ci` in one directory would trip over each other.
fn install_js_deps() {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *INSTALLED.get_or_init(|| {
        Command::new("bash")
            .arg(repo_root().join("scripts/js-deps.sh"))
            .status()
            .expect("run scripts/js-deps.sh (needs node and npm)")
            .success()
    });
    assert!(ok, "installing tests/js dependencies failed");
}

/// Runs read_draft.mjs once and returns its result line.
fn read_with_reference_client(server: &str, token: &str, doc_url: &str) -> Value {
    install_js_deps();
    let out = Command::new("node")
        .arg(repo_root().join("tests/js/read_draft.mjs"))
        .args(["--server", server, "--token", token, "--doc", doc_url])
        .args(["--timeout-ms", JS_TIMEOUT_MS])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "read_draft.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad output {line:?}: {e}"))
}

/// A running edit_draft.mjs: the reference client connected to one draft, driven one JSON
/// command at a time. Killed on drop, so a failing test leaves no process behind.
struct JsEditor {
    child: Child,
    stdin: ChildStdin,
    events: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl JsEditor {
    /// Starts the client on `doc` with `token`'s account and returns it with its first event
    /// (`ready` with the draft, or `failed`).
    async fn open(server: &TestServer, token: &str, doc: &DocumentId) -> (Self, Value) {
        tokio::task::spawn_blocking(install_js_deps).await.unwrap();
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/js/edit_draft.mjs"))
            .args([
                "--server",
                &server.url(),
                "--token",
                token,
                "--doc",
                &doc.url(),
            ])
            .args(["--timeout-ms", JS_TIMEOUT_MS])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        // Node's stdout is a blocking pipe: read it on a thread of its own; it ends with the
        // process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line).unwrap_or_else(
                    |e| json!({ "event": "garbage", "line": line, "error": e.to_string() }),
                );
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut editor = Self {
            child,
            stdin,
            events,
        };
        let first = editor.next().await;
        (editor, first)
    }

    /// The script's next event. The script bounds each of its waits itself; this bound only
    /// catches a wedged Node process.
    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(60), self.events.recv())
            .await
            .expect("edit_draft.mjs answers")
            .expect("edit_draft.mjs exited early (see its stderr)")
    }

    /// Sends one command and returns the script's answer.
    async fn run(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("write to edit_draft.mjs");
        self.stdin.flush().expect("flush");
        self.next().await
    }

    /// Ends the script and checks it exited cleanly.
    async fn close(mut self) {
        writeln!(self.stdin, "{}", json!({ "op": "close" })).expect("write close");
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait();
            drop(self);
            status
        })
        .await
        .unwrap()
        .expect("wait for node");
        assert!(status.success(), "edit_draft.mjs exited with {status}");
    }
}

impl Drop for JsEditor {
    fn drop(&mut self) {
        // Already exited after `close`: kill fails harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_js_client_reads_a_citizens_draft_and_nothing_else() {
    let server = TestServer::start(Backend::Sqlite).await;
    let phone = Phone::new(&server);
    phone.register(&server, &new_phone_number()).await;
    let id = phone
        .client
        .create_proposal("공원 조명", "산책로에 가로등을 설치해 주세요.", "safety")
        .unwrap();
    phone
        .client
        .edit_proposal(
            &id,
            sotong_core::schema::proposal::ProposalEdit::Splice {
                field: sotong_core::schema::proposal::TextField::Body,
                pos: 0,
                delete: 0,
                insert: "밤에 어둡습니다. ".into(),
            },
        )
        .unwrap();
    phone.client.sync().await.unwrap();
    let expected = phone.client.read_proposal(&id).unwrap();

    let url = server.url();
    let token = phone.token();
    let doc = id.url();
    let got = tokio::task::spawn_blocking(move || read_with_reference_client(&url, &token, &doc))
        .await
        .unwrap();
    assert_eq!(got["found"], Value::Bool(true), "{got}");
    assert_eq!(got["title"], Value::from(expected.title.as_str()));
    assert_eq!(got["body"], Value::from(expected.body.as_str()));
    assert_eq!(got["category"], Value::from("safety"));

    // Another citizen, with a valid ticket of their own, gets nothing.
    let other = Phone::new(&server);
    other.register(&server, &new_phone_number()).await;
    let url = server.url();
    let token = other.token();
    let doc = id.url();
    let got = tokio::task::spawn_blocking(move || read_with_reference_client(&url, &token, &doc))
        .await
        .unwrap();
    assert_eq!(got["found"], Value::Bool(false), "{got}");
    assert_eq!(got["reason"], Value::from("unavailable"), "{got}");

    // A forged token cannot even get a ticket.
    let url = server.url();
    let doc = id.url();
    let got = tokio::task::spawn_blocking(move || {
        read_with_reference_client(&url, &"A".repeat(43), &doc)
    })
    .await
    .unwrap();
    assert_eq!(got["reason"], Value::from("unauthorized"), "{got}");
    server.stop().await;
}

/// The root keys of the phone's copy of a draft, read from the Automerge document itself (the
/// typed API would not show a key the schema does not know).
fn phone_root_keys(phone: &Phone, id: &DocumentId) -> Vec<String> {
    let mut keys = Vec::new();
    phone
        .client
        .tamper_for_tests(id, |doc| keys = doc.keys(ROOT).collect())
        .expect("read the phone's draft");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_js_client_writes_through_the_servers_check() {
    let server = TestServer::start(Backend::Sqlite).await;
    let citizen = new_phone_number();
    let phone = Phone::new(&server);
    phone.register(&server, &citizen).await;
    let id = phone
        .client
        .create_proposal("버스 정류장", "정류장에 지붕이 필요합니다.", "transport")
        .unwrap();
    phone.client.sync().await.unwrap();
    let token = phone.token();

    // The JS client finds the draft and edits its body; the server checks, stores and
    // acknowledges the change.
    let (mut js, ready) = JsEditor::open(&server, &token, &id).await;
    assert_eq!(ready["event"], "ready", "{ready}");
    assert_eq!(
        ready["doc"]["body"], "정류장에 지붕이 필요합니다.",
        "{ready}"
    );
    let acked = js
        .run(json!({ "op": "splice", "field": "body", "pos": 0, "del": 0, "text": "[JS] " }))
        .await;
    assert_eq!(acked["event"], "acked", "{acked}");

    // The phone receives it.
    let report = phone.client.sync().await.unwrap();
    assert_eq!(report.documents_received, 1, "{report:?}");
    assert_eq!(
        phone.client.read_proposal(&id).unwrap().body,
        "[JS] 정류장에 지붕이 필요합니다."
    );

    // The phone's edit reaches the JS client, which is still connected.
    let len = phone
        .client
        .read_proposal(&id)
        .unwrap()
        .body
        .chars()
        .count();
    phone
        .client
        .edit_proposal(
            &id,
            ProposalEdit::insert(TextField::Body, len, " 비가 옵니다."),
        )
        .unwrap();
    phone.client.sync().await.unwrap();
    let seen = js
        .run(json!({ "op": "wait-text", "field": "body", "includes": "비가 옵니다." }))
        .await;
    assert_eq!(seen["event"], "seen", "{seen}");
    assert_eq!(
        seen["doc"]["body"],
        "[JS] 정류장에 지붕이 필요합니다. 비가 옵니다."
    );

    // Edits the schema refuses, each from a client of its own (a refused change stays in
    // that client's history, so whatever it writes next depends on it): the title turned into
    // a number, and a key the schema does not know.
    for (key, value) in [("title", json!(42)), ("admin_note", json!("승인됨"))] {
        let (mut bad, ready) = JsEditor::open(&server, &token, &id).await;
        assert_eq!(ready["event"], "ready", "{ready}");
        let verdict = bad
            .run(json!({ "op": "put", "key": key, "value": value }))
            .await;
        assert_eq!(verdict["event"], "rejected", "{key}: {verdict}");
        assert_eq!(verdict["code"], codes::INVALID_CHANGE, "{key}: {verdict}");
        bad.close().await;
    }

    // The server still takes the first client's edits, and the phone gets those and nothing
    // of the refused ones: the server decided on both before it acknowledged this one.
    let acked = js
        .run(json!({ "op": "splice", "field": "title", "pos": 0, "del": 0, "text": "[JS] " }))
        .await;
    assert_eq!(acked["event"], "acked", "{acked}");
    assert_eq!(
        acked["doc"]["keys"],
        json!(["body", "category", "title", "type"])
    );
    phone.client.sync().await.unwrap();
    let draft = phone.client.read_proposal(&id).unwrap();
    assert_eq!(draft.title, "[JS] 버스 정류장");
    assert_eq!(draft.body, "[JS] 정류장에 지붕이 필요합니다. 비가 옵니다.");
    assert_eq!(draft.category, "transport");
    assert_eq!(
        phone_root_keys(&phone, &id),
        ["body", "category", "title", "type"]
    );

    // A new device of the citizen, syncing from nothing, gets the same clean draft.
    let second = Phone::new(&server);
    second.register(&server, &citizen).await;
    second.client.sync().await.unwrap();
    assert_eq!(second.client.read_proposal(&id).unwrap(), draft);
    assert_eq!(
        phone_root_keys(&second, &id),
        ["body", "category", "title", "type"]
    );

    js.close().await;
    server.stop().await;
}
