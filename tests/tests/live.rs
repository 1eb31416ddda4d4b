//! Live sync: a citizen's other device receives edits as they are made, and two server
//! instances on one PostgreSQL serve the same document.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sotong_core::client::{LiveState, Rejected, SyncListener};
use sotong_core::schema::proposal::{ProposalEdit, TextField};
use sotong_core::DocumentId;
use sotong_e2e::{eventually, new_phone_number, Backend, Phone, TestServer};

#[derive(Default)]
struct Seen {
    changed: Mutex<Vec<DocumentId>>,
    stopped: Mutex<Option<Option<String>>>,
    states: Mutex<Vec<LiveState>>,
}

impl SyncListener for Seen {
    fn draft_changed(&self, id: DocumentId) {
        self.changed.lock().unwrap().push(id);
    }
    fn draft_rejected(&self, _rejected: Rejected) {}
    fn state_changed(&self, state: LiveState) {
        self.states.lock().unwrap().push(state);
    }
    fn stopped(&self, error: Option<String>) {
        *self.stopped.lock().unwrap() = Some(error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reach_the_other_device_while_both_are_connected() {
    let server = TestServer::start(Backend::Sqlite).await;
    let citizen = new_phone_number();
    let a = Phone::new(&server);
    let b = Phone::new(&server);
    a.register(&server, &citizen).await;
    b.register(&server, &citizen).await;
    let id = a.client.create_proposal("live", "", "c").unwrap();
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();

    let seen_a = Arc::new(Seen::default());
    let seen_b = Arc::new(Seen::default());
    let live_a = a.client.start_live_sync(seen_a.clone()).await.unwrap();
    let live_b = b.client.start_live_sync(seen_b.clone()).await.unwrap();

    for (i, word) in ["one ", "two ", "three "].iter().enumerate() {
        let len = a.client.read_proposal(&id).unwrap().body.chars().count();
        a.client
            .edit_proposal(&id, ProposalEdit::insert(TextField::Body, len, *word))
            .unwrap();
        let arrived = eventually(Duration::from_secs(10), || async {
            let body = b.client.read_proposal(&id).unwrap().body;
            body.ends_with(word).then_some(body)
        })
        .await;
        assert!(arrived.is_some(), "edit {i} never reached device B");
    }
    assert!(seen_b.changed.lock().unwrap().contains(&id));

    // And the other way round.
    b.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "[B] "))
        .unwrap();
    let arrived = eventually(Duration::from_secs(10), || async {
        let body = a.client.read_proposal(&id).unwrap().body;
        body.starts_with("[B] ").then_some(())
    })
    .await;
    assert!(arrived.is_some());
    assert_eq!(
        a.client.read_proposal(&id).unwrap().body,
        "[B] one two three "
    );

    // A draft created on A while both are connected reaches B too.
    let new = a
        .client
        .create_proposal("새 초안", "made while B was live", "c")
        .unwrap();
    let arrived = eventually(Duration::from_secs(10), || async {
        b.client.read_proposal(&new).ok()
    })
    .await;
    assert_eq!(arrived.map(|p| p.title), Some("새 초안".to_owned()));
    assert!(seen_b.changed.lock().unwrap().contains(&new));
    // And B's edits to it flow back.
    b.client
        .edit_proposal(&new, ProposalEdit::insert(TextField::Body, 0, "B: "))
        .unwrap();
    let back = eventually(Duration::from_secs(10), || async {
        let body = a.client.read_proposal(&new).unwrap().body;
        body.starts_with("B: ").then_some(body)
    })
    .await;
    assert!(back.is_some());

    live_a.stop().await;
    assert_eq!(*seen_a.stopped.lock().unwrap(), Some(None));

    // The server shutting down closes B's session, which reports it and retries.
    server.stop().await;
    let reported = eventually(Duration::from_secs(10), || async {
        let states = seen_b.states.lock().unwrap();
        states
            .iter()
            .any(|s| matches!(s, LiveState::BackingOff { .. }))
            .then_some(())
    })
    .await;
    assert!(reported.is_some(), "{:?}", seen_b.states.lock().unwrap());
    live_b.stop().await;
    assert_eq!(*seen_b.stopped.lock().unwrap(), Some(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_instances_on_one_postgres_serve_the_same_document() {
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
    assert_eq!(b.client.read_proposal(&id).unwrap().title, "두 서버");

    // Concurrent edits through different instances, then each syncs through its own.
    a.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "A:"))
        .unwrap();
    b.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 4, ":B"))
        .unwrap();
    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();
    a.client.sync().await.unwrap();
    assert_eq!(a.client.read_proposal(&id).unwrap().body, "A:body:B");
    assert_eq!(
        a.client.read_proposal(&id).unwrap(),
        b.client.read_proposal(&id).unwrap()
    );
    second.stop().await;
    first.stop().await;
}
