use std::sync::Arc;

use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::wire::{DocMessage, WireMessage};
use sotong_core::DocumentId;

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::sync::link::Link;

async fn hub_with_budget(budget: usize) -> (Hub, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let limits = SyncLimits {
        memory_budget: budget,
        ..SyncLimits::default()
    };
    (Hub::new(store.clone(), limits), store, dir)
}

fn joined(hub: &Hub, conn: ConnId, account: AccountId, peer: &str) -> Arc<Link> {
    let (link, rx) = Link::new(100_000);
    // The receiver is leaked on purpose: these tests read replies, not pushed frames.
    std::mem::forget(rx);
    let link = Arc::new(link);
    hub.join(conn, account, peer, &link);
    link
}

/// Runs one round of a phone's side of the protocol: one message out, the replies in.
async fn round(
    hub: &Hub,
    who: &Requester<'_>,
    id: DocumentId,
    doc: &mut Automerge,
    state: &mut sync::State,
) -> bool {
    let Some(msg) = doc.generate_sync_message(state) else {
        return false;
    };
    let d = DocMessage {
        sender_id: who.peer_id.into(),
        target_id: hub.peer_id().into(),
        document_id: id,
        data: msg.encode(),
    };
    for r in hub.handle(who, &d, false).await.unwrap() {
        if let WireMessage::Sync(d) = r {
            let m = sync::Message::decode(&d.data).unwrap();
            doc.receive_sync_message(state, m).unwrap();
        }
    }
    true
}

async fn settle(
    hub: &Hub,
    who: &Requester<'_>,
    id: DocumentId,
    doc: &mut Automerge,
    state: &mut sync::State,
) {
    for _ in 0..8 {
        if !round(hub, who, id, doc, state).await {
            return;
        }
    }
}

fn cost_of_small_draft() -> usize {
    let doc = proposal::create("title 0", "a body of text", "c").unwrap();
    let mut l = slots::Loaded::new(
        crate::store::DocumentMeta {
            id: DocumentId::random(),
            owner: 0,
            kind: "proposal".into(),
            created_at: 0,
        },
        doc,
    );
    l.recount();
    slots::cost(&l) + 2048
}

#[tokio::test]
async fn unknown_and_forbidden_ids_leave_nothing_in_memory() {
    let (hub, _store, _dir) = hub_with_budget(usize::MAX).await;
    let _a = joined(&hub, 1, 7, "owner");
    let _b = joined(&hub, 2, 8, "stranger");
    let owner = Requester {
        conn: 1,
        peer_id: "owner",
        account: 7,
    };
    let stranger = Requester {
        conn: 2,
        peer_id: "stranger",
        account: 8,
    };
    let id = DocumentId::random();
    let mut doc = proposal::create("mine", "body", "c").unwrap();
    settle(&hub, &owner, id, &mut doc, &mut sync::State::new()).await;
    hub.disconnect(1).await;
    hub.forget(&id).await;
    assert_eq!(hub.slot_count(), 0);
    for i in 0..200 {
        let target = if i % 2 == 0 { DocumentId::random() } else { id };
        let d = DocMessage {
            sender_id: "stranger".into(),
            target_id: hub.peer_id().into(),
            document_id: target,
            data: Automerge::new()
                .generate_sync_message(&mut sync::State::new())
                .unwrap()
                .encode(),
        };
        let replies = hub.handle(&stranger, &d, i % 3 == 0).await.unwrap();
        assert!(!replies.is_empty());
    }
    hub.disconnect(2).await;
    assert_eq!(hub.slot_count(), 0);
    assert_eq!(hub.loaded_cost(), 0);
}

#[tokio::test]
async fn attached_documents_beyond_the_budget_are_evicted_and_phones_still_converge() {
    let (hub, store, _dir) = hub_with_budget(2 * cost_of_small_draft()).await;
    let _link = joined(&hub, 1, 7, "phone");
    let who = Requester {
        conn: 1,
        peer_id: "phone",
        account: 7,
    };
    let mut phones = Vec::new();
    for i in 0..6 {
        let id = DocumentId::random();
        let mut doc = proposal::create(&format!("title {i}"), "a body of text", "c").unwrap();
        let mut state = sync::State::new();
        settle(&hub, &who, id, &mut doc, &mut state).await;
        assert!(store.document(&id).await.unwrap().is_some());
        phones.push((id, doc, state));
    }
    // The connection still has all six attached, yet no more than the budget stays loaded.
    assert!(hub.loaded_documents() <= 2, "{}", hub.loaded_documents());
    assert!(hub.loaded_cost() <= hub.limits().memory_budget);
    // The phone keeps its own sync states; the server reloads with fresh ones and converges.
    for (id, doc, state) in &mut phones {
        proposal::apply(doc, &ProposalEdit::insert(TextField::Body, 0, "edited ")).unwrap();
        settle(&hub, &who, *id, doc, state).await;
    }
    let tablet = joined(&hub, 2, 7, "tablet");
    let who = Requester {
        conn: 2,
        peer_id: "tablet",
        account: 7,
    };
    for (id, doc, _) in &phones {
        let mut fresh = Automerge::new();
        settle(&hub, &who, *id, &mut fresh, &mut sync::State::new()).await;
        assert_eq!(
            proposal::read(&fresh).unwrap(),
            proposal::read(doc).unwrap()
        );
        assert!(proposal::read(&fresh).unwrap().body.starts_with("edited "));
    }
    assert!(hub.loaded_cost() <= hub.limits().memory_budget);
    drop(tablet);
}

#[tokio::test]
async fn a_waiter_on_an_evicted_slot_never_makes_a_second_copy() {
    let slots = Arc::new(slots::Slots::new(usize::MAX));
    let id = DocumentId::random();
    let meta = crate::store::DocumentMeta {
        id,
        owner: 1,
        kind: "proposal".into(),
        created_at: 0,
    };
    let mut held = slots.lock(&id).await;
    held.fill(slots::Loaded::new(meta, Automerge::new()));
    // A second task waits for the slot while the first holds it…
    let waiter = {
        let slots = slots.clone();
        tokio::spawn(async move {
            let held = slots.lock(&id).await;
            held.is_empty()
        })
    };
    tokio::task::yield_now().await;
    // …which is evicted meanwhile: the waiter must not get the dropped copy, and the map must
    // hold one slot for the id at most.
    let mut held = held;
    held.discard();
    drop(held);
    assert!(waiter.await.unwrap(), "the waiter saw the evicted copy");
    assert_eq!(slots.len(), 0);
    assert_eq!(slots.total_cost(), 0);
}
