//! The frame every console page shares (skip link, header with the language switch and the
//! sign-out button, main landmark, footer), the form pieces pages reuse, and the security
//! headers every page is sent with.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::i18n::{Label, Lang};

/// The strict policy of every page: only this origin's files, no inline script or style, no
/// framing, forms post only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Name of the hidden field carrying the CSRF token in every form.
pub const CSRF_FIELD: &str = "_csrf";

/// Who is looking at the page, for the header and the forms' CSRF field.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// Shown in the header.
    pub display_name: &'a str,
    /// Shown in the header.
    pub username: &'a str,
    /// The session's synchronizer token, embedded in every form.
    pub csrf_token: &'a str,
}

/// What the frame needs to know of a page.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Its language.
    pub lang: Lang,
    /// Its `<title>` (the service name is appended) and usually its `<h1>`.
    pub title: &'a str,
    /// The signed-in member, if any.
    pub viewer: Option<Viewer<'a>>,
    /// Path and query of this page, where the language switch comes back to.
    pub here: &'a str,
}

/// A whole page: `body` inside the shared frame.
pub fn page(frame: &Frame<'_>, body: Markup) -> Markup {
    let lang = frame.lang;
    let t = |l: Label| l.text(lang);
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex, nofollow";
                title { (frame.title) " – " (t(Label::ServiceName)) }
                link rel="icon" type="image/svg+xml" href=(assets::LOGO.url());
                link rel="stylesheet" href=(assets::CSS.url());
                script src=(assets::JS.url()) defer {}
            }
            body {
                a class="skip-link" href="#main" { (t(Label::SkipToContent)) }
                header class="header" {
                    div class="header__inner" {
                        a class="header__brand" href="/console/" {
                            img src=(assets::LOGO.url()) alt="";
                            span { (t(Label::ServiceName)) }
                        }
                        div class="header__tools" {
                            a href=(language_switch_url(other, frame.here))
                                hreflang=(other.code()) lang=(other.code())
                                aria-label=(format!("{}: {}", t(Label::LanguageSwitch), other.native_name())) {
                                (other.native_name())
                            }
                            @if let Some(viewer) = frame.viewer {
                                span class="header__user" {
                                    (t(Label::SignedInAs)) ": " (viewer.display_name)
                                    " (" (viewer.username) ")"
                                }
                                form method="post" action="/console/logout" {
                                    (csrf_field(viewer.csrf_token))
                                    button type="submit" class="button--link" { (t(Label::SignOut)) }
                                }
                            }
                        }
                    }
                }
                div class="width-container" {
                    main id="main" tabindex="-1" { (body) }
                }
                footer class="footer" {
                    div class="width-container" { p { (t(Label::Footer)) } }
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// `/console/language?to=xx&next=<here>`.
pub fn language_switch_url(to: Lang, here: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("to", to.code())
        .append_pair("next", here)
        .finish();
    format!("/console/language?{query}")
}

/// One problem with a form: the field it is about (its id) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The `id` of the input, which the summary links to; `None` for the form as a whole.
    pub field: Option<&'static str>,
    /// The message.
    pub message: String,
}

/// The error summary at the top of a page: each problem links to its field.
pub fn error_summary(lang: Lang, errors: &[FieldError]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div class="error-summary" role="alert" aria-labelledby="error-summary-title" tabindex="-1" {
                h2 id="error-summary-title" { (Label::ErrorSummaryTitle.text(lang)) }
                ul {
                    @for e in errors {
                        li {
                            @match e.field {
                                Some(id) => { a href=(format!("#{id}")) { (e.message) } }
                                None => { span { (e.message) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The message for `field` among `errors`, if any.
pub fn error_for<'e>(errors: &'e [FieldError], field: &str) -> Option<&'e str> {
    errors
        .iter()
        .find(|e| e.field == Some(field))
        .map(|e| e.message.as_str())
}

/// A labelled text input with an optional hint and error, GOV.UK style.
pub struct TextInput<'a> {
    /// `id` and `name`.
    pub name: &'static str,
    /// The visible label.
    pub label: &'a str,
    /// Text under the label.
    pub hint: Option<&'a str>,
    /// `type`.
    pub kind: &'static str,
    /// Its current value (never for passwords).
    pub value: &'a str,
    /// `autocomplete`.
    pub autocomplete: &'static str,
    /// Extra classes of the input.
    pub class: &'static str,
    /// `inputmode`, when not text.
    pub inputmode: Option<&'static str>,
    /// The error to show on the field.
    pub error: Option<&'a str>,
    /// `required`.
    pub required: bool,
}

impl TextInput<'_> {
    /// Its markup.
    pub fn render(&self, lang: Lang) -> Markup {
        let hint_id = format!("{}-hint", self.name);
        let error_id = format!("{}-error", self.name);
        let described: Vec<&str> = [
            self.hint.map(|_| hint_id.as_str()),
            self.error.map(|_| error_id.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let group = if self.error.is_some() {
            "form-group form-group--error"
        } else {
            "form-group"
        };
        let class = match (self.error.is_some(), self.class.is_empty()) {
            (true, true) => "input input--error".to_owned(),
            (true, false) => format!("input input--error {}", self.class),
            (false, true) => "input".to_owned(),
            (false, false) => format!("input {}", self.class),
        };
        html! {
            div class=(group) {
                label for=(self.name) { (self.label) }
                @if let Some(hint) = self.hint {
                    span class="hint" id=(hint_id) { (hint) }
                }
                @if let Some(error) = self.error {
                    span class="error-message" id=(error_id) {
                        span class="visually-hidden" { (Label::Error.text(lang)) ": " }
                        (error)
                    }
                }
                input class=(class) id=(self.name) name=(self.name) type=(self.kind)
                    value=(self.value) autocomplete=(self.autocomplete)
                    inputmode=[self.inputmode]
                    aria-describedby=[(!described.is_empty()).then(|| described.join(" "))]
                    aria-invalid=[self.error.map(|_| "true")]
                    required[self.required];
            }
        }
    }
}

/// A complete HTML response with the console's security headers and `no-store`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    response
}

/// [`CONTENT_SECURITY_POLICY_VALUE`] with images also allowed from `img_origin` (the dispatch
/// map's tile server, checked by `console::map_tiles`).
pub fn csp_with_img_origin(img_origin: &str) -> String {
    CONTENT_SECURITY_POLICY_VALUE
        .replace("img-src 'self';", &format!("img-src 'self' {img_origin};"))
}

/// [`respond`], with images also allowed from `img_origin` when given.
pub fn respond_with_img_origin(
    status: StatusCode,
    markup: Markup,
    img_origin: Option<&str>,
) -> Response {
    let mut response = respond(status, markup);
    if let Some(value) =
        img_origin.and_then(|o| HeaderValue::from_str(&csp_with_img_origin(o)).ok())
    {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// The headers every console page carries.
pub fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_lang_one_main_and_the_skip_link() {
        let frame = Frame {
            lang: Lang::En,
            title: "Test",
            viewer: Some(Viewer {
                display_name: "Kim <b>",
                username: "kim",
                csrf_token: "tok\"en",
            }),
            here: "/console/?a=1&b=2",
        };
        let html = page(&frame, html! { h1 { "Test" } }).into_string();
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert_eq!(html.matches("<main").count(), 1);
        assert!(html.contains("href=\"#main\""));
        // Escaped, never raw.
        assert!(html.contains("Kim &lt;b&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("/console/language?to=ko&amp;next=%2Fconsole%2F%3Fa%3D1%26b%3D2"));
    }

    #[test]
    fn responses_carry_the_security_headers() {
        let r = respond(StatusCode::OK, html! { p { "x" } });
        let h = r.headers();
        assert!(h[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'"));
        assert_eq!(h[X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[REFERRER_POLICY], "no-referrer");
        assert_eq!(h[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn the_tile_origin_joins_img_src_only() {
        let r = respond_with_img_origin(
            StatusCode::OK,
            html! { p { "x" } },
            Some("https://*.tile.example.org"),
        );
        let csp = r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("img-src 'self' https://*.tile.example.org;"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self';"));
        assert_eq!(csp.matches("tile.example.org").count(), 1);
        let r = respond_with_img_origin(StatusCode::OK, html! { p { "x" } }, None);
        assert_eq!(
            r.headers()[CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_VALUE
        );
    }

    #[test]
    fn an_input_is_bound_to_its_label_hint_and_error() {
        let html = TextInput {
            name: "username",
            label: "Username",
            hint: Some("hint"),
            kind: "text",
            value: "",
            autocomplete: "username",
            class: "",
            inputmode: None,
            error: Some("Enter it"),
            required: true,
        }
        .render(Lang::En)
        .into_string();
        assert!(html.contains("label for=\"username\""));
        assert!(html.contains("id=\"username\""));
        assert!(html.contains("aria-describedby=\"username-hint username-error\""));
        assert!(html.contains("aria-invalid=\"true\""));
    }
}
