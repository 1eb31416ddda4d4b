//! The reference JavaScript client (`@automerge/automerge-repo` with its WebSocket adapter, run
//! by Node) reads a citizen's draft through the server, authenticated by a single-use ticket;
//! as another citizen it gets nothing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sotong_e2e::{new_phone_number, Backend, Phone, TestServer};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Installs the pinned Node packages if needed (idempotent), then runs read_draft.mjs.
fn read_with_reference_client(server: &str, token: &str, doc_url: &str) -> Value {
    let root = repo_root();
    let deps = Command::new("bash")
        .arg(root.join("scripts/js-deps.sh"))
        .status()
        .expect("run scripts/js-deps.sh (needs node and npm)");
    assert!(deps.success(), "installing tests/js dependencies failed");
    let out = Command::new("node")
        .arg(root.join("tests/js/read_draft.mjs"))
        .args(["--server", server, "--token", token, "--doc", doc_url])
        .args(["--timeout-ms", "15000"])
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
