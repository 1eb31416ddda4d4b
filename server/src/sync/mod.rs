//! Document sync over WebSocket: `GET /v1/sync` upgrades to the automerge-repo protocol.
//!
//! Phones authenticate with `Authorization: Bearer <token>`; clients that cannot set headers
//! (browsers, the reference JS client) trade their token for a single-use ticket at
//! `POST /v1/auth/ticket` and pass it as `?ticket=`. Every incoming change is checked against
//! its document's schema and the writer's rights before it is stored or applied ([`hub`]).

mod connection;
pub mod feed;
pub mod hub;
pub mod link;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sotong_core::wire::MAX_FRAME_BYTES;

pub use hub::Hub;

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Bytes read from the socket at a time (axum's default is 128 KiB per connection).
const READ_BUFFER: usize = 4 * 1024;

/// The sync route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/sync", get(upgrade))
}

#[derive(Deserialize)]
struct SyncParams {
    ticket: Option<String>,
}

async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<SyncParams>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Authenticated before the upgrade: an unauthenticated peer never gets a socket.
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(auth::bearer_token);
    let device = match (bearer, params.ticket) {
        (Some(token), _) => auth::authenticate_token(&state, token).await?,
        (None, Some(ticket)) => auth::redeem_ticket(&state, &ticket).await?,
        (None, None) => {
            return Err(ApiError::unauthorized(
                "missing_credentials",
                "send a bearer token or a ticket",
            ))
        }
    };
    let hub = state.hub.clone();
    let sos = crate::sos::live::LiveBeacons::new(state.clone(), device.into());
    let account = device.account_id;
    Ok(ws
        // Refused while it arrives: tungstenite stops reading a frame whose header announces
        // more, and the connection closes with 1009.
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // An idle device should cost little: small buffers (they grow for a large message),
        // and frames written as they come (latency over syscalls).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::serve(socket, hub, account, sos)))
}
