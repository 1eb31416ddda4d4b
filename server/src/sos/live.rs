//! SOS beacons over the phone's open sync connection (ADR 0005 and 0006, amended): a
//! `sotong-sos-beacon` frame carries the same JSON body as `POST /v1/sos/beacons` and is
//! answered by a `sotong-sos-ack` frame carrying the same JSON answer, sent only after the
//! commit. Each frame is handled on a task of its own, so a beacon never waits behind the
//! connection's document work (nor the documents behind it); a few per connection at a time.
//! A refused batch stores nothing and is answered with the HTTPS route's error code; the
//! phone then sends it over HTTPS, which answers the same way with a readable error.

use std::sync::Arc;

use sotong_core::wire::WireMessage;
use tokio::sync::Semaphore;

use super::ingest::{store_beacons, BeaconBatch, MAX_BATCH};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{DeviceRef, Via};
use crate::sync::link::Link;

/// Beacon batches of one connection being stored at once; more wait for a slot (a phone
/// sends one batch at a time, so this only bounds a misbehaving client).
const IN_FLIGHT: usize = 4;

/// The SOS side of one sync connection.
pub struct LiveBeacons {
    state: AppState,
    device: DeviceRef,
    slots: Arc<Semaphore>,
}

impl LiveBeacons {
    /// For a connection of `device`.
    pub fn new(state: AppState, device: DeviceRef) -> Self {
        Self {
            state,
            device,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Stores a batch on a task of its own; its ack goes out on `link` after the commit.
    /// `server` and `client` are the two peer ids.
    pub fn spawn(
        &self,
        link: Arc<Link>,
        server: String,
        client: String,
        batch: String,
        data: Vec<u8>,
    ) {
        let (state, device, slots) = (self.state.clone(), self.device, self.slots.clone());
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let (code, data) = match store(&state, device, &data).await {
                Ok(answer) => (None, answer),
                Err(e) => {
                    if e.status().is_server_error() {
                        tracing::warn!(error = ?e, "sos beacon batch over the connection failed");
                    } else {
                        tracing::info!(
                            code = e.code(),
                            "sos beacon batch over the connection refused"
                        );
                    }
                    (Some(e.code().to_owned()), Vec::new())
                }
            };
            link.send(&WireMessage::SosAck {
                sender_id: server,
                target_id: client,
                batch,
                code,
                data,
            });
        });
    }
}

/// Decodes, stores and answers one batch: the JSON answer of the HTTPS route.
async fn store(state: &AppState, device: DeviceRef, data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let batch: BeaconBatch = serde_json::from_slice(data)
        .map_err(|e| ApiError::bad_request("invalid_beacon", format!("beacon batch: {e}")))?;
    if batch.beacons.is_empty() || batch.beacons.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_beacon",
            format!("send 1 to {MAX_BATCH} beacons"),
        ));
    }
    let answer = store_beacons(state, device, batch.beacons, batch.after.max(0), Via::Live).await?;
    serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(format!("sos answer: {e}")))
}
