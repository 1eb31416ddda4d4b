//! The scale-out store: PostgreSQL through tokio-postgres, shared by any number of server
//! instances, with a `deadpool-postgres` pool; every multi-statement operation is one
//! transaction.
//!
//! TLS is rustls: `sslmode=require` (or libpq's `verify-full` / `verify-ca`) in the URL
//! encrypts and verifies the server's certificate and name against the Mozilla roots, or
//! against the CA file given instead. `sslmode=disable` and `prefer` (the default) connect in
//! plain text: unverified opportunistic TLS protects nothing against an active attacker, so it
//! is not offered; a plain connection to a host that is not local is logged as a warning.
//!
//! Chunk sequence numbers come from a BIGSERIAL, which hands out numbers in call order but
//! commits in any order: a reader could see seq 11 before seq 10 is committed and then skip
//! 10 for good. Inserts into one document therefore take a transaction-scoped advisory lock
//! keyed by the document, so that within a document seq order is commit order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sotong_core::hash::sha256;
use sotong_core::DocumentId;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    doc_id_from_slice, hash_from_slice, notice, AccountId, Appended, ChunkKind, CodeCheck,
    CodeIssue, CodeLimits, DeviceRef, DocumentMeta, NewCode, NewDevice, Store, StoreError,
    StoreResult, StoredChunk, TokenOwner,
};

/// Migrations, in order: migration `i` (0-based) takes the database to version i + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/001_initial.sql"),
    include_str!("../../migrations/postgres/002_drop_dev_codes.sql"),
    include_str!("../../migrations/postgres/003_staff.sql"),
    include_str!("../../migrations/postgres/004_sos.sql"),
    include_str!("../../migrations/postgres/005_sos_feedback.sql"),
    include_str!("../../migrations/postgres/006_sos_event_order.sql"),
];

/// Advisory lock keys (arbitrary constants, "SOT" + a number).
const MIGRATION_LOCK: i64 = 0x534f_5400;
const CODE_LOCK: i64 = 0x534f_5401;
/// First half of the two-key advisory lock taken per document; the second is from its id.
const CHUNK_LOCK_SPACE: i32 = 0x534f_5402;

/// Codes are kept this long after issue (longer than any rate-limit window).
const CODE_RETENTION_SECS: i64 = 24 * 3600;

/// Longest wait for a new connection (TCP, TLS, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a free connection when all are lent.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections one instance opens at most, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;

/// How to reach PostgreSQL besides the URL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// PEM file of the certificate authorities to trust for `sslmode=require`, instead of
    /// the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Size of the connection pool.
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// This instance's name in chunk notifications, once the feed is on.
    announce_as: std::sync::OnceLock<String>,
    /// Numbers committed SOS events (`sos_sequence`).
    pub(super) sos_sequencer: super::sos_sequence::SosSequencer,
}

/// Parses a connection URL (or key=value string). libpq's `verify-full` and `verify-ca`
/// become `require`, which always verifies the certificate and the host name; `prefer`
/// (the default) becomes `disable` (see the module documentation).
pub fn parse_url(url: &str) -> StoreResult<tokio_postgres::Config> {
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut config: tokio_postgres::Config = url.parse().map_err(StoreError::Postgres)?;
    if config.get_ssl_mode() != SslMode::Require {
        config.ssl_mode(SslMode::Disable);
    }
    Ok(config)
}

/// The rustls connector: the CA file's certificates if given, else the Mozilla roots.
pub fn tls_connector(ca_file: Option<&Path>) -> StoreResult<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            use rustls_pki_types::CertificateDer;
            let bad = |e: String| StoreError::Tls(format!("CA file {}: {e}", path.display()));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // An explicit provider: the process may not have installed a default one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

impl PgStore {
    /// Connects to `url` with the default options and applies pending migrations (serialized
    /// across instances by an advisory lock). A database newer than this code is refused.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &PgOptions::default()).await
    }

    /// [`PgStore::connect`] with `options`.
    pub async fn connect_with(url: &str, options: &PgOptions) -> StoreResult<Self> {
        let pg_config = parse_url(url)?;
        if pg_config.get_ssl_mode() != SslMode::Require
            && !pg_config.get_hosts().iter().all(is_local)
        {
            tracing::warn!(
                "the PostgreSQL connection is not encrypted; add sslmode=require to the URL"
            );
        }
        let tls = tls_connector(options.ca_file.as_deref())?;
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Bounded waits: a lost database answers callers with an error instead of hanging
        // them (and /readyz) until TCP gives up.
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = Self {
            pool,
            pg_config,
            tls,
            announce_as: std::sync::OnceLock::new(),
            sos_sequencer: super::sos_sequence::SosSequencer::default(),
        };
        store.migrate().await?;
        // Events an instance committed but did not number before it stopped.
        store.sos_publish().await?;
        Ok(store)
    }

    /// The parsed connection settings, for a connection outside the pool (`LISTEN`).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg_config
    }

    /// The TLS connector the pool uses, for a connection outside the pool (`LISTEN`).
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Connections currently open in the pool (idle or lent), and the pool's size.
    pub fn pool_status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.max_size)
    }

    pub(super) async fn conn(&self) -> StoreResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// The highest schema version this code knows.
    pub fn supported_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    async fn migrate(&self) -> StoreResult<()> {
        let supported = Self::supported_version();
        let mut conn = self.conn().await?;
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
/// an instance catching up by `seq` never skips a chunk. Returns where it landed, `None` if
/// the document already had it. Statements are prepared once per pooled connection.
async fn insert_chunk_locked(
    tx: &deadpool_postgres::Transaction<'_>,
    doc: &DocumentId,
    kind: ChunkKind,
    hash: &[u8; 32],
    bytes: &[u8],
) -> StoreResult<Option<Appended>> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, $2)")
        .await?;
    tx.execute(&lock, &[&CHUNK_LOCK_SPACE, &chunk_lock_key(doc)])
        .await?;
    // Under the lock every earlier chunk of the document is committed, and this statement's
    // snapshot (taken after the lock) sees them all, so `prev` is exact.
    let insert = tx
        .prepare_cached(
            "INSERT INTO chunks (doc_id, hash, kind, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (doc_id, hash) DO NOTHING
             RETURNING seq, (SELECT COALESCE(MAX(seq), 0) FROM chunks WHERE doc_id = $1)",
        )
        .await?;
    let row = tx
        .query_opt(
            &insert,
            &[
                &doc.as_bytes().as_slice(),
                &hash.as_slice(),
                &kind.as_str(),
                &bytes,
            ],
        )
        .await?;
    row.map(|r| {
        Ok(Appended {
            seq: r.try_get(0)?,
            prev: r.try_get(1)?,
        })
    })
    .transpose()
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
    async fn ping(&self) -> StoreResult<()> {
        self.conn().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn document(&self, id: &DocumentId) -> StoreResult<Option<DocumentMeta>> {
        let conn = self.conn().await?;
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
        let conn = self.conn().await?;
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
        let conn = self.conn().await?;
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
    ) -> StoreResult<Option<Appended>> {
        let hash = sha256(bytes);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let appended = insert_chunk_locked(&tx, doc, kind, &hash, bytes).await?;
        if let (Some(at), Some(from)) = (appended, self.announce_as.get()) {
            // Delivered when (and only if) the transaction commits: no round trip after it.
            let payload = notice::encode(from, doc, at.prev, at.seq, bytes);
            let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            tx.execute(&notify, &[&notice::CHANNEL, &payload]).await?;
        }
        tx.commit().await?;
        Ok(appended)
    }

    fn announce_chunks(&self, instance: &str) -> bool {
        let _ = self.announce_as.set(instance.to_owned());
        true
    }

    async fn chunks_after(&self, doc: &DocumentId, after: i64) -> StoreResult<Vec<StoredChunk>> {
        let conn = self.conn().await?;
        let select = conn
            .prepare_cached(
                "SELECT seq, hash, kind, bytes FROM chunks WHERE doc_id = $1 AND seq > $2
                 ORDER BY seq",
            )
            .await?;
        let rows = conn
            .query(&select, &[&doc.as_bytes().as_slice(), &after])
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
        let snapshot_hash = sha256(snapshot);
        // The new snapshot is never deleted, even if a caller lists its hash.
        let doomed: Vec<&[u8]> = replaced
            .iter()
            .filter(|h| **h != snapshot_hash)
            .map(|h| h.as_slice())
            .collect();
        let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
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
        let conn = self.conn().await?;
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

    async fn account_usage(&self, owner: AccountId) -> StoreResult<super::AccountUsage> {
        let conn = self.conn().await?;
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
