//! The phone's one SQLite file: account, device identity, drafts as Automerge documents and
//! per-peer sync state.
//!
//! [`Store::open`] is the only place the database is opened: it sets the pragmas, applies the
//! numbered migrations in `core/migrations/` in one `BEGIN IMMEDIATE` transaction and refuses
//! a database written by a newer version of the app. Writes go through one connection behind
//! a mutex; reads use a small pool of read-only connections, which WAL lets run alongside the
//! writer.

mod account;
mod documents;
mod error;
mod schema;
pub(crate) mod sos;
mod sync_state;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use account::AccountRow;
pub use documents::{DocumentRow, LoadedDoc};
pub use error::StoreError;
pub use sos::{IncidentRow, SmsChannel, SosPins, StoredFix, StoredMessage};

/// How long a connection waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Size the WAL file is truncated back to after a checkpoint, in bytes.
const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 2;

/// The phone's database. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Fails with [`StoreError::NewerSchema`] if the file was written by a newer version of the
    /// app; such a file is left exactly as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse a newer database before anything below (the WAL switch) writes to the file.
        schema::check_not_newer(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "foreign_keys", true)?;

        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        schema::migrate(&tx)?;
        account::ensure_device(&tx, now_millis())?;
        tx.commit()?;

        Ok(Store {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Copies the write-ahead log into the database file and truncates it. Call now and then
    /// (e.g. when the app goes to the background); readers still running keep it from
    /// finishing, which is harmless.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let conn = self.writer()?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::debug!("wal checkpoint could not complete; readers still active");
        }
        Ok(())
    }

    /// The schema version this code writes.
    pub fn schema_version() -> i64 {
        schema::LATEST_VERSION
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.writer.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` on a read-only connection from the pool.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().map_err(|_| StoreError::Poisoned)?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut idle = self.readers.lock().map_err(|_| StoreError::Poisoned)?;
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Let SQLite refresh its planner statistics, as it recommends on close.
        if let Ok(conn) = self.writer.get_mut() {
            if let Err(e) = conn.execute_batch("PRAGMA optimize;") {
                tracing::debug!(error = %e, "PRAGMA optimize on close failed");
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> i64 {
    crate::clock::unix_millis_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sets_pragmas_and_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let w = store.writer().unwrap();
        let mode: String = w
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = w
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = w
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let v: i64 = w
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, Store::schema_version());
        drop(w);
        store.checkpoint().unwrap();
    }

    #[test]
    fn reopen_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        assert!(store.list_documents().unwrap().is_empty());
    }
}
