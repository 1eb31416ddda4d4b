//! The phone stays small while it syncs many drafts: never more than a few dozen loaded at
//! once, whether it uploads them, receives them in a one-shot sync, or receives them live.
//! Counts loaded drafts (the core's high-water mark), not time or bytes: each loaded 5k draft
//! costs ~2 MB in automerge 0.6, so the count is what bounds memory.

use sotong_core::client::LiveState;
use sotong_e2e::{new_phone_number, Backend, LiveRecorder, Phone, TestServer};

const DRAFTS: usize = 300;
/// The engine's window (16) plus the app's recently used drafts (4), with room for drafts the
/// server brings up on its own: far below the 300 synced.
const MAX_LOADED: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_hundreds_of_drafts_keeps_few_loaded() {
    let server = TestServer::start(Backend::Sqlite).await;
    let citizen = new_phone_number();
    let a = Phone::new(&server);
    let b = Phone::new(&server);
    let c = Phone::new(&server);
    for p in [&a, &b, &c] {
        p.register(&server, &citizen).await;
    }
    let body: String = "시민의 제안 본문. ".repeat(100);
    for i in 0..DRAFTS {
        a.client
            .create_proposal(&format!("초안 {i}"), &body, "c")
            .unwrap();
    }
    a.client.take_loaded_drafts_high_water().unwrap();

    // First upload.
    let up = a.client.sync().await.unwrap();
    assert!(up.rejected.is_empty(), "{up:?}");
    assert_eq!(up.documents_sent as usize, DRAFTS, "{up:?}");
    let peak = a.client.take_loaded_drafts_high_water().unwrap();
    assert!(peak <= MAX_LOADED, "uploading held {peak} drafts at once");
    assert!(peak > 1, "the upload is pipelined, not one draft at a time");

    // A one-shot download on another device.
    let down = b.client.sync().await.unwrap();
    assert_eq!(down.documents_received as usize, DRAFTS, "{down:?}");
    assert_eq!(b.client.list_proposals().unwrap().len(), DRAFTS);
    let peak = b.client.take_loaded_drafts_high_water().unwrap();
    assert!(peak <= MAX_LOADED, "downloading held {peak} drafts at once");

    // A live session on a third device receives them all and unloads them once settled.
    let (recorder, mut events) = LiveRecorder::new();
    let live = c.client.start_live_sync(recorder).await.unwrap();
    events.state("online", |s| *s == LiveState::Online).await;
    let mut changed = std::collections::HashSet::new();
    while changed.len() < DRAFTS {
        if let sotong_e2e::LiveEvent::Changed(id) = events
            .until("a draft arrives", |e| {
                matches!(e, sotong_e2e::LiveEvent::Changed(_))
            })
            .await
        {
            changed.insert(id);
        }
    }
    let peak = c.client.take_loaded_drafts_high_water().unwrap();
    assert!(peak <= MAX_LOADED, "live sync held {peak} drafts at once");
    live.stop().await;
    assert_eq!(c.client.list_proposals().unwrap().len(), DRAFTS);
    server.stop().await;
}
