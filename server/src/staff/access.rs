//! The one access check of every staff route. Routes are registered through [`StaffRouter`]
//! with the [`Need`] they have; the check layer resolves the session (cookie or bearer),
//! checks CSRF for cookie sessions, checks role and scope, audits refusals, and hands the
//! handler `Extension<StaffSession>`. The role × route test reads the same rules
//! ([`staff_router`]), so a route cannot be added without being tested.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, RawPathParams, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use serde_json::json;

use super::audit::{self, actions, AuditEntry, Outcome};
use super::session::{self, SessionKind, StaffSession, SESSION_COOKIE};
use super::{csrf, Role, StaffMember};
use crate::console::Lang;
use crate::error::ApiError;
use crate::state::AppState;

/// What a route needs of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// No session (login page and form, assets).
    Public,
    /// Any logged-in staff member.
    AnyStaff,
    /// Holds the role, in any scope.
    Role(Role),
    /// Holds the role with scope equal to the named path parameter, e.g.
    /// `RoleInScope(AgencyOfficer, "agency")` on `/console/agency/{agency}`.
    RoleInScope(Role, &'static str),
    /// Holds the role with a scope that sees the region of the SOS incident named by the
    /// path parameter (`RoleInIncidentRegion(Dispatcher, "id")`): the region itself, or
    /// `all`, which also sees unrouted incidents and unknown ids (answered 404 then). The
    /// check layer reads the incident's region from the store (ADR 0006).
    RoleInIncidentRegion(Role, &'static str),
}

impl Need {
    /// Whether `member` may use a route needing this, with the route's path parameters.
    /// A scoped need whose parameter the path lacks allows no one. An incident-scoped need
    /// is judged as for an unknown incident; the check layer uses
    /// [`Need::allows_in_region`] with the incident's region.
    pub fn allows(&self, member: &StaffMember, params: &[(&str, &str)]) -> bool {
        self.allows_in_region(member, params, None)
    }

    /// [`Need::allows`], with the region of the incident an incident-scoped need names
    /// (`None`: unknown, or no fix yet).
    pub fn allows_in_region(
        &self,
        member: &StaffMember,
        params: &[(&str, &str)],
        incident_region: Option<&str>,
    ) -> bool {
        match self {
            Need::RoleInIncidentRegion(role, param) => {
                params.iter().any(|(name, _)| name == param)
                    && crate::sos::regions::sees(&member.scopes(*role), incident_region)
            }
            Need::Public | Need::AnyStaff => true,
            Need::Role(role) => member.has_role(*role),
            Need::RoleInScope(role, param) => params
                .iter()
                .find(|(name, _)| name == param)
                .is_some_and(|(_, value)| member.scopes(*role).contains(value)),
        }
    }
}

/// One registered route and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Its method.
    pub method: Method,
    /// Its path, axum syntax (`/console/agency/{agency}`).
    pub path: &'static str,
    /// What it needs.
    pub need: Need,
}

/// Staff routes under construction: every one goes through the check layer.
#[derive(Default)]
pub struct StaffRouter {
    rules: Vec<RouteRule>,
    handlers: Vec<MethodRouter<AppState>>,
}

impl StaffRouter {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. `handler` should serve `method` only (e.g. `get(h)` for GET).
    pub fn route(
        mut self,
        method: Method,
        path: &'static str,
        need: Need,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.rules.push(RouteRule { method, path, need });
        self.handlers.push(handler);
        self
    }

    /// The rules, in registration order.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// The router, each route behind the check layer.
    pub fn into_router(self, state: AppState) -> Router<AppState> {
        let body_limit = DefaultBodyLimit::max(state.config.max_json_body);
        let mut router = Router::new();
        for (rule, handler) in self.rules.into_iter().zip(self.handlers) {
            let guard = Guard {
                state: state.clone(),
                need: rule.need,
            };
            router = router.route(
                rule.path,
                handler.route_layer(middleware::from_fn_with_state(guard, check)),
            );
        }
        router.layer(body_limit)
    }
}

/// All staff routes (console pages and the `/v1/staff` JSON API): the app's router and the
/// role × route table test both come from here.
pub fn staff_router() -> StaffRouter {
    crate::sos::summary::routes(crate::sos::dispatch::routes(crate::console::routes(
        super::api::routes(StaffRouter::new()),
    )))
}

#[derive(Clone)]
struct Guard {
    state: AppState,
    need: Need,
}

/// Set on every answer the check layer gives instead of the handler: `unauthenticated`,
/// `forbidden`, `csrf` or `too_large`. Tells a refusal of the access check from a handler's
/// own answer (the role × route test relies on it).
pub const ACCESS_HEADER: &str = "x-sotong-access";

fn marked(mut response: Response, why: &'static str) -> Response {
    response
        .headers_mut()
        .insert(ACCESS_HEADER, HeaderValue::from_static(why));
    response
}

/// JSON answers under `/v1/`, console pages elsewhere.
fn is_api(path: &str) -> bool {
    path.starts_with("/v1/")
}

async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if guard.need == Need::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let api = is_api(parts.uri.path());
    let Some((token, kind)) = presented_token(&parts.headers) else {
        return marked(unauthenticated(api, &parts), "unauthenticated");
    };
    let session = match session::resolve(&guard.state, token, kind).await {
        Ok(session) => session,
        Err(session::ResolveError::Invalid) => {
            return marked(unauthenticated(api, &parts), "unauthenticated")
        }
        Err(session::ResolveError::Store(e)) => return ApiError::from(e).into_response(),
    };
    let body = if session.kind == SessionKind::Cookie && !is_safe(&parts.method) {
        match csrf_checked(&guard.state, &parts, body, &session).await {
            Ok(body) => body,
            Err(refused) => {
                let why = match refused {
                    Refused::TooLarge => "too_large",
                    _ => "csrf",
                };
                return marked(refused.into_response(api, &parts.headers), why);
            }
        }
    } else {
        body
    };
    let allowed = {
        let params = RawPathParams::from_request_parts(&mut parts, &()).await;
        let pairs: Vec<(&str, &str)> = params
            .as_ref()
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        let region = match &guard.need {
            Need::RoleInIncidentRegion(_, param) => {
                match incident_region(&guard.state, &pairs, param).await {
                    Ok(region) => region,
                    Err(e) => return ApiError::from(e).into_response(),
                }
            }
            _ => None,
        };
        guard
            .need
            .allows_in_region(&session.member, &pairs, region.as_deref())
    };
    if !allowed {
        audit::record(
            &guard.state,
            AuditEntry::new(
                super::login::staff_actor(&session.member),
                actions::ACCESS_DENIED,
                Outcome::Denied,
            )
            .target("route", format!("{} {}", parts.method, parts.uri.path()))
            .from_ip(client_ip(&guard.state, &parts))
            .detail(json!({ "need": format!("{:?}", guard.need) })),
        )
        .await;
        let refused = if api {
            Refused::Forbidden.into_response(api, &parts.headers)
        } else {
            crate::console::render_forbidden(&parts.headers, &parts.uri, &session)
        };
        return marked(refused, "forbidden");
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

/// The region of the SOS incident the path parameter `param` names (`None`: no such
/// incident, or no fix yet).
async fn incident_region(
    state: &AppState,
    params: &[(&str, &str)],
    param: &str,
) -> Result<Option<String>, crate::store::StoreError> {
    let Some(id) = params
        .iter()
        .find(|(name, _)| *name == param)
        .and_then(|(_, value)| value.parse::<sotong_core::sos::IncidentId>().ok())
    else {
        return Ok(None);
    };
    Ok(state
        .store
        .sos_incident(&id)
        .await?
        .and_then(|incident| incident.region))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session token and how it came: `Authorization: Bearer` first (a script), else the
/// session cookie (a browser).
fn presented_token(headers: &HeaderMap) -> Option<(&str, SessionKind)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(crate::auth::bearer_token)?;
        return Some((token, SessionKind::Bearer));
    }
    csrf::cookie(headers, SESSION_COOKIE).map(|t| (t, SessionKind::Cookie))
}

/// The client's address, proxies accounted for.
pub fn client_ip(state: &AppState, parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(a)| a.ip());
    crate::client_ip::client_ip(peer, &parts.headers, &state.config.trusted_proxies)
}

enum Refused {
    Forbidden,
    Csrf,
    TooLarge,
}

impl Refused {
    fn into_response(self, api: bool, headers: &HeaderMap) -> Response {
        match (self, api) {
            (Refused::Forbidden, true) => ApiError::forbidden(
                "forbidden",
                "your role or scope does not give access to this",
            )
            .into_response(),
            (Refused::Csrf, true) => ApiError::forbidden(
                "csrf",
                "this request lacks the session's CSRF token \
                 (form field _csrf or header X-CSRF-Token)",
            )
            .into_response(),
            (Refused::TooLarge, true) => ApiError::PayloadTooLarge.into_response(),
            (Refused::TooLarge, false) => denied_page(headers, StatusCode::PAYLOAD_TOO_LARGE),
            (Refused::Csrf, false) => {
                crate::console::render_csrf_refused(Lang::from_headers(headers))
            }
            (Refused::Forbidden, false) => denied_page(headers, StatusCode::FORBIDDEN),
        }
    }
}

/// The body back if it (or the header) carries the session's CSRF token.
async fn csrf_checked(
    state: &AppState,
    parts: &Parts,
    body: Body,
    session: &StaffSession,
) -> Result<Body, Refused> {
    if let Some(value) = parts.headers.get(csrf::HEADER) {
        let ok = value
            .to_str()
            .is_ok_and(|v| csrf::tokens_match(&session.csrf_token, v));
        return if ok { Ok(body) } else { Err(Refused::Csrf) };
    }
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Refused::Csrf);
    }
    let bytes = axum::body::to_bytes(body, state.config.max_json_body)
        .await
        .map_err(|_| Refused::TooLarge)?;
    match csrf::form_token(&bytes) {
        Some(token) if csrf::tokens_match(&session.csrf_token, &token) => Ok(Body::from(bytes)),
        _ => Err(Refused::Csrf),
    }
}

fn unauthenticated(api: bool, parts: &Parts) -> Response {
    if api {
        return ApiError::unauthorized(
            "unauthenticated",
            "this route needs a staff session (POST /v1/staff/login)",
        )
        .into_response();
    }
    if parts.method == Method::GET {
        let next: String =
            url::form_urlencoded::byte_serialize(parts.uri.path().as_bytes()).collect();
        let location = format!("/console/login?next={next}");
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    denied_page(&parts.headers, StatusCode::UNAUTHORIZED)
}

/// The console's page for a refusal (in the request's language).
pub fn denied_page(headers: &HeaderMap, status: StatusCode) -> Response {
    crate::console::render_denied(Lang::from_headers(headers), status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staff::Grant;

    fn member(grants: Vec<Grant>) -> StaffMember {
        StaffMember {
            id: 1,
            username: "kim".into(),
            display_name: "Kim".into(),
            grants,
            disabled: false,
            totp_enabled: false,
        }
    }

    #[test]
    fn needs_follow_roles_and_scopes() {
        let officer = member(vec![Grant::new(Role::AgencyOfficer, Some("MOIS")).unwrap()]);
        let need = Need::RoleInScope(Role::AgencyOfficer, "agency");
        assert!(need.allows(&officer, &[("agency", "MOIS")]));
        assert!(!need.allows(&officer, &[("agency", "MOLIT")]));
        assert!(!need.allows(&officer, &[("region", "MOIS")]));
        assert!(
            !Need::RoleInScope(Role::Dispatcher, "agency").allows(&officer, &[("agency", "MOIS")])
        );
        assert!(Need::Role(Role::AgencyOfficer).allows(&officer, &[]));
        assert!(!Need::Role(Role::Admin).allows(&officer, &[]));
        assert!(Need::AnyStaff.allows(&member(vec![]), &[]));
    }

    #[test]
    fn every_scoped_rule_names_a_parameter_of_its_path() {
        for rule in staff_router().rules() {
            if let Need::RoleInScope(_, param) | Need::RoleInIncidentRegion(_, param) = &rule.need {
                assert!(rule.path.contains(&format!("{{{param}}}")), "{rule:?}");
            }
        }
    }

    #[test]
    fn tokens_come_from_the_bearer_header_before_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-sotong-staff=c"),
        );
        assert_eq!(presented_token(&h), Some(("c", SessionKind::Cookie)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(presented_token(&h), Some(("b", SessionKind::Bearer)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(presented_token(&h), None);
    }
}
