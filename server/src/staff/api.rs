//! The staff JSON API, for scripts holding a bearer token (and the console's own fetches):
//!
//! - `POST /v1/staff/login` `{username, password, totp?}` → `{token, expires_at}` (public);
//! - `POST /v1/staff/logout` → 204 (any staff);
//! - `GET /v1/staff/me` → the member, their grants and the session (any staff);
//! - `GET /v1/staff/audit?since&until&actor&action&before_id&limit` → entries, newest first
//!   (admin).
//!
//! Errors are [`ApiError`]s: `{ "error": code, "message": … }`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::access::{Need, StaffRouter};
use super::audit::{self, actions, AuditEntry, AuditFilter, Outcome};
use super::login::{self, LoginAttempt, LoginError};
use super::session::{SessionKind, StaffSession};
use super::Role;
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Registers the JSON routes.
pub fn routes(r: StaffRouter) -> StaffRouter {
    r.route(
        Method::POST,
        "/v1/staff/login",
        Need::Public,
        post(login_route),
    )
    .route(
        Method::POST,
        "/v1/staff/logout",
        Need::AnyStaff,
        post(logout_route),
    )
    .route(Method::GET, "/v1/staff/me", Need::AnyStaff, get(me))
    .route(
        Method::GET,
        "/v1/staff/audit",
        Need::Role(Role::Admin),
        get(audit_route),
    )
}

/// Body of `POST /v1/staff/login`.
#[derive(Deserialize)]
pub struct LoginBody {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// TOTP code, if the member has a second factor.
    #[serde(default)]
    pub totp: Option<String>,
}

/// Answer of `POST /v1/staff/login`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginAnswer {
    /// The bearer token (shown once).
    pub token: String,
    /// Absolute end of the session, Unix seconds.
    pub expires_at: i64,
}

/// The [`ApiError`] of a refused login.
pub fn login_error(e: LoginError) -> ApiError {
    match e {
        LoginError::Refused => ApiError::unauthorized(
            "login_refused",
            "the username, password or code is not right",
        ),
        LoginError::Locked { retry_after_secs } => ApiError::RateLimited {
            retry_after_secs: retry_after_secs.unsigned_abs(),
            message: format!(
                "too many failed logins for this name; try again in {retry_after_secs} s"
            ),
        },
        LoginError::Store(e) => ApiError::Store(e),
    }
}

async fn login_route(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let logged_in = login::login(
        &state,
        LoginAttempt {
            username: &body.username,
            password: &body.password,
            totp: body.totp.as_deref(),
            client_ip,
            kind: SessionKind::Bearer,
        },
    )
    .await
    .map_err(login_error)?;
    Ok(Json(LoginAnswer {
        token: logged_in.token,
        expires_at: logged_in.session.expires_at,
    }))
}

async fn logout_route(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
) -> Result<StatusCode, ApiError> {
    login::logout(&state, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
) -> Json<Value> {
    let m = &session.member;
    let idle = i64::try_from(state.config.staff_idle_timeout_secs).unwrap_or(i64::MAX);
    let grants: Vec<Value> = m
        .grants
        .iter()
        .map(|g| json!({ "role": g.role.as_str(), "scope": g.scope }))
        .collect();
    Json(json!({
        "id": m.id,
        "username": m.username,
        "display_name": m.display_name,
        "grants": grants,
        "totp_enabled": m.totp_enabled,
        "session": {
            "kind": session.kind.as_str(),
            "created_at": session.created_at,
            "expires_at": session.expires_at,
            "idle_expires_at": session.idle_expires_at(idle),
        },
    }))
}

/// Query of `GET /v1/staff/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// From (Unix seconds, inclusive).
    pub since: Option<i64>,
    /// Until (Unix seconds, exclusive).
    pub until: Option<i64>,
    /// Username of the actor.
    pub actor: Option<String>,
    /// Action name.
    pub action: Option<String>,
    /// Page: entries older than this id.
    pub before_id: Option<i64>,
    /// Page size (1 to 1000, default 100).
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// The store filter.
    pub fn filter(&self) -> AuditFilter {
        AuditFilter {
            since: self.since,
            until: self.until,
            actor: self.actor.clone().filter(|s| !s.is_empty()),
            action: self.action.clone().filter(|s| !s.is_empty()),
            before_id: self.before_id,
            limit: self.limit.unwrap_or(100).clamp(1, audit::MAX_QUERY_LIMIT),
        }
    }
}

async fn audit_route(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(client_ip): ClientIp,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let filter = query.filter();
    let records = audit::query(&state, &filter).await?;
    audit::record(
        &state,
        AuditEntry::new(
            login::staff_actor(&session.member),
            actions::AUDIT_VIEW,
            Outcome::Success,
        )
        .from_ip(client_ip)
        .detail(json!({
            "via": "api",
            "since": filter.since, "until": filter.until, "actor": filter.actor,
            "action": filter.action, "before_id": filter.before_id, "rows": records.len(),
        })),
    )
    .await;
    let next_before_id = (records.len() == filter.limit as usize)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "entries": records.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "next_before_id": next_before_id,
    })))
}
