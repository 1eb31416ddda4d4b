//! A live phone rides out outages by itself: the server stopped and restarted under it, a
//! server gone silent; and it stops for good when retrying cannot help (refused token,
//! sign-out).

use std::time::Duration;

use sotong_core::client::store::{AccountRow, Store};
use sotong_core::client::{Client, ClientError, LiveOptions, LiveState, DATABASE_FILE};
use sotong_core::schema::proposal::{ProposalEdit, TextField};
use sotong_e2e::{new_phone_number, Backend, LiveEvent, LiveRecorder, Phone, TestServer};

/// Short delays, so that the tests spend their time on the protocol rather than waiting.
fn quick() -> LiveOptions {
    LiveOptions {
        ping_interval: Duration::from_millis(100),
        silence_timeout: Duration::from_millis(400),
        first_retry: Duration::from_millis(50),
        max_retry: Duration::from_millis(400),
        stable_after: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_phone_reconnects_after_a_server_restart_and_pushes_what_was_edited_meanwhile() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let citizen = new_phone_number();
    let a = Phone::new(&server);
    let b = Phone::new(&server);
    a.register(&server, &citizen).await;
    b.register(&server, &citizen).await;
    let id = a.client.create_proposal("정전", "before", "c").unwrap();
    a.client.sync().await.unwrap();

    let (recorder, mut events) = LiveRecorder::new();
    let live = a
        .client
        .start_live_sync_with(recorder, quick())
        .await
        .unwrap();
    events.state("online", |s| *s == LiveState::Online).await;
    // The citizen's other device, live too, is where the outage edit must arrive.
    let (recorder_b, mut events_b) = LiveRecorder::new();
    let live_b = b
        .client
        .start_live_sync_with(recorder_b, quick())
        .await
        .unwrap();
    events_b
        .until("B receives the draft", |e| *e == LiveEvent::Changed(id))
        .await;

    server.go_down().await;
    let backing_off = events
        .state("backing off", |s| matches!(s, LiveState::BackingOff { .. }))
        .await;
    let LiveState::BackingOff { until_ms, .. } = backing_off else {
        unreachable!()
    };
    assert!(until_ms > 0);
    // Edited while the server is away: stays on the phone until it returns.
    a.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 6, " and during"))
        .unwrap();
    // Attempts keep failing (and are reported) while the server is down.
    events
        .state("connecting again", |s| *s == LiveState::Connecting)
        .await;

    server.come_back().await;
    events
        .state("online again", |s| *s == LiveState::Online)
        .await;

    // The outage edit reaches the server, then B, without anyone syncing by hand.
    loop {
        events_b
            .until("B receives the outage edit", |e| {
                *e == LiveEvent::Changed(id)
            })
            .await;
        if b.client.read_proposal(&id).unwrap().body == "before and during" {
            break;
        }
    }
    live_b.stop().await;
    live.stop().await;
    events
        .state("stopped", |s| *s == LiveState::Stopped { error: None })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_live_sync_instead_of_retrying() {
    let server = TestServer::start(Backend::Sqlite).await;
    let a = Phone::new(&server);
    a.register(&server, &new_phone_number()).await;
    // The server no longer knows this token (as after a revocation).
    let store = Store::open(&a.dir().join(DATABASE_FILE)).unwrap();
    let mut row = store.account().unwrap().unwrap();
    row.token = "revoked-token".into();
    store.save_account(&row).unwrap();
    drop(store);

    let (recorder, mut events) = LiveRecorder::new();
    let err = a
        .client
        .start_live_sync_with(recorder, quick())
        .await
        .err()
        .expect("a refused token fails the start");
    assert!(matches!(err, ClientError::Unauthorized(_)), "{err:?}");
    events
        .state("stopped", |s| {
            matches!(s, LiveState::Stopped { error: Some(_) })
        })
        .await;
    assert!(
        !events
            .seen()
            .iter()
            .any(|e| matches!(e, LiveEvent::State(LiveState::BackingOff { .. }))),
        "{:?}",
        events.seen()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_stops_live_sync_and_later_syncs_need_a_registration() {
    let server = TestServer::start(Backend::Sqlite).await;
    let a = Phone::new(&server);
    a.register(&server, &new_phone_number()).await;
    a.client.create_proposal("mine", "text", "c").unwrap();
    let (recorder, mut events) = LiveRecorder::new();
    let _live = a
        .client
        .start_live_sync_with(recorder, quick())
        .await
        .unwrap();
    events.state("online", |s| *s == LiveState::Online).await;

    a.client.sign_out().unwrap();
    events
        .state("stopped", |s| {
            matches!(s, LiveState::Stopped { error: Some(_) })
        })
        .await;
    assert_eq!(a.client.account().unwrap(), None);
    assert!(a.client.list_proposals().unwrap().is_empty());
    assert!(matches!(
        a.client.sync().await,
        Err(ClientError::NotRegistered)
    ));
    server.stop().await;
}

/// A server that accepts the sync connection, joins, then neither answers nor reads: the
/// phone's pings go unanswered.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut head = [0u8; 32];
            let n = tcp.peek(&mut head).await.unwrap_or(0);
            if head[..n].starts_with(b"GET /v1/documents") {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let body = r#"{"documents":[]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
                continue;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            if let Some(Ok(_join)) = ws.next().await {
                let peer = sotong_core::wire::WireMessage::Peer {
                    sender_id: "silent-server".into(),
                    selected_protocol_version: "1".into(),
                    target_id: "phone".into(),
                    peer_metadata: None,
                };
                let _ = ws
                    .send(tokio_tungstenite::tungstenite::Message::Binary(
                        peer.encode().into(),
                    ))
                    .await;
            }
            // Never read again: no pong ever goes back.
            held.push(ws);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_taken_for_lost_and_retried() {
    let (url, server) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DATABASE_FILE)).unwrap();
    store
        .save_account(&AccountRow {
            server_url: url.clone(),
            account_id: 1,
            device_id: 1,
            token: "token".into(),
            token_expires_at: i64::MAX,
            registered_at: 0,
        })
        .unwrap();
    drop(store);
    let client = Client::open(dir.path(), &url).unwrap();

    let (recorder, mut events) = LiveRecorder::new();
    let live = client
        .start_live_sync_with(recorder, quick())
        .await
        .unwrap();
    events.state("online", |s| *s == LiveState::Online).await;
    let lost = events
        .state("backing off", |s| matches!(s, LiveState::BackingOff { .. }))
        .await;
    let LiveState::BackingOff { error, .. } = lost else {
        unreachable!()
    };
    assert!(error.contains("silent"), "{error}");
    // And it tries again by itself.
    events
        .state("online again", |s| *s == LiveState::Online)
        .await;
    live.stop().await;
    server.abort();
}
