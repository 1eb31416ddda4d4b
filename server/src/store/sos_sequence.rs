//! The order of the SOS event log on PostgreSQL (ADR 0006, amended; migration 005).
//!
//! SOS writers (beacon ingest, dispatch actions) insert their events with `pos` NULL and
//! commit in parallel, each under its incident's lock only. Readers read by `pos`, so an
//! unnumbered event is invisible. A short serialized *step* numbers them: under one
//! store-wide advisory lock it reads every committed unnumbered event (by `id`, which within
//! one incident is commit order, as that incident's writers are serialized), gives them the
//! next `pos` values of the `sos_event_pos` sequence, sends `NOTIFY sotong_sos` and commits.
//! Steps hold the lock through their commit, so `pos` values become visible in increasing
//! order, on every instance: a reader that has seen `pos` N never meets a later-committed
//! event numbered below N.
//!
//! A writer returns only after a step that started after its commit has committed
//! ([`SosSequencer::publish`]), so what a write returns is already on the feed. Steps are
//! shared: callers waiting while one runs are all covered by the next (group commit), so the
//! lock is taken once per batch of writes, not once per write. Events of a writer that
//! stopped between its commit and the step are numbered by the next step of any instance
//! (every write runs one, and so does every instance when it starts).

use std::sync::atomic::{AtomicU64, Ordering};

use super::sos_postgres::{notify, SOS_LOCK};
use super::{PgStore, StoreResult};

/// Group commit of the numbering steps of one instance.
#[derive(Debug, Default)]
pub(crate) struct SosSequencer {
    /// Requests made so far (a ticket per caller, taken after its commit).
    requested: AtomicU64,
    /// Every ticket up to this one is covered by a committed step.
    done: AtomicU64,
    /// One step at a time on this instance (others wait for it, then share the next).
    step: tokio::sync::Mutex<()>,
}

impl PgStore {
    /// Makes every SOS event committed before this call visible to readers, numbered.
    pub(crate) async fn sos_publish(&self) -> StoreResult<()> {
        let seq = &self.sos_sequencer;
        let ticket = seq.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _step = seq.step.lock().await;
        if seq.done.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket taken so far belongs to a caller that had committed before taking it;
        // the step below starts after this read, so it sees all of them.
        let covered = seq.requested.load(Ordering::SeqCst);
        self.sos_number_step().await?;
        seq.done.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// One numbering step; returns how many events it numbered.
    async fn sos_number_step(&self) -> StoreResult<usize> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await?;
        tx.execute(&lock, &[&SOS_LOCK]).await?;
        // Read after the lock: its snapshot holds every step committed before.
        let unnumbered = tx
            .prepare_cached("SELECT id FROM sos_events WHERE pos IS NULL ORDER BY id")
            .await?;
        let ids: Vec<i64> = tx
            .query(&unnumbered, &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        // The sequence is only advanced here, under the lock: one call reserves n values.
        let reserve = tx
            .prepare_cached("SELECT setval('sos_event_pos', nextval('sos_event_pos') + $1 - 1)")
            .await?;
        let last: i64 = tx.query_one(&reserve, &[&n]).await?.try_get(0)?;
        let first = last - n + 1;
        let number = tx
            .prepare_cached(
                "UPDATE sos_events e SET pos = $1 + t.i - 1
                 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(id, i) WHERE e.id = t.id",
            )
            .await?;
        tx.execute(&number, &[&first, &ids]).await?;
        notify(&*tx).await?;
        tx.commit().await?;
        Ok(ids.len())
    }
}
