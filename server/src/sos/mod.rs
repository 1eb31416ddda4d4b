//! SOS silent call, server side (issue 7, ADR 0005, ADR 0006):
//!
//! - [`ingest`]: `POST /v1/sos/beacons` (stored once per `(incident, seq)`, answered after
//!   the commit) and the phone's events long-poll;
//! - [`regions`]: GeoJSON regions and routing a fix to one;
//! - [`feed`]: the dispatchers' Server-Sent Events feed, scoped by region;
//! - [`dispatch`]: the dispatchers' JSON routes (list, view, acknowledge, assign, message,
//!   note, close, PIDF-LO export), all audited;
//! - [`sms_gateway`]: the SMS channel's provisioning and the gateway's signed webhook;
//! - [`live`]: beacons over the phone's open sync connection (`sotong-sos-beacon`);
//! - [`listener`]: PostgreSQL `LISTEN` so that writes through other instances wake this one;
//! - [`feedback`]: the person's feedback once an incident is closed;
//! - [`summary`]: the admins' summary by region and month (JSON, console page, CSV);
//! - [`retention`]: the periodic purge of closed incidents' trails;
//! - [`pidf`]: the PIDF-LO (RFC 4119 / 5491) and AML exports.

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::state::AppState;

pub mod dispatch;
pub mod feed;
pub mod feedback;
pub mod ingest;
pub mod listener;
pub mod live;
pub mod pidf;
pub mod regions;
pub mod retention;
pub mod sms_gateway;
pub mod summary;

/// Wakes whoever waits for SOS events on this instance: the phone's long-polls and the
/// dispatcher feeds. Each waiter re-reads the store (the source of truth) when woken.
pub struct SosHub {
    changed: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Default for SosHub {
    fn default() -> Self {
        Self::new()
    }
}

impl SosHub {
    /// A hub nobody waits on yet.
    pub fn new() -> Self {
        Self {
            changed: watch::channel(0).0,
            closing: watch::channel(false).0,
        }
    }

    /// Something was stored: wake every waiter.
    pub fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later [`SosHub::notify`]. Subscribe before reading the
    /// store, so that nothing stored in between is missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The server is stopping: feeds end.
    pub fn shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes true when the server stops.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// The citizen's SOS routes (device bearer token) and the SMS gateway's webhook.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sos/beacons", post(ingest::post_beacons))
        .route("/v1/sos/incidents/{id}/events", get(ingest::long_poll))
        .route(
            "/v1/sos/incidents/{id}/feedback",
            post(feedback::post_feedback),
        )
        .route("/v1/sos/sms-channel", post(sms_gateway::provision))
        .route("/v1/sos/sms-gateway", post(sms_gateway::webhook))
}
