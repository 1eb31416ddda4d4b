//! Schema migrations: the numbered SQL files in `core/migrations/`, applied in order and
//! recorded in `PRAGMA user_version`. Add a migration by appending a file and a line to
//! [`MIGRATIONS`]; never edit one that has shipped.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, in order; the one at index `i` brings the schema to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/001_initial.sql"),
    include_str!("../../../migrations/002_document_titles.sql"),
    include_str!("../../../migrations/003_document_categories.sql"),
    include_str!("../../../migrations/004_sos.sql"),
    include_str!("../../../migrations/005_sos_feedback.sql"),
];

/// The schema version this code writes.
pub(super) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Fails if the database was written by newer code. Only reads.
pub(super) fn check_not_newer(conn: &Connection) -> Result<i64, StoreError> {
    let found = user_version(conn)?;
    if found > LATEST_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: LATEST_VERSION,
        });
    }
    Ok(found)
}

/// Applies every migration the database lacks. Call inside a `BEGIN IMMEDIATE` transaction,
/// so that the version is read and the migrations applied under one write lock: two processes
/// opening the same old file cannot both upgrade it, and a failed migration leaves it as it was.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // Checked again under the lock: another process may have upgraded the file meanwhile.
    let found = check_not_newer(conn)?;
    let mut version = found;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        if target <= found {
            continue;
        }
        conn.execute_batch(sql)?;
        version = target;
    }
    if version != found {
        conn.pragma_update(None, "user_version", version)?;
        tracing::info!(from = found, to = version, "database schema upgraded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::store::Store;
    use rusqlite::params;

    /// A database frozen at schema version 1, as an app that shipped with only
    /// `001_initial.sql` left it, with a draft, its chunk, a sync state and an account in it.
    fn freeze_v1(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO device (id, peer_id, created_at) VALUES (1, 'peer-v1', 1)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO account VALUES (1, 'https://example.test', 7, 8, 'tok', 99, 5)",
            [],
        )
        .unwrap();
        let doc = crate::schema::proposal::create("Old title", "Old body", "parks").unwrap();
        let bytes = doc.save_after(&[]);
        let hash = sha2::Sha256::digest(&bytes).to_vec();
        conn.execute(
            "INSERT INTO documents (doc_id, kind, created_at, updated_at) VALUES (?1, 'proposal', 10, 20)",
            params![[1u8; 16]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO doc_chunks (doc_id, hash, kind, bytes) VALUES (?1, ?2, 1, ?3)",
            params![[1u8; 16], hash, bytes],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO sync_states (doc_id, peer, state) VALUES (?1, 'server', ?2)",
            params![[1u8; 16], automerge::sync::State::new().encode()],
        )
        .unwrap();
    }

    use sha2::Digest;

    #[test]
    fn upgrades_a_frozen_v1_database_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        freeze_v1(&path);

        let store = Store::open(&path).unwrap();
        let id = crate::DocumentId::from_bytes(&[1u8; 16]).unwrap();

        let v: i64 = store
            .writer()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST_VERSION);
        assert_eq!(store.peer_id().unwrap(), "peer-v1");
        let account = store.account().unwrap().unwrap();
        assert_eq!((account.account_id, account.device_id), (7, 8));

        let rows = store.list_documents().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, id);
        assert_eq!(rows[0].kind, "proposal");
        assert_eq!((rows[0].created_at, rows[0].updated_at), (10, 20));
        assert_eq!(rows[0].title, None, "not cached until the next save");

        let mut loaded = store.load_document(&id).unwrap().unwrap();
        let p = crate::schema::proposal::read(&loaded.doc).unwrap();
        assert_eq!(p.title, "Old title");
        assert!(store.load_sync_state(&id, "server").unwrap().is_some());

        // The new column works for the old row.
        crate::schema::proposal::apply(
            &mut loaded.doc,
            &crate::schema::proposal::ProposalEdit::Replace {
                field: crate::schema::proposal::TextField::Title,
                text: "New title".into(),
            },
        )
        .unwrap();
        store
            .save_document(&id, &loaded.doc, &mut loaded.saved_heads)
            .unwrap();
        assert_eq!(
            store.list_documents().unwrap()[0].title.as_deref(),
            Some("New title")
        );
    }

    #[test]
    fn refuses_a_newer_database_without_touching_it() {
        // Both as a rollback-journal file and as the WAL file a newer app would leave.
        for journal_mode in ["DELETE", "WAL"] {
            refuses_newer(journal_mode);
        }
    }

    fn refuses_newer(journal_mode: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", journal_mode)
                .unwrap();
            conn.execute_batch(
                "CREATE TABLE from_the_future (x); INSERT INTO from_the_future VALUES (1);",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();

        let err = Store::open(&path).unwrap_err();
        match &err {
            StoreError::NewerSchema { found, supported } => {
                assert_eq!(*found, LATEST_VERSION + 1);
                assert_eq!(*supported, LATEST_VERSION);
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert!(err.to_string().contains("newer than this app supports"));
        assert_eq!(std::fs::read(&path).unwrap(), before, "file rewritten");
    }

    #[test]
    fn every_migration_applies_on_an_empty_database() {
        let conn = Connection::open_in_memory().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        migrate(&tx).unwrap();
        tx.commit().unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
    }
}
