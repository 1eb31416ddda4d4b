//! The SOS beacons' lane through the live sync connection (ADR 0005, amended). While a live
//! session is online it holds the receiving end; the beacon sender hands it a batch with a
//! one-shot channel for the server's answer, which the session resolves when the matching
//! `sotong-sos-ack` arrives (sent by the server only after its commit). When the session's
//! connection ends, the lane closes and every unanswered batch's channel is dropped: the
//! sender sees that at once and sends over HTTPS instead.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::client::api::BeaconAnswer;
use crate::client::ClientError;
use crate::sos::Beacon;

/// One batch for the live connection.
pub(crate) struct LaneBatch {
    /// The beacons, as `POST /v1/sos/beacons` would send them.
    pub beacons: Vec<Beacon>,
    /// The last event id the phone has.
    pub after: i64,
    /// Where the server's answer goes (dropped if the connection ends first).
    pub answer: oneshot::Sender<Result<BeaconAnswer, ClientError>>,
}

/// The door of the live connection for SOS beacons: open while a live session is online.
#[derive(Default)]
pub(crate) struct SosLane {
    tx: Mutex<Option<mpsc::UnboundedSender<LaneBatch>>>,
}

impl SosLane {
    /// Opens the lane for a session that just came online; it receives the batches.
    pub(crate) fn open(&self) -> mpsc::UnboundedReceiver<LaneBatch> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut slot) = self.tx.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// Closes the lane (the session's connection ended); batches not yet answered are
    /// dropped with the receiver.
    pub(crate) fn close(&self) {
        if let Ok(mut slot) = self.tx.lock() {
            *slot = None;
        }
    }

    /// Hands a batch to the live connection; gives it back if there is none.
    pub(crate) fn send(&self, batch: LaneBatch) -> Result<(), LaneBatch> {
        let Ok(slot) = self.tx.lock() else {
            return Err(batch);
        };
        match slot.as_ref() {
            Some(tx) => tx.send(batch).map_err(|e| e.0),
            None => Err(batch),
        }
    }
}

/// Closes the lane when the session that opened it ends, on every way out.
pub(crate) struct LaneGuard<'a>(pub &'a SosLane);

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}
