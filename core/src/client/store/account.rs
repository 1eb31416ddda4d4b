//! This install's identity: its account registration and its automerge-repo peer id.

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// This install's registration with a Sotong server.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Base URL of the server the account lives on.
    pub server_url: String,
    /// The server's id for the account.
    pub account_id: i64,
    /// The server's id for this device within the account.
    pub device_id: i64,
    /// The bearer token for requests to the server.
    pub token: String,
    /// When `token` expires, in milliseconds since the Unix epoch.
    pub token_expires_at: i64,
    /// When this device registered, in milliseconds since the Unix epoch.
    pub registered_at: i64,
}

// Hand-written so that the token never reaches a log.
impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow")
            .field("account_id", &self.account_id)
            .field("device_id", &self.device_id)
            .field("token", &"<redacted>")
            .field("token_expires_at", &self.token_expires_at)
            .field("registered_at", &self.registered_at)
            .finish_non_exhaustive()
    }
}

/// Writes the device row with a fresh peer id if the database has none yet.
pub(super) fn ensure_device(conn: &Connection, now: i64) -> Result<(), StoreError> {
    let exists: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM device)", [], |r| r.get(0))?;
    if !exists {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let peer_id = format!("phone-{}", hex::encode(bytes));
        conn.execute(
            "INSERT INTO device (id, peer_id, created_at) VALUES (1, ?1, ?2)",
            params![peer_id, now],
        )?;
    }
    Ok(())
}

impl Store {
    /// This phone's automerge-repo peer id: random, generated when the database was created,
    /// and the same for the life of the install.
    pub fn peer_id(&self) -> Result<String, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT peer_id FROM device WHERE id = 1", [], |r| r.get(0))?))
    }

    /// Records this install's registration, replacing any earlier one.
    pub fn save_account(&self, a: &AccountRow) -> Result<(), StoreError> {
        self.writer()?.execute(
            "INSERT INTO account
                 (id, server_url, account_id, device_id, token, token_expires_at, registered_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET
                 server_url = excluded.server_url,
                 account_id = excluded.account_id,
                 device_id = excluded.device_id,
                 token = excluded.token,
                 token_expires_at = excluded.token_expires_at,
                 registered_at = excluded.registered_at",
            params![
                a.server_url,
                a.account_id,
                a.device_id,
                a.token,
                a.token_expires_at,
                a.registered_at
            ],
        )?;
        Ok(())
    }

    /// This install's registration, if it has registered.
    pub fn account(&self) -> Result<Option<AccountRow>, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT server_url, account_id, device_id, token, token_expires_at, registered_at
                 FROM account WHERE id = 1",
                [],
                |r| {
                    Ok(AccountRow {
                        server_url: r.get(0)?,
                        account_id: r.get(1)?,
                        device_id: r.get(2)?,
                        token: r.get(3)?,
                        token_expires_at: r.get(4)?,
                        registered_at: r.get(5)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// Signs out: forgets the registration and every document with its chunks and sync
    /// states, in one transaction. Drafts belong to the account: kept, they would sync into
    /// whichever account registers next on this install.
    pub fn sign_out(&self) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM account", [])?;
        tx.execute("DELETE FROM documents", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the registration (sign-out). Drafts stay.
    pub fn clear_account(&self) -> Result<(), StoreError> {
        self.writer()?.execute("DELETE FROM account", [])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(token: &str) -> AccountRow {
        AccountRow {
            server_url: "https://sotong.example".into(),
            account_id: 42,
            device_id: 3,
            token: token.into(),
            token_expires_at: 2_000,
            registered_at: 1_000,
        }
    }

    #[test]
    fn account_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.account().unwrap(), None);
        store.save_account(&account("first")).unwrap();
        store.save_account(&account("second")).unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.account().unwrap(), Some(account("second")));
        assert!(!format!("{:?}", account("secret")).contains("secret"));
        store.clear_account().unwrap();
        assert_eq!(store.account().unwrap(), None);
    }

    #[test]
    fn peer_id_is_stable_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let first = Store::open(&path).unwrap().peer_id().unwrap();
        assert!(first.starts_with("phone-") && first.len() == 6 + 32);
        assert_eq!(Store::open(&path).unwrap().peer_id().unwrap(), first);

        let other = tempfile::tempdir().unwrap();
        let elsewhere = Store::open(&other.path().join("s.db")).unwrap();
        assert_ne!(elsewhere.peer_id().unwrap(), first);
    }
}
