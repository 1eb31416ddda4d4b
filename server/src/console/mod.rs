//! The staff console: server-rendered pages under `/console/` for agency officers,
//! dispatchers and admins. HTML from `maud`, forms that work without JavaScript, a little
//! plain JavaScript, CSS/JS/logo embedded in the binary ([`assets`]), every label in Korean
//! and English ([`i18n`]), and the security headers of [`layout::respond`] on every page.
//!
//! Every route is registered through the staff domain's [`StaffRouter`], so sessions, roles,
//! scopes and CSRF are checked in that one place before a handler runs.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};

use crate::staff::access::{Need, StaffRouter};
use crate::staff::session::StaffSession;
use crate::staff::Role;

pub mod assets;
pub mod audit_csv;
pub mod dates;
pub mod dispatch_board;
pub mod handlers;
pub mod i18n;
pub mod layout;
pub mod map_tiles;
pub mod pages;

pub use i18n::Lang;
use pages::denied::{self, Refusal};

/// Adds the console's routes to `r`.
pub fn routes(r: StaffRouter) -> StaffRouter {
    use handlers as h;
    r.route(Method::GET, "/console", Need::Public, get(h::console_root))
        .route(
            Method::GET,
            "/console/login",
            Need::Public,
            get(h::login_form_page),
        )
        .route(
            Method::POST,
            "/console/login",
            Need::Public,
            post(h::login_submit),
        )
        .route(
            Method::GET,
            "/console/language",
            Need::Public,
            get(h::switch_language),
        )
        .route(
            Method::GET,
            "/console/assets/{file}",
            Need::Public,
            get(assets::serve),
        )
        .route(
            Method::POST,
            "/console/logout",
            Need::AnyStaff,
            post(h::logout),
        )
        .route(Method::GET, "/console/", Need::AnyStaff, get(h::home_page))
        .route(
            Method::GET,
            "/console/agency/{agency}",
            Need::RoleInScope(Role::AgencyOfficer, "agency"),
            get(h::agency_page),
        )
        .route(
            Method::GET,
            "/console/dispatch/{region}",
            Need::RoleInScope(Role::Dispatcher, "region"),
            get(h::dispatch_page),
        )
        .route(
            Method::GET,
            "/console/admin/audit",
            Need::Role(Role::Admin),
            get(h::audit_log_page),
        )
        .route(
            Method::GET,
            "/console/admin/audit.csv",
            Need::Role(Role::Admin),
            get(h::audit_log_csv),
        )
        .route(
            Method::GET,
            "/console/admin/staff",
            Need::Role(Role::Admin),
            get(h::staff_page),
        )
        .route(
            Method::GET,
            "/console/dispatch/{region}/incidents",
            Need::RoleInScope(Role::Dispatcher, "region"),
            get(h::dispatch_rows),
        )
}

/// The console page for a refusal by status: 401 (sign in), 403 (no access), 404, else 500.
pub fn render_denied(lang: Lang, status: StatusCode) -> Response {
    render_refusal(lang, Refusal::from_status(status))
}

/// The 403 page for a signed-in member who lacks the role or scope: the header still says
/// who is signed in and offers to sign out, and the language switch comes back here.
pub fn render_forbidden(headers: &HeaderMap, uri: &Uri, session: &StaffSession) -> Response {
    let viewer = layout::Viewer {
        display_name: &session.member.display_name,
        username: &session.member.username,
        csrf_token: &session.csrf_token,
    };
    let here = uri.path_and_query().map_or("/console/", |pq| pq.as_str());
    let lang = Lang::from_headers(headers);
    let refusal = Refusal::Forbidden;
    layout::respond(
        refusal.status(),
        denied::render_for(lang, refusal, Some(viewer), here),
    )
}

/// The console page for a form posted without its CSRF token (403).
pub fn render_csrf_refused(lang: Lang) -> Response {
    render_refusal(lang, Refusal::Csrf)
}

/// The page of `refusal`, with its status.
pub fn render_refusal(lang: Lang, refusal: Refusal) -> Response {
    layout::respond(refusal.status(), denied::render(lang, refusal))
}

/// The 404 page of a path under `/console/` that no route serves.
pub fn not_found(headers: &HeaderMap) -> Response {
    render_refusal(Lang::from_headers(headers), Refusal::NotFound)
}
