//! `POST /v1/sos/beacons` and `GET /v1/sos/incidents/{id}/events` (the phone's side of the
//! contract in ADR 0005): beacons are validated, routed to a region by their fix, stored
//! once per `(incident, seq)`, and answered only after the commit with what the server holds
//! (`up_to_seq`, the contiguous prefix) and the incident's dispatch events.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sotong_core::sos::{Beacon, IncidentId, ServerEvent};

use crate::auth::Device;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store::{Acked, DeviceRef, RoutedBeacon, SosIngest, Via};

/// Most beacons in one request.
pub const MAX_BATCH: usize = 100;
/// Longest long-poll wait, seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// Body of `POST /v1/sos/beacons`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeaconBatch {
    /// 1 to [`MAX_BATCH`] beacons.
    pub beacons: Vec<Beacon>,
    /// The last event id the phone has (its long-poll cursor): the answer holds only later
    /// events. 0 (the default, for phones that do not send it): all of them.
    #[serde(default)]
    pub after: i64,
}

/// Answer of `POST /v1/sos/beacons`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeaconAnswer {
    /// Per incident of the batch: every seq up to `up_to_seq` is durably stored.
    pub acked: Vec<AckedJson>,
    /// The incidents' dispatch events after the batch's `after` (the phone ignores ones it
    /// has).
    pub events: Vec<ServerEvent>,
    /// The id of the last of `events` (the phone's next `after`); absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<i64>,
}

/// One incident's acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedJson {
    /// The incident.
    pub incident: IncidentId,
    /// Every seq `1..=up_to_seq` is stored.
    pub up_to_seq: u32,
}

impl From<Acked> for AckedJson {
    fn from(a: Acked) -> Self {
        Self {
            incident: a.incident,
            up_to_seq: a.up_to_seq,
        }
    }
}

/// `POST /v1/sos/beacons` (device bearer token).
pub async fn post_beacons(
    State(state): State<AppState>,
    device: Device,
    ApiJson(batch): ApiJson<BeaconBatch>,
) -> Result<Json<BeaconAnswer>, ApiError> {
    if batch.beacons.is_empty() || batch.beacons.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "invalid_beacon",
            format!("send 1 to {MAX_BATCH} beacons"),
        ));
    }
    let answer = store_beacons(
        &state,
        device.into(),
        batch.beacons,
        batch.after.max(0),
        Via::Https,
    )
    .await?;
    Ok(Json(answer))
}

/// Validates, routes and stores beacons from `device`, then wakes the feeds; the answer
/// holds the incidents' phone events after event id `after`. Shared by the HTTPS route, the
/// live connection and the SMS gateway.
pub async fn store_beacons(
    state: &AppState,
    device: DeviceRef,
    beacons: Vec<Beacon>,
    after: i64,
    via: Via,
) -> Result<BeaconAnswer, ApiError> {
    let regions = &state.config.sos.regions;
    let mut routed = Vec::with_capacity(beacons.len());
    for (i, beacon) in beacons.into_iter().enumerate() {
        // Not `validate(now)`: a phone whose clock is wrong must still be located.
        beacon
            .validate_received()
            .map_err(|e| ApiError::bad_request("invalid_beacon", format!("beacon {i}: {e}")))?;
        let region = beacon
            .fix
            .as_ref()
            .map(|f| regions.route(f.lat, f.lon).to_owned());
        routed.push(RoutedBeacon {
            beacon,
            region,
            via,
        });
    }
    let acked = match state
        .store
        .sos_ingest(device, &routed, state.now_secs())
        .await?
    {
        SosIngest::Stored(acked) => acked,
        SosIngest::NotOwner(_) => return Err(not_found()),
    };
    state.sos.notify();
    let mut events = Vec::new();
    let mut last_event_id = None;
    for a in &acked {
        for e in state.store.sos_phone_events(&a.incident, after).await? {
            last_event_id = last_event_id.max(Some(e.id));
            events.extend(e.phone_event);
        }
    }
    tracing::debug!(beacons = routed.len(), "sos beacons stored");
    Ok(BeaconAnswer {
        acked: acked.into_iter().map(AckedJson::from).collect(),
        events,
        last_event_id,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such incident")
}

/// Query of the long-poll.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PollQuery {
    /// Events with an id above this (default 0: all).
    #[serde(default)]
    pub after: i64,
    /// Seconds to wait for one when there is none (default 0, at most 30).
    #[serde(default)]
    pub wait: u64,
}

/// One event of the long-poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberedEvent {
    /// Server-wide increasing id.
    pub id: i64,
    /// The event.
    pub event: ServerEvent,
}

/// Answer of the long-poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsAnswer {
    /// By id.
    pub events: Vec<NumberedEvent>,
}

/// `GET /v1/sos/incidents/{id}/events?after=&wait=` (the owner's device).
pub async fn long_poll(
    State(state): State<AppState>,
    device: Device,
    Path(id): Path<String>,
    Query(q): Query<PollQuery>,
) -> Result<Json<EventsAnswer>, ApiError> {
    let id: IncidentId = id.parse().map_err(|_| not_found())?;
    match state.store.sos_incident(&id).await? {
        Some(inc) if inc.account_id == device.account_id => {}
        _ => return Err(not_found()),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.min(MAX_WAIT_SECS));
    let mut changed = state.sos.subscribe();
    let mut closing = state.sos.closing();
    loop {
        let events: Vec<NumberedEvent> = state
            .store
            .sos_phone_events(&id, q.after)
            .await?
            .into_iter()
            .filter_map(|e| e.phone_event.map(|event| NumberedEvent { id: e.id, event }))
            .collect();
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(EventsAnswer { events }));
        }
        tokio::select! {
            woke = tokio::time::timeout_at(deadline, changed.changed()) => {
                if !matches!(woke, Ok(Ok(()))) {
                    return Ok(Json(EventsAnswer { events }));
                }
            }
            _ = closing.wait_for(|c| *c) => return Ok(Json(EventsAnswer { events })),
        }
    }
}
