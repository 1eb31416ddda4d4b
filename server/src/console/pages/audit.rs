//! The admin's audit page: entries newest first, filtered by actor, action and dates with a
//! GET form, paged by `before` (an entry id), with a link to the same entries as CSV.

use maud::{html, Markup};
use serde::Deserialize;

use crate::console::dates;
use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, error_for, FieldError, Frame, TextInput, Viewer};
use crate::staff::audit::{actions, Actor, AuditFilter, AuditRecord, Outcome};

/// Entries on one page.
pub const PAGE_SIZE: u32 = 50;

/// The actions the filter offers.
pub const KNOWN_ACTIONS: [&str; 10] = [
    actions::LOGIN,
    actions::LOGIN_FAILED,
    actions::LOGIN_LOCKED,
    actions::LOGOUT,
    actions::ACCESS_DENIED,
    actions::STAFF_ADD,
    actions::STAFF_DISABLE,
    actions::STAFF_RESET_PASSWORD,
    actions::AUDIT_VIEW,
    actions::AUDIT_EXPORT,
];

/// The page's query string, as typed (checked by [`AuditQuery::filter`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    /// Username of the actor.
    pub actor: Option<String>,
    /// Action name.
    pub action: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC).
    pub to: Option<String>,
    /// Only entries older than this id.
    pub before: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl AuditQuery {
    /// The store filter, or what is wrong with the form. `limit` is left to the caller.
    pub fn filter(&self, lang: Lang) -> Result<AuditFilter, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut day = |field: &'static str, v: &Option<String>| -> Option<i64> {
            let text = non_empty(v)?;
            let start = dates::parse_day(text);
            if start.is_none() {
                errors.push(FieldError {
                    field: Some(field),
                    message: Label::DateInvalid.text(lang).to_owned(),
                });
            }
            start
        };
        let since = day("from", &self.from);
        // `until` is exclusive: the day after the last day asked for.
        let until = day("to", &self.to).map(|start| dates::end_of_day(start) + 1);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AuditFilter {
            since,
            until,
            actor: non_empty(&self.actor).map(crate::staff::normalize_username),
            action: non_empty(&self.action).map(str::to_owned),
            // A page link we did not make: start from the newest.
            before_id: non_empty(&self.before).and_then(|b| b.parse().ok()),
            limit: PAGE_SIZE,
        })
    }

    /// The query string of these filters (without `before`), e.g. for the CSV link.
    pub fn filters_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = non_empty(v) {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    fn with_before(&self, before: Option<i64>) -> String {
        let base = self.filters_query();
        match (before, base.is_empty()) {
            (None, true) => "/console/admin/audit".to_owned(),
            (None, false) => format!("/console/admin/audit?{base}"),
            (Some(id), true) => format!("/console/admin/audit?before={id}"),
            (Some(id), false) => format!("/console/admin/audit?{base}&before={id}"),
        }
    }
}

/// What the page shows: the entries found (one more than a page means there are older
/// ones), or the form's errors.
pub struct AuditView<'a> {
    /// The query as typed.
    pub query: &'a AuditQuery,
    /// Entries found, newest first, at most `PAGE_SIZE + 1`.
    pub records: &'a [AuditRecord],
    /// Problems with the form (then `records` is empty).
    pub errors: &'a [FieldError],
}

/// The label of an outcome.
pub fn outcome_label(o: Outcome) -> Label {
    match o {
        Outcome::Success => Label::OutcomeSuccess,
        Outcome::Failure => Label::OutcomeFailure,
        Outcome::Denied => Label::OutcomeDenied,
    }
}

/// The page.
pub fn render(lang: Lang, viewer: Viewer<'_>, here: &str, view: &AuditView<'_>) -> Markup {
    let t = |l: Label| l.text(lang);
    let q = view.query;
    let page_size = PAGE_SIZE as usize;
    let shown = &view.records[..view.records.len().min(page_size)];
    let older = (view.records.len() > page_size)
        .then(|| shown.last().map(|r| r.id))
        .flatten();
    let action = non_empty(&q.action).unwrap_or("");
    let title = if view.errors.is_empty() {
        t(Label::AuditTitle).to_owned()
    } else {
        format!("{}: {}", t(Label::Error), t(Label::AuditTitle))
    };
    let filters = q.filters_query();
    let csv_href = if filters.is_empty() {
        "/console/admin/audit.csv".to_owned()
    } else {
        format!("/console/admin/audit.csv?{filters}")
    };
    let date_input = |name: &'static str, label: Label, value: &Option<String>| {
        TextInput {
            name,
            label: t(label),
            hint: Some(t(Label::DateHint)),
            kind: "text",
            value: value.as_deref().unwrap_or(""),
            autocomplete: "off",
            class: "",
            inputmode: Some("numeric"),
            error: error_for(view.errors, name),
            required: false,
        }
        .render(lang)
    };
    let body = html! {
        (layout::error_summary(lang, view.errors))
        a class="back-link" href="/console/" { (t(Label::BackToHome)) }
        h1 { (t(Label::AuditTitle)) }
        p { (t(Label::AuditIntro)) }
        form class="filters" method="get" action="/console/admin/audit" {
            fieldset {
                legend { (t(Label::FilterLegend)) }
                div class="filters__row" {
                    (TextInput {
                        name: "actor",
                        label: t(Label::FilterActor),
                        hint: None,
                        kind: "text",
                        value: q.actor.as_deref().unwrap_or(""),
                        autocomplete: "off",
                        class: "",
                        inputmode: None,
                        error: None,
                        required: false,
                    }.render(lang))
                    div class="form-group" {
                        label for="action" { (t(Label::FilterAction)) }
                        select id="action" name="action" {
                            option value="" selected[action.is_empty()] { (t(Label::AnyAction)) }
                            @for a in KNOWN_ACTIONS {
                                option value=(a) selected[a == action] { (a) }
                            }
                            @if !action.is_empty() && !KNOWN_ACTIONS.contains(&action) {
                                option value=(action) selected { (action) }
                            }
                        }
                    }
                }
                div class="filters__row" {
                    (date_input("from", Label::FilterFrom, &q.from))
                    (date_input("to", Label::FilterTo, &q.to))
                }
                div class="button-group" {
                    button type="submit" class="button" { (t(Label::ApplyFilters)) }
                    a href="/console/admin/audit" { (t(Label::ClearFilters)) }
                }
            }
        }
        @if view.errors.is_empty() {
            p { a href=(csv_href) data-csv download { (t(Label::DownloadCsv)) } }
            @if shown.is_empty() {
                p { (t(Label::NoEntries)) }
            } @else {
                div class="table-wrap" {
                    table class="audit" {
                        caption { (Label::EntriesShown.fill(lang, &shown.len().to_string())) }
                        thead {
                            tr {
                                th scope="col" class="nowrap" { (t(Label::ColTime)) }
                                th scope="col" { (t(Label::ColActor)) }
                                th scope="col" { (t(Label::ColAction)) }
                                th scope="col" { (t(Label::ColTarget)) }
                                th scope="col" { (t(Label::ColOutcome)) }
                                th scope="col" { (t(Label::ColIp)) }
                                th scope="col" { (t(Label::ColDetail)) }
                            }
                        }
                        tbody {
                            @for r in shown {
                                (row(lang, r))
                            }
                        }
                    }
                }
            }
            @if q.before.is_some() || older.is_some() {
                nav class="pagination" aria-label=(t(Label::AuditTitle)) {
                    @if q.before.is_some() {
                        a href=(q.with_before(None)) { (t(Label::NewestEntries)) }
                    }
                    @if let Some(id) = older {
                        a href=(q.with_before(Some(id))) rel="next" { (t(Label::OlderEntries)) " →" }
                    }
                }
            }
        }
    };
    layout::page(
        &Frame {
            lang,
            title: &title,
            viewer: Some(viewer),
            here,
        },
        body,
    )
}

fn row(lang: Lang, r: &AuditRecord) -> Markup {
    let actor = match &r.actor {
        Actor::Staff { username, .. } => username.clone(),
        Actor::UnknownName => Label::ActorUnknown.text(lang).to_owned(),
        Actor::System => Label::ActorSystem.text(lang).to_owned(),
    };
    let target = match (&r.target_kind, &r.target_id) {
        (Some(k), Some(id)) => format!("{k} {id}"),
        (Some(k), None) => k.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => String::new(),
    };
    let detail = r.detail.as_ref().map(detail_text).unwrap_or_default();
    let status_class = match r.outcome {
        Outcome::Success => "status status--success",
        Outcome::Failure => "status status--failure",
        Outcome::Denied => "status status--denied",
    };
    html! {
        tr {
            td class="nowrap" data-col="time" { (dates::format_utc(r.at)) }
            td data-col="actor" { (actor) }
            td data-col="action" class="nowrap" { code { (r.action) } }
            td data-col="target" { (target) }
            td data-col="outcome" { span class=(status_class) { (outcome_label(r.outcome).text(lang)) } }
            td data-col="ip" class="nowrap" { (r.client_ip.map(|ip| ip.to_string()).unwrap_or_default()) }
            td data-col="detail" class="detail" { (detail) }
        }
    }
}

/// An entry's detail for people: `key: value` pairs without the empty ones, strings bare,
/// cut at 200 characters.
pub fn detail_text(detail: &serde_json::Value) -> String {
    use serde_json::Value;
    let text = match detail {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                Value::Object(_) => format!("{k}: {{{}}}", detail_text(v)),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: &str, to: &str) -> AuditQuery {
        AuditQuery {
            actor: Some(" Kim ".into()),
            action: Some("".into()),
            from: Some(from.into()),
            to: Some(to.into()),
            before: Some("42".into()),
        }
    }

    #[test]
    fn the_form_becomes_a_filter() {
        let f = query("2026-11-29", "2026-11-29").filter(Lang::En).unwrap();
        assert_eq!(f.actor.as_deref(), Some("kim"));
        assert_eq!(f.action, None);
        assert_eq!(f.before_id, Some(42));
        assert_eq!(f.until.unwrap() - f.since.unwrap(), 86_400);
        assert_eq!(f.limit, PAGE_SIZE);
    }

    #[test]
    fn a_bad_date_names_its_field() {
        let e = query("29/11/2026", "").filter(Lang::En).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, Some("from"));
    }

    #[test]
    fn details_read_as_pairs_without_nulls() {
        let d = serde_json::json!({"kind": "cookie", "actor": null, "rows": 3,
                                   "filter": {"actor": "kim", "since": null}});
        assert_eq!(
            detail_text(&d),
            "filter: {actor: kim}, kind: cookie, rows: 3"
        );
        let long = serde_json::json!({"x": "가".repeat(300)});
        assert_eq!(detail_text(&long).chars().count(), 201);
    }

    #[test]
    fn links_keep_the_filters() {
        let q = query("2026-11-01", "");
        assert_eq!(q.filters_query(), "actor=Kim&from=2026-11-01");
        assert_eq!(
            q.with_before(Some(7)),
            "/console/admin/audit?actor=Kim&from=2026-11-01&before=7"
        );
        assert_eq!(
            AuditQuery::default().with_before(None),
            "/console/admin/audit"
        );
    }
}
