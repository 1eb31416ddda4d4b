//! The dispatchers' JSON routes, registered through [`StaffRouter`] so that role and region
//! are checked in one place (`staff::access`); incident routes need
//! [`Need::RoleInIncidentRegion`], resolved from the `{id}` path parameter. Every view and
//! action is audited; each action the phone should learn (acknowledge, assign, message,
//! close) is stored as a `ServerEvent` the phone gets from its long-poll and beacon answers.
//!
//! - `GET /v1/dispatch/feed` (SSE, [`super::feed`]);
//! - `GET /v1/dispatch/incidents`: open incidents in the dispatcher's regions, duress first,
//!   then oldest;
//! - `GET /v1/dispatch/incidents/{id}`: one incident with its trail and messages;
//! - `POST /v1/dispatch/incidents/{id}/acknowledge | assign {unit} | message {text} |
//!   note {text} | close {outcome}` (outcome from the closed set [`SosOutcome`]);
//! - `GET /v1/dispatch/incidents/{id}/pidf-lo` and `/aml`: exports of the latest fix.

use axum::extract::{Path, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sotong_core::sos::beacon::{check_text, MAX_DISPATCH_MESSAGE_CHARS};
use sotong_core::sos::{IncidentId, Outcome as SosOutcome};

use super::{pidf, regions};
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::staff::access::{Need, StaffRouter};
use crate::staff::audit::{self, actions, AuditEntry, Outcome};
use crate::staff::session::StaffSession;
use crate::staff::Role;
use crate::state::AppState;
use crate::store::{DispatchAction, SosIncident, SosMessage, StoredBeacon};

/// The path parameter naming the incident.
pub const ID_PARAM: &str = "id";
/// Longest unit call sign, characters.
pub const MAX_UNIT_CHARS: usize = 100;

/// Registers the dispatcher routes.
pub fn routes(r: StaffRouter) -> StaffRouter {
    let dispatcher = Need::Role(Role::Dispatcher);
    let in_region = Need::RoleInIncidentRegion(Role::Dispatcher, ID_PARAM);
    r.route(
        Method::GET,
        "/v1/dispatch/feed",
        dispatcher.clone(),
        get(super::feed::feed),
    )
    .route(Method::GET, "/v1/dispatch/incidents", dispatcher, get(list))
    .route(
        Method::GET,
        "/v1/dispatch/incidents/{id}",
        in_region.clone(),
        get(view),
    )
    .route(
        Method::POST,
        "/v1/dispatch/incidents/{id}/acknowledge",
        in_region.clone(),
        post(acknowledge),
    )
    .route(
        Method::POST,
        "/v1/dispatch/incidents/{id}/assign",
        in_region.clone(),
        post(assign),
    )
    .route(
        Method::POST,
        "/v1/dispatch/incidents/{id}/message",
        in_region.clone(),
        post(message),
    )
    .route(
        Method::POST,
        "/v1/dispatch/incidents/{id}/note",
        in_region.clone(),
        post(note),
    )
    .route(
        Method::POST,
        "/v1/dispatch/incidents/{id}/close",
        in_region.clone(),
        post(close),
    )
    .route(
        Method::GET,
        "/v1/dispatch/incidents/{id}/pidf-lo",
        in_region.clone(),
        get(pidf_lo),
    )
    .route(
        Method::GET,
        "/v1/dispatch/incidents/{id}/aml",
        in_region,
        get(aml),
    )
}

fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such incident")
}

fn parse_id(id: &str) -> Result<IncidentId, ApiError> {
    id.parse().map_err(|_| not_found())
}

async fn record(
    state: &AppState,
    session: &StaffSession,
    ip: std::net::IpAddr,
    action: &'static str,
    incident: Option<&IncidentId>,
    detail: Value,
) {
    let mut entry = AuditEntry::new(
        crate::staff::login::staff_actor(&session.member),
        action,
        Outcome::Success,
    )
    .from_ip(ip)
    .detail(detail);
    if let Some(id) = incident {
        entry = entry.target("sos_incident", id.to_string());
    }
    audit::record(state, entry).await;
}

/// Answer of the list.
#[derive(Debug, Serialize, Deserialize)]
pub struct IncidentList {
    /// Duress first, then oldest.
    pub incidents: Vec<Value>,
}

/// `GET /v1/dispatch/incidents`.
pub async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
) -> Result<Json<IncidentList>, ApiError> {
    let scopes = session.member.scopes(Role::Dispatcher);
    let visible = regions::visible(&scopes);
    let incidents = state.store.sos_open_incidents(visible.as_deref()).await?;
    record(
        &state,
        &session,
        ip,
        actions::SOS_INCIDENT_LIST,
        None,
        json!({ "count": incidents.len() }),
    )
    .await;
    Ok(Json(IncidentList {
        incidents: incidents.iter().map(SosIncident::summary).collect(),
    }))
}

/// Answer of the view.
#[derive(Debug, Serialize)]
pub struct IncidentView {
    /// The summary.
    pub incident: Value,
    /// Every stored beacon, by seq.
    pub trail: Vec<StoredBeacon>,
    /// Dispatcher messages and notes, oldest first.
    pub messages: Vec<SosMessage>,
}

/// `GET /v1/dispatch/incidents/{id}`.
pub async fn view(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    let id = parse_id(&id)?;
    let incident = state.store.sos_incident(&id).await?.ok_or_else(not_found)?;
    let trail = state.store.sos_beacons(&id).await?;
    let messages = state.store.sos_messages(&id).await?;
    record(
        &state,
        &session,
        ip,
        actions::INCIDENT_VIEW,
        Some(&id),
        json!({}),
    )
    .await;
    Ok(Json(IncidentView {
        incident: incident.summary(),
        trail,
        messages,
    }))
}

/// Answer of an action.
#[derive(Debug, Serialize, Deserialize)]
pub struct ActionDone {
    /// The event it became.
    pub event_id: i64,
    /// The incident after it.
    pub incident: Value,
}

async fn act(
    state: &AppState,
    session: &StaffSession,
    ip: std::net::IpAddr,
    id: &str,
    audit_action: &'static str,
    action: DispatchAction,
) -> Result<Json<ActionDone>, ApiError> {
    let id = parse_id(id)?;
    let event = state
        .store
        .sos_dispatch(&id, session.member.id, &action, state.now_secs())
        .await?
        .ok_or_else(not_found)?;
    state.sos.notify();
    // Texts are the person's and the dispatcher's words: the audit records lengths only.
    let detail = match &action {
        DispatchAction::Assign { unit } => json!({ "unit": unit }),
        DispatchAction::Message { text } | DispatchAction::Note { text } => {
            json!({ "chars": text.chars().count(), "event_id": event.id })
        }
        DispatchAction::Close { outcome } => json!({ "outcome": outcome.as_str() }),
        DispatchAction::Acknowledge => json!({}),
    };
    record(state, session, ip, audit_action, Some(&id), detail).await;
    let incident = state.store.sos_incident(&id).await?.ok_or_else(not_found)?;
    Ok(Json(ActionDone {
        event_id: event.id,
        incident: incident.summary(),
    }))
}

fn checked(text: &str, max: usize, what: &'static str) -> Result<String, ApiError> {
    check_text(text, max).map_err(|e| ApiError::bad_request(what, e.to_string()))?;
    Ok(text.to_owned())
}

/// `POST …/acknowledge`.
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<ActionDone>, ApiError> {
    act(
        &state,
        &session,
        ip,
        &id,
        actions::SOS_ACKNOWLEDGE,
        DispatchAction::Acknowledge,
    )
    .await
}

/// Body of assign.
#[derive(Debug, Default, Deserialize)]
pub struct AssignBody {
    /// The unit's call sign, if shared with the person.
    #[serde(default)]
    pub unit: Option<String>,
}

/// `POST …/assign {unit}`.
pub async fn assign(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<ActionDone>, ApiError> {
    let unit = body
        .unit
        .map(|u| checked(&u, MAX_UNIT_CHARS, "invalid_unit"))
        .transpose()?;
    act(
        &state,
        &session,
        ip,
        &id,
        actions::SOS_ASSIGN,
        DispatchAction::Assign { unit },
    )
    .await
}

/// Body of message and note.
#[derive(Debug, Deserialize)]
pub struct TextBody {
    /// 1 to 1,000 characters.
    pub text: String,
}

/// `POST …/message {text}`: reaches the phone.
pub async fn message(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<ActionDone>, ApiError> {
    let text = checked(&body.text, MAX_DISPATCH_MESSAGE_CHARS, "invalid_text")?;
    act(
        &state,
        &session,
        ip,
        &id,
        actions::SOS_MESSAGE,
        DispatchAction::Message { text },
    )
    .await
}

/// `POST …/note {text}`: dispatch only.
pub async fn note(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<Json<ActionDone>, ApiError> {
    let text = checked(&body.text, MAX_DISPATCH_MESSAGE_CHARS, "invalid_text")?;
    act(
        &state,
        &session,
        ip,
        &id,
        actions::SOS_NOTE,
        DispatchAction::Note { text },
    )
    .await
}

/// Body of close.
#[derive(Debug, Deserialize)]
pub struct CloseBody {
    /// What happened: one of [`SosOutcome::ALL`] by name (`assisted`, `arrest`, `referred`,
    /// `transported`, `caller_cancelled`, `false_alarm`, `not_found`, `other`); details go in
    /// a note.
    pub outcome: String,
}

/// `POST …/close {outcome}`.
pub async fn close(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<ActionDone>, ApiError> {
    let outcome = SosOutcome::from_name(body.outcome.trim()).ok_or_else(|| {
        let known: Vec<&str> = SosOutcome::ALL.iter().map(|o| o.as_str()).collect();
        ApiError::bad_request(
            "invalid_outcome",
            format!("the outcome must be one of: {}", known.join(", ")),
        )
    })?;
    act(
        &state,
        &session,
        ip,
        &id,
        actions::SOS_CLOSE,
        DispatchAction::Close { outcome },
    )
    .await
}

/// The incident's latest fix (by seq) and its seq.
async fn latest_fix(
    state: &AppState,
    id: &IncidentId,
) -> Result<(u32, sotong_core::sos::Fix), ApiError> {
    state.store.sos_incident(id).await?.ok_or_else(not_found)?;
    state
        .store
        .sos_beacons(id)
        .await?
        .into_iter()
        .rev()
        .find_map(|b| b.beacon.fix.map(|f| (b.beacon.seq, f)))
        .ok_or_else(|| ApiError::not_found("no_fix", "the incident has no position yet"))
}

/// `GET …/pidf-lo`: `application/pidf+xml`.
pub async fn pidf_lo(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (seq, fix) = latest_fix(&state, &id).await?;
    let xml = pidf::pidf_lo(&id, seq, &fix).map_err(|e| ApiError::Internal(e.to_string()))?;
    record(
        &state,
        &session,
        ip,
        actions::SOS_EXPORT,
        Some(&id),
        json!({ "format": "pidf-lo" }),
    )
    .await;
    Ok(([(header::CONTENT_TYPE, "application/pidf+xml")], xml).into_response())
}

/// `GET …/aml`: the AML fields as JSON.
pub async fn aml(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<pidf::AmlFields>, ApiError> {
    let id = parse_id(&id)?;
    let (_, fix) = latest_fix(&state, &id).await?;
    record(
        &state,
        &session,
        ip,
        actions::SOS_EXPORT,
        Some(&id),
        json!({ "format": "aml" }),
    )
    .await;
    Ok(Json(pidf::aml(&id, &fix)))
}
