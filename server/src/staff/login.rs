//! Staff login: one answer ([`LoginError::Refused`]) for an unknown name, a wrong password,
//! a disabled account and a missing or wrong TOTP code, with the same work done for each (an
//! unknown name is verified against a dummy hash). Failures are counted per normalized name
//! whether or not a member has it; `staff_lockout_threshold` failures within
//! `staff_lockout_window_secs` lock the name for `staff_lockout_secs`, during which even the
//! right password is refused with [`LoginError::Locked`]. Failures are also counted per client
//! address (`staff_lockout_address_threshold`, whatever the names), against one password
//! tried on many names. Every outcome is audited here.

use std::net::IpAddr;

use serde_json::json;

use super::audit::{self, actions, Actor, AuditEntry, Outcome};
use super::session::{self, SessionKind, StaffSession};
use super::{normalize_username, password, totp, StaffMember};
use crate::state::AppState;
use crate::store::{LockoutPolicy, StaffCredentials, StoreError};

/// One login attempt.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    /// The name as typed.
    pub username: &'a str,
    /// The password as typed.
    pub password: &'a str,
    /// The TOTP code, if the form had one.
    pub totp: Option<&'a str>,
    /// Where from (proxies accounted for).
    pub client_ip: IpAddr,
    /// The session wanted: the console's cookie or a script's bearer token.
    pub kind: SessionKind,
}

/// Why there is no session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong name, password or code, or the account is disabled: deliberately one answer.
    #[error("the username, password or code is not right")]
    Refused,
    /// Too many failures for this name: try again later.
    #[error("too many failed logins for this name; try again in {retry_after_secs} s")]
    Locked {
        /// Seconds until the lock ends (at least 1).
        retry_after_secs: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The session token (for the cookie or the script); shown once, stored only hashed.
    pub token: String,
    /// The session.
    pub session: StaffSession,
}

/// Why a login is refused, for the audit log only (the caller only learns `Refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownName,
    WrongPassword,
    Disabled,
    TotpMissing,
    TotpWrong,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownName => "unknown_name",
            Refusal::WrongPassword => "wrong_password",
            Refusal::Disabled => "disabled",
            Refusal::TotpMissing => "totp_missing",
            Refusal::TotpWrong => "totp_wrong",
        }
    }
}

/// The lock-out key of a normalized name: a peppered SHA-256, so the failure tables never
/// hold what was typed (it may be a password typed into the name field).
pub fn name_key(pepper: &[u8], normalized: &str) -> [u8; 32] {
    crate::auth::peppered("sotong/staff-login", pepper, &[normalized.as_bytes()])
}

/// The lock-out key of a client address (IPv6 grouped by /64), peppered.
pub fn address_key(pepper: &[u8], ip: IpAddr) -> [u8; 32] {
    let grouped = crate::auth::client_key(pepper, ip);
    crate::auth::peppered("sotong/staff-login-address", pepper, &[&grouped])
}

/// The lock-out policy in force for names.
pub fn lockout_policy(state: &AppState) -> LockoutPolicy {
    let c = &state.config;
    LockoutPolicy {
        threshold: c.staff_lockout_threshold.max(1),
        window_secs: i64::try_from(c.staff_lockout_window_secs).unwrap_or(i64::MAX),
        lock_secs: i64::try_from(c.staff_lockout_secs).unwrap_or(i64::MAX),
    }
}

/// The lock-out policy in force for client addresses.
fn address_policy(state: &AppState) -> LockoutPolicy {
    LockoutPolicy {
        threshold: state.config.staff_lockout_address_threshold.max(1),
        ..lockout_policy(state)
    }
}

/// Checks the attempt and opens a session. Audits every outcome.
pub async fn login(state: &AppState, attempt: LoginAttempt<'_>) -> Result<LoggedIn, LoginError> {
    let name = normalize_username(attempt.username);
    let key = name_key(&state.config.pepper, &name);
    let now = state.now_secs();
    let address = address_key(&state.config.pepper, attempt.client_ip);
    let locks = [
        (key, "attempt_while_locked"),
        (address, "attempt_from_locked_address"),
    ];
    for (lock_key, event) in locks {
        if let Some(until) = state.store.login_locked_until(&lock_key, now).await? {
            let detail = json!({ "event": event, "name_key": key_prefix(&key), "until": until });
            let entry = AuditEntry::new(Actor::UnknownName, actions::LOGIN_LOCKED, Outcome::Denied)
                .from_ip(attempt.client_ip)
                .detail(detail);
            audit::record(state, with_actor(entry, &name, state).await).await;
            return Err(LoginError::Locked {
                retry_after_secs: (until - now).max(1),
            });
        }
    }
    let creds = state.store.staff_credentials(&name).await?;
    match check(state, creds.as_ref(), &attempt, now).await? {
        Ok(member) => succeed(state, &key, member, creds, &attempt).await,
        Err(refusal) => {
            Err(fail(state, &key, creds.map(|c| c.member), refusal, &attempt, now).await?)
        }
    }
}

/// The member if everything checks out, or why not. Does the password work whatever the
/// outcome, so that timing tells nothing.
async fn check(
    state: &AppState,
    creds: Option<&StaffCredentials>,
    attempt: &LoginAttempt<'_>,
    now: i64,
) -> Result<Result<StaffMember, Refusal>, LoginError> {
    let verified = password::verify(
        attempt.password.to_owned(),
        creds.map(|c| c.password_hash.clone()),
    )
    .await
    .map_err(|e| LoginError::Store(StoreError::Task(e.to_string())))?;
    let Some(creds) = creds else {
        return Ok(Err(Refusal::UnknownName));
    };
    if !verified {
        return Ok(Err(Refusal::WrongPassword));
    }
    if creds.member.disabled {
        return Ok(Err(Refusal::Disabled));
    }
    if let Some(secret) = &creds.totp_secret {
        let Some(code) = attempt.totp.filter(|c| !c.trim().is_empty()) else {
            return Ok(Err(Refusal::TotpMissing));
        };
        let step = totp::matching_step(secret, code, now)
            .map_err(|e| LoginError::Store(StoreError::Corrupt(e.to_string())))?;
        let Some(step) = step else {
            return Ok(Err(Refusal::TotpWrong));
        };
        if !state.store.use_totp_step(creds.member.id, step).await? {
            return Ok(Err(Refusal::TotpWrong));
        }
    }
    Ok(Ok(creds.member.clone()))
}

async fn succeed(
    state: &AppState,
    key: &[u8; 32],
    member: StaffMember,
    creds: Option<StaffCredentials>,
    attempt: &LoginAttempt<'_>,
) -> Result<LoggedIn, LoginError> {
    state.store.clear_login_failures(key).await?;
    if creds.is_some_and(|c| password::needs_rehash(&c.password_hash)) {
        rehash(state, &member, attempt.password).await;
    }
    let (token, session) = session::create(state, member, attempt.kind).await?;
    let actor = staff_actor(&session.member);
    audit::record(
        state,
        AuditEntry::new(actor, actions::LOGIN, Outcome::Success)
            .target("session", session.id.to_string())
            .from_ip(attempt.client_ip)
            .detail(json!({ "kind": attempt.kind.as_str() })),
    )
    .await;
    Ok(LoggedIn { token, session })
}

/// Upgrades a hash made with older parameters, now that the password is known to be right.
async fn rehash(state: &AppState, member: &StaffMember, password: &str) {
    match password::hash(password.to_owned()).await {
        Ok(phc) => {
            if let Err(e) = state
                .store
                .set_staff_password(member.id, &phc, state.now_secs())
                .await
            {
                tracing::warn!(error = %e, "could not store a re-hashed password");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not re-hash a password"),
    }
}

async fn fail(
    state: &AppState,
    key: &[u8; 32],
    member: Option<StaffMember>,
    refusal: Refusal,
    attempt: &LoginAttempt<'_>,
    now: i64,
) -> Result<LoginError, LoginError> {
    let failure = state
        .store
        .record_login_failure(key, now, &lockout_policy(state))
        .await?;
    let actor = member.as_ref().map_or(Actor::UnknownName, staff_actor);
    let mut detail = json!({ "reason": refusal.as_str(), "failures": failure.failures });
    if member.is_none() {
        detail["name_key"] = json!(key_prefix(key));
    }
    audit::record(
        state,
        AuditEntry::new(actor.clone(), actions::LOGIN_FAILED, Outcome::Failure)
            .from_ip(attempt.client_ip)
            .detail(detail),
    )
    .await;
    if let Some(until) = failure.locked_until {
        let mut detail = json!({ "event": "locked", "until": until, "failures": failure.failures });
        if member.is_none() {
            detail["name_key"] = json!(key_prefix(key));
        }
        audit::record(
            state,
            AuditEntry::new(actor, actions::LOGIN_LOCKED, Outcome::Failure)
                .from_ip(attempt.client_ip)
                .detail(detail),
        )
        .await;
        tracing::warn!("a staff login name was locked after repeated failures");
    }
    let address = address_key(&state.config.pepper, attempt.client_ip);
    let from_address = state
        .store
        .record_login_failure(&address, now, &address_policy(state))
        .await?;
    if let Some(until) = from_address.locked_until {
        audit::record(
            state,
            AuditEntry::new(Actor::System, actions::LOGIN_LOCKED, Outcome::Failure)
                .from_ip(attempt.client_ip)
                .detail(json!({
                    "event": "address_locked",
                    "until": until,
                    "failures": from_address.failures,
                })),
        )
        .await;
        tracing::warn!("a client address was locked after repeated failed staff logins");
    }
    Ok(LoginError::Refused)
}

/// Ends `session` (logout) and audits it.
pub async fn logout(state: &AppState, session: &StaffSession) -> Result<(), StoreError> {
    state
        .store
        .end_staff_session(session.id, state.now_secs())
        .await?;
    audit::record(
        state,
        AuditEntry::new(
            staff_actor(&session.member),
            actions::LOGOUT,
            Outcome::Success,
        )
        .target("session", session.id.to_string()),
    )
    .await;
    Ok(())
}

/// The audit actor of a member.
pub fn staff_actor(member: &StaffMember) -> Actor {
    Actor::Staff {
        id: member.id,
        username: member.username.clone(),
    }
}

/// The actor of a lock entry: the member if the name is one, else unknown.
async fn with_actor(mut entry: AuditEntry, name: &str, state: &AppState) -> AuditEntry {
    if let Ok(Some(creds)) = state.store.staff_credentials(name).await {
        entry.actor = staff_actor(&creds.member);
        if let Some(d) = entry.detail.as_mut().and_then(|d| d.as_object_mut()) {
            d.remove("name_key");
        }
    }
    entry
}

/// The first 8 hex digits of a name key: enough to see that failures share a name, never
/// enough to recover what was typed.
fn key_prefix(key: &[u8; 32]) -> String {
    hex::encode(&key[..4])
}
