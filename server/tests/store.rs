//! One store test suite, run against SQLite (a temporary directory) and PostgreSQL (a fresh
//! database per test, dropped afterwards).

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sotong_core::hash::sha256;
use sotong_core::sos::{
    Beacon, Feedback, Fix, FixMethod, IncidentEvent, IncidentId, Outcome as SosOutcome,
    ReportedState, TriggerMethod,
};
use sotong_core::DocumentId;
use sotong_server::staff::audit::{actions, Actor, AuditEntry, AuditFilter, Outcome};
use sotong_server::staff::session::SessionKind;
use sotong_server::staff::{Grant, Role};
use sotong_server::store::{
    ChunkKind, CodeCheck, CodeIssue, CodeLimits, DeviceRef, DocumentMeta, LockoutPolicy,
    LoginFailure, NewCode, NewDevice, NewStaffMember, NewStaffSession, PgOptions, PgStore,
    SqliteStore, StaffStore, Store, StoreError,
};
use sotong_server::store::{
    DispatchAction, DispatchPhase, FeedbackPut, MonthRange, RoutedBeacon, SosIngest, Via,
};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens instances of one backend on one database: each `open` is a new instance, as a
/// second server process would be.
trait Backend: Send + Sync {
    fn open(&self) -> BoxFut<'_, Arc<dyn Store>>;
    /// Runs `sql` on a connection of its own, bypassing the store; the database's error text
    /// if it refuses.
    fn raw_exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Result<(), String>>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn open(&self) -> BoxFut<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let store = SqliteStore::open(&self.0.path().join("sotong.db"))
                .await
                .expect("open sqlite");
            Arc::new(store) as Arc<dyn Store>
        })
    }

    fn raw_exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let conn = rusqlite::Connection::open(self.0.path().join("sotong.db")).unwrap();
            conn.execute_batch(sql).map_err(|e| e.to_string())
        })
    }
}

struct Postgres(common::PgDb);

impl Backend for Postgres {
    fn open(&self) -> BoxFut<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let store = PgStore::connect(&self.0.url).await.expect("open postgres");
            Arc::new(store) as Arc<dyn Store>
        })
    }

    fn raw_exec<'a>(&'a self, sql: &'a str) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let client = self.0.client().await;
            client.batch_execute(sql).await.map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            })
        })
    }
}

fn sqlite() -> Sqlite {
    Sqlite(tempfile::tempdir().expect("tempdir"))
}

async fn postgres() -> Option<Postgres> {
    common::PgDb::create().await.map(Postgres)
}

/// Generates `sqlite::<name>` and `postgres::<name>` for each suite function.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::sqlite();
                    super::$name(&backend).await;
                }
            )*
        }
        mod postgres_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::postgres().await else { return };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

suite!(
    documents_create_conflict_list,
    chunk_append_is_idempotent,
    chunks_after_orders_across_instances,
    concurrent_writers_never_hide_chunks_from_a_reader,
    replace_chunks_keeps_unlisted_chunks,
    reopening_keeps_data,
    codes_count_attempts_and_die,
    codes_are_single_use_and_expire,
    newest_code_supersedes_older,
    code_rate_limits_per_phone_and_client,
    devices_join_the_account_of_their_number,
    tickets_are_single_use_and_expire,
    tickets_redeem_once_across_instances,
    ping_answers,
    concurrent_appends_are_committed_before_they_return,
    staff_add_list_and_disable,
    staff_grants_are_data,
    staff_sessions_create_touch_end_and_expire,
    staff_login_failures_lock_a_name,
    staff_login_failures_count_atomically_across_instances,
    staff_totp_steps_are_single_use,
    staff_audit_appends_queries_and_refuses_changes,
    sos_beacons_are_stored_once_with_a_contiguous_ack,
    sos_incident_belongs_to_its_first_account,
    sos_events_are_ordered_and_scoped_by_region,
    sos_concurrent_writers_never_hide_events_from_a_reader,
    sos_dispatch_actions_reach_the_phone,
    sos_sms_keys_are_per_device,
    sos_purge_keeps_the_outcome,
    sos_feedback_only_from_the_device_once_closed,
    sos_summary_by_region_and_month,
    sos_last_event_id_is_where_a_new_feed_starts,
    appends_name_the_chunk_before_them,
);

fn sha(bytes: &[u8]) -> [u8; 32] {
    sha256(bytes)
}

fn meta(owner: i64, created_at: i64) -> DocumentMeta {
    DocumentMeta {
        id: DocumentId::random(),
        owner,
        kind: "proposal".into(),
        created_at,
    }
}

async fn documents_create_conflict_list(b: &dyn Backend) {
    let s = b.open().await;
    let a = meta(1, 100);
    let later = meta(1, 200);
    let other = meta(2, 150);
    assert!(s.create_document(&a).await.unwrap());
    // Same id, another owner: refused, nothing changes.
    let hijack = DocumentMeta {
        owner: 2,
        kind: "other".into(),
        ..a.clone()
    };
    assert!(!s.create_document(&hijack).await.unwrap());
    assert_eq!(s.document(&a.id).await.unwrap(), Some(a.clone()));
    assert!(s.create_document(&later).await.unwrap());
    assert!(s.create_document(&other).await.unwrap());
    assert_eq!(s.documents_of(1).await.unwrap(), vec![a, later]);
    assert_eq!(s.documents_of(2).await.unwrap(), vec![other]);
    assert!(s.documents_of(3).await.unwrap().is_empty());
    assert_eq!(s.document(&DocumentId::random()).await.unwrap(), None);
}

async fn chunk_append_is_idempotent(b: &dyn Backend) {
    let s = b.open().await;
    let doc = DocumentId::random();
    let other = DocumentId::random();
    s.append_chunk(&doc, ChunkKind::Snapshot, b"snap")
        .await
        .unwrap();
    s.append_chunk(&doc, ChunkKind::Incremental, b"one")
        .await
        .unwrap();
    s.append_chunk(&doc, ChunkKind::Incremental, b"one")
        .await
        .unwrap();
    s.append_chunk(&doc, ChunkKind::Snapshot, b"snap")
        .await
        .unwrap();
    // The same bytes in another document are another chunk.
    s.append_chunk(&other, ChunkKind::Incremental, b"one")
        .await
        .unwrap();

    let chunks = s.chunks_after(&doc, 0).await.unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].kind, ChunkKind::Snapshot);
    assert_eq!(chunks[0].bytes, b"snap");
    assert_eq!(chunks[0].hash, sha(b"snap"));
    assert_eq!(chunks[1].kind, ChunkKind::Incremental);
    assert_eq!(chunks[1].hash, sha(b"one"));
    assert!(chunks[0].seq < chunks[1].seq);
    assert_eq!(s.chunks_after(&other, 0).await.unwrap().len(), 1);
    assert!(s
        .chunks_after(&DocumentId::random(), 0)
        .await
        .unwrap()
        .is_empty());
}

async fn chunks_after_orders_across_instances(b: &dyn Backend) {
    let one = b.open().await;
    let two = b.open().await;
    let doc = DocumentId::random();
    for i in 0..10u8 {
        let writer = if i % 2 == 0 { &one } else { &two };
        writer
            .append_chunk(&doc, ChunkKind::Incremental, &[i])
            .await
            .unwrap();
    }
    for reader in [&one, &two] {
        let all = reader.chunks_after(&doc, 0).await.unwrap();
        let bytes: Vec<u8> = all.iter().map(|c| c.bytes[0]).collect();
        assert_eq!(bytes, (0..10).collect::<Vec<u8>>());
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        // Catching up from a seen seq returns exactly the rest.
        let rest = reader.chunks_after(&doc, all[3].seq).await.unwrap();
        assert_eq!(rest, all[4..].to_vec());
        assert!(reader
            .chunks_after(&doc, all[9].seq)
            .await
            .unwrap()
            .is_empty());
    }
}

/// Two instances write one document concurrently while a third polls with a seq cursor, as
/// a server instance catching up does. The poller must end up with every chunk: a chunk
/// committed with a lower seq after a higher one was seen would be lost to it.
async fn concurrent_writers_never_hide_chunks_from_a_reader(b: &dyn Backend) {
    let doc = DocumentId::random();
    let writers: Vec<_> = [b.open().await, b.open().await]
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            tokio::spawn(async move {
                for i in 0..40u32 {
                    let bytes = format!("w{w}-{i}");
                    store
                        .append_chunk(&doc, ChunkKind::Incremental, bytes.as_bytes())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let reader = b.open().await;
    let mut cursor = 0;
    let mut seen = BTreeSet::new();
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        for chunk in reader.chunks_after(&doc, cursor).await.unwrap() {
            cursor = chunk.seq;
            seen.insert(chunk.bytes);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    for chunk in reader.chunks_after(&doc, cursor).await.unwrap() {
        seen.insert(chunk.bytes);
    }
    assert_eq!(seen.len(), 80);
}

/// A shared store says where each appended chunk landed and which chunk of the document came
/// just before it, even with two writers at once: the chain an instance applying notified
/// chunks relies on to see a gap.
async fn appends_name_the_chunk_before_them(b: &dyn Backend) {
    let doc = DocumentId::random();
    let writers: Vec<_> = [b.open().await, b.open().await]
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            tokio::spawn(async move {
                let mut landed = Vec::new();
                for i in 0..30u32 {
                    let bytes = format!("w{w}-{i}");
                    landed.push(
                        store
                            .append_chunk(&doc, ChunkKind::Incremental, bytes.as_bytes())
                            .await
                            .unwrap(),
                    );
                }
                // Stored already: nothing landed.
                assert_eq!(
                    store
                        .append_chunk(&doc, ChunkKind::Incremental, format!("w{w}-0").as_bytes())
                        .await
                        .unwrap(),
                    None
                );
                landed
            })
        })
        .collect();
    let mut landed = Vec::new();
    for w in writers {
        landed.extend(w.await.unwrap());
    }
    if !b.open().await.is_shared() {
        assert!(landed.iter().all(Option::is_none));
        return;
    }
    let mut landed: Vec<_> = landed.into_iter().map(Option::unwrap).collect();
    landed.sort_by_key(|a| a.seq);
    let stored = b.open().await.chunks_after(&doc, 0).await.unwrap();
    assert_eq!(stored.len(), 60);
    let mut prev = 0;
    for (a, chunk) in landed.iter().zip(&stored) {
        assert_eq!((a.seq, a.prev), (chunk.seq, prev));
        prev = chunk.seq;
    }
}

async fn replace_chunks_keeps_unlisted_chunks(b: &dyn Backend) {
    let compactor = b.open().await;
    let other = b.open().await;
    let doc = DocumentId::random();
    compactor
        .append_chunk(&doc, ChunkKind::Incremental, b"a")
        .await
        .unwrap();
    compactor
        .append_chunk(&doc, ChunkKind::Incremental, b"b")
        .await
        .unwrap();
    let known: Vec<[u8; 32]> = compactor
        .chunks_after(&doc, 0)
        .await
        .unwrap()
        .iter()
        .map(|c| c.hash)
        .collect();
    // Another instance writes while the compactor builds its snapshot.
    other
        .append_chunk(&doc, ChunkKind::Incremental, b"c")
        .await
        .unwrap();
    let unrelated = DocumentId::random();
    other
        .append_chunk(&unrelated, ChunkKind::Incremental, b"a")
        .await
        .unwrap();

    // Listing the snapshot's own hash must not delete it.
    let mut replaced = known.clone();
    replaced.push(sha(b"ab"));
    compactor
        .replace_chunks(&doc, b"ab", &replaced)
        .await
        .unwrap();

    let left = other.chunks_after(&doc, 0).await.unwrap();
    let by_hash: BTreeSet<[u8; 32]> = left.iter().map(|c| c.hash).collect();
    assert_eq!(by_hash, BTreeSet::from([sha(b"c"), sha(b"ab")]));
    let snapshot = left.iter().find(|c| c.hash == sha(b"ab")).unwrap();
    assert_eq!(snapshot.kind, ChunkKind::Snapshot);
    assert_eq!(snapshot.bytes, b"ab");
    // Same hash in another document is untouched.
    assert_eq!(other.chunks_after(&unrelated, 0).await.unwrap().len(), 1);
    // Idempotent.
    compactor.replace_chunks(&doc, b"ab", &known).await.unwrap();
    assert_eq!(other.chunks_after(&doc, 0).await.unwrap(), left);
}

async fn reopening_keeps_data(b: &dyn Backend) {
    let doc = meta(7, 1);
    {
        let s = b.open().await;
        assert!(s.create_document(&doc).await.unwrap());
        s.append_chunk(&doc.id, ChunkKind::Snapshot, b"x")
            .await
            .unwrap();
    }
    // Opening again re-runs the migration check on an up-to-date database.
    let s = b.open().await;
    assert_eq!(s.document(&doc.id).await.unwrap(), Some(doc.clone()));
    assert_eq!(s.chunks_after(&doc.id, 0).await.unwrap().len(), 1);
}

const LIMITS: CodeLimits = CodeLimits {
    per_phone: 5,
    per_client: 20,
    window_secs: 3600,
};

fn code(phone: u8, client: u8, code: &str, now: i64) -> NewCode {
    NewCode {
        phone_key: [phone; 32],
        client_key: [client; 32],
        code_hash: sha(code.as_bytes()),
        created_at: now,
        expires_at: now + 600,
    }
}

async fn codes_count_attempts_and_die(b: &dyn Backend) {
    let s = b.open().await;
    let now = 1_000_000;
    assert_eq!(
        s.issue_code(&code(1, 1, "111111", now), &LIMITS)
            .await
            .unwrap(),
        CodeIssue::Issued
    );
    for left in (0..5).rev() {
        assert_eq!(
            s.check_code(&[1; 32], &sha(b"999999"), 5, now + 1)
                .await
                .unwrap(),
            CodeCheck::Rejected {
                attempts_left: left
            }
        );
    }
    // Out of attempts: even the right code is refused now.
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"111111"), 5, now + 1)
            .await
            .unwrap(),
        CodeCheck::Dead
    );
    // No code at all for another number.
    assert_eq!(
        s.check_code(&[2; 32], &sha(b"111111"), 5, now)
            .await
            .unwrap(),
        CodeCheck::Dead
    );
}

async fn codes_are_single_use_and_expire(b: &dyn Backend) {
    let s = b.open().await;
    let now = 1_000_000;
    s.issue_code(&code(1, 1, "111111", now), &LIMITS)
        .await
        .unwrap();
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"999999"), 5, now)
            .await
            .unwrap(),
        CodeCheck::Rejected { attempts_left: 4 }
    );
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"111111"), 5, now)
            .await
            .unwrap(),
        CodeCheck::Accepted
    );
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"111111"), 5, now)
            .await
            .unwrap(),
        CodeCheck::Dead
    );

    s.issue_code(&code(2, 1, "222222", now), &LIMITS)
        .await
        .unwrap();
    assert_eq!(
        s.check_code(&[2; 32], &sha(b"222222"), 5, now + 600)
            .await
            .unwrap(),
        CodeCheck::Dead,
        "expired code accepted"
    );
    assert_eq!(
        s.check_code(&[2; 32], &sha(b"222222"), 5, now + 599)
            .await
            .unwrap(),
        CodeCheck::Accepted
    );
}

async fn newest_code_supersedes_older(b: &dyn Backend) {
    let s = b.open().await;
    let now = 1_000_000;
    s.issue_code(&code(1, 1, "111111", now), &LIMITS)
        .await
        .unwrap();
    s.issue_code(&code(1, 1, "222222", now + 1), &LIMITS)
        .await
        .unwrap();
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"111111"), 5, now + 2)
            .await
            .unwrap(),
        CodeCheck::Rejected { attempts_left: 4 }
    );
    assert_eq!(
        s.check_code(&[1; 32], &sha(b"222222"), 5, now + 2)
            .await
            .unwrap(),
        CodeCheck::Accepted
    );
}

async fn code_rate_limits_per_phone_and_client(b: &dyn Backend) {
    let s = b.open().await;
    let limits = CodeLimits {
        per_phone: 2,
        per_client: 3,
        window_secs: 3600,
    };
    let t = 1_000_000;
    assert_eq!(
        s.issue_code(&code(1, 9, "1", t), &limits).await.unwrap(),
        CodeIssue::Issued
    );
    assert_eq!(
        s.issue_code(&code(1, 9, "1", t + 100), &limits)
            .await
            .unwrap(),
        CodeIssue::Issued
    );
    assert_eq!(
        s.issue_code(&code(1, 8, "1", t + 200), &limits)
            .await
            .unwrap(),
        CodeIssue::PhoneLimited {
            retry_after_secs: 3400
        }
    );
    // A refused request is not counted: the client has used 2 of 3.
    assert_eq!(
        s.issue_code(&code(2, 9, "1", t + 300), &limits)
            .await
            .unwrap(),
        CodeIssue::Issued
    );
    assert_eq!(
        s.issue_code(&code(3, 9, "1", t + 400), &limits)
            .await
            .unwrap(),
        CodeIssue::ClientLimited {
            retry_after_secs: 3200
        }
    );
    // Once the window has passed the first code, the number may ask again.
    assert_eq!(
        s.issue_code(&code(1, 7, "1", t + 3601), &limits)
            .await
            .unwrap(),
        CodeIssue::Issued
    );
}

async fn devices_join_the_account_of_their_number(b: &dyn Backend) {
    let s = b.open().await;
    let device = |phone: u8, token: &'static [u8]| NewDevice {
        phone_key: [phone; 32],
        name: "Pixel",
        token_hash: sha(token),
        token_expires_at: 5000,
        now: 1000,
    };
    let first = s.register_device(&device(1, b"t1")).await.unwrap();
    let second = b
        .open()
        .await
        .register_device(&device(1, b"t2"))
        .await
        .unwrap();
    let stranger = s.register_device(&device(2, b"t3")).await.unwrap();
    assert_eq!(first.account_id, second.account_id);
    assert_ne!(first.device_id, second.device_id);
    assert_ne!(first.account_id, stranger.account_id);

    let owner = s.token_owner(&sha(b"t2")).await.unwrap().unwrap();
    assert_eq!(owner.device, second);
    assert_eq!(owner.expires_at, 5000);
    assert_eq!(s.token_owner(&sha(b"forged")).await.unwrap(), None);
}

async fn register(s: &dyn Store) -> DeviceRef {
    s.register_device(&NewDevice {
        phone_key: [1; 32],
        name: "Pixel",
        token_hash: sha(b"token"),
        token_expires_at: i64::MAX,
        now: 0,
    })
    .await
    .unwrap()
}

async fn tickets_are_single_use_and_expire(b: &dyn Backend) {
    let s = b.open().await;
    let device = register(&*s).await;
    let now = 1_000_000;
    s.create_ticket(&sha(b"t1"), device, now + 60, now)
        .await
        .unwrap();
    assert_eq!(
        s.redeem_ticket(&sha(b"t1"), now + 1).await.unwrap(),
        Some(device)
    );
    assert_eq!(s.redeem_ticket(&sha(b"t1"), now + 1).await.unwrap(), None);
    assert_eq!(s.redeem_ticket(&sha(b"never"), now).await.unwrap(), None);

    s.create_ticket(&sha(b"t2"), device, now + 60, now)
        .await
        .unwrap();
    assert_eq!(s.redeem_ticket(&sha(b"t2"), now + 60).await.unwrap(), None);
}

async fn tickets_redeem_once_across_instances(b: &dyn Backend) {
    let s = b.open().await;
    let device = register(&*s).await;
    let now = 1_000_000;
    for round in 0..10u8 {
        let hash = sha(&[round]);
        s.create_ticket(&hash, device, now + 60, now).await.unwrap();
        let racers: Vec<_> = [b.open().await, b.open().await]
            .into_iter()
            .map(|store| tokio::spawn(async move { store.redeem_ticket(&hash, now).await }))
            .collect();
        let mut wins = 0;
        for r in racers {
            wins += usize::from(r.await.unwrap().unwrap().is_some());
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

/// Many writers at once (the SQLite store commits them in groups): each append is visible to
/// another instance as soon as it returns, and a chunk sent twice in one group is stored once.
async fn concurrent_appends_are_committed_before_they_return(b: &dyn Backend) {
    let writer = b.open().await;
    let reader = b.open().await;
    let docs: Vec<DocumentMeta> = (0..8).map(|i| meta(1, i)).collect();
    for d in &docs {
        writer.create_document(d).await.unwrap();
    }
    let tasks: Vec<_> = docs
        .iter()
        .flat_map(|d| (0..12u8).map(move |i| (d.id, i)))
        .map(|(id, i)| {
            let (writer, reader) = (writer.clone(), reader.clone());
            tokio::spawn(async move {
                let bytes = [i, i / 2];
                writer
                    .append_chunk(&id, ChunkKind::Incremental, &bytes)
                    .await
                    .unwrap();
                let seen = reader.chunks_after(&id, 0).await.unwrap();
                assert!(
                    seen.iter().any(|c| c.bytes == bytes),
                    "an acknowledged append is not visible to another instance"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for d in &docs {
        let chunks = reader.chunks_after(&d.id, 0).await.unwrap();
        assert_eq!(chunks.len(), 12, "each distinct chunk stored once");
    }
    let twice: Vec<_> = (0..2)
        .map(|_| {
            let writer = writer.clone();
            let id = docs[0].id;
            tokio::spawn(async move {
                writer
                    .append_chunk(&id, ChunkKind::Incremental, b"same")
                    .await
            })
        })
        .collect();
    for t in twice {
        t.await.unwrap().unwrap();
    }
    assert_eq!(reader.chunks_after(&docs[0].id, 0).await.unwrap().len(), 13);
}

async fn ping_answers(b: &dyn Backend) {
    b.open().await.ping().await.unwrap();
}

// ---- backend-specific: migrations --------------------------------------------------------------

#[tokio::test]
async fn sqlite_newer_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sotong.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let future = SqliteStore::supported_version() + 1;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", future).unwrap();
    }
    let err = match SqliteStore::open(&path).await {
        Ok(_) => panic!("a newer database was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(err, StoreError::TooNew { found, supported } if found == future && supported == future - 1),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("newer than this server supports"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, future);
}

#[tokio::test]
async fn sqlite_two_instances_share_one_file() {
    let backend = sqlite();
    let one = backend.open().await;
    let two = backend.open().await;
    let doc = meta(1, 1);
    assert!(one.create_document(&doc).await.unwrap());
    assert!(!two.create_document(&doc).await.unwrap());
    assert_eq!(two.document(&doc.id).await.unwrap(), Some(doc));
}

#[tokio::test]
async fn postgres_newer_database_is_refused() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    drop(PgStore::connect(&db.url).await.unwrap());
    let future = PgStore::supported_version() + 1;
    db.client()
        .await
        .execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&future],
        )
        .await
        .unwrap();
    let err = match PgStore::connect(&db.url).await {
        Ok(_) => panic!("a newer database was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(err, StoreError::TooNew { found, .. } if found == future),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_migrate_once() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await.map(drop) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let rows = db
        .client()
        .await
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        versions,
        (1..=PgStore::supported_version()).collect::<Vec<_>>()
    );
}

const MIGRATION_1_SQLITE: &str = include_str!("../migrations/sqlite/001_initial.sql");
const MIGRATION_1_POSTGRES: &str = include_str!("../migrations/postgres/001_initial.sql");

#[tokio::test]
async fn sqlite_upgrade_drops_stored_dev_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sotong.db");
    {
        // A database frozen at version 1, with a code in plain text.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATION_1_SQLITE).unwrap();
        conn.execute(
            "INSERT INTO dev_codes (phone, code, created_at) VALUES ('+821012345678', '123456', 1)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'dev_codes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::supported_version());
}

#[tokio::test]
async fn postgres_upgrade_drops_stored_dev_codes() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE schema_version (version BIGINT NOT NULL);
             {MIGRATION_1_POSTGRES}
             INSERT INTO schema_version (version) VALUES (1);
             INSERT INTO dev_codes (phone, code, created_at) VALUES ('+821012345678', '123456', 1);"
        ))
        .await
        .unwrap();
    drop(PgStore::connect(&db.url).await.unwrap());
    let row = client
        .query_one("SELECT to_regclass('dev_codes') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "dev_codes survived the upgrade");
}

const MIGRATION_2_SQLITE: &str = include_str!("../migrations/sqlite/002_drop_dev_codes.sql");
const MIGRATION_2_POSTGRES: &str = include_str!("../migrations/postgres/002_drop_dev_codes.sql");

/// A database from before the officials' side (version 2) gains the staff tables and keeps
/// its citizens' data.
#[tokio::test]
async fn sqlite_upgrade_from_version_2_adds_the_staff_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sotong.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATION_1_SQLITE).unwrap();
        conn.execute_batch(MIGRATION_2_SQLITE).unwrap();
        conn.execute(
            "INSERT INTO accounts (phone_key, created_at) VALUES (x'01', 1)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.list_staff().await.unwrap().is_empty());
    store
        .append_audit(
            1,
            &AuditEntry::new(Actor::System, actions::STAFF_ADD, Outcome::Success),
        )
        .await
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let accounts: i64 = conn
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(accounts, 1);
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::supported_version());
}

#[tokio::test]
async fn postgres_upgrade_from_version_2_adds_the_staff_tables() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE schema_version (version BIGINT NOT NULL);
             {MIGRATION_1_POSTGRES}
             {MIGRATION_2_POSTGRES}
             INSERT INTO schema_version (version) VALUES (1), (2);
             INSERT INTO accounts (phone_key, created_at) VALUES ('\\x01', 1);"
        ))
        .await
        .unwrap();
    let store = PgStore::connect(&db.url).await.unwrap();
    assert!(store.list_staff().await.unwrap().is_empty());
    store
        .append_audit(
            1,
            &AuditEntry::new(Actor::System, actions::STAFF_ADD, Outcome::Success),
        )
        .await
        .unwrap();
    let accounts: i64 = client
        .query_one("SELECT COUNT(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1);
    assert!(client.batch_execute("TRUNCATE audit_log").await.is_err());
    assert!(client.batch_execute("DELETE FROM audit_log").await.is_err());
    let version: i64 = client
        .query_one("SELECT MAX(version) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, PgStore::supported_version());
}

/// What a sync acknowledges is on disk: every commit syncs the WAL.
#[tokio::test]
async fn sqlite_commits_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sotong.db"))
        .await
        .unwrap();
    // 2 = FULL (NORMAL, 1, loses the last commits on a power cut in WAL mode).
    assert_eq!(store.synchronous().await.unwrap(), 2);
}

// ---- backend-specific: PostgreSQL TLS and pool -------------------------------------------------

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test]
async fn postgres_sslmode_disable_connects_in_plain_text() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let store = PgStore::connect(&with_param(&db.url, "sslmode=disable"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    let ssl: bool = db
        .client()
        .await
        .query_one(
            "SELECT COALESCE(bool_or(s.ssl), false) FROM pg_stat_ssl s
             JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl, "sslmode=disable used TLS");
}

/// The local test server has no certificate a client can verify (none, or a self-signed
/// one): `sslmode=require` must refuse it, never fall back to plain text.
#[tokio::test]
async fn postgres_sslmode_require_refuses_an_unverifiable_server() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    for mode in ["require", "verify-full", "verify-ca"] {
        let url = with_param(&db.url, &format!("sslmode={mode}"));
        let err = match PgStore::connect(&url).await {
            Ok(_) => panic!("sslmode={mode} connected to a server it cannot verify"),
            Err(e) => e,
        };
        assert!(matches!(err, StoreError::Pool(_)), "{mode}: {err:?}");
        let message = err.to_string();
        eprintln!("sslmode={mode}: {message}");
        assert!(
            message.contains("TLS") || message.contains("tls"),
            "{mode}: the error does not say TLS failed: {message}"
        );
    }
}

#[tokio::test]
async fn postgres_unusable_ca_file_is_a_clear_error() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for ca_file in [dir.path().join("missing.pem"), empty] {
        let options = PgOptions {
            ca_file: Some(ca_file.clone()),
            ..PgOptions::default()
        };
        let err = match PgStore::connect_with(&db.url, &options).await {
            Ok(_) => panic!("{} was accepted", ca_file.display()),
            Err(e) => e,
        };
        assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("CA file"), "{err}");
    }
}

/// Many more concurrent calls than connections: all complete, and the pool never opens
/// more connections than its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_is_bounded_and_serves_every_caller() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let options = PgOptions {
        max_connections: 3,
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::connect_with(&db.url, &options).await.unwrap());
    let doc = meta(1, 1);
    store.create_document(&doc).await.unwrap();
    let writers: Vec<_> = (0..40u32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_chunk(&doc.id, ChunkKind::Incremental, &i.to_be_bytes())
                    .await
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    assert_eq!(store.chunks_after(&doc.id, 0).await.unwrap().len(), 40);
    let (open, size) = store.pool_status();
    assert_eq!(size, 3);
    assert!((1..=3).contains(&open), "{open} connections open");
    let backends: i64 = db
        .client()
        .await
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        backends <= 3,
        "{backends} server connections for a pool of 3"
    );
}

/// TLS end to end, where the local server has TLS on: its own certificate given as the CA
/// file, `sslmode=require` connects over TLS, verified. Skipped (with a note) where the
/// server has no TLS or its certificate is not readable or not for `localhost`.
#[tokio::test]
async fn postgres_sslmode_require_connects_over_verified_tls() {
    let Some(db) = common::PgDb::create().await else {
        return;
    };
    let client = db.client().await;
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };
    let cert = std::path::PathBuf::from(setting("ssl_cert_file").await);
    let pem = std::fs::read_to_string(&cert).unwrap_or_default();
    if setting("ssl").await != "on" || pem.is_empty() {
        eprintln!("the local PostgreSQL has no readable TLS certificate: skipping");
        return;
    }
    // The test database's URL, with `localhost` (the name such certificates carry).
    let url = db.url.replace("127.0.0.1", "localhost");
    let options = PgOptions {
        ca_file: Some(cert.clone()),
        ..PgOptions::default()
    };
    let store = match PgStore::connect_with(&with_param(&url, "sslmode=require"), &options).await {
        Ok(store) => store,
        Err(e) if e.to_string().contains("NotValidForName") => {
            eprintln!(
                "{} is not a certificate for localhost: skipping",
                cert.display()
            );
            return;
        }
        Err(e) => panic!("TLS with the server's own certificate failed: {e}"),
    };
    store.ping().await.unwrap();
    let all_tls: bool = client
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s
             JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(all_tls, "the store's connections are not encrypted");
}

// ---- the officials' side ---------------------------------------------------------------------

fn new_member(username: &str, grants: Vec<Grant>) -> NewStaffMember {
    NewStaffMember {
        username: username.into(),
        display_name: format!("{username} display"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        grants,
        totp_secret: None,
        created_at: 100,
    }
}

fn grant(role: Role, scope: Option<&str>) -> Grant {
    Grant::new(role, scope).unwrap()
}

async fn staff_add_list_and_disable(b: &dyn Backend) {
    let s = b.open().await;
    let kim = s
        .add_staff(&new_member("kim", vec![grant(Role::Admin, None)]))
        .await
        .unwrap()
        .expect("added");
    assert_eq!(kim.username, "kim");
    assert_eq!(kim.display_name, "kim display");
    assert!(!kim.disabled && !kim.totp_enabled);
    // The name is unique: a second add changes nothing.
    let again = new_member("kim", vec![grant(Role::Dispatcher, Some("seoul"))]);
    assert_eq!(s.add_staff(&again).await.unwrap(), None);
    assert_eq!(s.staff_member(kim.id).await.unwrap(), Some(kim.clone()));
    let mut with_totp = new_member("ahn", vec![grant(Role::Dispatcher, Some("busan"))]);
    with_totp.totp_secret = Some(vec![7; 20]);
    let ahn = s.add_staff(&with_totp).await.unwrap().unwrap();
    assert!(ahn.totp_enabled);
    let listed: Vec<String> = s
        .list_staff()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert_eq!(listed, ["ahn", "kim"]);

    assert!(s.set_staff_disabled(kim.id, true).await.unwrap());
    assert!(s.staff_member(kim.id).await.unwrap().unwrap().disabled);
    assert!(!s.set_staff_disabled(9999, true).await.unwrap());
    assert!(s
        .set_staff_password(kim.id, "$argon2id$new", 200)
        .await
        .unwrap());
    let creds = s.staff_credentials("kim").await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "$argon2id$new");
    assert_eq!(creds.totp_secret, None);
    assert_eq!(
        s.staff_credentials("ahn")
            .await
            .unwrap()
            .unwrap()
            .totp_secret,
        Some(vec![7; 20])
    );
    assert!(s.staff_credentials("nobody").await.unwrap().is_none());
}

async fn staff_grants_are_data(b: &dyn Backend) {
    let s = b.open().await;
    let grants = vec![
        grant(Role::AgencyOfficer, Some("MOIS")),
        grant(Role::AgencyOfficer, Some("MOLIT")),
        grant(Role::Dispatcher, Some("seoul")),
    ];
    let m = s
        .add_staff(&new_member("lee", grants.clone()))
        .await
        .unwrap()
        .unwrap();
    let mut sorted = grants.clone();
    sorted.sort();
    assert_eq!(m.grants, sorted);
    assert_eq!(m.scopes(Role::AgencyOfficer), ["MOIS", "MOLIT"]);
    // A grant the schema does not allow (admin with a scope) is refused by the database.
    let bad = b
        .raw_exec(&format!(
            "INSERT INTO staff_grants (member_id, role, scope) VALUES ({}, 'admin', 'MOIS')",
            m.id
        ))
        .await;
    assert!(bad.is_err());
    let bad = b
        .raw_exec(&format!(
            "INSERT INTO staff_grants (member_id, role, scope) VALUES ({}, 'root', '')",
            m.id
        ))
        .await;
    assert!(bad.is_err());
}

fn session_for(member_id: i64, token: &str, kind: SessionKind, now: i64) -> NewStaffSession {
    NewStaffSession {
        token_hash: sha(token.as_bytes()),
        member_id,
        kind,
        csrf_token: format!("csrf-{token}"),
        now,
        expires_at: now + 3600,
    }
}

async fn staff_sessions_create_touch_end_and_expire(b: &dyn Backend) {
    let s = b.open().await;
    let m = s
        .add_staff(&new_member("park", vec![grant(Role::Admin, None)]))
        .await
        .unwrap()
        .unwrap();
    let id = s
        .create_staff_session(&session_for(m.id, "tok-a", SessionKind::Cookie, 1000))
        .await
        .unwrap();
    let got = s.staff_session(&sha(b"tok-a")).await.unwrap().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.member, m);
    assert_eq!(got.kind, SessionKind::Cookie);
    assert_eq!(got.csrf_token, "csrf-tok-a");
    assert_eq!(
        (got.created_at, got.last_seen_at, got.expires_at),
        (1000, 1000, 4600)
    );
    assert!(s.staff_session(&sha(b"other")).await.unwrap().is_none());

    s.touch_staff_session(id, 1500).await.unwrap();
    // A late touch never moves last use backwards.
    s.touch_staff_session(id, 1200).await.unwrap();
    let got = s.staff_session(&sha(b"tok-a")).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, 1500);

    // The member's state is read with the session: disabling shows at once.
    s.set_staff_disabled(m.id, true).await.unwrap();
    assert!(
        s.staff_session(&sha(b"tok-a"))
            .await
            .unwrap()
            .unwrap()
            .member
            .disabled
    );
    s.set_staff_disabled(m.id, false).await.unwrap();

    s.end_staff_session(id, 1600).await.unwrap();
    assert!(s.staff_session(&sha(b"tok-a")).await.unwrap().is_none());

    // Ending all of a member's sessions; another instance sees it.
    let other = b.open().await;
    other
        .create_staff_session(&session_for(m.id, "tok-b", SessionKind::Bearer, 2000))
        .await
        .unwrap();
    other
        .create_staff_session(&session_for(m.id, "tok-c", SessionKind::Cookie, 2000))
        .await
        .unwrap();
    assert_eq!(
        s.staff_session(&sha(b"tok-b")).await.unwrap().unwrap().kind,
        SessionKind::Bearer
    );
    assert_eq!(s.end_member_sessions(m.id, 2100).await.unwrap(), 2);
    assert!(other.staff_session(&sha(b"tok-c")).await.unwrap().is_none());

    // Sessions past their absolute end are forgotten when a new one is made.
    s.create_staff_session(&session_for(m.id, "tok-d", SessionKind::Bearer, 3000))
        .await
        .unwrap();
    s.create_staff_session(&session_for(m.id, "tok-e", SessionKind::Bearer, 7000))
        .await
        .unwrap();
    assert!(s.staff_session(&sha(b"tok-d")).await.unwrap().is_none());
    assert!(s.staff_session(&sha(b"tok-e")).await.unwrap().is_some());
}

const POLICY: LockoutPolicy = LockoutPolicy {
    threshold: 10,
    window_secs: 900,
    lock_secs: 900,
};

async fn staff_login_failures_lock_a_name(b: &dyn Backend) {
    let s = b.open().await;
    let (name, other) = ([1u8; 32], [2u8; 32]);
    for n in 1..10 {
        let f = s
            .record_login_failure(&name, 1000 + n, &POLICY)
            .await
            .unwrap();
        assert_eq!(
            f,
            LoginFailure {
                failures: n as u32,
                locked_until: None
            }
        );
    }
    assert_eq!(s.login_locked_until(&name, 1010).await.unwrap(), None);
    let tenth = s.record_login_failure(&name, 1010, &POLICY).await.unwrap();
    assert_eq!(
        tenth,
        LoginFailure {
            failures: 10,
            locked_until: Some(1910)
        }
    );
    assert_eq!(s.login_locked_until(&name, 1010).await.unwrap(), Some(1910));
    assert_eq!(s.login_locked_until(&name, 1909).await.unwrap(), Some(1910));
    assert_eq!(s.login_locked_until(&name, 1910).await.unwrap(), None);
    // Another name is not affected.
    assert_eq!(s.login_locked_until(&other, 1010).await.unwrap(), None);
    // After the lock the count starts over.
    let f = s.record_login_failure(&name, 2000, &POLICY).await.unwrap();
    assert_eq!(f.failures, 1);

    // Failures older than the window do not count; a success clears the count.
    for n in 0..9 {
        s.record_login_failure(&other, 3000 + n, &POLICY)
            .await
            .unwrap();
    }
    let late = s
        .record_login_failure(&other, 3000 + 900 + 5, &POLICY)
        .await
        .unwrap();
    assert_eq!(
        late,
        LoginFailure {
            failures: 4,
            locked_until: None
        }
    );
    s.clear_login_failures(&other).await.unwrap();
    let f = s.record_login_failure(&other, 4000, &POLICY).await.unwrap();
    assert_eq!(f.failures, 1);
}

async fn staff_login_failures_count_atomically_across_instances(b: &dyn Backend) {
    let one = b.open().await;
    let two = b.open().await;
    let key = [9u8; 32];
    // 20 failures at once through two instances: each is counted exactly once, so exactly
    // two of them lock the name (the count starts over after a lock).
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            s.record_login_failure(&key, 5000, &POLICY).await.unwrap()
        }));
    }
    let mut counts = Vec::new();
    let mut locks = 0;
    for t in tasks {
        let f = t.await.unwrap();
        counts.push(f.failures);
        locks += usize::from(f.locked_until.is_some());
    }
    counts.sort_unstable();
    let expected: Vec<u32> = (1..=10).flat_map(|n| [n, n]).collect();
    assert_eq!(counts, expected);
    assert_eq!(locks, 2);
    assert_eq!(
        two.login_locked_until(&key, 5000).await.unwrap(),
        Some(5900)
    );
}

async fn staff_totp_steps_are_single_use(b: &dyn Backend) {
    let one = b.open().await;
    let two = b.open().await;
    let mut new = new_member("choi", vec![grant(Role::Admin, None)]);
    new.totp_secret = Some(vec![1; 20]);
    let m = one.add_staff(&new).await.unwrap().unwrap();
    assert!(one.use_totp_step(m.id, 100).await.unwrap());
    // The same step again, from any instance, and any earlier step: refused.
    assert!(!two.use_totp_step(m.id, 100).await.unwrap());
    assert!(!one.use_totp_step(m.id, 99).await.unwrap());
    assert!(two.use_totp_step(m.id, 101).await.unwrap());
    assert!(!one.use_totp_step(9999, 1).await.unwrap());
    // A new secret starts the record of used steps over; removing it turns TOTP off.
    assert!(one.set_staff_totp(m.id, Some(&[2; 20])).await.unwrap());
    let creds = two.staff_credentials("choi").await.unwrap().unwrap();
    assert_eq!(creds.totp_secret, Some(vec![2; 20]));
    assert!(two.use_totp_step(m.id, 50).await.unwrap());
    assert!(one.set_staff_totp(m.id, None).await.unwrap());
    assert!(!two.staff_member(m.id).await.unwrap().unwrap().totp_enabled);
    assert!(!one.set_staff_totp(9999, None).await.unwrap());
}

async fn staff_audit_appends_queries_and_refuses_changes(b: &dyn Backend) {
    let s = b.open().await;
    let staff = Actor::Staff {
        id: 3,
        username: "kim".into(),
    };
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let first = s
        .append_audit(
            100,
            &AuditEntry::new(staff.clone(), actions::LOGIN, Outcome::Success)
                .target("session", "17")
                .from_ip(ip)
                .detail(serde_json::json!({ "kind": "cookie" })),
        )
        .await
        .unwrap();
    let second = s
        .append_audit(
            200,
            &AuditEntry::new(Actor::UnknownName, actions::LOGIN_FAILED, Outcome::Failure)
                .detail(serde_json::json!({ "name_key": "abcd1234" })),
        )
        .await
        .unwrap();
    let third = s
        .append_audit(
            300,
            &AuditEntry::new(Actor::System, actions::STAFF_ADD, Outcome::Success),
        )
        .await
        .unwrap();
    assert!(first < second && second < third);

    let all = s.query_audit(&AuditFilter::default()).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
    assert_eq!(ids, [third, second, first], "newest first");
    let login = &all[2];
    assert_eq!(login.at, 100);
    assert_eq!(login.actor, staff);
    assert_eq!(login.action, "login");
    assert_eq!(login.target_kind.as_deref(), Some("session"));
    assert_eq!(login.target_id.as_deref(), Some("17"));
    assert_eq!(login.outcome, Outcome::Success);
    assert_eq!(login.client_ip, Some(ip));
    assert_eq!(login.detail, Some(serde_json::json!({ "kind": "cookie" })));
    assert_eq!(all[1].actor, Actor::UnknownName);
    assert_eq!(all[0].actor, Actor::System);

    let q = |f: AuditFilter| {
        let s = s.clone();
        async move {
            s.query_audit(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(
        q(AuditFilter {
            since: Some(200),
            ..Default::default()
        })
        .await,
        [third, second]
    );
    assert_eq!(
        q(AuditFilter {
            until: Some(200),
            ..Default::default()
        })
        .await,
        [first]
    );
    assert_eq!(
        q(AuditFilter {
            actor: Some("kim".into()),
            ..Default::default()
        })
        .await,
        [first]
    );
    assert_eq!(
        q(AuditFilter {
            action: Some("login_failed".into()),
            ..Default::default()
        })
        .await,
        [second]
    );
    assert_eq!(
        q(AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await,
        [third, second]
    );
    assert_eq!(
        q(AuditFilter {
            before_id: Some(second),
            ..Default::default()
        })
        .await,
        [first]
    );
    let after: Vec<i64> = s
        .audit_after(first, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(after, [second, third], "oldest first");
    assert_eq!(s.audit_after(0, Some(300), 10).await.unwrap().len(), 1);

    // Append-only: the database refuses to change or remove an entry, whoever asks.
    let update = b
        .raw_exec("UPDATE audit_log SET action = 'nothing' WHERE id > 0")
        .await
        .unwrap_err();
    assert!(update.contains("append-only"), "{update}");
    let delete = b.raw_exec("DELETE FROM audit_log").await.unwrap_err();
    assert!(delete.contains("append-only"), "{delete}");
    assert_eq!(
        s.query_audit(&AuditFilter::default()).await.unwrap().len(),
        3
    );
    assert_eq!(
        s.query_audit(&AuditFilter::default()).await.unwrap()[2].action,
        "login"
    );
}

// ---- SOS ---------------------------------------------------------------------------------

fn incident(n: u8) -> IncidentId {
    IncidentId::from_bytes(&[n; 16]).unwrap()
}

fn beacon(id: IncidentId, seq: u32, state: ReportedState, lat: f64) -> RoutedBeacon {
    RoutedBeacon {
        beacon: Beacon {
            incident: id,
            seq,
            state,
            trigger: TriggerMethod::PowerKey,
            triggered_at: 1_000,
            fix: Some(Fix {
                lat,
                lon: 126.97,
                accuracy_m: 10.0,
                altitude_m: None,
                speed_mps: None,
                heading_deg: None,
                time_ms: 2_000 + i64::from(seq),
                method: FixMethod::Gps,
                battery_pct: Some(50),
            }),
            reply: None,
        },
        region: Some("seoul".into()),
        via: Via::Https,
    }
}

fn acked(outcome: SosIngest) -> Vec<(IncidentId, u32)> {
    match outcome {
        SosIngest::Stored(acks) => acks
            .into_iter()
            .map(|a| (a.incident, a.up_to_seq))
            .collect(),
        other => panic!("not stored: {other:?}"),
    }
}

async fn device_of(s: &dyn Store, phone: u8) -> DeviceRef {
    s.register_device(&NewDevice {
        phone_key: [phone; 32],
        name: "Pixel",
        token_hash: sha(&[phone, 0xee]),
        token_expires_at: i64::MAX,
        now: 0,
    })
    .await
    .unwrap()
}

async fn sos_beacons_are_stored_once_with_a_contiguous_ack(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    let id = incident(1);
    let a = ReportedState::Active;
    // 1, 3 and a duplicate 1 (different content: the first copy wins).
    let out = s
        .sos_ingest(
            d,
            &[
                beacon(id, 1, a, 37.5),
                beacon(id, 3, a, 37.6),
                beacon(id, 1, a, 35.0),
            ],
            10,
        )
        .await
        .unwrap();
    assert_eq!(acked(out), vec![(id, 1)]);
    let out = s
        .sos_ingest(d, &[beacon(id, 2, a, 37.55)], 11)
        .await
        .unwrap();
    assert_eq!(acked(out), vec![(id, 3)]);
    // A second instance sees the same and stores nothing twice.
    let other = b.open().await;
    let out = other
        .sos_ingest(d, &[beacon(id, 2, a, 0.0)], 12)
        .await
        .unwrap();
    assert_eq!(acked(out), vec![(id, 3)]);
    let trail = other.sos_beacons(&id).await.unwrap();
    assert_eq!(
        trail.iter().map(|t| t.beacon.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(trail[0].beacon.fix.as_ref().unwrap().lat, 37.5);
    assert_eq!(trail[1].beacon.fix.as_ref().unwrap().lat, 37.55);
    let inc = other.sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(inc.account_id, d.account_id);
    assert_eq!(inc.up_to_seq, 3);
    assert_eq!(inc.region.as_deref(), Some("seoul"));
    assert_eq!(inc.phase, DispatchPhase::Received);
    // One fix event per stored beacon, one incident event, one Received for the phone.
    let events = other.sos_events_after(0, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "fix").count(), 3);
    assert_eq!(events.iter().filter(|e| e.kind == "incident").count(), 1);
    let phone = other.sos_phone_events(&id, 0).await.unwrap();
    assert_eq!(phone.len(), 1);
    assert_eq!(
        phone[0].phone_event.as_ref().unwrap().event,
        IncidentEvent::Received
    );
}

async fn sos_incident_belongs_to_its_first_account(b: &dyn Backend) {
    let s = b.open().await;
    let owner = device_of(&*s, 1).await;
    let intruder = device_of(&*s, 2).await;
    let id = incident(2);
    let a = ReportedState::Active;
    s.sos_ingest(owner, &[beacon(id, 1, a, 37.5)], 10)
        .await
        .unwrap();
    // The intruder's batch (with a beacon of its own incident first) stores nothing.
    let own = incident(3);
    let out = s
        .sos_ingest(
            intruder,
            &[beacon(own, 1, a, 37.5), beacon(id, 2, a, 37.5)],
            11,
        )
        .await
        .unwrap();
    assert_eq!(out, SosIngest::NotOwner(id));
    assert_eq!(s.sos_beacons(&id).await.unwrap().len(), 1);
    assert!(s.sos_incident(&own).await.unwrap().is_none());
}

async fn sos_events_are_ordered_and_scoped_by_region(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    let (seoul, busan) = (incident(4), incident(5));
    let a = ReportedState::Active;
    let mut bu = beacon(busan, 1, a, 35.1);
    bu.region = Some("busan".into());
    s.sos_ingest(d, &[beacon(seoul, 1, a, 37.5), bu], 10)
        .await
        .unwrap();
    // Duress: the incident event says so, and it sorts first.
    s.sos_ingest(d, &[beacon(busan, 2, ReportedState::Duress, 35.1)], 11)
        .await
        .unwrap();
    let all = s.sos_events_after(0, None, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let only_seoul = s
        .sos_events_after(0, Some(&["seoul".to_owned()]), 100)
        .await
        .unwrap();
    assert!(!only_seoul.is_empty());
    assert!(only_seoul.iter().all(|e| e.incident == seoul));
    let none = s.sos_events_after(0, Some(&[]), 100).await.unwrap();
    assert!(none.is_empty());
    // Resume after an id misses nothing and repeats nothing.
    let mid = all[1].id;
    let rest = s.sos_events_after(mid, None, 100).await.unwrap();
    assert_eq!(rest, all[2..].to_vec());
    let open = s.sos_open_incidents(None).await.unwrap();
    assert_eq!(
        open.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![busan, seoul]
    );
    assert!(open[0].duress);
    let busan_only = s
        .sos_open_incidents(Some(&["busan".to_owned()]))
        .await
        .unwrap();
    assert_eq!(busan_only.len(), 1);
}

async fn sos_last_event_id_is_where_a_new_feed_starts(b: &dyn Backend) {
    let s = b.open().await;
    assert_eq!(s.sos_last_event_id().await.unwrap(), 0);
    let d = device_of(&*s, 1).await;
    let seoul = incident(6);
    let a = ReportedState::Active;
    s.sos_ingest(d, &[beacon(seoul, 1, a, 37.5)], 10)
        .await
        .unwrap();
    let all = s.sos_events_after(0, None, 100).await.unwrap();
    let last = s.sos_last_event_id().await.unwrap();
    assert_eq!(Some(last), all.last().map(|e| e.id));
    // A feed starting there gets what comes after, and only that.
    assert!(s
        .sos_events_after(last, None, 100)
        .await
        .unwrap()
        .is_empty());
    s.sos_ingest(d, &[beacon(seoul, 2, a, 37.5)], 11)
        .await
        .unwrap();
    let next = s.sos_events_after(last, None, 100).await.unwrap();
    assert!(!next.is_empty() && next.iter().all(|e| e.id > last));
    assert_eq!(
        s.sos_last_event_id().await.unwrap(),
        next.last().unwrap().id
    );
}

/// Two instances ingest beacons of many incidents concurrently (four writers each) while a
/// dispatcher adds notes, and a third instance reads the event log with a cursor, as a feed
/// resuming after its last id does. The reader must end up with every event exactly once: an
/// event committed with a lower id after a higher one was read would be lost to it.
async fn sos_concurrent_writers_never_hide_events_from_a_reader(b: &dyn Backend) {
    const PER_WRITER: u32 = 25;
    let first = b.open().await;
    let d = device_of(&*first, 1).await;
    let instances = [first, b.open().await];
    let mut writers = Vec::new();
    for (i, store) in instances.iter().enumerate() {
        for w in 0..4u8 {
            let store = store.clone();
            let id = incident(100 + (i as u8) * 10 + w);
            writers.push(tokio::spawn(async move {
                for seq in 1..=PER_WRITER {
                    let out = store
                        .sos_ingest(d, &[beacon(id, seq, ReportedState::Active, 37.5)], 10)
                        .await
                        .unwrap();
                    assert_eq!(acked(out), vec![(id, seq)]);
                }
            }));
        }
    }
    // The dispatcher's notes on the first incident, through the second instance.
    let noted = incident(100);
    {
        let store = instances[1].clone();
        writers.push(tokio::spawn(async move {
            let mut notes = 0;
            while notes < 10 {
                let note = DispatchAction::Note {
                    text: format!("note {notes}"),
                };
                if store
                    .sos_dispatch(&noted, 7, &note, 20)
                    .await
                    .unwrap()
                    .is_some()
                {
                    notes += 1;
                }
            }
        }));
    }
    let reader = b.open().await;
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut done = false;
    while !done {
        done = writers.iter().all(|w| w.is_finished());
        for event in reader.sos_events_after(cursor, None, 50).await.unwrap() {
            assert!(event.id > cursor, "events come in id order");
            cursor = event.id;
            seen.push(event);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    loop {
        let rest = reader.sos_events_after(cursor, None, 50).await.unwrap();
        let Some(last) = rest.last() else { break };
        cursor = last.id;
        seen.extend(rest);
    }
    let fixes: BTreeSet<(IncidentId, u64)> = seen
        .iter()
        .filter(|e| e.kind == "fix")
        .map(|e| (e.incident, e.body["seq"].as_u64().unwrap()))
        .collect();
    let count = |kind: &str| seen.iter().filter(|e| e.kind == kind).count();
    assert_eq!(fixes.len(), 8 * PER_WRITER as usize);
    assert_eq!(count("fix"), 8 * PER_WRITER as usize, "no fix twice");
    assert_eq!(count("incident"), 8);
    assert_eq!(count("note"), 10);
    // Everything the store holds was seen.
    let all = reader.sos_events_after(0, None, 10_000).await.unwrap();
    assert_eq!(all.len(), seen.len());
    // A phone's events come by the same cursor: the incident's Received event.
    let phone = reader.sos_phone_events(&incident(101), 0).await.unwrap();
    assert_eq!(phone.len(), 1);
    assert!(reader
        .sos_phone_events(&incident(101), phone[0].id)
        .await
        .unwrap()
        .is_empty());
}

async fn sos_dispatch_actions_reach_the_phone(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    let id = incident(6);
    s.sos_ingest(d, &[beacon(id, 1, ReportedState::Active, 37.5)], 10)
        .await
        .unwrap();
    let staff = 42;
    let actions = [
        DispatchAction::Acknowledge,
        DispatchAction::Assign {
            unit: Some("Jongno 12".into()),
        },
        DispatchAction::Message {
            text: "Are you safe?".into(),
        },
        DispatchAction::Note {
            text: "caller whispers".into(),
        },
        DispatchAction::Close {
            outcome: SosOutcome::Arrest,
        },
    ];
    for (i, action) in actions.iter().enumerate() {
        let ev = s
            .sos_dispatch(&id, staff, action, 20 + i as i64)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.incident, id);
    }
    assert!(s
        .sos_dispatch(&incident(99), staff, &DispatchAction::Acknowledge, 30)
        .await
        .unwrap()
        .is_none());
    let phone: Vec<IncidentEvent> = s
        .sos_phone_events(&id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.phone_event.unwrap().event)
        .collect();
    let messages = s.sos_messages(&id).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].kind, "note");
    assert_eq!(
        phone,
        vec![
            IncidentEvent::Received,
            IncidentEvent::Acknowledged,
            IncidentEvent::UnitAssigned {
                unit: Some("Jongno 12".into())
            },
            IncidentEvent::Message {
                id: messages[0].id,
                text: "Are you safe?".into()
            },
            IncidentEvent::Resolved,
        ]
    );
    let inc = s.sos_incident(&id).await.unwrap().unwrap();
    assert_eq!(inc.phase, DispatchPhase::Resolved);
    assert_eq!(inc.unit.as_deref(), Some("Jongno 12"));
    assert_eq!(inc.outcome.as_deref(), Some("arrest"));
    assert_eq!(inc.closed_at, Some(24));
    // A late acknowledge never moves the phase back.
    s.sos_dispatch(&id, staff, &DispatchAction::Acknowledge, 40)
        .await
        .unwrap();
    assert_eq!(
        s.sos_incident(&id).await.unwrap().unwrap().phase,
        DispatchPhase::Resolved
    );
    assert!(s.sos_open_incidents(None).await.unwrap().is_empty());
}

async fn sos_sms_keys_are_per_device(b: &dyn Backend) {
    let s = b.open().await;
    let d1 = device_of(&*s, 1).await;
    let d2 = device_of(&*s, 2).await;
    let k1 = s.sos_sms_key(d1, &[1; 32], 10).await.unwrap();
    let again = s.sos_sms_key(d1, &[9; 32], 11).await.unwrap();
    assert_eq!(again, k1);
    assert_eq!(k1.key, vec![1; 32]);
    let k2 = s.sos_sms_key(d2, &[2; 32], 12).await.unwrap();
    assert_ne!(k1.key_id, k2.key_id);
    assert_eq!(
        s.sos_sms_key_by_id(k2.key_id).await.unwrap(),
        Some(k2.clone())
    );
    assert_eq!(k2.device, d2);
    assert_eq!(s.sos_sms_key_by_id(777).await.unwrap(), None);
}

async fn sos_purge_keeps_the_outcome(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    let (closed, open) = (incident(7), incident(8));
    let a = ReportedState::Active;
    s.sos_ingest(
        d,
        &[beacon(closed, 1, a, 37.5), beacon(open, 1, a, 37.5)],
        10,
    )
    .await
    .unwrap();
    s.sos_dispatch(
        &closed,
        1,
        &DispatchAction::Message { text: "hi".into() },
        11,
    )
    .await
    .unwrap();
    s.sos_dispatch(
        &closed,
        1,
        &DispatchAction::Close {
            outcome: SosOutcome::Assisted,
        },
        100,
    )
    .await
    .unwrap();
    // Not yet: closed at 100, cut-off 100.
    assert_eq!(s.sos_purge(100).await.unwrap(), 0);
    assert_eq!(s.sos_beacons(&closed).await.unwrap().len(), 1);
    assert_eq!(s.sos_purge(101).await.unwrap(), 1);
    assert!(s.sos_beacons(&closed).await.unwrap().is_empty());
    assert!(s.sos_messages(&closed).await.unwrap().is_empty());
    assert!(s.sos_phone_events(&closed, 0).await.unwrap().is_empty());
    let inc = s.sos_incident(&closed).await.unwrap().unwrap();
    assert_eq!(inc.outcome.as_deref(), Some("assisted"));
    assert_eq!(s.sos_beacons(&open).await.unwrap().len(), 1);
    assert_eq!(s.sos_purge(101).await.unwrap(), 0);
}

fn feedback(rating: u8, felt_safe: Option<bool>) -> Feedback {
    Feedback {
        rating,
        felt_safe,
        comment: Some("감사합니다".into()),
    }
}

async fn sos_feedback_only_from_the_device_once_closed(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    // A second device of the same account, and another account's device.
    let same_account = s
        .register_device(&NewDevice {
            phone_key: [1; 32],
            name: "Tablet",
            token_hash: sha(&[1, 0xef]),
            token_expires_at: i64::MAX,
            now: 0,
        })
        .await
        .unwrap();
    assert_eq!(same_account.account_id, d.account_id);
    assert_ne!(same_account.device_id, d.device_id);
    let other = device_of(&*s, 2).await;
    let id = incident(9);
    s.sos_ingest(d, &[beacon(id, 1, ReportedState::Duress, 37.5)], 10)
        .await
        .unwrap();
    let fb = feedback(4, Some(true));
    // Open (under duress, as the phone shows it cancelled): refused, nothing stored.
    assert_eq!(
        s.sos_put_feedback(&id, d, &fb, 11).await.unwrap(),
        FeedbackPut::StillOpen
    );
    assert!(s.sos_feedback(&id).await.unwrap().is_none());
    s.sos_dispatch(
        &id,
        1,
        &DispatchAction::Close {
            outcome: SosOutcome::Assisted,
        },
        20,
    )
    .await
    .unwrap();
    for stranger in [same_account, other] {
        assert_eq!(
            s.sos_put_feedback(&id, stranger, &fb, 21).await.unwrap(),
            FeedbackPut::NotFound
        );
    }
    assert_eq!(
        s.sos_put_feedback(&incident(99), d, &fb, 21).await.unwrap(),
        FeedbackPut::NotFound
    );
    assert_eq!(
        s.sos_put_feedback(&id, d, &fb, 22).await.unwrap(),
        FeedbackPut::Stored { replaced: false }
    );
    let second = Feedback {
        rating: 2,
        felt_safe: None,
        comment: None,
    };
    assert_eq!(
        s.sos_put_feedback(&id, d, &second, 30).await.unwrap(),
        FeedbackPut::Stored { replaced: true }
    );
    // Another instance reads the replacement, with the first time kept.
    let stored = b.open().await.sos_feedback(&id).await.unwrap().unwrap();
    assert_eq!(stored.feedback, second);
    assert_eq!((stored.created_at, stored.updated_at), (22, 30));
    assert_eq!(stored.device_id, d.device_id);
    // The purge of the trail keeps the feedback.
    s.sos_purge(1_000).await.unwrap();
    assert!(s.sos_feedback(&id).await.unwrap().is_some());
    // The database refuses a rating out of range even if the code did not.
    assert!(b
        .raw_exec("UPDATE sos_feedback SET rating = 6")
        .await
        .is_err());
}

/// Unix seconds of `day` (1-based) of November 2026, 12:00 in Seoul.
fn nov_2026(day: i64) -> i64 {
    // 2026-11-01 00:00 KST.
    1_793_458_800 + (day - 1) * 86_400 + 12 * 3600
}

async fn sos_summary_by_region_and_month(b: &dyn Backend) {
    let s = b.open().await;
    let d = device_of(&*s, 1).await;
    let seoul = |n: u8, state: ReportedState| beacon(incident(n), 1, state, 37.5);
    let busan = |n: u8| {
        let mut rb = beacon(incident(n), 1, ReportedState::Active, 35.1);
        rb.region = Some("busan".into());
        rb
    };
    let a = ReportedState::Active;
    // Seoul, November: four incidents, one under duress, acknowledged after 10, 20, 40 and
    // 100 s (median 30); three closed (two arrests, one assisted); feedback 5 and 2 (felt
    // safe yes and no) and 4 (not answered).
    let day = nov_2026(10);
    for (n, state) in [(1, a), (2, ReportedState::Duress), (3, a), (4, a)] {
        s.sos_ingest(d, &[seoul(n, state)], day).await.unwrap();
    }
    for (n, after) in [(1u8, 10), (2, 20), (3, 40), (4, 100)] {
        let action = if n == 3 {
            DispatchAction::Assign { unit: None }
        } else {
            DispatchAction::Acknowledge
        };
        s.sos_dispatch(&incident(n), 7, &action, day + after)
            .await
            .unwrap();
        // A later acknowledge does not move the first time.
        s.sos_dispatch(&incident(n), 7, &DispatchAction::Acknowledge, day + 500)
            .await
            .unwrap();
    }
    for (n, outcome) in [
        (1u8, SosOutcome::Arrest),
        (2, SosOutcome::Arrest),
        (3, SosOutcome::Assisted),
    ] {
        s.sos_dispatch(
            &incident(n),
            7,
            &DispatchAction::Close { outcome },
            day + 900,
        )
        .await
        .unwrap();
    }
    for (n, rating, safe) in [(1u8, 5, Some(true)), (2, 2, Some(false)), (3, 4, None)] {
        assert!(matches!(
            s.sos_put_feedback(&incident(n), d, &feedback(rating, safe), day + 1000)
                .await
                .unwrap(),
            FeedbackPut::Stored { .. }
        ));
    }
    // Busan, November: one, never acknowledged. Seoul, 01:00 on October 1 in Seoul, still
    // September in UTC: months are Seoul's.
    s.sos_ingest(d, &[busan(5)], nov_2026(20)).await.unwrap();
    let early_october = 1_790_780_400 + 3_600;
    s.sos_ingest(d, &[seoul(6, a)], early_october)
        .await
        .unwrap();
    // December (outside the range below).
    s.sos_ingest(d, &[seoul(7, a)], nov_2026(31)).await.unwrap();

    let november = MonthRange::months((2026, 11), (2026, 11)).unwrap();
    let rows = b.open().await.sos_summary(november).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let (busan_row, seoul_row) = (&rows[0], &rows[1]);
    assert_eq!(
        (busan_row.region.as_str(), busan_row.month.as_str()),
        ("busan", "2026-11")
    );
    assert_eq!((busan_row.incidents, busan_row.duress), (1, 0));
    assert_eq!(busan_row.median_ack_secs, None);
    assert!(busan_row.closed_by_outcome.is_empty());
    assert_eq!((busan_row.feedback, busan_row.mean_rating), (0, None));
    assert_eq!(busan_row.felt_safe_share, None);

    assert_eq!(
        (seoul_row.region.as_str(), seoul_row.month.as_str()),
        ("seoul", "2026-11")
    );
    assert_eq!((seoul_row.incidents, seoul_row.duress), (4, 1));
    assert_eq!(seoul_row.median_ack_secs, Some(30.0));
    assert_eq!(
        seoul_row.closed_by_outcome,
        [("arrest".to_owned(), 2), ("assisted".to_owned(), 1)]
            .into_iter()
            .collect()
    );
    assert_eq!(seoul_row.feedback, 3);
    let mean = seoul_row.mean_rating.unwrap();
    assert!((mean - 11.0 / 3.0).abs() < 1e-9, "{mean}");
    assert_eq!(seoul_row.felt_safe_share, Some(0.5));

    // October to December: the early October incident is October in Seoul.
    let autumn = MonthRange::months((2026, 10), (2026, 12)).unwrap();
    let rows = s.sos_summary(autumn).await.unwrap();
    let keys: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.month.as_str(), r.region.as_str(), r.incidents))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("2026-10", "seoul", 1),
            ("2026-11", "busan", 1),
            ("2026-11", "seoul", 4),
            ("2026-12", "seoul", 1)
        ]
    );
    s.sos_dispatch(
        &incident(6),
        7,
        &DispatchAction::Acknowledge,
        early_october + 7,
    )
    .await
    .unwrap();
    let rows = s.sos_summary(autumn).await.unwrap();
    assert_eq!(rows[0].median_ack_secs, Some(7.0));
    let empty = MonthRange::months((2025, 1), (2025, 12)).unwrap();
    assert!(s.sos_summary(empty).await.unwrap().is_empty());
}
