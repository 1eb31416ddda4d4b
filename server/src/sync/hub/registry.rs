//! Connections, the documents each watches, and per-account counters. One std mutex, never
//! held across an await.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sotong_core::DocumentId;

use super::{ConnId, Hub};
use crate::store::{AccountId, AccountUsage};
use crate::sync::link::Link;

/// How long a cached account usage is trusted before it is read from the store again. Other
/// instances' writes are counted from then on, so an account can overshoot its byte quota by
/// at most what it writes through other instances in this time.
const USAGE_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<ConnId, Conn>,
    /// Connections that synced each document: they are its peers whenever it is loaded.
    watchers: HashMap<DocumentId, Vec<ConnId>>,
    accounts: HashMap<AccountId, Account>,
}

pub(super) struct Conn {
    pub account: AccountId,
    pub peer_id: Arc<str>,
    pub link: Arc<Link>,
    docs: HashSet<DocumentId>,
}

#[derive(Default)]
struct Account {
    connections: u32,
    usage: Option<(AccountUsage, Instant)>,
}

/// One counted connection of an account; dropping it uncounts the connection.
pub struct Admission {
    hub: Arc<Hub>,
    account: AccountId,
}

impl Admission {
    pub(super) fn new(hub: Arc<Hub>, account: AccountId) -> Self {
        Self { hub, account }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.registry.release(self.account);
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn admit(&self, account: AccountId, limit: u32) -> bool {
        let mut inner = self.lock();
        let entry = inner.accounts.entry(account).or_default();
        if entry.connections >= limit {
            return false;
        }
        entry.connections += 1;
        true
    }

    fn release(&self, account: AccountId) {
        let mut inner = self.lock();
        if let Some(entry) = inner.accounts.get_mut(&account) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                inner.accounts.remove(&account);
            }
        }
    }

    pub fn join(&self, conn: ConnId, account: AccountId, peer_id: &str, link: &Arc<Link>) {
        self.lock().conns.insert(
            conn,
            Conn {
                account,
                peer_id: peer_id.into(),
                link: link.clone(),
                docs: HashSet::new(),
            },
        );
    }

    /// Removes a connection; returns the documents it watched.
    pub fn leave(&self, conn: ConnId) -> Vec<DocumentId> {
        let mut inner = self.lock();
        let Some(c) = inner.conns.remove(&conn) else {
            return Vec::new();
        };
        for id in &c.docs {
            if let Some(list) = inner.watchers.get_mut(id) {
                list.retain(|w| *w != conn);
                if list.is_empty() {
                    inner.watchers.remove(id);
                }
            }
        }
        c.docs.into_iter().collect()
    }

    /// Makes `conn` a watcher of `id`; returns its peer id and link, or `None` if it has not
    /// joined (or has left).
    pub fn watch(&self, conn: ConnId, id: &DocumentId) -> Option<(Arc<str>, Arc<Link>)> {
        let mut inner = self.lock();
        let c = inner.conns.get_mut(&conn)?;
        let found = (c.peer_id.clone(), c.link.clone());
        if c.docs.insert(*id) {
            inner.watchers.entry(*id).or_default().push(conn);
        }
        Some(found)
    }

    /// The watchers of `id` with their peer ids and links.
    pub fn watchers(&self, id: &DocumentId) -> Vec<(ConnId, Arc<str>, Arc<Link>)> {
        let inner = self.lock();
        let Some(list) = inner.watchers.get(id) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|w| {
                let c = inner.conns.get(w)?;
                Some((*w, c.peer_id.clone(), c.link.clone()))
            })
            .collect()
    }

    pub fn is_watched(&self, id: &DocumentId) -> bool {
        self.lock().watchers.contains_key(id)
    }

    /// The other joined connections of `account`.
    pub fn others_of(&self, account: AccountId, except: ConnId) -> Vec<ConnId> {
        self.lock()
            .conns
            .iter()
            .filter(|(c, entry)| **c != except && entry.account == account)
            .map(|(c, _)| *c)
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// The account's cached usage, if fresh.
    pub fn cached_usage(&self, account: AccountId) -> Option<AccountUsage> {
        let inner = self.lock();
        let (usage, at) = inner.accounts.get(&account)?.usage?;
        (at.elapsed() < USAGE_TTL).then_some(usage)
    }

    /// Caches the account's usage as just read from the store.
    pub fn set_usage(&self, account: AccountId, usage: AccountUsage) {
        if let Some(entry) = self.lock().accounts.get_mut(&account) {
            entry.usage = Some((usage, Instant::now()));
        }
    }

    /// Counts what was just stored for the account.
    pub fn add_usage(&self, account: AccountId, documents: u64, bytes: u64) {
        if let Some(entry) = self.lock().accounts.get_mut(&account) {
            if let Some((usage, _)) = entry.usage.as_mut() {
                usage.documents += documents;
                usage.bytes += bytes;
            }
        }
    }

    /// Forgets the cached usage (after compaction changed the stored bytes).
    pub fn reset_usage(&self, account: AccountId) {
        if let Some(entry) = self.lock().accounts.get_mut(&account) {
            entry.usage = None;
        }
    }
}
