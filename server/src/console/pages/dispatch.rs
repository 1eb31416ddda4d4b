//! `/console/dispatch/{region}`: the SOS dispatch console. The first paint is complete HTML
//! (the incident list by urgency, works before and without JavaScript); `dispatch.js` then
//! keeps it live from the SSE feed, draws the map (Leaflet), sounds the alert and runs the
//! chat and the actions through the dispatcher JSON routes. The rows are rendered here
//! only, for the first paint and for the script's refreshes (`…/{region}/incidents`).

use maud::{html, Markup};
use serde_json::{json, Map, Value};

use crate::console::assets;
use crate::console::dispatch_board::{age_text, BoardRow};
use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, Frame, Viewer};
use crate::console::pages::sos_summary::outcome_label;
use crate::sos::regions::UNROUTED;

use super::home::path_segment;

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct DispatchView<'a> {
    /// The region of the page (`all`: every region).
    pub region: &'a str,
    /// The open incidents, by urgency.
    pub rows: &'a [BoardRow],
    /// Now, Unix seconds (server clock): ages.
    pub now: i64,
    /// The tile URL template, if configured.
    pub tiles: Option<&'a str>,
    /// The feed event id read before the rows: the live feed resumes after it.
    pub after_event: i64,
}

/// The labels the script uses, by name.
const SCRIPT_LABELS: &[Label] = &[
    Label::LiveConnecting,
    Label::LiveOn,
    Label::LiveLost,
    Label::SoundOn,
    Label::SoundOff,
    Label::NewIncidentAlert,
    Label::IncidentHeading,
    Label::NoMessages,
    Label::FromDispatch,
    Label::FromCaller,
    Label::NoteFromDispatch,
    Label::QuickYes,
    Label::QuickNo,
    Label::QuickCantTalk,
    Label::MessageMissing,
    Label::NoteMissing,
    Label::UnitMissing,
    Label::OutcomeMissing,
    Label::ActionFailed,
    Label::ActionDone,
    Label::ErrorSummaryTitle,
    Label::AgeMinutes,
    Label::AgeHours,
    Label::NoFixYet,
    Label::UnknownValue,
    Label::TriggerLabel,
    Label::UnitAssignedLabel,
    Label::ColState,
    Label::ColRegion,
    Label::ColBattery,
    Label::ColLastFix,
    Label::SosStateNew,
    Label::SosStateAcknowledged,
    Label::SosStateUnitAssigned,
    Label::SosStateResolved,
    Label::SosStateCancelled,
    Label::SosStateDuress,
];

/// The page.
pub fn render(lang: Lang, viewer: Viewer<'_>, view: &DispatchView<'_>) -> Markup {
    let t = |l: Label| l.text(lang);
    let here = format!("/console/dispatch/{}", path_segment(view.region));
    let title = Label::DispatchTitle.fill(lang, view.region);
    let labels: Map<String, Value> = SCRIPT_LABELS
        .iter()
        .map(|l| (format!("{l:?}"), Value::from(l.text(lang))))
        .collect();
    let config = json!({
        "region": view.region,
        "csrf": viewer.csrf_token,
        "tiles": view.tiles,
        "now": view.now,
        "rowsUrl": format!("{here}/incidents"),
        "feedUrl": format!("/v1/dispatch/feed?after={}", view.after_event),
        "labels": labels,
    });
    let body = html! {
        link rel="stylesheet" href=(assets::LEAFLET_CSS.url());
        link rel="stylesheet" href=(assets::DISPATCH_CSS.url());
        script src=(assets::LEAFLET_JS.url()) defer {}
        script src=(assets::DISPATCH_JS.url()) defer {}
        a class="back-link" href="/console/" { (t(Label::BackToHome)) }
        h1 { (title) }
        div id="dispatch" class="dispatch" data-config=(config.to_string()) {
            p class="lead" { (t(Label::DispatchIntro)) }
            div class="dispatch__toolbar" {
                p id="live-status" class="live-status" role="status" { (t(Label::LiveConnecting)) }
                button type="button" id="sound-toggle" class="button button--secondary"
                    aria-pressed="false" hidden { (t(Label::SoundOff)) }
            }
            div id="sound-banner" class="notice notice--warning" hidden {
                p { (t(Label::SoundBanner)) }
            }
            div id="alert-banner" class="alert-banner" role="alert" hidden {}
            div id="dispatch-errors" {}
            noscript { div class="notice" { p { (t(Label::NeedsScript)) } } }
            div class="dispatch__grid" {
                section class="dispatch__list" aria-labelledby="incidents-heading" {
                    h2 id="incidents-heading" { (t(Label::IncidentsHeading)) }
                    div class="table-wrap" {
                        table class="incident-table" {
                            caption class="visually-hidden" { (t(Label::IncidentsHeading)) }
                            thead {
                                tr {
                                    th scope="col" { (t(Label::ColRegion)) }
                                    th scope="col" { (t(Label::ColAge)) }
                                    th scope="col" { (t(Label::ColState)) }
                                    th scope="col" { (t(Label::ColLastFix)) }
                                    th scope="col" { (t(Label::ColBattery)) }
                                    th scope="col" { (t(Label::ColUnread)) }
                                    th scope="col" { span class="visually-hidden" { (t(Label::ColOpen)) } }
                                }
                            }
                            tbody id="incident-rows" { (rows(lang, view.rows, view.now)) }
                        }
                    }
                }
                section class="dispatch__detail" aria-labelledby="detail-heading" {
                    h2 id="detail-heading" { (t(Label::MapHeading)) }
                    p id="detail-hint" { (t(Label::SelectIncident)) }
                    div id="map" class="map" role="region" aria-label=(t(Label::MapHeading)) {}
                    p class="hint" id="map-note" {
                        @if view.tiles.is_none() { (t(Label::MapNoTiles)) " " }
                        (t(Label::MapLegend))
                    }
                    (detail(lang))
                }
            }
        }
    };
    layout::page(
        &Frame {
            lang,
            title: &title,
            viewer: Some(viewer),
            here: &here,
        },
        body,
    )
}

/// The selected incident's panel: summary, conversation, message box and actions. Hidden
/// until the script opens an incident (they work through `fetch`).
fn detail(lang: Lang) -> Markup {
    let t = |l: Label| l.text(lang);
    html! {
        div id="incident-detail" class="incident-detail" hidden {
            h3 id="incident-title" {}
            dl class="summary summary--compact" id="incident-summary" {}
            h3 { (t(Label::ThreadHeading)) }
            ol id="thread" class="thread" aria-live="polite" {}
            form id="message-form" class="action-form" novalidate {
                div class="form-group" {
                    label for="message-text" { (t(Label::MessageLabel)) }
                    span class="hint" id="message-text-hint" { (t(Label::MessageHint)) }
                    textarea class="input textarea" id="message-text" name="text" rows="2"
                        maxlength="1000" aria-describedby="message-text-hint" {}
                }
                button type="submit" class="button" { (t(Label::SendMessage)) }
            }
            h3 { (t(Label::ActionsHeading)) }
            div class="button-group action-row" {
                button type="button" id="ack-button" class="button" { (t(Label::AcknowledgeAction)) }
            }
            form id="assign-form" class="action-form" novalidate {
                div class="form-group" {
                    label for="unit-text" { (t(Label::UnitLabel)) }
                    input class="input" id="unit-text" name="unit" type="text" maxlength="100"
                        autocomplete="off";
                }
                button type="submit" class="button button--secondary" { (t(Label::AssignAction)) }
            }
            form id="note-form" class="action-form" novalidate {
                div class="form-group" {
                    label for="note-text" { (t(Label::NoteLabel)) }
                    input class="input" id="note-text" name="text" type="text" maxlength="1000"
                        autocomplete="off";
                }
                button type="submit" class="button button--secondary" { (t(Label::AddNoteAction)) }
            }
            form id="close-form" class="action-form" novalidate {
                div class="form-group" {
                    label for="outcome" { (t(Label::OutcomeLabel)) }
                    select id="outcome" name="outcome" {
                        option value="" { (t(Label::ChooseOutcome)) }
                        // The closed set the server accepts (`sotong_core::sos::Outcome`).
                        @for outcome in sotong_core::sos::Outcome::ALL {
                            option value=(outcome.as_str()) { (outcome_label(outcome).text(lang)) }
                        }
                    }
                }
                button type="submit" class="button button--warning" { (t(Label::CloseAction)) }
            }
        }
    }
}

/// The list's rows (the `<tbody>` content), in the order given.
pub fn rows(lang: Lang, rows: &[BoardRow], now: i64) -> Markup {
    let t = |l: Label| l.text(lang);
    html! {
        @if rows.is_empty() {
            tr class="incident-table__empty" { td colspan="7" { (t(Label::NoIncidents)) } }
        }
        @for row in rows {
            @let class = if row.duress { "incident incident--duress" } else { "incident" };
            tr class=(class) id=(format!("incident-{}", row.id)) data-incident=(row.id)
                data-created-at=(row.created_at) data-region=[row.region.as_deref()] {
                td {
                    @match row.region.as_deref() {
                        None => { (t(Label::NoFixYet)) }
                        Some(r) if r == UNROUTED => { (t(Label::Unrouted)) }
                        Some(r) => { code { (r) } }
                    }
                }
                td class="nowrap age" { (age_text(lang, now - row.created_at)) }
                td {
                    strong class=(if row.duress { "tag tag--duress" } else { "tag" }) {
                        (t(row.state_label()))
                    }
                    @if let Some(unit) = &row.unit { " " span class="unit" { (unit) } }
                }
                td class="nowrap last-fix" {
                    @match row.last_fix {
                        None => { (t(Label::NoFixYet)) }
                        Some(f) => {
                            (clock_utc(f.time_ms)) " ±" (format!("{:.0}", f.accuracy_m)) " m"
                        }
                    }
                }
                td class="nowrap battery" {
                    @match row.battery_pct {
                        None => { (t(Label::UnknownValue)) }
                        Some(b) => { (b) "%" }
                    }
                }
                td class="unread" {
                    @if row.unread > 0 { strong class="tag tag--unread" { (row.unread) } } @else { "0" }
                }
                td {
                    button type="button" class="button button--small open-incident"
                        data-incident=(row.id)
                        aria-label=(format!("{} {}", t(Label::OpenIncident), short_id(&row.id))) {
                        (t(Label::OpenIncident))
                    }
                }
            }
        }
    }
}

/// `HH:MM:SS` UTC of a time in ms.
fn clock_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// The first characters of an id, enough to tell incidents apart on screen.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::dispatch_board::LastFix;
    use crate::store::DispatchPhase;
    use sotong_core::sos::ReportedState;

    fn row(id: &str, duress: bool) -> BoardRow {
        BoardRow {
            id: id.into(),
            region: Some("seoul".into()),
            created_at: 1_000,
            phase: DispatchPhase::Received,
            reported_state: ReportedState::Active,
            duress,
            unit: Some("<b>unit".into()),
            last_fix: Some(LastFix {
                time_ms: 3_723_000,
                accuracy_m: 12.4,
                lat: 37.5,
                lon: 127.0,
            }),
            battery_pct: Some(42),
            unread: 2,
        }
    }

    #[test]
    fn rows_keep_the_order_given_and_badge_duress() {
        let html = rows(
            Lang::En,
            &[row("dur", true), row("old", false)],
            1_000 + 125 * 60,
        )
        .into_string();
        let first = html.find("data-incident=\"dur\"").unwrap();
        let second = html.find("data-incident=\"old\"").unwrap();
        assert!(first < second);
        assert!(html.contains("tag tag--duress"));
        assert!(html.contains(">Duress<"));
        assert!(html.contains("2 h 5 min"));
        assert!(html.contains("01:02:03 ±12 m"));
        assert!(html.contains("42%"));
        assert!(html.contains("&lt;b&gt;unit"), "escaped");
        let empty = rows(Lang::Ko, &[], 0).into_string();
        assert!(empty.contains(Label::NoIncidents.text(Lang::Ko)));
    }

    #[test]
    fn the_page_carries_its_config_and_scripts() {
        let viewer = Viewer {
            display_name: "Lee",
            username: "lee",
            csrf_token: "tok",
        };
        let view = DispatchView {
            region: "seoul",
            rows: &[row("a", false)],
            now: 2_000,
            tiles: None,
            after_event: 41,
        };
        let html = render(Lang::Ko, viewer, &view).into_string();
        assert!(html.contains(&assets::LEAFLET_JS.url()));
        assert!(html.contains(&assets::DISPATCH_JS.url()));
        assert!(html.contains("&quot;rowsUrl&quot;:&quot;/console/dispatch/seoul/incidents&quot;"));
        assert!(html.contains(Label::MapNoTiles.text(Lang::Ko)));
        assert!(html.contains("/v1/dispatch/feed?after=41"));
        assert_eq!(html.matches("<h1").count(), 1);
    }
}
