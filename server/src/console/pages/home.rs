//! The home page: who is signed in, and one card for each thing the member's grants give.

use maud::{html, Markup};

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, Frame, Viewer};
use crate::staff::{Grant, Role};

/// One card: where it leads and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The role it comes from.
    pub role: Role,
    /// Its title.
    pub title: String,
    /// Its one-line description.
    pub text: &'static str,
    /// Its link.
    pub href: String,
}

/// The cards `grants` give, admins' first, then agencies, then regions.
pub fn cards(lang: Lang, grants: &[Grant]) -> Vec<Card> {
    let mut cards = Vec::new();
    if grants.iter().any(|g| g.role == Role::Admin) {
        cards.push(Card {
            role: Role::Admin,
            title: Label::CardAudit.text(lang).to_owned(),
            text: Label::CardAuditText.text(lang),
            href: "/console/admin/audit".into(),
        });
        cards.push(Card {
            role: Role::Admin,
            title: Label::CardStaff.text(lang).to_owned(),
            text: Label::CardStaffText.text(lang),
            href: "/console/admin/staff".into(),
        });
        cards.push(Card {
            role: Role::Admin,
            title: Label::CardSosSummary.text(lang).to_owned(),
            text: Label::CardSosSummaryText.text(lang),
            href: super::sos_summary::PATH.into(),
        });
    }
    for (role, title, text, base) in [
        (
            Role::AgencyOfficer,
            Label::CardAgency,
            Label::CardAgencyText,
            "/console/agency/",
        ),
        (
            Role::Dispatcher,
            Label::CardDispatch,
            Label::CardDispatchText,
            "/console/dispatch/",
        ),
    ] {
        let mut scopes: Vec<&str> = grants
            .iter()
            .filter(|g| g.role == role)
            .filter_map(|g| g.scope.as_deref())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        for scope in scopes {
            cards.push(Card {
                role,
                title: title.fill(lang, scope),
                text: text.text(lang),
                href: format!("{base}{}", path_segment(scope)),
            });
        }
    }
    cards
}

/// The label of a role.
pub fn role_label(role: Role) -> Label {
    match role {
        Role::Admin => Label::RoleAdmin,
        Role::AgencyOfficer => Label::RoleAgencyOfficer,
        Role::Dispatcher => Label::RoleDispatcher,
    }
}

/// `scope` as one URL path segment.
pub fn path_segment(scope: &str) -> String {
    url::form_urlencoded::byte_serialize(scope.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The page.
pub fn render(lang: Lang, viewer: Viewer<'_>, grants: &[Grant]) -> Markup {
    let t = |l: Label| l.text(lang);
    let title = t(Label::HomeTitle);
    let cards = cards(lang, grants);
    let body = html! {
        span class="caption" { (viewer.display_name) " (" (viewer.username) ")" }
        h1 { (title) }
        @if cards.is_empty() {
            p { (t(Label::NoGrants)) }
        } @else {
            ul class="cards" {
                @for card in &cards {
                    li class="card" {
                        span class="tag" { (role_label(card.role).text(lang)) }
                        h2 { a href=(card.href) { (card.title) } }
                        p { (card.text) }
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
            here: "/console/",
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, scope: Option<&str>) -> Grant {
        Grant {
            role,
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn one_card_per_grant_and_three_for_admins() {
        let grants = [
            grant(Role::Dispatcher, Some("seoul")),
            grant(Role::AgencyOfficer, Some("molit")),
            grant(Role::AgencyOfficer, Some("mois")),
            grant(Role::Admin, None),
        ];
        let hrefs: Vec<String> = cards(Lang::En, &grants)
            .into_iter()
            .map(|c| c.href)
            .collect();
        assert_eq!(
            hrefs,
            vec![
                "/console/admin/audit",
                "/console/admin/staff",
                "/console/sos/summary",
                "/console/agency/mois",
                "/console/agency/molit",
                "/console/dispatch/seoul"
            ]
        );
        assert!(cards(Lang::En, &[]).is_empty());
    }

    #[test]
    fn scopes_are_escaped_in_links() {
        let c = cards(Lang::En, &[grant(Role::Dispatcher, Some("a/b c"))]);
        assert_eq!(c[0].href, "/console/dispatch/a%2Fb%20c");
    }
}
