//! Per-account limits on documents and stored bytes, refused with stable codes.

use sotong_core::automerge::{sync, Automerge};
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;
use sotong_e2e::{new_phone_number, Backend, Phone, RawPeer, TestServer};

/// A sync message carrying every change of `doc` the server lacks, as a client sends it once
/// it knows the server's heads (here: all of them, for a new document).
fn all_changes(
    peer: &RawPeer,
    id: DocumentId,
    doc: &Automerge,
    since: &[sotong_core::automerge::ChangeHash],
) -> WireMessage {
    WireMessage::Sync(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: sync::Message {
            heads: doc.get_heads(),
            need: vec![],
            have: vec![],
            changes: doc
                .get_changes(since)
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>()
                .into(),
            supported_capabilities: None,
            version: sync::MessageVersion::V1,
        }
        .encode(),
    })
}

/// The answer to the last message: a refusal's code, or `None` if it was accepted.
async fn outcome(peer: &mut RawPeer) -> Option<String> {
    match peer.recv().await {
        Some(WireMessage::Rejected { code, .. }) => Some(code),
        Some(WireMessage::Sync(_)) => None,
        other => panic!("expected sync or a refusal, got {other:?}"),
    }
}

async fn joined(server: &TestServer) -> RawPeer {
    let phone = Phone::new(server);
    phone.register(server, &new_phone_number()).await;
    RawPeer::join(server, &phone.token()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cannot_own_more_documents_than_its_limit() {
    for backend in sotong_e2e::BACKENDS {
        let server = TestServer::start_with(backend, |c| c.sync.documents_per_account = 2).await;
        let mut peer = joined(&server).await;
        for i in 0..3 {
            let id = DocumentId::random();
            let doc = proposal::create(&format!("draft {i}"), "body", "c").unwrap();
            peer.send(&all_changes(&peer, id, &doc, &[])).await;
            let refused = outcome(&mut peer).await;
            if i < 2 {
                assert_eq!(refused, None, "{backend:?}: draft {i}");
            } else {
                assert_eq!(refused.as_deref(), Some("account_documents"), "{backend:?}");
                assert!(server.store().document(&id).await.unwrap().is_none());
            }
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cannot_store_more_bytes_than_its_limit() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::start_with(backend, |c| c.sync.bytes_per_account = 4096).await;
        let mut peer = joined(&server).await;
        let id = DocumentId::random();
        let mut doc = proposal::create("small", "body", "c").unwrap();
        peer.send(&all_changes(&peer, id, &doc, &[])).await;
        assert_eq!(outcome(&mut peer).await, None, "{backend:?}");
        // An edit that would take the account past 4 KiB is refused and not stored.
        let heads = doc.get_heads();
        let big: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        proposal::apply(&mut doc, &ProposalEdit::insert(TextField::Body, 0, big)).unwrap();
        peer.send(&all_changes(&peer, id, &doc, &heads)).await;
        assert_eq!(
            outcome(&mut peer).await.as_deref(),
            Some("account_bytes"),
            "{backend:?}"
        );
        let stored: usize = server
            .store()
            .chunks_after(&id, 0)
            .await
            .unwrap()
            .iter()
            .map(|c| c.bytes.len())
            .sum();
        assert!(stored < 4096, "{backend:?}: {stored} bytes stored");
        server.stop().await;
    }
}
