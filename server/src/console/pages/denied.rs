//! The pages of a refusal: not signed in (401), not allowed (403), no such page (404), a form
//! without its CSRF token (403), and a failure of ours (500). They show no one's data, so the
//! access check can render them before any handler runs.

use axum::http::StatusCode;
use maud::{html, Markup};

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, Frame, Viewer};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No session, or it ended: 401.
    SignInNeeded,
    /// The member lacks the role or scope: 403.
    Forbidden,
    /// A form posted without the session's CSRF token: 403.
    Csrf,
    /// No such page: 404.
    NotFound,
    /// A form too large to read: 413.
    TooLarge,
    /// The server failed: 500.
    Internal,
}

impl Refusal {
    /// The refusal a bare status stands for (403 is a missing role; CSRF has its own).
    pub fn from_status(status: StatusCode) -> Refusal {
        match status {
            StatusCode::UNAUTHORIZED => Refusal::SignInNeeded,
            StatusCode::FORBIDDEN => Refusal::Forbidden,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Refusal::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => Refusal::TooLarge,
            _ => Refusal::Internal,
        }
    }

    /// The status it is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::SignInNeeded => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden | Refusal::Csrf => StatusCode::FORBIDDEN,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn labels(self) -> (Label, Label) {
        match self {
            Refusal::SignInNeeded => (Label::Denied401Title, Label::Denied401Text),
            Refusal::Forbidden => (Label::Denied403Title, Label::Denied403Text),
            Refusal::Csrf => (Label::CsrfTitle, Label::CsrfText),
            Refusal::NotFound => (Label::Denied404Title, Label::Denied404Text),
            Refusal::TooLarge => (Label::TooLargeTitle, Label::TooLargeText),
            Refusal::Internal => (Label::Error500Title, Label::Error500Text),
        }
    }
}

/// The page, for no one in particular.
pub fn render(lang: Lang, refusal: Refusal) -> Markup {
    render_for(lang, refusal, None, "/console/")
}

/// The page for `viewer` (when signed in), at `here` (where the language switch returns).
pub fn render_for(lang: Lang, refusal: Refusal, viewer: Option<Viewer<'_>>, here: &str) -> Markup {
    let t = |l: Label| l.text(lang);
    let (title, text) = refusal.labels();
    let body = html! {
        h1 { (t(title)) }
        p { (t(text)) }
        p {
            @if refusal == Refusal::SignInNeeded {
                a href="/console/login" { (t(Label::GoToSignIn)) }
            } @else {
                a href="/console/" { (t(Label::BackToHome)) }
            }
        }
    };
    layout::page(
        &Frame {
            lang,
            title: t(title),
            viewer,
            here,
        },
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_title() {
        for (r, status) in [
            (Refusal::SignInNeeded, 401),
            (Refusal::Forbidden, 403),
            (Refusal::Csrf, 403),
            (Refusal::NotFound, 404),
            (Refusal::TooLarge, 413),
            (Refusal::Internal, 500),
        ] {
            assert_eq!(r.status().as_u16(), status);
            let html = render(Lang::En, r).into_string();
            assert!(html.contains(&format!("<h1>{}</h1>", r.labels().0.text(Lang::En))));
        }
        assert_eq!(
            Refusal::from_status(StatusCode::FORBIDDEN),
            Refusal::Forbidden
        );
    }
}
