//! Drafts made offline on two devices of one citizen merge through the server, on both stores,
//! and survive a server restart.

use sotong_core::automerge::sync::SyncDoc;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_e2e::{new_phone_number, Backend, Phone, TestServer, BACKENDS};

async fn two_devices_merge_offline_edits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let citizen = new_phone_number();
    let a = Phone::new(&server);
    let b = Phone::new(&server);
    a.register(&server, &citizen).await;
    b.register(&server, &citizen).await;
    assert_eq!(
        a.client.account().unwrap().unwrap().account_id,
        b.client.account().unwrap().unwrap().account_id,
        "both devices belong to one account"
    );

    let id = a
        .client
        .create_proposal("버스 노선 개선", "배차 간격을 줄여 주세요.", "transport")
        .unwrap();
    let report = a.client.sync().await.unwrap();
    assert_eq!(report.documents_sent, 1);
    let report = b.client.sync().await.unwrap();
    assert_eq!(report.documents_received, 1);
    assert_eq!(
        b.client.read_proposal(&id).unwrap(),
        a.client.read_proposal(&id).unwrap()
    );

    // Both offline: A edits the body; B edits the title and the body at another place.
    a.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, 0, "[A] "))
        .unwrap();
    b.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Title, 0, "[B] "))
        .unwrap();
    let body_len = b.client.read_proposal(&id).unwrap().body.chars().count();
    b.client
        .edit_proposal(&id, ProposalEdit::insert(TextField::Body, body_len, " [B]"))
        .unwrap();

    a.client.sync().await.unwrap();
    b.client.sync().await.unwrap();
    a.client.sync().await.unwrap();

    let on_a = a.client.read_proposal(&id).unwrap();
    let on_b = b.client.read_proposal(&id).unwrap();
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.title, "[B] 버스 노선 개선");
    assert_eq!(on_a.body, "[A] 배차 간격을 줄여 주세요. [B]");
    assert_eq!(on_a.category, "transport");

    // The server holds the identical document.
    let chunks = server.store().chunks_after(&id, 0).await.unwrap();
    let mut on_server = sotong_core::automerge::Automerge::new();
    for c in chunks {
        on_server.load_incremental(&c.bytes).unwrap();
    }
    assert_eq!(proposal::read(&on_server).unwrap(), on_a);
    // Heads agree too (not only the visible text).
    let mut st = sotong_core::automerge::sync::State::new();
    assert!(on_server.generate_sync_message(&mut st).is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_merge_offline_edits_sqlite() {
    two_devices_merge_offline_edits(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_merge_offline_edits_postgres() {
    two_devices_merge_offline_edits(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_between_syncs_loses_nothing() {
    for backend in BACKENDS {
        let mut server = TestServer::start(backend).await;
        let citizen = new_phone_number();
        let mut a = Phone::new(&server);
        let b = Phone::new(&server);
        a.register(&server, &citizen).await;
        b.register(&server, &citizen).await;

        let first = a.client.create_proposal("first", "one", "c1").unwrap();
        a.client.sync().await.unwrap();
        server.restart().await;
        // The app restarts too: everything comes back from its SQLite file.
        a.reopen(&server);

        let second = a.client.create_proposal("second", "two", "c2").unwrap();
        a.client
            .edit_proposal(&first, ProposalEdit::insert(TextField::Body, 3, " more"))
            .unwrap();
        a.client.sync().await.unwrap();
        server.restart().await;

        b.client.sync().await.unwrap();
        let mut titles: Vec<_> = b
            .client
            .list_proposals()
            .unwrap()
            .into_iter()
            .map(|s| s.title)
            .collect();
        titles.sort();
        assert_eq!(titles, vec!["first", "second"], "{backend:?}");
        assert_eq!(b.client.read_proposal(&first).unwrap().body, "one more");
        assert_eq!(b.client.read_proposal(&second).unwrap().category, "c2");
        server.stop().await;
    }
}
