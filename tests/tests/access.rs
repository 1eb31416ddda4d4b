//! Who may read and write: another citizen can neither fetch nor learn of a draft; forged and
//! expired tokens are refused.

use std::time::Duration;

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_e2e::{new_phone_number, Backend, Phone, RawPeer, TestServer, BACKENDS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_citizen_cannot_fetch_or_learn_of_a_draft() {
    for backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let owner = Phone::new(&server);
        owner.register(&server, &new_phone_number()).await;
        let id = owner
            .client
            .create_proposal("비공개 초안", "secret body", "c")
            .unwrap();
        owner.client.sync().await.unwrap();

        let other = Phone::new(&server);
        other.register(&server, &new_phone_number()).await;
        // Not listed to them, and a sync brings nothing.
        let report = other.client.sync().await.unwrap();
        assert_eq!(report.documents_received, 0);
        assert!(other.client.list_proposals().unwrap().is_empty());
        assert!(other.client.read_proposal(&id).is_err());

        // Asking for the id directly gets the same answer as an id that does not exist.
        let mut peer = RawPeer::join(&server, &other.token()).await;
        let ask = |doc| {
            let mut state = sync::State::new();
            let data = Automerge::new()
                .generate_sync_message(&mut state)
                .unwrap()
                .encode();
            WireMessage::Request(DocMessage {
                sender_id: "x".into(),
                target_id: "server".into(),
                document_id: doc,
                data,
            })
        };
        peer.send(&ask(id)).await;
        let for_real = peer.recv().await.unwrap();
        peer.send(&ask(sotong_core::DocumentId::random())).await;
        let for_unknown = peer.recv().await.unwrap();
        assert!(
            matches!(for_real, WireMessage::DocUnavailable { .. }),
            "{for_real:?}"
        );
        assert!(matches!(for_unknown, WireMessage::DocUnavailable { .. }));

        // A "sync" for it (as if they had it) gets an empty document's answer, like an unknown
        // id, and the owner's content never leaves the server.
        let mut state = sync::State::new();
        let data = Automerge::new()
            .generate_sync_message(&mut state)
            .unwrap()
            .encode();
        peer.send(&WireMessage::Sync(DocMessage {
            sender_id: "x".into(),
            target_id: "server".into(),
            document_id: id,
            data,
        }))
        .await;
        match peer.recv().await.unwrap() {
            WireMessage::Sync(d) => {
                let m = sync::Message::decode(&d.data).unwrap();
                let carried: usize = m
                    .changes
                    .iter()
                    .map(|c| sotong_core::changes::decode(c).unwrap().len())
                    .sum();
                assert!(m.heads.is_empty() && carried == 0, "leaked: {m:?}");
            }
            WireMessage::DocUnavailable { .. } => {}
            other => panic!("unexpected {other:?}"),
        }

        // Writing into it is refused and changes nothing.
        let mut forged = sotong_core::schema::proposal::create("hijack", "x", "c").unwrap();
        let mut state = sync::State::new();
        // Run the handshake against a stand-in so the third message carries the changes.
        let mut fake_server = Automerge::new();
        let mut fake_state = sync::State::new();
        let m1 = forged.generate_sync_message(&mut state).unwrap();
        fake_server
            .receive_sync_message(&mut fake_state, m1)
            .unwrap();
        let m2 = fake_server.generate_sync_message(&mut fake_state).unwrap();
        forged.receive_sync_message(&mut state, m2).unwrap();
        let m3 = forged.generate_sync_message(&mut state).unwrap();
        assert!(!m3.changes.is_empty());
        peer.send(&WireMessage::Sync(DocMessage {
            sender_id: "x".into(),
            target_id: "server".into(),
            document_id: id,
            data: m3.encode(),
        }))
        .await;
        let answer = peer.recv().await.unwrap();
        assert!(
            matches!(answer, WireMessage::DocUnavailable { .. }),
            "{answer:?}"
        );
        owner.client.sync().await.unwrap();
        assert_eq!(
            owner.client.read_proposal(&id).unwrap().title,
            "비공개 초안"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_are_refused() {
    let server = TestServer::start(Backend::Sqlite).await;
    // Forged: well-formed but unknown; and garbage.
    for token in ["A".repeat(43), "not a token".to_owned()] {
        assert_eq!(
            RawPeer::connect(&server, Some(&token)).await.err(),
            Some(401)
        );
    }
    assert_eq!(RawPeer::connect(&server, None).await.err(), Some(401));
    let http = sotong_e2e::http();
    let resp = http
        .get(format!("{}/v1/documents", server.url()))
        .bearer_auth("A".repeat(43))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.stop().await;

    // Expired: a server whose tokens live one second.
    let server =
        TestServer::start_with(Backend::Sqlite, |c| c.token_ttl = Duration::from_secs(1)).await;
    let phone = Phone::new(&server);
    phone.register(&server, &new_phone_number()).await;
    phone.client.create_proposal("t", "b", "c").unwrap();
    phone.client.sync().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let err = phone.client.sync().await.unwrap_err();
    assert!(
        matches!(err, sotong_core::client::ClientError::Unauthorized(_)),
        "{err:?}"
    );
    assert_eq!(
        RawPeer::connect(&server, Some(&phone.token())).await.err(),
        Some(401)
    );
    server.stop().await;
}
