//! The agency and dispatch home pages. The work they will hold (proposals and civil
//! documents; SOS incidents) comes with later issues: for now each shows its scope and says
//! what will come, with no sample data.

use maud::{html, Markup};

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, Frame, Viewer};

use super::home::path_segment;

/// `/console/agency/{agency}`.
pub fn agency(lang: Lang, viewer: Viewer<'_>, agency: &str) -> Markup {
    let here = format!("/console/agency/{}", path_segment(agency));
    placeholder(
        lang,
        viewer,
        &here,
        &Label::AgencyTitle.fill(lang, agency),
        Label::RoleAgencyOfficer,
        agency,
        Label::AgencyComing,
    )
}

/// `/console/dispatch/{region}`.
pub fn dispatch(lang: Lang, viewer: Viewer<'_>, region: &str) -> Markup {
    let here = format!("/console/dispatch/{}", path_segment(region));
    placeholder(
        lang,
        viewer,
        &here,
        &Label::DispatchTitle.fill(lang, region),
        Label::RoleDispatcher,
        region,
        Label::DispatchComing,
    )
}

fn placeholder(
    lang: Lang,
    viewer: Viewer<'_>,
    here: &str,
    title: &str,
    role: Label,
    scope: &str,
    coming: Label,
) -> Markup {
    let t = |l: Label| l.text(lang);
    let body = html! {
        a class="back-link" href="/console/" { (t(Label::BackToHome)) }
        h1 { (title) }
        dl class="summary" {
            div { dt { (t(Label::RoleLabel)) } dd { (t(role)) } }
            div { dt { (t(Label::ScopeLabel)) } dd { code { (scope) } } }
        }
        div class="notice" {
            p { (t(coming)) }
            p { (t(Label::NothingShownYet)) }
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
