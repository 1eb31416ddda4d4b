//! The admins' SOS summary page: per region and month, incidents, duress, median time to
//! acknowledge, closed incidents by outcome, and the people's feedback; a month range form
//! and a CSV download of the same rows.

use maud::{html, Markup};
use sotong_core::sos::Outcome;

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, FieldError, Frame, TextInput, Viewer};
use crate::store::{SummaryRow, NO_REGION};

/// The page's path.
pub const PATH: &str = "/console/sos/summary";
/// The CSV download's path.
pub const CSV_PATH: &str = "/console/sos/summary.csv";

/// The month range as typed (`YYYY-MM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryQuery {
    /// First month.
    pub from: String,
    /// Last month (included).
    pub to: String,
}

impl SummaryQuery {
    /// `?from=…&to=…` of this range.
    pub fn query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .finish()
    }
}

/// The label of an outcome.
pub fn outcome_label(o: Outcome) -> Label {
    match o {
        Outcome::Assisted => Label::SosOutcomeAssisted,
        Outcome::Arrest => Label::SosOutcomeArrest,
        Outcome::Referred => Label::SosOutcomeReferred,
        Outcome::Transported => Label::SosOutcomeTransported,
        Outcome::CallerCancelled => Label::SosOutcomeCallerCancelled,
        Outcome::FalseAlarm => Label::SosOutcomeFalseAlarm,
        Outcome::NotFound => Label::SosOutcomeNotFound,
        Outcome::Other => Label::SosOutcomeOther,
    }
}

/// Seconds as `m:ss` (or `h:mm:ss`).
pub fn duration(secs: f64) -> String {
    let s = secs.round().max(0.0) as i64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn region_text(lang: Lang, region: &str) -> String {
    if region == NO_REGION {
        Label::SummaryNoRegion.text(lang).to_owned()
    } else {
        region.to_owned()
    }
}

/// The page.
pub fn render(
    lang: Lang,
    viewer: Viewer<'_>,
    here: &str,
    q: &SummaryQuery,
    rows: &[SummaryRow],
    errors: &[FieldError],
) -> Markup {
    let t = |l: Label| l.text(lang);
    let title = t(Label::SummaryTitle);
    let error_for = |name: &str| {
        errors
            .iter()
            .find(|e| e.field == Some(name))
            .map(|e| e.message.as_str())
    };
    let month_input = |name: &'static str, label: Label, value: &str| {
        TextInput {
            name,
            label: t(label),
            hint: Some(t(Label::MonthHint)),
            kind: "text",
            value,
            autocomplete: "off",
            class: "",
            inputmode: Some("numeric"),
            error: error_for(name),
            required: true,
        }
        .render(lang)
    };
    let body = html! {
        (layout::error_summary(lang, errors))
        a class="back-link" href="/console/" { (t(Label::BackToHome)) }
        h1 { (title) }
        p { (t(Label::SummaryIntro)) }
        form class="filters" method="get" action=(PATH) {
            fieldset {
                legend { (t(Label::SummaryRange)) }
                div class="filters__row" {
                    (month_input("from", Label::FilterFrom, &q.from))
                    (month_input("to", Label::FilterTo, &q.to))
                }
                div class="button-group" {
                    button type="submit" class="button" { (t(Label::ApplyFilters)) }
                }
            }
        }
        @if errors.is_empty() {
            p { a href=(format!("{CSV_PATH}?{}", q.query_string())) data-csv download { (t(Label::SummaryCsv)) } }
            @if rows.is_empty() {
                p { (t(Label::SummaryNone)) }
            } @else {
                div class="table-wrap" {
                    table class="sos-summary" {
                        caption { (title) " " (q.from) " – " (q.to) }
                        thead {
                            tr {
                                th scope="col" { (t(Label::SummaryColMonth)) }
                                th scope="col" { (t(Label::SummaryColRegion)) }
                                th scope="col" { (t(Label::SummaryColIncidents)) }
                                th scope="col" { (t(Label::SummaryColDuress)) }
                                th scope="col" { (t(Label::SummaryColMedianAck)) }
                                th scope="col" { (t(Label::SummaryColOutcomes)) }
                                th scope="col" { (t(Label::SummaryColFeedback)) }
                                th scope="col" { (t(Label::SummaryColRating)) }
                                th scope="col" { (t(Label::SummaryColFeltSafe)) }
                            }
                        }
                        tbody {
                            @for r in rows {
                                tr {
                                    td class="nowrap" { (r.month) }
                                    td { (region_text(lang, &r.region)) }
                                    td data-col="incidents" { (r.incidents) }
                                    td data-col="duress" { (r.duress) }
                                    td data-col="median_ack" { (r.median_ack_secs.map_or("–".to_owned(), duration)) }
                                    td data-col="outcomes" {
                                        @for (name, n) in &r.closed_by_outcome {
                                            @let label = Outcome::from_name(name).map_or(name.as_str(), |o| outcome_label(o).text(lang));
                                            span class="nowrap" { (label) " " (n) } " "
                                        }
                                    }
                                    td data-col="feedback" { (r.feedback) }
                                    td data-col="rating" { (r.mean_rating.map_or("–".to_owned(), |m| format!("{m:.2}"))) }
                                    td data-col="felt_safe" { (r.felt_safe_share.map_or("–".to_owned(), |s| format!("{:.0}%", s * 100.0))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        &Frame {
            lang,
            title,
            viewer: Some(viewer),
            here,
        },
        body,
    )
}

/// The CSV header: fixed English column names, one count column per outcome.
pub fn csv_header() -> String {
    let mut cols: Vec<String> = ["month", "region", "incidents", "duress", "median_ack_secs"]
        .map(str::to_owned)
        .to_vec();
    cols.extend(
        Outcome::ALL
            .iter()
            .map(|o| format!("closed_{}", o.as_str())),
    );
    cols.extend(
        ["feedback", "mean_rating", "felt_safe_share"]
            .iter()
            .map(|c| (*c).to_owned()),
    );
    cols.join(",")
}

/// The whole CSV file: a byte order mark, the header, one line per row, CRLF line ends.
pub fn csv(rows: &[SummaryRow]) -> String {
    let opt = |v: Option<f64>, digits: usize| v.map_or(String::new(), |v| format!("{v:.digits$}"));
    let mut out = String::from(crate::console::audit_csv::BOM);
    out.push_str(&csv_header());
    out.push_str("\r\n");
    for r in rows {
        let mut cells = vec![
            r.month.clone(),
            r.region.clone(),
            r.incidents.to_string(),
            r.duress.to_string(),
            opt(r.median_ack_secs, 1),
        ];
        cells.extend(Outcome::ALL.iter().map(|o| {
            r.closed_by_outcome
                .get(o.as_str())
                .copied()
                .unwrap_or(0)
                .to_string()
        }));
        cells.push(r.feedback.to_string());
        cells.push(opt(r.mean_rating, 2));
        cells.push(opt(r.felt_safe_share, 3));
        let line: Vec<String> = cells
            .iter()
            .map(|c| crate::staff::admin_cli::csv_field(c))
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SummaryRow {
        SummaryRow {
            region: "seoul".into(),
            month: "2026-11".into(),
            incidents: 3,
            duress: 1,
            median_ack_secs: Some(45.0),
            closed_by_outcome: [("arrest".to_owned(), 2)].into_iter().collect(),
            feedback: 2,
            mean_rating: Some(4.5),
            felt_safe_share: Some(0.5),
        }
    }

    #[test]
    fn csv_has_one_column_per_outcome() {
        let csv = csv(&[row()]);
        let lines: Vec<&str> = csv
            .trim_start_matches(crate::console::audit_csv::BOM)
            .split("\r\n")
            .collect();
        assert_eq!(lines[0].split(',').count(), 5 + Outcome::ALL.len() + 3);
        assert_eq!(
            lines[1],
            "2026-11,seoul,3,1,45.0,0,2,0,0,0,0,0,0,2,4.50,0.500"
        );
        assert_eq!(lines[2], "");
    }

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(duration(0.0), "0:00");
        assert_eq!(duration(59.6), "1:00");
        assert_eq!(duration(125.0), "2:05");
        assert_eq!(duration(3_725.0), "1:02:05");
    }

    #[test]
    fn every_outcome_has_a_label_in_both_languages() {
        for o in Outcome::ALL {
            for lang in Lang::ALL {
                assert!(!outcome_label(o).text(lang).is_empty());
            }
        }
    }
}
