//! The scale-out store: PostgreSQL through tokio-postgres, shared by any number of server
//! instances. A small pool of clients; every multi-statement operation is one transaction.
//!
//! Chunk sequence numbers come from a BIGSERIAL, which hands out numbers in call order but
//! commits in any order: a reader could see seq 11 before seq 10 is committed and then skip
//! 10 for good. Inserts into one document therefore take a transaction-scoped advisory lock
//! keyed by the document, so that within a document seq order is commit order.

use std::sync::Mutex;

use async_trait::async_trait;
use sotong_core::DocumentId;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls, Row};

use super::{
    chunk_hash, doc_id_from_slice, hash_from_slice, AccountId, ChunkKind, CodeCheck, CodeIssue,
    CodeLimits, DeviceRef, DocumentMeta, NewCode, NewDevice, Store, StoreError, StoreResult,
    StoredChunk, TokenOwner,
};

/// Migrations, in order: migration `i` (0-based) takes the database to version i + 1.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/postgres/001_initial.sql")];

/// Advisory lock keys (arbitrary constants, "SOT" + a number).
const MIGRATION_LOCK: i64 = 0x534f_5400;
const CODE_LOCK: i64 = 0x534f_5401;
/// First half of the two-key advisory lock taken per document; the second is from its id.
const CHUNK_LOCK_SPACE: i32 = 0x534f_5402;

/// Codes are kept this long after issue (longer than any rate-limit window).
const CODE_RETENTION_SECS: i64 = 24 * 3600;

/// Most connections one instance opens.
const MAX_CONNECTIONS: usize = 8;

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
}

struct Pool {
    url: String,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

/// A client on loan from the pool; goes back on drop unless its connection died.
struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Only `Drop` takes the client out.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        // A transaction dropped unfinished has queued its ROLLBACK on this client, ahead of
        // anything the next borrower sends, so the client can be reused.
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                self.pool.lock_idle().push(client);
            }
        }
    }
}

impl Pool {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn get(&self) -> StoreResult<Conn<'_>> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let reused = loop {
            let Some(client) = self.lock_idle().pop() else {
                break None;
            };
            if !client.is_closed() {
                break Some(client);
            }
        };
        let client = match reused {
            Some(client) => client,
            None => connect(&self.url).await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }
}

async fn connect(url: &str) -> StoreResult<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects to `url` and applies pending migrations (serialized across instances by an
    /// advisory lock). A database newer than this code is refused.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let store = Self {
            pool: Pool {
                url: url.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_CONNECTIONS),
            },
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The highest schema version this code knows.
    pub fn supported_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    async fn migrate(&self) -> StoreResult<()> {
        let supported = Self::supported_version();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let found: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn chunk_lock_key(doc: &DocumentId) -> i32 {
    let b = doc.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn meta_from_row(row: &Row) -> StoreResult<DocumentMeta> {
    Ok(DocumentMeta {
        id: doc_id_from_slice(row.try_get::<_, &[u8]>(0)?)?,
        owner: row.try_get(1)?,
        kind: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

/// Inserts a chunk (a no-op if the document already has it) under the document's chunk lock,
/// held until the transaction ends, so that within a document `seq` order is commit order and
/// an instance catching up by `seq` never skips a chunk.
async fn insert_chunk_locked(
    tx: &tokio_postgres::Transaction<'_>,
    doc: &DocumentId,
    kind: ChunkKind,
    hash: &[u8; 32],
    bytes: &[u8],
) -> StoreResult<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&CHUNK_LOCK_SPACE, &chunk_lock_key(doc)],
    )
    .await?;
    tx.execute(
        "INSERT INTO chunks (doc_id, hash, kind, bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (doc_id, hash) DO NOTHING",
        &[
            &doc.as_bytes().as_slice(),
            &hash.as_slice(),
            &kind.as_str(),
            &bytes,
        ],
    )
    .await?;
    Ok(())
}

fn retry_after(oldest: Option<i64>, window: i64, now: i64) -> i64 {
    oldest.map_or(window, |t| t + window - now).max(1)
}

async fn window_count(
    tx: &tokio_postgres::Transaction<'_>,
    column: &str,
    key: &[u8; 32],
    since: i64,
) -> StoreResult<(i64, Option<i64>)> {
    let sql = format!(
        "SELECT COUNT(*), MIN(created_at) FROM auth_codes WHERE {column} = $1 AND created_at > $2"
    );
    let row = tx.query_one(&sql, &[&key.as_slice(), &since]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

#[async_trait]
impl Store for PgStore {
    async fn document(&self, id: &DocumentId) -> StoreResult<Option<DocumentMeta>> {
        let conn = self.pool.get().await?;
        conn.query_opt(
            "SELECT id, owner, kind, created_at FROM documents WHERE id = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await?
        .as_ref()
        .map(meta_from_row)
        .transpose()
    }

    async fn create_document(&self, meta: &DocumentMeta) -> StoreResult<bool> {
        let conn = self.pool.get().await?;
        let n = conn
            .execute(
                "INSERT INTO documents (id, owner, kind, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &meta.id.as_bytes().as_slice(),
                    &meta.owner,
                    &meta.kind,
                    &meta.created_at,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn documents_of(&self, owner: AccountId) -> StoreResult<Vec<DocumentMeta>> {
        let conn = self.pool.get().await?;
        conn.query(
            "SELECT id, owner, kind, created_at FROM documents WHERE owner = $1
             ORDER BY created_at, id",
            &[&owner],
        )
        .await?
        .iter()
        .map(meta_from_row)
        .collect()
    }

    async fn append_chunk(
        &self,
        doc: &DocumentId,
        kind: ChunkKind,
        bytes: &[u8],
    ) -> StoreResult<()> {
        let hash = chunk_hash(bytes);
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        insert_chunk_locked(&tx, doc, kind, &hash, bytes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn chunks_after(&self, doc: &DocumentId, after: i64) -> StoreResult<Vec<StoredChunk>> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT seq, hash, kind, bytes FROM chunks WHERE doc_id = $1 AND seq > $2
                 ORDER BY seq",
                &[&doc.as_bytes().as_slice(), &after],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredChunk {
                    seq: row.try_get(0)?,
                    hash: hash_from_slice(row.try_get::<_, &[u8]>(1)?)?,
                    kind: ChunkKind::parse(row.try_get::<_, &str>(2)?)?,
                    bytes: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn replace_chunks(
        &self,
        doc: &DocumentId,
        snapshot: &[u8],
        replaced: &[[u8; 32]],
    ) -> StoreResult<()> {
        let snapshot_hash = chunk_hash(snapshot);
        // The new snapshot is never deleted, even if a caller lists its hash.
        let doomed: Vec<&[u8]> = replaced
            .iter()
            .filter(|h| **h != snapshot_hash)
            .map(|h| h.as_slice())
            .collect();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        insert_chunk_locked(&tx, doc, ChunkKind::Snapshot, &snapshot_hash, snapshot).await?;
        tx.execute(
            "DELETE FROM chunks WHERE doc_id = $1 AND hash = ANY($2)",
            &[&doc.as_bytes().as_slice(), &doomed],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn issue_code(&self, code: &NewCode, limits: &CodeLimits) -> StoreResult<CodeIssue> {
        let now = code.created_at;
        let since = now - limits.window_secs;
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        // Codes are few; one lock across instances makes count-then-insert atomic.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CODE_LOCK])
            .await?;
        tx.execute(
            "DELETE FROM auth_codes WHERE created_at < $1",
            &[&(now - CODE_RETENTION_SECS.max(limits.window_secs))],
        )
        .await?;
        let (n, oldest) = window_count(&tx, "phone_key", &code.phone_key, since).await?;
        if n >= i64::from(limits.per_phone) {
            return Ok(CodeIssue::PhoneLimited {
                retry_after_secs: retry_after(oldest, limits.window_secs, now),
            });
        }
        let (n, oldest) = window_count(&tx, "client_key", &code.client_key, since).await?;
        if n >= i64::from(limits.per_client) {
            return Ok(CodeIssue::ClientLimited {
                retry_after_secs: retry_after(oldest, limits.window_secs, now),
            });
        }
        tx.execute(
            "INSERT INTO auth_codes (phone_key, client_key, code_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &code.phone_key.as_slice(),
                &code.client_key.as_slice(),
                &code.code_hash.as_slice(),
                &code.created_at,
                &code.expires_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(CodeIssue::Issued)
    }

    async fn check_code(
        &self,
        phone_key: &[u8; 32],
        code_hash: &[u8; 32],
        max_attempts: u32,
        now: i64,
    ) -> StoreResult<CodeCheck> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let newest = tx
            .query_opt(
                "SELECT id, code_hash, expires_at, attempts, used FROM auth_codes
                 WHERE phone_key = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE",
                &[&phone_key.as_slice()],
            )
            .await?;
        let Some(row) = newest else {
            return Ok(CodeCheck::Dead);
        };
        let id: i64 = row.try_get(0)?;
        let stored_hash: &[u8] = row.try_get(1)?;
        let expires_at: i64 = row.try_get(2)?;
        let attempts = i64::from(row.try_get::<_, i32>(3)?);
        let used: bool = row.try_get(4)?;
        let max = i64::from(max_attempts);
        if used || expires_at <= now || attempts >= max {
            return Ok(CodeCheck::Dead);
        }
        let outcome = if super::constant_time_eq(stored_hash, code_hash) {
            tx.execute("UPDATE auth_codes SET used = TRUE WHERE id = $1", &[&id])
                .await?;
            CodeCheck::Accepted
        } else {
            tx.execute(
                "UPDATE auth_codes SET attempts = attempts + 1 WHERE id = $1",
                &[&id],
            )
            .await?;
            CodeCheck::Rejected {
                attempts_left: u32::try_from(max - attempts - 1).unwrap_or(0),
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn register_device(&self, device: &NewDevice<'_>) -> StoreResult<DeviceRef> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        // DO UPDATE (a no-op) rather than DO NOTHING so that RETURNING yields the id of an
        // existing account too, race-free.
        let account_id: i64 = tx
            .query_one(
                "INSERT INTO accounts (phone_key, created_at) VALUES ($1, $2)
                 ON CONFLICT (phone_key) DO UPDATE SET phone_key = EXCLUDED.phone_key
                 RETURNING id",
                &[&device.phone_key.as_slice(), &device.now],
            )
            .await?
            .try_get(0)?;
        let device_id: i64 = tx
            .query_one(
                "INSERT INTO devices (account_id, name, token_hash, token_expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &account_id,
                    &device.name,
                    &device.token_hash.as_slice(),
                    &device.token_expires_at,
                    &device.now,
                ],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(DeviceRef {
            account_id,
            device_id,
        })
    }

    async fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT account_id, id, token_expires_at FROM devices WHERE token_hash = $1",
                &[&token_hash.as_slice()],
            )
            .await?;
        row.map(|row| {
            Ok(TokenOwner {
                device: DeviceRef {
                    account_id: row.try_get(0)?,
                    device_id: row.try_get(1)?,
                },
                expires_at: row.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn create_ticket(
        &self,
        ticket_hash: &[u8; 32],
        device: DeviceRef,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("DELETE FROM tickets WHERE expires_at <= $1", &[&now])
            .await?;
        tx.execute(
            "INSERT INTO tickets (ticket_hash, account_id, device_id, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[
                &ticket_hash.as_slice(),
                &device.account_id,
                &device.device_id,
                &expires_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn redeem_ticket(
        &self,
        ticket_hash: &[u8; 32],
        now: i64,
    ) -> StoreResult<Option<DeviceRef>> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "DELETE FROM tickets WHERE ticket_hash = $1
                 RETURNING account_id, device_id, expires_at",
                &[&ticket_hash.as_slice()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expires_at: i64 = row.try_get(2)?;
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(DeviceRef {
            account_id: row.try_get(0)?,
            device_id: row.try_get(1)?,
        }))
    }

    async fn record_dev_code(&self, phone: &str, code: &str, now: i64) -> StoreResult<()> {
        let conn = self.pool.get().await?;
        conn.execute(
            "INSERT INTO dev_codes (phone, code, created_at) VALUES ($1, $2, $3)",
            &[&phone, &code, &now],
        )
        .await?;
        Ok(())
    }

    async fn latest_dev_code(&self, phone: &str) -> StoreResult<Option<String>> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT code FROM dev_codes WHERE phone = $1 ORDER BY id DESC LIMIT 1",
                &[&phone],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn account_usage(&self, owner: AccountId) -> StoreResult<super::AccountUsage> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_one(
                "SELECT (SELECT COUNT(*) FROM documents WHERE owner = $1),
                        (SELECT COALESCE(SUM(octet_length(c.bytes)), 0)::BIGINT FROM chunks c
                           JOIN documents d ON d.id = c.doc_id WHERE d.owner = $1)",
                &[&owner],
            )
            .await?;
        Ok(super::AccountUsage {
            documents: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
            bytes: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
        })
    }
}
