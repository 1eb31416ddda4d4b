//! The admins' SOS summary (issue 7 item 7: "admins see both, aggregated by region and
//! month"): `GET /v1/admin/sos/summary?from=YYYY-MM&to=YYYY-MM` (JSON), the console page
//! `/console/sos/summary` and its CSV download, all `Need::Role(Admin)` and audited. The
//! numbers are computed by the store in SQL ([`crate::store::SosStore::sos_summary`]).

use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;

use crate::client_ip::ClientIp;
use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, FieldError, Viewer};
use crate::console::pages::denied::Refusal;
use crate::console::pages::sos_summary::{self as page, SummaryQuery};
use crate::console::render_refusal;
use crate::error::ApiError;
use crate::staff::access::{Need, StaffRouter};
use crate::staff::audit::{self, actions, AuditEntry, Outcome};
use crate::staff::login::staff_actor;
use crate::staff::session::StaffSession;
use crate::staff::Role;
use crate::state::AppState;
use crate::store::sos::parse_month;
use crate::store::{MonthRange, SummaryRow, SUMMARY_UTC_OFFSET_SECS};

/// The JSON route's path.
pub const API_PATH: &str = "/v1/admin/sos/summary";
/// Longest range, months.
pub const MAX_MONTHS: i64 = 120;

/// Registers the JSON route, the console page and its CSV download.
pub fn routes(r: StaffRouter) -> StaffRouter {
    let admin = Need::Role(Role::Admin);
    r.route(Method::GET, API_PATH, admin.clone(), get(api))
        .route(Method::GET, page::PATH, admin.clone(), get(console_page))
        .route(Method::GET, page::CSV_PATH, admin, get(console_csv))
}

/// The current month (Korea Standard Time) as `YYYY-MM`.
fn this_month(now: i64) -> String {
    crate::staff::admin_cli::rfc3339(now + SUMMARY_UTC_OFFSET_SECS)[..7].to_owned()
}

/// Why a range is refused: which field, and the label saying why.
type RangeError = (Option<&'static str>, Label);

/// The typed range (defaults: this month) and its [`MonthRange`].
fn read_range(query: Option<String>, now: i64) -> (SummaryQuery, Result<MonthRange, RangeError>) {
    let mut from = None;
    let mut to = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "from" if from.is_none() => from = Some(v.trim().to_owned()),
            "to" if to.is_none() => to = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    let month = this_month(now);
    let q = SummaryQuery {
        from: from
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| month.clone()),
        to: to.filter(|s| !s.is_empty()).unwrap_or(month),
    };
    let range = (|| {
        let f = parse_month(&q.from).ok_or((Some("from"), Label::MonthInvalid))?;
        let t = parse_month(&q.to).ok_or((Some("to"), Label::MonthInvalid))?;
        let months =
            (i64::from(t.0) * 12 + i64::from(t.1)) - (i64::from(f.0) * 12 + i64::from(f.1));
        if !(0..MAX_MONTHS).contains(&months) {
            return Err((Some("to"), Label::MonthRangeInvalid));
        }
        MonthRange::months(f, t).ok_or((Some("to"), Label::MonthRangeInvalid))
    })();
    (q, range)
}

async fn audited(
    state: &AppState,
    session: &StaffSession,
    ip: std::net::IpAddr,
    action: &'static str,
    q: &SummaryQuery,
    rows: usize,
) {
    audit::record(
        state,
        AuditEntry::new(staff_actor(&session.member), action, Outcome::Success)
            .from_ip(ip)
            .detail(json!({ "from": q.from, "to": q.to, "rows": rows })),
    )
    .await;
}

/// Answer of the JSON route.
#[derive(Debug, Serialize)]
pub struct SummaryAnswer {
    /// First month, `YYYY-MM`.
    pub from: String,
    /// Last month, included.
    pub to: String,
    /// Months are Korea Standard Time.
    pub time_zone: &'static str,
    /// By month, then region.
    pub rows: Vec<SummaryRow>,
}

/// `GET /v1/admin/sos/summary?from=YYYY-MM&to=YYYY-MM` (both default to this month).
pub async fn api(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    RawQuery(query): RawQuery,
) -> Result<Json<SummaryAnswer>, ApiError> {
    let (q, range) = read_range(query, state.now_secs());
    let range = range.map_err(|(_, why)| {
        ApiError::bad_request("invalid_month", why.text(Lang::En).to_owned())
    })?;
    let rows = state.store.sos_summary(range).await?;
    audited(
        &state,
        &session,
        ip,
        actions::SOS_SUMMARY_VIEW,
        &q,
        rows.len(),
    )
    .await;
    Ok(Json(SummaryAnswer {
        from: q.from,
        to: q.to,
        time_zone: "Asia/Seoul",
        rows,
    }))
}

/// `GET /console/sos/summary?from=&to=`.
pub async fn console_page(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let (q, range) = read_range(uri.query().map(str::to_owned), state.now_secs());
    let (rows, errors) = match range {
        Ok(range) => match state.store.sos_summary(range).await {
            Ok(rows) => {
                audited(
                    &state,
                    &session,
                    ip,
                    actions::SOS_SUMMARY_VIEW,
                    &q,
                    rows.len(),
                )
                .await;
                (rows, Vec::new())
            }
            Err(e) => {
                tracing::error!(error = %e, "sos summary page: the store failed");
                return render_refusal(lang, Refusal::Internal);
            }
        },
        Err((field, why)) => (
            Vec::new(),
            vec![FieldError {
                field,
                message: why.text(lang).to_owned(),
            }],
        ),
    };
    let viewer = Viewer {
        display_name: &session.member.display_name,
        username: &session.member.username,
        csrf_token: &session.csrf_token,
    };
    let here = uri.path_and_query().map_or(page::PATH, |pq| pq.as_str());
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    layout::respond(status, page::render(lang, viewer, here, &q, &rows, &errors))
}

/// `GET /console/sos/summary.csv?from=&to=`.
pub async fn console_csv(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = Lang::from_headers(&headers);
    let (q, range) = read_range(query, state.now_secs());
    let Ok(range) = range else {
        return render_refusal(lang, Refusal::NotFound);
    };
    let rows = match state.store.sos_summary(range).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "sos summary CSV: the store failed");
            return render_refusal(lang, Refusal::Internal);
        }
    };
    audited(
        &state,
        &session,
        ip,
        actions::SOS_SUMMARY_EXPORT,
        &q,
        rows.len(),
    )
    .await;
    let mut response = page::csv(&rows).into_response();
    let h = response.headers_mut();
    layout::security_headers(h);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    // Months are digits and a dash only once parsed.
    let name = format!(
        "attachment; filename=\"sotong-sos-summary-{}-{}.csv\"",
        q.from, q.to
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_this_month_and_refuse_nonsense() {
        // 2026-11-30 20:00 UTC is 2026-12-01 05:00 in Seoul.
        let now = 1_796_068_800;
        let (q, r) = read_range(None, now);
        assert_eq!((q.from.as_str(), q.to.as_str()), ("2026-12", "2026-12"));
        assert!(r.is_ok());
        let (_, r) = read_range(Some("from=2026-13&to=2026-12".into()), now);
        assert_eq!(r.unwrap_err().0, Some("from"));
        let (_, r) = read_range(Some("from=2026-12&to=2026-11".into()), now);
        assert_eq!(r.unwrap_err(), (Some("to"), Label::MonthRangeInvalid));
        let (_, r) = read_range(Some("from=2000-01&to=2026-11".into()), now);
        assert!(r.is_err());
    }
}
