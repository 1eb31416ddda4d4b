//! The sign-in page: username, password and an optional 6-digit code on one form, with an
//! error summary on refusal and a plain message while the name is locked.

use maud::{html, Markup};

use crate::console::i18n::{Label, Lang};
use crate::console::layout::{self, error_for, FieldError, Frame, TextInput};

/// What the sign-in form shows.
#[derive(Debug, Clone, Copy)]
pub struct LoginView<'a> {
    /// The username typed before (never the password).
    pub username: &'a str,
    /// Where to go after signing in (a console path).
    pub next: &'a str,
    /// The login double-submit CSRF token.
    pub csrf_token: &'a str,
    /// Problems to show.
    pub errors: &'a [FieldError],
    /// A message above the form (signed out, sign in to continue).
    pub notice: Option<Label>,
}

/// Checks what can be checked before asking the staff domain.
pub fn validate(lang: Lang, username: &str, password: &str, totp: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if username.trim().is_empty() {
        errors.push(FieldError {
            field: Some("username"),
            message: Label::UsernameMissing.text(lang).to_owned(),
        });
    }
    if password.is_empty() {
        errors.push(FieldError {
            field: Some("password"),
            message: Label::PasswordMissing.text(lang).to_owned(),
        });
    }
    let code = totp.trim();
    let six_digits = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    if !code.is_empty() && !six_digits {
        errors.push(FieldError {
            field: Some("totp"),
            message: Label::TotpFormat.text(lang).to_owned(),
        });
    }
    errors
}

/// The page.
pub fn render(lang: Lang, view: &LoginView<'_>) -> Markup {
    let t = |l: Label| l.text(lang);
    let title = if view.errors.is_empty() {
        t(Label::LoginTitle).to_owned()
    } else {
        format!("{}: {}", t(Label::Error), t(Label::LoginTitle))
    };
    let here = if view.next == "/console/" {
        "/console/login".to_owned()
    } else {
        format!(
            "/console/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", view.next)
                .finish()
        )
    };
    let frame = Frame {
        lang,
        title: &title,
        viewer: None,
        here: &here,
    };
    // A refusal names no field in particular; it is shown once, on the summary.
    let body = html! {
        (layout::error_summary(lang, view.errors))
        @if let Some(notice) = view.notice {
            div class="notice" role="status" { p { (notice.text(lang)) } }
        }
        h1 { (t(Label::LoginTitle)) }
        p { (t(Label::LoginIntro)) }
        form method="post" action="/console/login" novalidate {
            (layout::csrf_field(view.csrf_token))
            input type="hidden" name="next" value=(view.next);
            (TextInput {
                name: "username",
                label: t(Label::Username),
                hint: None,
                kind: "text",
                value: view.username,
                autocomplete: "username",
                class: "",
                inputmode: None,
                error: error_for(view.errors, "username"),
                required: true,
            }.render(lang))
            (TextInput {
                name: "password",
                label: t(Label::Password),
                hint: None,
                kind: "password",
                value: "",
                autocomplete: "current-password",
                class: "",
                inputmode: None,
                error: error_for(view.errors, "password"),
                required: true,
            }.render(lang))
            (TextInput {
                name: "totp",
                label: t(Label::TotpLabel),
                hint: Some(t(Label::TotpHint)),
                kind: "text",
                value: "",
                autocomplete: "one-time-code",
                class: "input--code",
                inputmode: Some("numeric"),
                error: error_for(view.errors, "totp"),
                required: false,
            }.render(lang))
            button type="submit" class="button" { (t(Label::SignIn)) }
        }
    };
    layout::page(&frame, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_fields() {
        let e = validate(Lang::En, " ", "", "12a");
        let fields: Vec<_> = e.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![Some("username"), Some("password"), Some("totp")]
        );
        assert!(validate(Lang::En, "kim", "pw", "").is_empty());
        assert!(validate(Lang::En, "kim", "pw", "123456").is_empty());
        assert_eq!(validate(Lang::En, "kim", "pw", "1234567").len(), 1);
    }

    #[test]
    fn the_form_carries_the_token_and_never_the_password() {
        let errors = [FieldError {
            field: Some("username"),
            message: "wrong".into(),
        }];
        let html = render(
            Lang::Ko,
            &LoginView {
                username: "kim",
                next: "/console/admin/audit",
                csrf_token: "T0KEN",
                errors: &errors,
                notice: None,
            },
        )
        .into_string();
        assert!(html.contains("name=\"_csrf\" value=\"T0KEN\""));
        assert!(html.contains("class=\"error-summary\""));
        assert!(html.contains("href=\"#username\""));
        assert!(html.contains("name=\"password\" type=\"password\" value=\"\""));
        assert!(html.contains("lang=\"ko\""));
    }
}
