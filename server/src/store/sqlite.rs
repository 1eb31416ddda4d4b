//! The embedded store: one SQLite file (`<data-dir>/sotong.db`) in WAL mode behind one
//! connection. Every call runs on the blocking pool; the mutex makes this instance's writes
//! one at a time, and `busy_timeout` covers other processes on the same file.
//!
//! `synchronous = FULL`: every commit is on disk (the WAL is synced) before the call returns,
//! so what the server acknowledges to a phone survives a power cut, as with PostgreSQL's
//! defaults. `NORMAL` would only survive a crash of the process. A sync sits on about 5 ms
//! for that here, so chunk appends, the sync path, are group-committed: one thread takes
//! every append waiting and writes them in one transaction, one sync to disk for all, and
//! each caller returns only after that commit.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sotong_core::hash::sha256;
use sotong_core::DocumentId;

use super::{
    doc_id_from_slice, hash_from_slice, AccountId, ChunkKind, CodeCheck, CodeIssue, CodeLimits,
    DeviceRef, DocumentMeta, NewCode, NewDevice, Store, StoreError, StoreResult, StoredChunk,
    TokenOwner,
};

/// Migrations, in order: migration `i` (0-based) takes the database to `user_version` i + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/001_initial.sql"),
    include_str!("../../migrations/sqlite/002_drop_dev_codes.sql"),
    include_str!("../../migrations/sqlite/003_staff.sql"),
    include_str!("../../migrations/sqlite/004_sos.sql"),
    include_str!("../../migrations/sqlite/005_sos_feedback.sql"),
];

/// Codes are kept this long after issue (longer than any rate-limit window).
const CODE_RETENTION_SECS: i64 = 24 * 3600;

/// Most chunk appends committed in one transaction.
const MAX_GROUP_COMMIT: usize = 256;

/// The SQLite store.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    appends: mpsc::Sender<Append>,
}

/// A chunk waiting for the group-commit thread.
struct Append {
    doc: DocumentId,
    kind: ChunkKind,
    bytes: Vec<u8>,
    done: tokio::sync::oneshot::Sender<StoreResult<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating its directory, and
    /// applies pending migrations. A database newer than this code is refused.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> StoreResult<Connection> {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            let mut conn = Connection::open(&path)?;
            configure(&conn)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let conn = Arc::new(Mutex::new(conn));
        let (appends, queue) = mpsc::channel();
        let committer = conn.clone();
        // Ends when the store (the only sender) is dropped.
        std::thread::Builder::new()
            .name("sotong-sqlite-commit".into())
            .spawn(move || group_commit(&committer, &queue))?;
        Ok(Self { conn, appends })
    }

    /// The highest schema version this code knows.
    pub fn supported_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// The connection's `PRAGMA synchronous` (2 is FULL), for tests and diagnostics.
    pub async fn synchronous(&self) -> StoreResult<i64> {
        self.call(|conn| Ok(conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            .await
    }

    pub(super) async fn call<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "could not switch to WAL (journal_mode is {mode})"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    Ok(())
}

fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic mid-call rolled its transaction back when the Transaction dropped, so the
    // connection is still usable.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The group-commit loop: waits for an append, takes every other one already queued, and
/// commits them together. If the batch fails, each append is retried alone, so that one bad
/// chunk fails only its own caller.
fn group_commit(conn: &Mutex<Connection>, queue: &mpsc::Receiver<Append>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let together = {
            let mut conn = lock(conn);
            insert_batch(&mut conn, &batch)
        };
        if together.is_ok() {
            for append in batch {
                let _ = append.done.send(Ok(()));
            }
            continue;
        }
        for append in batch {
            let alone = insert_chunk(
                &lock(conn),
                &append.doc,
                append.kind,
                &sha256(&append.bytes),
                &append.bytes,
            );
            let _ = append.done.send(alone);
        }
    }
}

fn insert_batch(conn: &mut Connection, batch: &[Append]) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for a in batch {
        insert_chunk(&tx, &a.doc, a.kind, &sha256(&a.bytes), &a.bytes)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let supported = MIGRATIONS.len() as i64;
    // IMMEDIATE: take the write lock before reading the version, so that two processes
    // opening the same file cannot both apply a migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn meta_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Vec<u8>, i64, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn meta_from_parts(parts: (Vec<u8>, i64, String, i64)) -> StoreResult<DocumentMeta> {
    let (id, owner, kind, created_at) = parts;
    Ok(DocumentMeta {
        id: doc_id_from_slice(&id)?,
        owner,
        kind,
        created_at,
    })
}

/// Inserts a chunk; a no-op if the document already has it.
fn insert_chunk(
    conn: &rusqlite::Connection,
    doc: &DocumentId,
    kind: ChunkKind,
    hash: &[u8; 32],
    bytes: &[u8],
) -> StoreResult<()> {
    // Cached: the sync path appends a chunk per accepted edit, and parsing the statement
    // each time showed in its profile.
    conn.prepare_cached(
        "INSERT INTO chunks (doc_id, hash, kind, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (doc_id, hash) DO NOTHING",
    )?
    .execute(params![
        doc.as_bytes().as_slice(),
        hash.as_slice(),
        kind.as_str(),
        bytes
    ])?;
    Ok(())
}

/// Count of rows in the window and the oldest `created_at` among them.
fn window_count(
    tx: &rusqlite::Transaction<'_>,
    column: &str,
    key: &[u8; 32],
    since: i64,
) -> StoreResult<(i64, Option<i64>)> {
    let sql = format!(
        "SELECT COUNT(*), MIN(created_at) FROM auth_codes WHERE {column} = ?1 AND created_at > ?2"
    );
    Ok(tx.query_row(&sql, params![key.as_slice(), since], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?)
}

fn retry_after(oldest: Option<i64>, window: i64, now: i64) -> i64 {
    oldest.map_or(window, |t| t + window - now).max(1)
}

#[async_trait]
impl Store for SqliteStore {
    /// The embedded store serves one server process; scale-out uses PostgreSQL.
    fn is_shared(&self) -> bool {
        false
    }

    async fn ping(&self) -> StoreResult<()> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(())
    }

    async fn document(&self, id: &DocumentId) -> StoreResult<Option<DocumentMeta>> {
        let id = *id;
        self.call(move |conn| {
            conn.query_row(
                "SELECT id, owner, kind, created_at FROM documents WHERE id = ?1",
                [id.as_bytes().as_slice()],
                meta_from_row,
            )
            .optional()?
            .map(meta_from_parts)
            .transpose()
        })
        .await
    }

    async fn create_document(&self, meta: &DocumentMeta) -> StoreResult<bool> {
        let meta = meta.clone();
        self.call(move |conn| {
            let n = conn.execute(
                "INSERT INTO documents (id, owner, kind, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![
                    meta.id.as_bytes().as_slice(),
                    meta.owner,
                    meta.kind,
                    meta.created_at
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn documents_of(&self, owner: AccountId) -> StoreResult<Vec<DocumentMeta>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, owner, kind, created_at FROM documents WHERE owner = ?1
                 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([owner], meta_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(meta_from_parts(row?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn append_chunk(
        &self,
        doc: &DocumentId,
        kind: ChunkKind,
        bytes: &[u8],
    ) -> StoreResult<Option<super::Appended>> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Task("the SQLite commit thread stopped".into());
        self.appends
            .send(Append {
                doc: *doc,
                kind,
                bytes: bytes.to_vec(),
                done,
            })
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())??;
        // Single-instance: nobody else needs to know where it landed.
        Ok(None)
    }

    async fn chunks_after(&self, doc: &DocumentId, after: i64) -> StoreResult<Vec<StoredChunk>> {
        let doc = *doc;
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, hash, kind, bytes FROM chunks WHERE doc_id = ?1 AND seq > ?2
                 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![doc.as_bytes().as_slice(), after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, hash, kind, bytes) = row?;
                out.push(StoredChunk {
                    seq,
                    hash: hash_from_slice(&hash)?,
                    kind: ChunkKind::parse(&kind)?,
                    bytes,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn replace_chunks(
        &self,
        doc: &DocumentId,
        snapshot: &[u8],
        replaced: &[[u8; 32]],
    ) -> StoreResult<()> {
        let doc = *doc;
        let snapshot = snapshot.to_vec();
        let replaced = replaced.to_vec();
        self.call(move |conn| {
            let snapshot_hash = sha256(&snapshot);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_chunk(&tx, &doc, ChunkKind::Snapshot, &snapshot_hash, &snapshot)?;
            {
                let mut del =
                    tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1 AND hash = ?2")?;
                // The new snapshot is never deleted, even if a caller lists its hash.
                for hash in replaced.iter().filter(|h| **h != snapshot_hash) {
                    del.execute(params![doc.as_bytes().as_slice(), hash.as_slice()])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn issue_code(&self, code: &NewCode, limits: &CodeLimits) -> StoreResult<CodeIssue> {
        let code = code.clone();
        let limits = *limits;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = code.created_at;
            let since = now - limits.window_secs;
            tx.execute(
                "DELETE FROM auth_codes WHERE created_at < ?1",
                [now - CODE_RETENTION_SECS.max(limits.window_secs)],
            )?;
            let (n, oldest) = window_count(&tx, "phone_key", &code.phone_key, since)?;
            if n >= i64::from(limits.per_phone) {
                return Ok(CodeIssue::PhoneLimited {
                    retry_after_secs: retry_after(oldest, limits.window_secs, now),
                });
            }
            let (n, oldest) = window_count(&tx, "client_key", &code.client_key, since)?;
            if n >= i64::from(limits.per_client) {
                return Ok(CodeIssue::ClientLimited {
                    retry_after_secs: retry_after(oldest, limits.window_secs, now),
                });
            }
            tx.execute(
                "INSERT INTO auth_codes (phone_key, client_key, code_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    code.phone_key.as_slice(),
                    code.client_key.as_slice(),
                    code.code_hash.as_slice(),
                    code.created_at,
                    code.expires_at
                ],
            )?;
            tx.commit()?;
            Ok(CodeIssue::Issued)
        })
        .await
    }

    async fn check_code(
        &self,
        phone_key: &[u8; 32],
        code_hash: &[u8; 32],
        max_attempts: u32,
        now: i64,
    ) -> StoreResult<CodeCheck> {
        let phone_key = *phone_key;
        let code_hash = *code_hash;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let newest = tx
                .query_row(
                    "SELECT id, code_hash, expires_at, attempts, used FROM auth_codes
                     WHERE phone_key = ?1 ORDER BY id DESC LIMIT 1",
                    [phone_key.as_slice()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, bool>(4)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, stored_hash, expires_at, attempts, used)) = newest else {
                return Ok(CodeCheck::Dead);
            };
            let max = i64::from(max_attempts);
            if used || expires_at <= now || attempts >= max {
                return Ok(CodeCheck::Dead);
            }
            let outcome = if super::constant_time_eq(&stored_hash, &code_hash) {
                tx.execute("UPDATE auth_codes SET used = 1 WHERE id = ?1", [id])?;
                CodeCheck::Accepted
            } else {
                tx.execute(
                    "UPDATE auth_codes SET attempts = attempts + 1 WHERE id = ?1",
                    [id],
                )?;
                CodeCheck::Rejected {
                    attempts_left: u32::try_from(max - attempts - 1).unwrap_or(0),
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn register_device(&self, device: &NewDevice<'_>) -> StoreResult<DeviceRef> {
        let phone_key = device.phone_key;
        let name = device.name.to_owned();
        let token_hash = device.token_hash;
        let (expires_at, now) = (device.token_expires_at, device.now);
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO accounts (phone_key, created_at) VALUES (?1, ?2)
                 ON CONFLICT (phone_key) DO NOTHING",
                params![phone_key.as_slice(), now],
            )?;
            let account_id: i64 = tx.query_row(
                "SELECT id FROM accounts WHERE phone_key = ?1",
                [phone_key.as_slice()],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO devices (account_id, name, token_hash, token_expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account_id, name, token_hash.as_slice(), expires_at, now],
            )?;
            let device_id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(DeviceRef {
                account_id,
                device_id,
            })
        })
        .await
    }

    async fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>> {
        let token_hash = *token_hash;
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT account_id, id, token_expires_at FROM devices WHERE token_hash = ?1",
                    [token_hash.as_slice()],
                    |r| {
                        Ok(TokenOwner {
                            device: DeviceRef {
                                account_id: r.get(0)?,
                                device_id: r.get(1)?,
                            },
                            expires_at: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn create_ticket(
        &self,
        ticket_hash: &[u8; 32],
        device: DeviceRef,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let ticket_hash = *ticket_hash;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM tickets WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "INSERT INTO tickets (ticket_hash, account_id, device_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    ticket_hash.as_slice(),
                    device.account_id,
                    device.device_id,
                    expires_at
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn redeem_ticket(
        &self,
        ticket_hash: &[u8; 32],
        now: i64,
    ) -> StoreResult<Option<DeviceRef>> {
        let ticket_hash = *ticket_hash;
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "DELETE FROM tickets WHERE ticket_hash = ?1
                     RETURNING account_id, device_id, expires_at",
                    [ticket_hash.as_slice()],
                    |r| {
                        Ok((
                            DeviceRef {
                                account_id: r.get(0)?,
                                device_id: r.get(1)?,
                            },
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            Ok(row.and_then(|(device, expires_at)| (expires_at > now).then_some(device)))
        })
        .await
    }

    async fn account_usage(&self, owner: AccountId) -> StoreResult<super::AccountUsage> {
        self.call(move |conn| {
            let (documents, bytes): (i64, i64) = conn.query_row(
                "SELECT (SELECT COUNT(*) FROM documents WHERE owner = ?1),
                        (SELECT COALESCE(SUM(LENGTH(c.bytes)), 0) FROM chunks c
                           JOIN documents d ON d.id = c.doc_id WHERE d.owner = ?1)",
                [owner],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(super::AccountUsage {
                documents: u64::try_from(documents).unwrap_or(0),
                bytes: u64::try_from(bytes).unwrap_or(0),
            })
        })
        .await
    }
}
