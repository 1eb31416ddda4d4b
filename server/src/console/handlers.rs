//! The console's handlers: each reads the request, asks the staff domain, and hands what it
//! got to a page. Role, scope and CSRF checks happened before they run (`staff::access`);
//! the login form checks its own double-submit token, having no session yet.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::json;

use super::i18n::{Label, Lang};
use super::layout::{self, FieldError, Viewer};
use super::pages::audit::{AuditQuery, AuditView, PAGE_SIZE};
use super::pages::denied::Refusal;
use super::pages::dispatch as dispatch_page;
use super::pages::{audit as audit_page, home, login as login_page, scope, staff_list};
use super::{audit_csv, dispatch_board, render_refusal};
use crate::client_ip::ClientIp;
use crate::staff::audit::{self, actions, AuditEntry, AuditFilter, Outcome, MAX_QUERY_LIMIT};
use crate::staff::csrf;
use crate::staff::login::{self, staff_actor, LoginAttempt, LoginError};
use crate::staff::session::{self, SessionKind, StaffSession};
use crate::state::AppState;

/// Where a console page goes when no (acceptable) `next` is given.
const HOME: &str = "/console/";

/// Most entries one CSV download holds.
const CSV_MAX_ROWS: usize = 100_000;

/// The first value of each key of a query string or urlencoded body (a repeated key does not
/// fail the request; later values are ignored).
fn pairs(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// `next` if it is a path of this console: never another host (`//evil`, `/\evil`), never
/// a path outside `/console`, only visible ASCII (it goes into a `Location` header).
fn console_path(next: Option<&str>) -> Option<&str> {
    let next = next?;
    let ok = (next.starts_with("/console/") || next == "/console")
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(next)
}

fn path_of(next: &str) -> &str {
    next.split(['?', '#']).next().unwrap_or("")
}

/// Where to go after signing in: `next` if it is a console page, not the sign-in, sign-out
/// or language pages themselves; else home.
pub fn safe_next(next: Option<&str>) -> String {
    console_path(next)
        .filter(|n| {
            !matches!(
                path_of(n),
                "/console/login" | "/console/logout" | "/console/language"
            )
        })
        .unwrap_or(HOME)
        .to_owned()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static(HOME));
    response.headers_mut().insert(LOCATION, value);
    layout::security_headers(response.headers_mut());
    response
}

fn viewer(session: &StaffSession) -> Viewer<'_> {
    Viewer {
        display_name: &session.member.display_name,
        username: &session.member.username,
        csrf_token: &session.csrf_token,
    }
}

fn here(uri: &Uri) -> &str {
    uri.path_and_query().map_or(HOME, |pq| pq.as_str())
}

/// The sign-in form, with a fresh double-submit token and its cookie.
fn login_form(
    lang: Lang,
    status: StatusCode,
    username: &str,
    next: &str,
    errors: &[FieldError],
    notice: Option<Label>,
) -> Response {
    let (token, cookie) = csrf::login_token();
    let view = login_page::LoginView {
        username,
        next,
        csrf_token: &token,
        errors,
        notice,
    };
    let mut response = layout::respond(status, login_page::render(lang, &view));
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

/// `GET /console/login`.
pub async fn login_form_page(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let lang = Lang::from_headers(&headers);
    let q = pairs(query.unwrap_or_default().as_bytes());
    let next = safe_next(q.get("next").map(String::as_str));
    let notice = if q.contains_key("signed_out") {
        Some(Label::SignedOut)
    } else if next != HOME {
        Some(Label::SignInToContinue)
    } else {
        None
    };
    login_form(lang, StatusCode::OK, "", &next, &[], notice)
}

/// `POST /console/login`: a session cookie and a redirect, or the form again with the reason.
pub async fn login_submit(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let form = pairs(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let (username, password, totp) = (field("username"), field("password"), field("totp").trim());
    let next = safe_next(form.get("next").map(String::as_str));
    // No login without the form's double-submit token (a cross-site post, or a form whose
    // cookie is gone): the form again, with a fresh token; nothing was tried.
    if !csrf::check_login_token(&headers, field(csrf::FORM_FIELD)) {
        let errors = [FieldError {
            field: Some("username"),
            message: Label::LoginFormRenewed.text(lang).to_owned(),
        }];
        return login_form(
            lang,
            StatusCode::BAD_REQUEST,
            username,
            &next,
            &errors,
            None,
        );
    }
    let errors = login_page::validate(lang, username, password, totp);
    if !errors.is_empty() {
        return login_form(lang, StatusCode::OK, username, &next, &errors, None);
    }
    let attempt = LoginAttempt {
        username,
        password,
        totp: (!totp.is_empty()).then_some(totp),
        client_ip,
        kind: SessionKind::Cookie,
    };
    match login::login(&state, attempt).await {
        Ok(logged_in) => {
            let mut response = see_other(&next);
            response
                .headers_mut()
                .append(SET_COOKIE, session::set_cookie(&logged_in.token));
            response
                .headers_mut()
                .append(SET_COOKIE, HeaderValue::from_static(CLEAR_LOGIN_CSRF));
            response
        }
        Err(LoginError::Refused) => {
            let errors = [FieldError {
                field: Some("username"),
                message: Label::LoginRefused.text(lang).to_owned(),
            }];
            login_form(lang, StatusCode::OK, username, &next, &errors, None)
        }
        Err(LoginError::Locked { retry_after_secs }) => {
            let minutes = (retry_after_secs.max(1) + 59) / 60;
            let errors = [FieldError {
                field: Some("username"),
                message: Label::LoginLocked.fill(lang, &minutes.to_string()),
            }];
            let mut response = login_form(
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                username,
                &next,
                &errors,
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
                response.headers_mut().insert(RETRY_AFTER, v);
            }
            response
        }
        Err(LoginError::Store(e)) => {
            tracing::error!(error = %e, "console sign-in: the store failed");
            render_refusal(lang, Refusal::Internal)
        }
    }
}

/// Removes the login form's double-submit cookie once it has served.
const CLEAR_LOGIN_CSRF: &str =
    "__Host-sotong-login-csrf=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0";

/// `POST /console/logout`: ends the session on the server, then the cookie.
pub async fn logout(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = login::logout(&state, &session).await {
        tracing::error!(error = %e, "console sign-out: the store failed");
        return render_refusal(Lang::from_headers(&headers), Refusal::Internal);
    }
    let mut response = see_other("/console/login?signed_out=1");
    response
        .headers_mut()
        .append(SET_COOKIE, session::clear_cookie());
    response
}

/// `GET /console/`.
pub async fn home_page(
    Extension(session): Extension<StaffSession>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::from_headers(&headers);
    layout::respond(
        StatusCode::OK,
        home::render(lang, viewer(&session), &session.member.grants),
    )
}

/// `GET /console/agency/{agency}` (the officer holds this agency: checked before).
pub async fn agency_page(
    Extension(session): Extension<StaffSession>,
    Path(agency): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::from_headers(&headers);
    layout::respond(
        StatusCode::OK,
        scope::agency(lang, viewer(&session), &agency),
    )
}

/// The open incidents of the page of `region`, by urgency; the read is audited like the
/// JSON list (`sos_incident_list`).
async fn dispatch_rows_of(
    state: &AppState,
    session: &StaffSession,
    client_ip: std::net::IpAddr,
    region: &str,
    what: &'static str,
) -> Result<Vec<dispatch_board::BoardRow>, crate::store::StoreError> {
    let regions = dispatch_board::page_regions(region);
    let rows = dispatch_board::load(state, regions.as_deref()).await?;
    audit::record(
        state,
        AuditEntry::new(
            staff_actor(&session.member),
            actions::SOS_INCIDENT_LIST,
            Outcome::Success,
        )
        .from_ip(client_ip)
        .detail(json!({ "count": rows.len(), "region": region, "view": what })),
    )
    .await;
    Ok(rows)
}

/// `GET /console/dispatch/{region}` (the dispatcher holds this region: checked before): the
/// dispatch console, its list rendered at once.
pub async fn dispatch_page(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(client_ip): ClientIp,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::from_headers(&headers);
    // The cursor first, then the rows: an event in between is replayed, never missed.
    let rows = match state.store.sos_last_event_id().await {
        Ok(after) => dispatch_rows_of(&state, &session, client_ip, &region, "console_page")
            .await
            .map(|rows| (after, rows)),
        Err(e) => Err(e),
    };
    let (after_event, rows) = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "dispatch page: the store failed");
            return render_refusal(lang, Refusal::Internal);
        }
    };
    let tiles = state.config.sos.map_tiles.as_ref();
    let view = dispatch_page::DispatchView {
        region: &region,
        rows: &rows,
        now: state.now_secs(),
        tiles: tiles.map(|t| t.template()),
        after_event,
    };
    layout::respond_with_img_origin(
        StatusCode::OK,
        dispatch_page::render(lang, viewer(&session), &view),
        tiles.map(|t| t.origin()),
    )
}

/// `GET /console/dispatch/{region}/incidents`: the list's rows alone (HTML), for the page's
/// script to swap in when the feed tells of a new incident or a change of state.
pub async fn dispatch_rows(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(client_ip): ClientIp,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::from_headers(&headers);
    match dispatch_rows_of(&state, &session, client_ip, &region, "console_refresh").await {
        Ok(rows) => layout::respond(
            StatusCode::OK,
            dispatch_page::rows(lang, &rows, state.now_secs()),
        ),
        Err(e) => {
            tracing::error!(error = %e, "dispatch rows: the store failed");
            render_refusal(lang, Refusal::Internal)
        }
    }
}

fn audit_query(query: Option<String>) -> AuditQuery {
    let mut q = pairs(query.unwrap_or_default().as_bytes());
    AuditQuery {
        actor: q.remove("actor"),
        action: q.remove("action"),
        from: q.remove("from"),
        to: q.remove("to"),
        before: q.remove("before"),
    }
}

/// What an audit entry about reading the log says of the filter (no secrets in it).
fn filter_detail(f: &AuditFilter) -> serde_json::Value {
    json!({
        "actor": f.actor, "action": f.action, "since": f.since, "until": f.until,
        "before_id": f.before_id,
    })
}

/// `GET /console/admin/audit`: one page of entries; the view itself is audited.
pub async fn audit_log_page(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let q = audit_query(query);
    let (records, errors) = match q.filter(lang) {
        Ok(mut filter) => {
            // One more than a page: whether there are older entries.
            filter.limit = PAGE_SIZE + 1;
            audit::record(
                &state,
                AuditEntry::new(
                    staff_actor(&session.member),
                    actions::AUDIT_VIEW,
                    Outcome::Success,
                )
                .from_ip(client_ip)
                .detail(filter_detail(&filter)),
            )
            .await;
            match audit::query(&state, &filter).await {
                Ok(records) => (records, Vec::new()),
                Err(e) => {
                    tracing::error!(error = %e, "audit page: the store failed");
                    return render_refusal(lang, Refusal::Internal);
                }
            }
        }
        Err(errors) => (Vec::new(), errors),
    };
    let view = AuditView {
        query: &q,
        records: &records,
        errors: &errors,
    };
    layout::respond(
        StatusCode::OK,
        audit_page::render(lang, viewer(&session), here(&uri), &view),
    )
}

/// `GET /console/admin/audit.csv`: every entry the filters match (up to 100,000), newest
/// first; the export is audited.
pub async fn audit_log_csv(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let Ok(mut filter) = audit_query(query).filter(lang) else {
        return render_refusal(lang, Refusal::NotFound);
    };
    filter.limit = MAX_QUERY_LIMIT;
    let mut records = Vec::new();
    loop {
        let page = match audit::query(&state, &filter).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "audit CSV: the store failed");
                return render_refusal(lang, Refusal::Internal);
            }
        };
        let full = page.len() >= MAX_QUERY_LIMIT as usize;
        filter.before_id = page.last().map(|r| r.id);
        records.extend(page);
        if !full || records.len() >= CSV_MAX_ROWS {
            break;
        }
    }
    records.truncate(CSV_MAX_ROWS);
    filter.before_id = None;
    audit::record(
        &state,
        AuditEntry::new(
            staff_actor(&session.member),
            actions::AUDIT_EXPORT,
            Outcome::Success,
        )
        .from_ip(client_ip)
        .detail(
            json!({ "format": "csv", "rows": records.len(), "filter": filter_detail(&filter) }),
        ),
    )
    .await;
    let name = format!(
        "attachment; filename=\"sotong-audit-{}.csv\"",
        super::dates::format_utc(state.now_secs())
            .replace([' ', ':'], "")
            .replace('-', "")
    );
    let mut response = audit_csv::write(&records).into_response();
    let h = response.headers_mut();
    layout::security_headers(h);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    response
}

/// `GET /console/admin/staff`.
pub async fn staff_page(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::from_headers(&headers);
    match state.store.list_staff().await {
        Ok(members) => layout::respond(
            StatusCode::OK,
            staff_list::render(lang, viewer(&session), &members),
        ),
        Err(e) => {
            tracing::error!(error = %e, "staff page: the store failed");
            render_refusal(lang, Refusal::Internal)
        }
    }
}

/// `GET /console/language?to=en&next=…`: remembers the language, back to the page.
pub async fn switch_language(RawQuery(query): RawQuery) -> Response {
    let q = pairs(query.unwrap_or_default().as_bytes());
    // Back to the page the switch was on (the sign-in page too), in the console only.
    let back = console_path(q.get("next").map(String::as_str))
        .filter(|n| path_of(n) != "/console/language")
        .unwrap_or(HOME);
    let mut response = see_other(back);
    if let Some(lang) = q.get("to").and_then(|to| Lang::from_code(to)) {
        response.headers_mut().append(SET_COOKIE, lang.set_cookie());
    }
    response
}

/// `GET /console`: to `/console/`.
pub async fn console_root() -> Response {
    see_other(HOME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(None), HOME);
        assert_eq!(
            safe_next(Some("/console/admin/audit?actor=kim")),
            "/console/admin/audit?actor=kim"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil",
            "/console/\\evil",
            "/v1/staff/me",
            "/console/login",
            "/console/logout",
            "/console/language?to=en",
            "/console/ä",
            "/console/a b",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad}");
        }
    }

    #[test]
    fn repeated_keys_keep_the_first() {
        let p = pairs(b"a=1&a=2&b=%ED%95%9C");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "한");
    }
}
