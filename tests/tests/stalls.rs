//! No silent stalls: a peer that stops reading, sends too much, sends a frame too large or
//! goes silent is closed with a WebSocket close code and a reason; a failing message on one
//! document does not detach the document's other peers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage, MAX_FRAME_BYTES};
use sotong_core::DocumentId;
use sotong_e2e::{
    eventually, new_phone_number, read_close_frame, Backend, Phone, Quiet, RawPeer, TestServer,
};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const GENEROUS: Duration = Duration::from_secs(30);
/// The flood below needs tens of thousands of tiny answers before the kernel's autotuned send
/// buffer fills and the server's outbox backs up; on a loaded 2-core machine running other
/// tests in parallel that took just over 30 s once. A liveness bound, not a speed target.
const FLOOD: Duration = Duration::from_secs(180);

async fn citizen(server: &TestServer) -> (Phone, String) {
    let phone = Phone::new(server);
    phone.register(server, &new_phone_number()).await;
    let token = phone.token();
    (phone, token)
}

fn request_for(peer_id: &str, id: DocumentId) -> WireMessage {
    WireMessage::Request(DocMessage {
        sender_id: peer_id.into(),
        target_id: "server".into(),
        document_id: id,
        data: Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .expect("a first message")
            .encode(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_closed_with_a_reason() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sync.outbox_frames = 16;
        c.sync.messages_per_sec = 1_000_000;
        c.sync.message_burst = 1_000_000;
    })
    .await;
    let (_phone, token) = citizen(&server).await;
    // A small receive buffer, so that the server's replies back up quickly.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(server.addr()).await.unwrap();
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let (mut sink, mut reading) = socket.split();
    let join = WireMessage::Join {
        sender_id: "slow".into(),
        supported_protocol_versions: vec!["1".into()],
        peer_metadata: None,
    };
    sink.send(tungstenite::Message::Binary(join.encode().into()))
        .await
        .unwrap();
    // The hub counts a connection once its join is handled: until then "no connection" would
    // look like "already closed".
    let hub = server.hub();
    let joined = eventually(GENEROUS, || async {
        (hub.connections() == 1).then_some(())
    })
    .await;
    assert!(joined.is_some(), "the connection never joined");
    // Requests for ids that do not exist, each answered, none of the answers read, until the
    // server gives up on this peer. (How many it takes depends on the kernel's socket buffers,
    // which grow on their own: a fixed count sometimes fit in them and was never refused.)
    let sender = tokio::spawn(async move {
        loop {
            let frame = request_for("slow", DocumentId::random()).encode();
            if sink
                .send(tungstenite::Message::Binary(frame.into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let closed = eventually(FLOOD, || async { (hub.connections() == 0).then_some(()) }).await;
    sender.abort();
    assert!(closed.is_some(), "the slow reader was never closed");
    // Reading again drains the answers it left unread; the close frame comes after them.
    let (code, reason) = read_close_frame(&mut reading).await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.starts_with("too_slow"), "{reason}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_refused_while_it_arrives() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (_phone, token) = citizen(&server).await;
    let peer = RawPeer::join(&server, &token).await;
    let (mut sink, mut reading) = peer.into_socket().split();
    // The server refuses from the frame's header on; the rest may never be read.
    let sender = tokio::spawn(async move {
        let _ = sink
            .send(tungstenite::Message::Binary(
                vec![0u8; MAX_FRAME_BYTES + 1].into(),
            ))
            .await;
    });
    let (code, reason) = read_close_frame(&mut reading).await.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.starts_with("too_big"), "{reason}");
    sender.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_silent_past_the_timeout_is_dropped() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sync.ping_interval = Duration::from_millis(100);
        c.sync.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let (_phone, token) = citizen(&server).await;
    // Joins, then neither reads (so never answers a ping) nor sends.
    let mut peer = RawPeer::join(&server, &token).await;
    let hub = server.hub();
    let dropped = eventually(GENEROUS, || async {
        (hub.connections() == 0).then_some(())
    })
    .await;
    assert!(dropped.is_some(), "a silent peer stayed connected");
    let (code, reason) = peer.close_frame().await.expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.starts_with("idle"), "{reason}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_pings_stays_connected() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sync.ping_interval = Duration::from_millis(50);
        c.sync.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let (phone, token) = citizen(&server).await;
    let mut peer = RawPeer::join(&server, &token).await;
    // Reading answers the server's pings; several timeouts' worth of requests later the
    // connection still serves.
    let id = phone.client.create_proposal("kept", "alive", "c").unwrap();
    phone.client.sync().await.unwrap();
    for _ in 0..20 {
        peer.send(&request_for(&peer.peer_id, id)).await;
        assert!(peer.recv().await.is_some(), "the connection was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_on_a_document_does_not_detach_its_other_peers() {
    let server = TestServer::start(Backend::Sqlite).await;
    let number = new_phone_number();
    let a = Phone::new(&server);
    let b = Phone::new(&server);
    a.register(&server, &number).await;
    b.register(&server, &number).await;
    let id = a.client.create_proposal("shared", "body", "c").unwrap();
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();
    let live_a = a.client.start_live_sync(Arc::new(Quiet)).await.unwrap();
    let live_b = b.client.start_live_sync(Arc::new(Quiet)).await.unwrap();

    // A third connection of the citizen prepares a change that clashes with A's history: the
    // same actor and sequence number as A's next edit, with other content.
    let mut c = RawPeer::join(&server, &a.token()).await;
    let current = fetch(&mut c, id).await;
    let actor = current.get_changes(&[]).last().unwrap().actor_id().clone();
    let mut impostor = current.fork();
    impostor.set_actor(actor);
    proposal::apply(
        &mut impostor,
        &ProposalEdit::insert(TextField::Title, 0, "fake "),
    )
    .unwrap();
    let clash = impostor
        .get_last_local_change()
        .unwrap()
        .raw_bytes()
        .to_vec();

    a.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "one "))
        .unwrap();
    assert!(
        body_reaches(&b, id, "one body").await,
        "A's first edit never reached B"
    );

    c.send(&WireMessage::Sync(DocMessage {
        sender_id: c.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: sync::Message {
            heads: impostor.get_heads(),
            need: vec![],
            have: vec![],
            changes: vec![clash].into(),
            supported_capabilities: None,
            version: sync::MessageVersion::V1,
        }
        .encode(),
    }))
    .await;
    // C is a peer of the document too: A's edit may reach it first.
    loop {
        match c.recv().await {
            Some(WireMessage::Rejected { reason, .. }) => {
                assert!(reason.contains("do not apply"), "{reason}");
                break;
            }
            Some(WireMessage::Sync(_)) => continue,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // B is still a peer of the document: A's next edit reaches it without B asking.
    a.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "two "))
        .unwrap();
    assert!(body_reaches(&b, id, "two one body").await, "B was detached");
    live_a.stop().await;
    live_b.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_message_rate_is_closed_with_a_reason() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.sync.messages_per_sec = 1;
        c.sync.message_burst = 20;
    })
    .await;
    let (_phone, token) = citizen(&server).await;
    let mut peer = RawPeer::join(&server, &token).await;
    for _ in 0..100 {
        peer.send(&request_for(&peer.peer_id, DocumentId::random()))
            .await;
    }
    let (code, reason) = peer.close_frame().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.starts_with("rate_limited"), "{reason}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_account_limit_are_closed_with_a_reason() {
    let server =
        TestServer::start_with(Backend::Sqlite, |c| c.sync.connections_per_account = 2).await;
    let (_phone, token) = citizen(&server).await;
    let first = RawPeer::join(&server, &token).await;
    let _second = RawPeer::join(&server, &token).await;
    let mut third = RawPeer::connect(&server, Some(&token)).await.unwrap();
    let (code, reason) = third.close_frame().await.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.starts_with("too_many_connections"), "{reason}");
    // A connection that ends frees its place.
    drop(first);
    let hub = server.hub();
    let freed = eventually(GENEROUS, || async {
        (hub.connections() == 1).then_some(())
    })
    .await;
    assert!(freed.is_some());
    let _again = RawPeer::join(&server, &token).await;
    server.stop().await;
}

async fn body_reaches(phone: &Phone, id: DocumentId, body: &str) -> bool {
    eventually(GENEROUS, || async {
        (phone.client.read_proposal(&id).ok()?.body == body).then_some(())
    })
    .await
    .is_some()
}

/// The document as a fresh peer receives it from the server.
async fn fetch(peer: &mut RawPeer, id: DocumentId) -> Automerge {
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    for _ in 0..6 {
        let Some(m) = doc.generate_sync_message(&mut state) else {
            break;
        };
        peer.send(&WireMessage::Sync(DocMessage {
            sender_id: peer.peer_id.clone(),
            target_id: "server".into(),
            document_id: id,
            data: m.encode(),
        }))
        .await;
        match peer.recv().await {
            Some(WireMessage::Sync(d)) => doc
                .receive_sync_message(&mut state, sync::Message::decode(&d.data).unwrap())
                .unwrap(),
            other => panic!("expected sync, got {other:?}"),
        }
        if proposal::read(&doc).is_ok() {
            break;
        }
    }
    doc
}
