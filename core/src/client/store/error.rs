//! What can go wrong in the store. Messages carry no personal data: no draft text, no token,
//! no server address.

/// An error from the phone's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O, a full disk, a lock held too long, a broken file…).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer version of the app; it is left untouched.
    #[error(
        "database schema version {found} is newer than this app supports ({supported}); \
         update the app"
    )]
    NewerSchema {
        /// The file's `user_version`.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// Stored data could not be decoded (an Automerge chunk, a document id).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A thread panicked while holding a database connection.
    #[error("database connection unusable after a panic")]
    Poisoned,
}
