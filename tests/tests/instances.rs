//! Live across instances: two server instances on one PostgreSQL; an edit arriving through one
//! reaches the devices connected to the other at once (LISTEN/NOTIFY), without them asking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;
use sotong_e2e::{eventually, new_phone_number, Backend, Phone, Quiet, RawPeer, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_through_one_instance_reaches_a_live_device_on_the_other() {
    let first = TestServer::start(Backend::Postgres).await;
    let second = first.second_instance().await;
    let citizen = new_phone_number();
    let a = Phone::new(&first);
    let b = Phone::new(&second);
    a.register(&first, &citizen).await;
    b.register(&second, &citizen).await;
    let id = a.client.create_proposal("두 서버", "body", "c").unwrap();
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();

    let live_a = a.client.start_live_sync(Arc::new(Quiet)).await.unwrap();
    let live_b = b.client.start_live_sync(Arc::new(Quiet)).await.unwrap();
    for (i, word) in ["one ", "two ", "three "].iter().enumerate() {
        let len = a.client.read_proposal(&id).unwrap().body.chars().count();
        a.client
            .edit_proposal(&id, ProposalEdit::insert(TextField::Body, len, *word))
            .unwrap();
        let arrived = eventually(Duration::from_secs(30), || async {
            let body = b.client.read_proposal(&id).ok()?.body;
            body.ends_with(word).then_some(())
        })
        .await;
        assert!(
            arrived.is_some(),
            "edit {i} never reached the other instance's device"
        );
    }
    // And back, from B through the second instance to A on the first.
    b.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "[B] "))
        .unwrap();
    let back = eventually(Duration::from_secs(30), || async {
        let body = a.client.read_proposal(&id).ok()?.body;
        body.starts_with("[B] ").then_some(())
    })
    .await;
    assert!(back.is_some());
    live_a.stop().await;
    live_b.stop().await;
    second.stop().await;
    first.stop().await;
}

/// Not a timed assertion: prints the latency from a change sent to instance 1 until a watcher
/// on instance 2 receives it (`--nocapture` to see it; the bench owns the published figure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_to_instance_latency_is_reported() {
    let first = TestServer::start(Backend::Postgres).await;
    let second = first.second_instance().await;
    let phone = Phone::new(&first);
    phone.register(&first, &new_phone_number()).await;
    let token = phone.token();
    let id = phone.client.create_proposal("latency", "", "c").unwrap();
    phone.client.sync().await.unwrap();

    let mut writer = RawPeer::join(&first, &token).await;
    let mut watcher = RawPeer::join(&second, &token).await;
    let (mut wdoc, mut wstate) = (Automerge::new(), sync::State::new());
    let (mut doc, mut state) = (Automerge::new(), sync::State::new());
    settle(&mut watcher, id, &mut wdoc, &mut wstate).await;
    settle(&mut writer, id, &mut doc, &mut state).await;

    let mut samples = Vec::new();
    for i in 0..50 {
        proposal::apply(&mut doc, &ProposalEdit::insert(TextField::Body, 0, "x")).unwrap();
        let m = doc
            .generate_sync_message(&mut state)
            .expect("a change to send");
        let sent = Instant::now();
        writer
            .send(&sync_message(&writer.peer_id, id, m.encode()))
            .await;
        // The watcher never sends first: the change must be pushed to it.
        loop {
            match watcher.recv().await {
                Some(WireMessage::Sync(d)) => {
                    let m = sync::Message::decode(&d.data).unwrap();
                    wdoc.receive_sync_message(&mut wstate, m).unwrap();
                    if let Some(reply) = wdoc.generate_sync_message(&mut wstate) {
                        watcher
                            .send(&sync_message(&watcher.peer_id, id, reply.encode()))
                            .await;
                    }
                    if proposal::read(&wdoc).unwrap().body.len() == i + 1 {
                        break;
                    }
                }
                Some(_) => {}
                None => panic!("edit {i} never reached the other instance"),
            }
        }
        samples.push(sent.elapsed());
        // Keep the writer's sync state current.
        while let Some(WireMessage::Sync(d)) = writer.recv_within(Duration::from_millis(0)).await {
            let m = sync::Message::decode(&d.data).unwrap();
            doc.receive_sync_message(&mut state, m).unwrap();
        }
    }
    samples.sort();
    println!(
        "instance to instance (debug build): p50 {:.1} ms, p99 {:.1} ms over {} edits",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() * 99 / 100].as_secs_f64() * 1e3,
        samples.len()
    );
    second.stop().await;
    first.stop().await;
}

fn sync_message(peer_id: &str, id: DocumentId, data: Vec<u8>) -> WireMessage {
    WireMessage::Sync(DocMessage {
        sender_id: peer_id.into(),
        target_id: "server".into(),
        document_id: id,
        data,
    })
}

/// Syncs `doc` with the server until it has the document.
async fn settle(peer: &mut RawPeer, id: DocumentId, doc: &mut Automerge, state: &mut sync::State) {
    for _ in 0..8 {
        let Some(m) = doc.generate_sync_message(state) else {
            return;
        };
        peer.send(&sync_message(&peer.peer_id, id, m.encode()))
            .await;
        match peer.recv().await {
            Some(WireMessage::Sync(d)) => doc
                .receive_sync_message(state, sync::Message::decode(&d.data).unwrap())
                .unwrap(),
            other => panic!("expected sync, got {other:?}"),
        }
        if proposal::read(doc).is_ok() {
            return;
        }
    }
}
