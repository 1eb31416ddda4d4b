//! The retention purge: every `purge_interval`, the beacons (the trail), messages and events
//! of incidents closed more than `--sos-retention-days` ago are deleted. The incident row
//! with its outcome stays, and so does the audit log.

use std::time::Duration;

use crate::state::AppState;
use crate::store::StoreError;

/// Seconds in a day.
const DAY: i64 = 24 * 3600;

/// One purge at the configured clock's now: returns how many incidents were purged.
pub async fn purge_once(state: &AppState) -> Result<u64, StoreError> {
    let cutoff = state
        .now_secs()
        .saturating_sub(i64::from(state.config.sos.retention_days).saturating_mul(DAY));
    let purged = state.store.sos_purge(cutoff).await?;
    if purged > 0 {
        tracing::info!(incidents = purged, "purged closed SOS incidents' trails");
    }
    Ok(purged)
}

/// Runs [`purge_once`] every `purge_interval` until the server stops.
pub fn start(state: AppState) {
    let mut closing = state.sos.closing();
    let every = state.config.sos.purge_interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = closing.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            if *closing.borrow() {
                return;
            }
            if let Err(e) = purge_once(&state).await {
                tracing::warn!(error = %e, "SOS purge failed; will retry");
            }
        }
    });
}
