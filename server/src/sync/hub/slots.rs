//! The in-memory copies of documents, one slot per document id, under a memory budget.
//!
//! A slot is removed from the map only while its lock is held, and is marked `Gone` first: a
//! task that was waiting for the old slot's lock sees `Gone` and looks the id up again, so
//! there is never more than one live copy of a document (the eviction/`forget` race).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};

use sotong_core::automerge::{sync, Automerge};
use sotong_core::DocumentId;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::ConnId;
use crate::store::DocumentMeta;
use crate::sync::link::Link;

/// Estimated resident bytes per automerge operation in a loaded document (automerge 0.6.1).
/// Measured by loading N copies of a saved proposal into one process and dividing the RSS
/// growth (`/proc/self/statm`): 374 B/op for 2,000 docs of 30 ops, 393 for 500 of 1,020 ops,
/// 382 for 100 of 5,020 ops, 457 for 20 of 30,020 ops (single-change documents); rounded up.
const BYTES_PER_OP: usize = 450;
/// Extra resident bytes per change in the history: a 1,000-character draft edited by 300
/// separate one-character changes costs ~800 KB against ~400 KB in one change (same probe).
const BYTES_PER_CHANGE: usize = 1024;
/// The slot, metadata, chunk hashes and maps around an empty document.
const BYTES_PER_DOCUMENT: usize = 4096;
/// One peer's sync state (bloom filters, sent hashes) and its entry.
const BYTES_PER_PEER: usize = 2048;

/// A connection syncing a loaded document.
pub(super) struct Peer {
    pub peer_id: Arc<str>,
    pub state: sync::State,
    pub link: Arc<Link>,
}

/// A document loaded in memory.
pub(super) struct Loaded {
    pub meta: DocumentMeta,
    pub doc: Automerge,
    /// Highest chunk sequence number seen, for catching up with other instances.
    pub last_seq: i64,
    /// Hashes of the stored chunks this instance has read or written (for compaction).
    pub chunk_hashes: Vec<[u8; 32]>,
    pub snapshot_bytes: usize,
    pub incremental_bytes: usize,
    /// Operations and changes in the document: what it costs to keep loaded.
    pub ops: usize,
    pub changes: usize,
    pub peers: HashMap<ConnId, Peer>,
    last_used: u64,
}

impl Loaded {
    pub fn new(meta: DocumentMeta, doc: Automerge) -> Self {
        Self {
            meta,
            doc,
            last_seq: 0,
            chunk_hashes: Vec::new(),
            snapshot_bytes: 0,
            incremental_bytes: 0,
            ops: 0,
            changes: 0,
            peers: HashMap::new(),
            last_used: 0,
        }
    }

    /// Recounts operations and changes from the history (after loading chunks).
    pub fn recount(&mut self) {
        let changes = self.doc.get_changes(&[]);
        self.changes = changes.len();
        self.ops = changes.iter().map(|c| c.len()).sum();
    }
}

/// Estimated resident bytes of a loaded document.
pub(super) fn cost(loaded: &Loaded) -> usize {
    estimate(loaded.ops, loaded.changes, loaded.peers.len())
}

/// Estimated resident bytes of a document of `ops` operations in `changes` changes, loaded
/// with `peers` peers.
pub(super) fn estimate(ops: usize, changes: usize, peers: usize) -> usize {
    BYTES_PER_DOCUMENT + ops * BYTES_PER_OP + changes * BYTES_PER_CHANGE + peers * BYTES_PER_PEER
}

pub(super) enum SlotState {
    /// Being looked up or loaded.
    Empty,
    Loaded(Box<Loaded>),
    /// Removed from the map; whoever holds this slot must look the id up again.
    Gone,
}

type Slot = Arc<Mutex<SlotState>>;

pub(super) struct Slots {
    map: StdMutex<HashMap<DocumentId, Slot>>,
    total: AtomicUsize,
    budget: usize,
    tick: AtomicU64,
}

/// A locked slot. Dropping it settles the budget and removes an empty or discarded slot from
/// the map, so an unknown id leaves nothing behind, even after a panic.
pub(super) struct Held<'a> {
    slots: &'a Slots,
    id: DocumentId,
    slot: Slot,
    guard: OwnedMutexGuard<SlotState>,
    cost_before: usize,
}

impl Slots {
    pub fn new(budget: usize) -> Self {
        Self {
            map: StdMutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            budget,
            tick: AtomicU64::new(1),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<DocumentId, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the slot of `id`, making an empty one if there is none.
    pub async fn lock(&self, id: &DocumentId) -> Held<'_> {
        loop {
            let slot = self
                .map()
                .entry(*id)
                .or_insert_with(|| Arc::new(Mutex::new(SlotState::Empty)))
                .clone();
            if let Some(held) = self.hold(id, slot).await {
                return held;
            }
        }
    }

    /// Locks the slot of `id` if it has one.
    pub async fn lock_existing(&self, id: &DocumentId) -> Option<Held<'_>> {
        loop {
            let slot = self.map().get(id)?.clone();
            if let Some(held) = self.hold(id, slot).await {
                return Some(held);
            }
        }
    }

    async fn hold(&self, id: &DocumentId, slot: Slot) -> Option<Held<'_>> {
        let guard = slot.clone().lock_owned().await;
        if matches!(*guard, SlotState::Gone) {
            return None;
        }
        Some(Held::new(self, *id, slot, guard))
    }

    pub fn contains(&self, id: &DocumentId) -> bool {
        self.map().contains_key(id)
    }

    pub fn ids(&self) -> Vec<DocumentId> {
        self.map().keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn total_cost(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn loaded_documents(&self) -> usize {
        let slots: Vec<Slot> = self.map().values().cloned().collect();
        slots
            .iter()
            .filter(|s| {
                // A slot in use is counted: it is either loading or loaded.
                s.try_lock()
                    .map(|g| matches!(*g, SlotState::Loaded(_)))
                    .unwrap_or(true)
            })
            .count()
    }

    /// Drops least recently used documents, attached or not, until the total is within the
    /// budget. Documents in use right now are skipped, never waited for.
    pub fn evict_over_budget(&self) {
        if self.total_cost() <= self.budget {
            return;
        }
        let slots: Vec<(DocumentId, Slot)> =
            self.map().iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut candidates: Vec<(u64, Held<'_>)> = slots
            .into_iter()
            .filter_map(|(id, slot)| {
                let guard = slot.clone().try_lock_owned().ok()?;
                let used = match &*guard {
                    SlotState::Loaded(l) => l.last_used,
                    _ => return None,
                };
                Some((used, Held::new(self, id, slot, guard)))
            })
            .collect();
        candidates.sort_by_key(|(used, _)| *used);
        let mut evicted = 0usize;
        for (_, mut held) in candidates {
            if self.total_cost() <= self.budget {
                break;
            }
            held.discard();
            drop(held);
            evicted += 1;
        }
        tracing::debug!(
            evicted,
            total = self.total_cost(),
            "evicted documents over budget"
        );
    }
}

impl<'a> Held<'a> {
    fn new(
        slots: &'a Slots,
        id: DocumentId,
        slot: Slot,
        guard: OwnedMutexGuard<SlotState>,
    ) -> Self {
        let cost_before = match &*guard {
            SlotState::Loaded(l) => cost(l),
            _ => 0,
        };
        Self {
            slots,
            id,
            slot,
            guard,
            cost_before,
        }
    }

    pub fn loaded_mut(&mut self) -> Option<&mut Loaded> {
        match &mut *self.guard {
            SlotState::Loaded(l) => Some(l),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(*self.guard, SlotState::Empty)
    }

    /// Puts a freshly loaded or created document in the slot.
    pub fn fill(&mut self, loaded: Loaded) -> Option<&mut Loaded> {
        *self.guard = SlotState::Loaded(Box::new(loaded));
        self.touch();
        self.loaded_mut()
    }

    /// Marks the document as just used (for least-recently-used eviction).
    pub fn touch(&mut self) {
        let now = self.slots.tick.fetch_add(1, Ordering::Relaxed);
        if let SlotState::Loaded(l) = &mut *self.guard {
            l.last_used = now;
        }
    }

    /// Drops the in-memory copy: the next message reloads the document from the store.
    pub fn discard(&mut self) {
        *self.guard = SlotState::Gone;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The document may be half-changed: the next message reloads it.
            *self.guard = SlotState::Gone;
        }
        if matches!(*self.guard, SlotState::Empty) {
            *self.guard = SlotState::Gone;
        }
        let cost_after = match &*self.guard {
            SlotState::Loaded(l) => cost(l),
            _ => 0,
        };
        if matches!(*self.guard, SlotState::Gone) {
            let mut map = self.slots.map();
            if map
                .get(&self.id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                map.remove(&self.id);
            }
        }
        if cost_after >= self.cost_before {
            self.slots
                .total
                .fetch_add(cost_after - self.cost_before, Ordering::Relaxed);
        } else {
            self.slots
                .total
                .fetch_sub(self.cost_before - cost_after, Ordering::Relaxed);
        }
    }
}
