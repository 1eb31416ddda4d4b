//! Cross-site request forgery. A cookie session's state-changing requests (every method but
//! GET and HEAD) must carry the session's synchronizer token, in the form field `_csrf` or
//! the header `X-CSRF-Token`; `SameSite=Strict` is the first line, this the second. The login
//! form has no session yet, so it uses a double-submit token: a random value set as the
//! `__Host-sotong-login-csrf` cookie by the login page and embedded in its form.

use axum::http::{HeaderMap, HeaderValue};

/// The form field carrying the token.
pub const FORM_FIELD: &str = "_csrf";
/// The header carrying the token (scripts, fetch).
pub const HEADER: &str = "x-csrf-token";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "__Host-sotong-login-csrf";

/// A token for the login form and the `Set-Cookie` value that goes with it.
pub fn login_token() -> (String, HeaderValue) {
    let token = super::session::new_token();
    let cookie = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    (token, cookie)
}

/// Whether the login form's `_csrf` value matches its double-submit cookie.
pub fn check_login_token(headers: &HeaderMap, form_value: &str) -> bool {
    cookie(headers, LOGIN_COOKIE)
        .is_some_and(|c| super::session::looks_like_token(c) && tokens_match(c, form_value))
}

/// Compares two tokens without an early exit on the first differing byte.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    crate::store::constant_time_eq(expected.as_bytes(), presented.as_bytes())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `_csrf` field of an `application/x-www-form-urlencoded` body.
pub fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == FORM_FIELD)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookies_and_form_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_static("a=1; __Host-sotong-login-csrf=tok ; b=2"),
        );
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            form_token(b"name=x&_csrf=abc%2Bd&z=1").as_deref(),
            Some("abc+d")
        );
        assert_eq!(form_token(b"name=x"), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
    }

    #[test]
    fn login_token_is_checked_against_its_cookie() {
        let (token, set) = login_token();
        assert!(set.to_str().unwrap().starts_with(LOGIN_COOKIE));
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            HeaderValue::from_str(&format!("{LOGIN_COOKIE}={token}")).unwrap(),
        );
        assert!(check_login_token(&h, &token));
        assert!(!check_login_token(&h, "other"));
        assert!(!check_login_token(&HeaderMap::new(), &token));
    }
}
