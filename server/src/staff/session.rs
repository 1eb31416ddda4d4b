//! Staff sessions: a random token (32 bytes, base64url) held by the browser in a cookie or
//! by a script as a bearer token; the store keeps only its SHA-256. A session ends at logout,
//! after `staff_idle_timeout_secs` without use, or `staff_session_lifetime_secs` after login,
//! whichever comes first, by the configured clock.

use axum::http::HeaderValue;
use sotong_core::hash::sha256;

use super::StaffMember;
use crate::state::AppState;
use crate::store::{NewStaffSession, StoreError};

/// The browser's session cookie. `__Host-`: the browser only accepts it with `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can plant or read it.
pub const SESSION_COOKIE: &str = "__Host-sotong-staff";

/// How a session's token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// The browser's cookie; every non-GET request must carry the CSRF token.
    Cookie,
    /// `Authorization: Bearer`, for scripts (a browser never adds it by itself).
    Bearer,
}

impl SessionKind {
    /// `cookie` or `bearer`.
    pub fn as_str(self) -> &'static str {
        crate::store::staff::kind_str(self)
    }
}

/// A live session and its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// Store row id (never the token).
    pub id: i64,
    /// The member, as stored now.
    pub member: StaffMember,
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// Per-session synchronizer token, random, for cookie sessions' forms.
    pub csrf_token: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_seen_at: i64,
    /// Absolute end, Unix seconds.
    pub expires_at: i64,
}

impl StaffSession {
    /// When the session dies if unused, by the idle timeout `idle_secs`.
    pub fn idle_expires_at(&self, idle_secs: i64) -> i64 {
        self.last_seen_at.saturating_add(idle_secs)
    }

    /// Whether the session is still valid at `now`.
    pub fn is_live(&self, now: i64, idle_secs: i64) -> bool {
        !self.member.disabled && now < self.expires_at && now < self.idle_expires_at(idle_secs)
    }
}

/// The `Set-Cookie` value that gives the browser `token`. No `Max-Age`: the cookie dies with
/// the browser; the server ends the session anyway.
pub fn set_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| clear_cookie())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-sotong-staff=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// A new random token (32 bytes, base64url, 43 characters).
pub fn new_token() -> String {
    crate::auth::random_secret()
}

/// Whether `s` has the shape of a token (so that junk never reaches the store).
pub fn looks_like_token(s: &str) -> bool {
    crate::auth::looks_like_secret(s)
}

/// A new session for `member`; returns the token (given once, stored only hashed).
pub async fn create(
    state: &AppState,
    member: StaffMember,
    kind: SessionKind,
) -> Result<(String, StaffSession), StoreError> {
    let token = new_token();
    let csrf_token = new_token();
    let now = state.now_secs();
    let expires_at = now.saturating_add(secs(state.config.staff_session_lifetime_secs));
    let id = state
        .store
        .create_staff_session(&NewStaffSession {
            token_hash: sha256(token.as_bytes()),
            member_id: member.id,
            kind,
            csrf_token: csrf_token.clone(),
            now,
            expires_at,
        })
        .await?;
    let session = StaffSession {
        id,
        member,
        kind,
        csrf_token,
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    Ok((token, session))
}

/// Why a presented token gives no session.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Unknown, ended, expired, presented the wrong way, or its member is disabled.
    #[error("no valid staff session")]
    Invalid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The live session of `token` presented as `kind`. A session that has expired is ended
/// on the way; a touch (throttled) records its use.
pub async fn resolve(
    state: &AppState,
    token: &str,
    kind: SessionKind,
) -> Result<StaffSession, ResolveError> {
    if !looks_like_token(token) {
        return Err(ResolveError::Invalid);
    }
    let Some(mut session) = state.store.staff_session(&sha256(token.as_bytes())).await? else {
        return Err(ResolveError::Invalid);
    };
    // A cookie session's token sent as a bearer would skip the CSRF check.
    if session.kind != kind {
        return Err(ResolveError::Invalid);
    }
    let now = state.now_secs();
    let idle = secs(state.config.staff_idle_timeout_secs);
    if !session.is_live(now, idle) {
        // Ended for good: re-enabling a member does not bring old sessions back.
        state.store.end_staff_session(session.id, now).await?;
        return Err(ResolveError::Invalid);
    }
    // Touch at most every tenth of the idle timeout (and at most every minute): a session
    // may so die up to that much before its idle timeout, never after.
    let every = (idle / 10).clamp(1, 60);
    if now - session.last_seen_at >= every {
        state.store.touch_staff_session(session.id, now).await?;
        session.last_seen_at = now;
    }
    Ok(session)
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_host_only_secure_and_strict() {
        let set = set_cookie("abc");
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-sotong-staff=abc;"));
        for part in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Domain"));
        assert!(clear_cookie().to_str().unwrap().contains("Max-Age=0"));
        // A value that cannot be a header never yields a cookie holding it.
        assert!(!set_cookie("a\nb").to_str().unwrap().contains('\n'));
    }

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(looks_like_token(&a));
        assert!(!looks_like_token("short"));
    }
}
