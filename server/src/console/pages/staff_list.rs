//! The admin's list of staff members: name, roles and scopes, status, second factor.

use maud::{html, Markup};

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, Frame, Viewer};
use crate::staff::StaffMember;

use super::home::role_label;

/// The page.
pub fn render(lang: Lang, viewer: Viewer<'_>, members: &[StaffMember]) -> Markup {
    let t = |l: Label| l.text(lang);
    let body = html! {
        a class="back-link" href="/console/" { (t(Label::BackToHome)) }
        h1 { (t(Label::StaffTitle)) }
        p { (t(Label::StaffIntro)) }
        @if members.is_empty() {
            p { (t(Label::NoStaff)) }
        } @else {
            div class="table-wrap" {
                table class="staff" {
                    thead {
                        tr {
                            th scope="col" { (t(Label::ColUsername)) }
                            th scope="col" { (t(Label::ColName)) }
                            th scope="col" { (t(Label::ColRoles)) }
                            th scope="col" { (t(Label::ColStatus)) }
                            th scope="col" { (t(Label::ColTotp)) }
                        }
                    }
                    tbody {
                        @for m in members {
                            tr {
                                td { code { (m.username) } }
                                td { (m.display_name) }
                                td {
                                    @for g in &m.grants {
                                        div {
                                            (role_label(g.role).text(lang))
                                            @if let Some(scope) = &g.scope { " · " code { (scope) } }
                                        }
                                    }
                                }
                                td {
                                    @if m.disabled {
                                        span class="status status--failure" { (t(Label::StatusDisabled)) }
                                    } @else {
                                        span class="status status--success" { (t(Label::StatusActive)) }
                                    }
                                }
                                td {
                                    @if m.totp_enabled { (t(Label::TotpOn)) } @else { (t(Label::TotpOff)) }
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
            title: t(Label::StaffTitle),
            viewer: Some(viewer),
            here: "/console/admin/staff",
        },
        body,
    )
}
