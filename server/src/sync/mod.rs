//! Document sync over WebSocket: `GET /v1/sync` upgrades to the automerge-repo protocol.
//!
//! Phones authenticate with `Authorization: Bearer <token>`; clients that cannot set headers
//! (browsers, the reference JS client) trade their token for a single-use ticket at
//! `POST /v1/auth/ticket` and pass it as `?ticket=`. Every incoming change is checked against
//! its document's schema and the writer's rights before it is stored or applied ([`hub`]).

mod connection;
pub mod hub;

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
    Ok(ws
        // Frames up to twice the protocol limit reach the handler, which answers an oversized
        // one with a clear error; beyond that the socket is closed (1009).
        .max_message_size(MAX_FRAME_BYTES * 2)
        .max_frame_size(MAX_FRAME_BYTES * 2)
        .on_upgrade(move |socket| connection::serve(socket, hub, device.account_id)))
}
