//! Server memory is bounded whatever one connection does: requests for ids that do not exist
//! leave nothing behind, and thousands of documents attached to one connection are evicted
//! down to the budget while staying readable and syncable.

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;
use sotong_e2e::{new_phone_number, rss_bytes, Backend, Phone, RawPeer, TestServer};
use sotong_server::config::Config;
use sotong_server::sync::Hub;

const MIB: usize = 1024 * 1024;

fn unlimited_rate(config: &mut Config) {
    config.sync.messages_per_sec = 1_000_000;
    config.sync.message_burst = 1_000_000;
}

/// A raw peer joined as a new citizen's device, and that device's token.
async fn joined_peer(server: &TestServer) -> (RawPeer, String) {
    let phone = Phone::new(server);
    phone.register(server, &new_phone_number()).await;
    let token = phone.token();
    (RawPeer::join(server, &token).await, token)
}

/// Sends a `request` for an id that does not exist and reads up to its answer: every earlier
/// message of this connection has then been answered (the server handles them in order).
/// Returns the sync replies read meanwhile.
async fn barrier(peer: &mut RawPeer) -> Vec<DocMessage> {
    let id = DocumentId::random();
    peer.send(&WireMessage::Request(DocMessage {
        sender_id: peer.peer_id.clone(),
        target_id: "server".into(),
        document_id: id,
        data: Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .expect("a first message")
            .encode(),
    }))
    .await;
    let mut replies = Vec::new();
    loop {
        match peer.recv().await {
            Some(WireMessage::DocUnavailable { document_id, .. }) if document_id == id => {
                return replies
            }
            Some(WireMessage::Sync(d)) => replies.push(d),
            Some(WireMessage::Rejected { code, reason, .. }) => panic!("refused: {code} {reason}"),
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    }
}

/// Syncs every document of `docs` with the server over one connection, pipelined: each
/// round sends one message per document that has something to say, then waits for a barrier.
async fn sync_all(peer: &mut RawPeer, docs: &mut [(DocumentId, Automerge, sync::State)]) {
    for _ in 0..8 {
        let mut sent = 0;
        for (id, doc, state) in docs.iter_mut() {
            if let Some(m) = doc.generate_sync_message(state) {
                peer.send(&WireMessage::Sync(DocMessage {
                    sender_id: peer.peer_id.clone(),
                    target_id: "server".into(),
                    document_id: *id,
                    data: m.encode(),
                }))
                .await;
                sent += 1;
            }
        }
        if sent == 0 {
            return;
        }
        for reply in barrier(peer).await {
            let Some((_, doc, state)) = docs.iter_mut().find(|(id, _, _)| *id == reply.document_id)
            else {
                continue;
            };
            let m = sync::Message::decode(&reply.data).expect("server sends sync messages");
            doc.receive_sync_message(state, m)
                .expect("server changes apply");
        }
    }
    panic!("documents did not settle in 8 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_for_unknown_ids_leave_nothing_behind() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        unlimited_rate(c);
        c.sync.memory_budget = 64 * MIB;
    })
    .await;
    let hub = server.hub();
    let (mut peer, _) = joined_peer(&server).await;
    let (slots, loaded) = (hub.slot_count(), hub.loaded_documents());
    let rss_before = rss_bytes();
    for _ in 0..100 {
        for _ in 0..100 {
            peer.send(&WireMessage::Request(DocMessage {
                sender_id: peer.peer_id.clone(),
                target_id: "server".into(),
                document_id: DocumentId::random(),
                data: Automerge::new()
                    .generate_sync_message(&mut sync::State::new())
                    .expect("a first message")
                    .encode(),
            }))
            .await;
        }
        let _ = barrier(&mut peer).await;
    }
    assert_eq!(hub.slot_count(), slots, "unknown ids left slots behind");
    assert_eq!(hub.loaded_documents(), loaded);
    assert_eq!(hub.loaded_cost(), 0);
    let grown = rss_bytes().saturating_sub(rss_before);
    println!(
        "RSS growth over 10,000 requests: {:.1} MiB",
        grown as f64 / MIB as f64
    );
    assert!(
        grown < hub.limits().memory_budget,
        "RSS grew by {grown} bytes"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_attaching_3000_documents_stays_within_a_budget_for_500() {
    let sample = proposal::create("draft 0000", "a short body of text", "c").unwrap();
    // Each document is attached to this connection: it counts with one peer.
    let per_doc = Hub::estimated_cost(&sample, 1);
    let budget = 500 * per_doc;
    static BUDGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    BUDGET.store(budget, std::sync::atomic::Ordering::Relaxed);
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        unlimited_rate(c);
        c.sync.memory_budget = BUDGET.load(std::sync::atomic::Ordering::Relaxed);
    })
    .await;
    let hub = server.hub();
    let (mut peer, token) = joined_peer(&server).await;
    let rss_before = rss_bytes();
    let mut ids = Vec::new();
    // Kept with their sync states, to edit after they were evicted.
    let mut kept = Vec::new();
    for batch in 0..30 {
        let mut docs: Vec<_> = (0..100)
            .map(|i| {
                let title = format!("draft {:04}", batch * 100 + i);
                let doc = proposal::create(&title, "a short body of text", "c").unwrap();
                (DocumentId::random(), doc, sync::State::new())
            })
            .collect();
        sync_all(&mut peer, &mut docs).await;
        // Checked between messages: one document over while a message is being handled.
        assert!(
            hub.loaded_cost() <= budget + per_doc,
            "{} > {budget}",
            hub.loaded_cost()
        );
        assert!(hub.loaded_documents() <= 501, "{}", hub.loaded_documents());
        ids.extend(docs.iter().map(|(id, _, _)| *id));
        kept.extend(docs.into_iter().step_by(20));
    }
    assert_eq!(ids.len(), 3000);
    println!(
        "3,000 attached: {} loaded, cost {} of budget {budget}; RSS growth {:.1} MiB",
        hub.loaded_documents(),
        hub.loaded_cost(),
        rss_bytes().saturating_sub(rss_before) as f64 / MIB as f64
    );

    // Evicted documents still sync: the phone keeps its sync state, the server starts afresh.
    for (_, doc, _) in kept.iter_mut() {
        proposal::apply(doc, &ProposalEdit::insert(TextField::Body, 0, "edited: ")).unwrap();
    }
    sync_all(&mut peer, &mut kept).await;

    // Every document reads back from a fresh peer, edits included.
    let mut reader = RawPeer::join(&server, &token).await;
    for (n, chunk) in ids.chunks(100).enumerate() {
        let mut fresh: Vec<_> = chunk
            .iter()
            .map(|id| (*id, Automerge::new(), sync::State::new()))
            .collect();
        sync_all(&mut reader, &mut fresh).await;
        for (i, (id, doc, _)) in fresh.iter().enumerate() {
            let p = proposal::read(doc).unwrap_or_else(|e| panic!("{id} unreadable: {e}"));
            assert_eq!(p.title, format!("draft {:04}", n * 100 + i));
            let edited = kept.iter().any(|(k, _, _)| k == id);
            assert_eq!(p.body.starts_with("edited: "), edited, "{id}");
        }
        assert!(hub.loaded_cost() <= budget + per_doc);
    }
    let grown = rss_bytes().saturating_sub(rss_before);
    println!(
        "RSS growth after reading all back: {:.1} MiB",
        grown as f64 / MIB as f64
    );
    // The budget plus what SQLite, the allocator and the test's own peers hold.
    assert!(grown < budget + 64 * MIB, "RSS grew by {grown} bytes");
    server.stop().await;
}
