//! The server's write check and its robustness: an invalid change is refused with its reason,
//! never stored, and the phone recovers; bad input of every kind gets a clear error while the
//! server keeps serving.

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::transaction::Transactable;
use sotong_core::automerge::{Automerge, ReadDoc, ROOT};
use sotong_core::schema::proposal::{ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;
use sotong_e2e::{new_phone_number, Phone, RawPeer, TestServer, BACKENDS};

async fn stored_doc(server: &TestServer, id: &DocumentId) -> Automerge {
    let mut doc = Automerge::new();
    for c in server.store().chunks_after(id, 0).await.unwrap() {
        doc.load_incremental(&c.bytes).unwrap();
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_refused_with_its_reason_and_not_stored() {
    for backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let citizen = new_phone_number();
        let phone = Phone::new(&server);
        phone.register(&server, &citizen).await;
        let id = phone.client.create_proposal("title", "body", "c").unwrap();
        phone.client.sync().await.unwrap();
        let before = stored_doc(&server, &id).await.get_heads();

        // A tampered client: a valid edit, then a title that is not text and an unknown
        // top-level field, each in its own change.
        phone
            .client
            .edit_proposal(
                &id,
                ProposalEdit::Splice {
                    field: TextField::Body,
                    pos: 4,
                    delete: 0,
                    insert: " kept".into(),
                },
            )
            .unwrap();
        phone
            .client
            .tamper_for_tests(&id, |doc| {
                let mut tx = doc.transaction();
                tx.put(ROOT, "title", 42).unwrap();
                tx.put(ROOT, "extra", "x").unwrap();
                tx.commit();
            })
            .unwrap();
        let report = phone.client.sync().await.unwrap();
        assert_eq!(report.rejected.len(), 1, "{backend:?}: {report:?}");
        assert!(
            report.rejected[0].reason.contains("\"title\" must be text"),
            "{}",
            report.rejected[0].reason
        );

        // Nothing of the refused change is on the server.
        let on_server = stored_doc(&server, &id).await;
        assert!(on_server.get(ROOT, "extra").unwrap().is_none());
        let title = sotong_core::schema::proposal::read(&on_server)
            .unwrap()
            .title;
        assert_eq!(title, "title");

        // The phone recovered: rewound to the server, its valid edit replayed, and the pair
        // syncs again.
        let local = phone.client.read_proposal(&id).unwrap();
        assert_eq!(local.title, "title");
        assert_eq!(local.body, "body kept");
        let report = phone.client.sync().await.unwrap();
        assert!(report.rejected.is_empty(), "{report:?}");
        let on_server = stored_doc(&server, &id).await;
        assert_ne!(on_server.get_heads(), before);
        assert_eq!(
            sotong_core::schema::proposal::read(&on_server)
                .unwrap()
                .body,
            "body kept"
        );
        phone
            .client
            .edit_proposal(&id, ProposalEdit::SetCategory("after".into()))
            .unwrap();
        phone.client.sync().await.unwrap();
        let other_device = Phone::new(&server);
        other_device.register(&server, &citizen).await;
        other_device.client.sync().await.unwrap();
        assert_eq!(
            other_device.client.read_proposal(&id).unwrap(),
            phone.client.read_proposal(&id).unwrap()
        );
        server.stop().await;
    }
}

/// A sync message carrying `doc`'s changes since `base`, as a tampered client would send it.
fn changes_message(doc: &Automerge) -> Vec<u8> {
    // Handshake with a stand-in server that has nothing, so the third message holds changes.
    let mut mine = sync::State::new();
    let mut theirs = sync::State::new();
    let mut empty = Automerge::new();
    let mut doc = doc.clone();
    let m1 = doc.generate_sync_message(&mut mine).unwrap();
    empty.receive_sync_message(&mut theirs, m1).unwrap();
    let m2 = empty.generate_sync_message(&mut theirs).unwrap();
    doc.receive_sync_message(&mut mine, m2).unwrap();
    doc.generate_sync_message(&mut mine).unwrap().encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_document_that_breaks_its_schema_is_never_created() {
    let server = TestServer::start(sotong_e2e::Backend::Sqlite).await;
    let phone = Phone::new(&server);
    phone.register(&server, &new_phone_number()).await;
    let mut peer = RawPeer::join(&server, &phone.token()).await;
    let mut bad = Automerge::new();
    let mut tx = bad.transaction();
    tx.put(ROOT, "type", "proposal").unwrap();
    tx.put(ROOT, "title", "plain string, not text").unwrap();
    tx.commit();
    let id = DocumentId::random();
    peer.send(&WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: changes_message(&bad),
    }))
    .await;
    match peer.recv().await {
        Some(WireMessage::Rejected { reason, .. }) => assert!(reason.contains("must be text")),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(server.store().document(&id).await.unwrap().is_none());
    assert!(server
        .store()
        .chunks_after(&id, 0)
        .await
        .unwrap()
        .is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_server_keeps_serving() {
    let server = TestServer::start(sotong_e2e::Backend::Sqlite).await;
    let phone = Phone::new(&server);
    phone.register(&server, &new_phone_number()).await;
    let token = phone.token();

    // Before join.
    let mut peer = RawPeer::connect(&server, Some(&token)).await.unwrap();
    peer.send(&WireMessage::Leave {
        sender_id: "x".into(),
    })
    .await;
    assert!(
        matches!(peer.recv().await, Some(WireMessage::Error { message, .. }) if message.contains("join"))
    );

    let mut peer = RawPeer::join(&server, &token).await;
    let expect_error = |m: Option<WireMessage>, needle: &str| match m {
        Some(WireMessage::Error { message, .. }) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected an error about {needle}, got {other:?}"),
    };
    // Garbage frames.
    peer.send_bytes(vec![0xff, 0x13, 0x37]).await;
    expect_error(peer.recv().await, "not valid CBOR");
    peer.send_bytes(vec![0x05]).await;
    expect_error(peer.recv().await, "CBOR map");
    peer.send_text("hello").await;
    expect_error(peer.recv().await, "binary");
    // A message of an unknown type, and a sync with a malformed document id.
    let mut unknown = WireMessage::Ignored {
        kind: "launch-missiles".into(),
    }
    .encode();
    peer.send_bytes(std::mem::take(&mut unknown)).await;
    expect_error(peer.recv().await, "unknown message type");
    // (An oversized frame closes the connection with 1009: see stalls.rs.)
    // A sync whose data is not an automerge message.
    let id = DocumentId::random();
    peer.send(&WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: b"not automerge".to_vec(),
    }))
    .await;
    assert!(
        matches!(peer.recv().await, Some(WireMessage::Rejected { reason, .. }) if reason.contains("not an automerge sync message"))
    );
    // Changes that are not automerge chunks inside a well-formed message.
    let garbage_changes = sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: vec![b"junk".to_vec()].into(),
        supported_capabilities: None,
        version: sync::MessageVersion::V1,
    };
    peer.send(&WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: garbage_changes.encode(),
    }))
    .await;
    assert!(
        matches!(peer.recv().await, Some(WireMessage::Rejected { reason, .. }) if reason.contains("malformed automerge chunk"))
    );
    // An unknown document id asked for.
    let mut st = sync::State::new();
    peer.send(&WireMessage::Request(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: DocumentId::random(),
        data: Automerge::new()
            .generate_sync_message(&mut st)
            .unwrap()
            .encode(),
    }))
    .await;
    assert!(matches!(
        peer.recv().await,
        Some(WireMessage::DocUnavailable { .. })
    ));

    // The same connection and the server still serve a real phone.
    let id = phone
        .client
        .create_proposal("still", "serving", "c")
        .unwrap();
    phone.client.sync().await.unwrap();
    assert!(server.store().document(&id).await.unwrap().is_some());
    let health = sotong_e2e::http()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

/// A message carrying exactly `changes`, as a hand-made client would send it.
fn message_with(heads: Vec<sotong_core::automerge::ChangeHash>, changes: Vec<Vec<u8>>) -> Vec<u8> {
    sync::Message {
        heads,
        need: vec![],
        have: vec![],
        changes: changes.into(),
        supported_capabilities: None,
        version: sync::MessageVersion::V1,
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_looking_change_that_does_not_fit_the_history_is_never_stored() {
    use sotong_core::schema::proposal;
    let server = TestServer::start(sotong_e2e::Backend::Sqlite).await;
    let phone = Phone::new(&server);
    phone.register(&server, &new_phone_number()).await;
    let mut peer = RawPeer::join(&server, &phone.token()).await;
    let id = DocumentId::random();

    let mut original = proposal::create("title", "body", "c").unwrap();
    // A second history under the same actor: its next change reuses a sequence number.
    let mut impostor = original.fork();
    impostor.set_actor(original.get_actor().clone());
    let edit = |field, insert: &str| ProposalEdit::Splice {
        field,
        pos: 0,
        delete: 0,
        insert: insert.into(),
    };
    proposal::apply(&mut original, &edit(TextField::Body, "real ")).unwrap();
    proposal::apply(&mut impostor, &edit(TextField::Title, "fake ")).unwrap();

    let all: Vec<Vec<u8>> = original
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    peer.send(&WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: message_with(original.get_heads(), all),
    }))
    .await;
    assert!(matches!(peer.recv().await, Some(WireMessage::Sync(_))));

    let clash = impostor
        .get_last_local_change()
        .unwrap()
        .raw_bytes()
        .to_vec();
    peer.send(&WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: message_with(impostor.get_heads(), vec![clash]),
    }))
    .await;
    match peer.recv().await {
        Some(WireMessage::Rejected { reason, .. }) => {
            assert!(reason.contains("do not apply"), "{reason}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The stored document still loads, without the clashing change.
    let stored = stored_doc(&server, &id).await;
    assert_eq!(
        proposal::read(&stored).unwrap(),
        proposal::read(&original).unwrap()
    );
    // And the server still serves it.
    let mut fresh = Automerge::new();
    let mut state = sync::State::new();
    for _ in 0..4 {
        if proposal::read(&fresh).is_ok() {
            break;
        }
        let Some(m) = fresh.generate_sync_message(&mut state) else {
            break;
        };
        peer.send(&WireMessage::Sync(DocMessage {
            sender_id: peer.peer_id.clone(),
            target_id: "server".into(),
            document_id: id,
            data: m.encode(),
        }))
        .await;
        if let Some(WireMessage::Sync(d)) = peer.recv().await {
            fresh
                .receive_sync_message(&mut state, sync::Message::decode(&d.data).unwrap())
                .unwrap();
        }
    }
    assert_eq!(proposal::read(&fresh).unwrap().body, "real body");
    server.stop().await;
}
