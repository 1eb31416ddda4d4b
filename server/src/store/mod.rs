//! The server's storage: one `Store` trait, implemented for SQLite (the embedded default,
//! `./sotong-data`) and PostgreSQL (`--database-url`), both run through the same test suite.
//!
//! Document chunks are append-only and content-addressed (SHA-256 of the bytes), so any number
//! of server instances on one PostgreSQL can serve the same document: an instance catches up by
//! reading the chunks with a sequence number above the last one it has seen.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sotong_core::DocumentId;

use crate::config::Config;

pub mod notice;
pub mod postgres;
pub mod sos;
mod sos_feedback_postgres;
pub(crate) mod sos_postgres;
mod sos_sequence;
mod sos_sqlite;
pub mod sqlite;
pub mod staff;
mod staff_postgres;
mod staff_sqlite;

pub use postgres::{PgOptions, PgStore};
pub use sos::{
    Acked, DispatchAction, DispatchPhase, FeedbackPut, FeedbackRow, MonthRange, RoutedBeacon,
    SmsKeyRow, SosEvent, SosIncident, SosIngest, SosMessage, SosStore, StoredBeacon, SummaryRow,
    Via, NO_REGION, SUMMARY_UTC_OFFSET_SECS,
};
pub use sqlite::SqliteStore;
pub use staff::{
    LockoutPolicy, LoginFailure, NewStaffMember, NewStaffSession, StaffCredentials, StaffStore,
};

/// An account's id.
pub type AccountId = i64;
/// A registered device's id.
pub type DeviceId = i64;

/// What the server knows of a document besides its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    /// The document.
    pub id: DocumentId,
    /// The account whose devices may write it (and, for now, the only one that may read it).
    pub owner: AccountId,
    /// Its schema kind (`type` field), e.g. "proposal".
    pub kind: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Whether a chunk is a whole saved document or an incremental batch of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Output of `Automerge::save()`.
    Snapshot,
    /// Output of `save_after()` / raw change bytes.
    Incremental,
}

/// One stored chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// Store-wide increasing sequence number (assigned on insert).
    pub seq: i64,
    /// SHA-256 of `bytes`.
    pub hash: [u8; 32],
    /// Snapshot or incremental.
    pub kind: ChunkKind,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Storage errors. Messages never hold personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool (the cause says why: refused,
    /// TLS handshake, authentication…).
    #[error("postgres pool: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The TLS settings for PostgreSQL are unusable (CA file unreadable or empty).
    #[error("postgres TLS: {0}")]
    Tls(String),
    /// A stored value does not decode.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The blocking task running a SQLite call died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// Filesystem.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The database was written by a newer server; it is refused, never rewritten.
    #[error("database schema version {found} is newer than this server supports ({supported}); upgrade the server")]
    TooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this code knows.
        supported: i64,
    },
}

/// An error and its causes, `outer: inner: innermost`: a TLS failure's reason (unknown
/// issuer, wrong name) sits several causes deep.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The server's storage: citizens' documents, codes and devices here, the officials' side
/// in the supertrait [`StaffStore`], SOS incidents in [`SosStore`].
#[async_trait]
pub trait Store: StaffStore + SosStore + Send + Sync + 'static {
    /// Whether other server instances may write to this store concurrently. When they may,
    /// a loaded document is caught up with the store before each sync message.
    fn is_shared(&self) -> bool {
        true
    }

    /// A cheap round trip to the database, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    // ---- documents -------------------------------------------------------------------
    /// The document's metadata, if it exists.
    async fn document(&self, id: &DocumentId) -> StoreResult<Option<DocumentMeta>>;
    /// Creates the document's metadata. Returns false (and changes nothing) if a document
    /// with that id already exists, whoever owns it.
    async fn create_document(&self, meta: &DocumentMeta) -> StoreResult<bool>;
    /// Documents owned by `owner`, oldest first.
    async fn documents_of(&self, owner: AccountId) -> StoreResult<Vec<DocumentMeta>>;
    /// Appends a chunk; storing the same (document, hash) twice is a no-op. A shared store
    /// returns where the chunk landed (`None` if it was already stored); once
    /// [`Store::announce_chunks`] was called it also tells the other instances, atomically
    /// with the commit.
    async fn append_chunk(
        &self,
        doc: &DocumentId,
        kind: ChunkKind,
        bytes: &[u8],
    ) -> StoreResult<Option<Appended>>;
    /// From now on, every [`Store::append_chunk`] tells the other instances listening on this
    /// store about the new chunk, in the same transaction, as sent by `instance`. Returns
    /// false if this store has no other instances (SQLite).
    fn announce_chunks(&self, _instance: &str) -> bool {
        false
    }
    /// Chunks of `doc` with `seq > after`, in `seq` order.
    async fn chunks_after(&self, doc: &DocumentId, after: i64) -> StoreResult<Vec<StoredChunk>>;
    /// Compaction: stores `snapshot` and deletes exactly the chunks named in `replaced`, in
    /// one transaction. Chunks written meanwhile by another instance are kept.
    async fn replace_chunks(
        &self,
        doc: &DocumentId,
        snapshot: &[u8],
        replaced: &[[u8; 32]],
    ) -> StoreResult<()>;

    // ---- one-time codes ----------------------------------------------------------------
    /// Stores a new one-time code unless a rate limit is reached: at most
    /// `limits.per_phone` codes for `code.phone_key` and `limits.per_client` codes for
    /// `code.client_key` issued in the last `limits.window_secs`. Counting and inserting is
    /// atomic across instances. The newest code of a number supersedes older ones.
    async fn issue_code(&self, code: &NewCode, limits: &CodeLimits) -> StoreResult<CodeIssue>;
    /// Checks `code_hash` against the newest code of `phone_key`, atomically: a match uses
    /// the code up; a mismatch counts an attempt. A code that is used, expired or has had
    /// `max_attempts` wrong attempts is dead.
    async fn check_code(
        &self,
        phone_key: &[u8; 32],
        code_hash: &[u8; 32],
        max_attempts: u32,
        now: i64,
    ) -> StoreResult<CodeCheck>;

    // ---- accounts, devices, tokens, tickets -------------------------------------------
    /// Registers a device on the account keyed by `phone_key` (created if new) and gives it
    /// the token whose SHA-256 is `token_hash`.
    async fn register_device(&self, device: &NewDevice<'_>) -> StoreResult<DeviceRef>;
    /// The device holding the token whose SHA-256 is `token_hash`, with the token's expiry
    /// (the caller decides what expired means).
    async fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>>;
    /// Stores a single-use ticket (by its SHA-256) for `device`, valid until `expires_at`.
    /// Also forgets tickets that expired before `now`.
    async fn create_ticket(
        &self,
        ticket_hash: &[u8; 32],
        device: DeviceRef,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    /// Consumes the ticket atomically: the first call before its expiry gets the device,
    /// every other call gets `None`.
    async fn redeem_ticket(
        &self,
        ticket_hash: &[u8; 32],
        now: i64,
    ) -> StoreResult<Option<DeviceRef>>;

    // ---- quotas ---------------------------------------------------------------------------
    /// What `owner` stores: its documents and the bytes of their chunks (for per-account limits).
    async fn account_usage(&self, owner: AccountId) -> StoreResult<AccountUsage>;
}

/// What one account stores, as counted against its limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountUsage {
    /// Documents it owns.
    pub documents: u64,
    /// Bytes of their stored chunks.
    pub bytes: u64,
}

/// A one-time code to store. Every key is a peppered SHA-256; nothing here names a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    /// Peppered hash of the normalized phone number.
    pub phone_key: [u8; 32],
    /// Peppered hash of the requesting client's address.
    pub client_key: [u8; 32],
    /// Hash of the code, peppered with the number.
    pub code_hash: [u8; 32],
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the code is dead from then on.
    pub expires_at: i64,
}

/// Rate limits on issuing codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLimits {
    /// Codes per phone number per window.
    pub per_phone: u32,
    /// Codes per client address per window.
    pub per_client: u32,
    /// The window, in seconds.
    pub window_secs: i64,
}

/// Outcome of [`Store::issue_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeIssue {
    /// Stored.
    Issued,
    /// Too many codes for this number; the next is allowed in `retry_after_secs`.
    PhoneLimited {
        /// Seconds until a code may be issued again (at least 1).
        retry_after_secs: i64,
    },
    /// Too many codes for this client address.
    ClientLimited {
        /// Seconds until a code may be issued again (at least 1).
        retry_after_secs: i64,
    },
}

/// Outcome of [`Store::check_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code; it is now used up.
    Accepted,
    /// Wrong code; the attempt was counted.
    Rejected {
        /// Attempts left before the code dies.
        attempts_left: u32,
    },
    /// No live code: none issued, expired, used, or out of attempts.
    Dead,
}

/// A device to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice<'a> {
    /// Peppered hash of the normalized phone number: the account's key.
    pub phone_key: [u8; 32],
    /// Shown to the user in their device list.
    pub name: &'a str,
    /// SHA-256 of the bearer token.
    pub token_hash: [u8; 32],
    /// Unix seconds.
    pub token_expires_at: i64,
    /// Unix seconds.
    pub now: i64,
}

/// Where [`Store::append_chunk`] stored a chunk in a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The chunk's sequence number.
    pub seq: i64,
    /// The document's highest sequence number before it (0 if none): an instance that has
    /// read up to `prev` has every chunk before this one.
    pub prev: i64,
}

/// A device and its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRef {
    /// The account.
    pub account_id: AccountId,
    /// The device.
    pub device_id: DeviceId,
}

/// Who holds a token, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenOwner {
    /// The device.
    pub device: DeviceRef,
    /// Unix seconds.
    pub expires_at: i64,
}

impl ChunkKind {
    /// The name stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Snapshot => "snapshot",
            ChunkKind::Incremental => "incremental",
        }
    }

    pub(crate) fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "snapshot" => Ok(ChunkKind::Snapshot),
            "incremental" => Ok(ChunkKind::Incremental),
            other => Err(StoreError::Corrupt(format!("unknown chunk kind {other:?}"))),
        }
    }
}

pub(crate) fn hash_from_slice(bytes: &[u8]) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", bytes.len())))
}

pub(crate) fn doc_id_from_slice(bytes: &[u8]) -> StoreResult<DocumentId> {
    DocumentId::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Opens the store `config` names: PostgreSQL when `database_url` is set (TLS per its
/// `sslmode`, trusting `database_ca_file` if set), otherwise the
/// SQLite file `<data_dir>/sotong.db` (the directory is created if missing). Migrations are
/// applied; a database newer than this code is refused.
pub async fn open_store(config: &Config) -> StoreResult<Arc<dyn Store>> {
    match &config.database_url {
        Some(url) => {
            let options = PgOptions {
                ca_file: config.database_ca_file.clone(),
                ..PgOptions::default()
            };
            Ok(Arc::new(PgStore::connect_with(url, &options).await?))
        }
        None => Ok(Arc::new(
            SqliteStore::open(&sqlite_path(&config.data_dir)).await?,
        )),
    }
}

/// Where the SQLite store of a data directory lives.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("sotong.db")
}

/// Compares two secrets' hashes without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
