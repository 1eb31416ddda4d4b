//! Storage of the officials' side: staff members and their grants, login failures and
//! locks per name, staff sessions, and the append-only audit log. Implemented by both
//! stores and run through the same test suite (`server/tests/store.rs`).

use async_trait::async_trait;

use super::StoreResult;
use crate::staff::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::staff::session::{SessionKind, StaffSession};
use crate::staff::{Grant, StaffMember};

/// A member to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStaffMember {
    /// Normalized login name (unique).
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Roles and scopes.
    pub grants: Vec<Grant>,
    /// The TOTP secret, if login asks for a code.
    pub totp_secret: Option<Vec<u8>>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What login needs of a member: the member, the password hash and the TOTP secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffCredentials {
    /// The member.
    pub member: StaffMember,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The TOTP secret, if set.
    pub totp_secret: Option<Vec<u8>>,
}

// By hand: neither the hash nor the secret reaches a log.
impl std::fmt::Debug for StaffCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffCredentials")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

/// When failures lock a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within the window that lock the name.
    pub threshold: u32,
    /// The window, in seconds.
    pub window_secs: i64,
    /// How long the lock lasts, in seconds.
    pub lock_secs: i64,
}

/// What a recorded failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    /// Failures of the name within the window, this one included.
    pub failures: u32,
    /// Set when this failure locked the name: until when.
    pub locked_until: Option<i64>,
}

/// A session to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStaffSession {
    /// SHA-256 of the token (the token itself is never stored).
    pub token_hash: [u8; 32],
    /// The member.
    pub member_id: i64,
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// The session's CSRF synchronizer token.
    pub csrf_token: String,
    /// Unix seconds.
    pub now: i64,
    /// Absolute end, Unix seconds.
    pub expires_at: i64,
}

/// The officials' side of the store. A supertrait of [`Store`](super::Store), so every
/// `Arc<dyn Store>` reaches it.
#[async_trait]
pub trait StaffStore: Send + Sync {
    // ---- members ---------------------------------------------------------------------
    /// Adds a member with their grants. `None` (nothing changed) if the username is taken.
    async fn add_staff(&self, new: &NewStaffMember) -> StoreResult<Option<StaffMember>>;
    /// A member by id.
    async fn staff_member(&self, id: i64) -> StoreResult<Option<StaffMember>>;
    /// A member by normalized username, with what login checks.
    async fn staff_credentials(&self, username: &str) -> StoreResult<Option<StaffCredentials>>;
    /// Every member, by username.
    async fn list_staff(&self) -> StoreResult<Vec<StaffMember>>;
    /// Disables or enables a member. False if there is no such member.
    async fn set_staff_disabled(&self, id: i64, disabled: bool) -> StoreResult<bool>;
    /// Replaces a member's password hash. False if there is no such member.
    async fn set_staff_password(&self, id: i64, password_hash: &str, now: i64)
        -> StoreResult<bool>;
    /// Sets (a new secret) or removes a member's TOTP second factor; the record of used
    /// steps starts over. False if there is no such member.
    async fn set_staff_totp(&self, id: i64, secret: Option<&[u8]>) -> StoreResult<bool>;
    /// Records that the TOTP code of time step `step` was used by member `id`, atomically:
    /// true only if no code of this or a later step was used before (a code is never
    /// accepted twice).
    async fn use_totp_step(&self, id: i64, step: i64) -> StoreResult<bool>;

    // ---- lock-out ----------------------------------------------------------------------
    /// Until when the name keyed `name_key` is locked, if it is at `now`.
    async fn login_locked_until(&self, name_key: &[u8; 32], now: i64) -> StoreResult<Option<i64>>;
    /// Counts a failed login of the name, atomically across instances: when the failures
    /// within the window reach the threshold, the name is locked and its count starts over.
    async fn record_login_failure(
        &self,
        name_key: &[u8; 32],
        now: i64,
        policy: &LockoutPolicy,
    ) -> StoreResult<LoginFailure>;
    /// Forgets the name's failures (after a successful login).
    async fn clear_login_failures(&self, name_key: &[u8; 32]) -> StoreResult<()>;

    // ---- sessions ------------------------------------------------------------------------
    /// Stores a session; returns its id. Also forgets sessions that expired before `now`.
    async fn create_staff_session(&self, new: &NewStaffSession) -> StoreResult<i64>;
    /// The session whose token hashes to `token_hash`, with its member as they are now,
    /// unless it was ended. Expiry is the caller's to judge.
    async fn staff_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<StaffSession>>;
    /// Sets the session's last use to `now`.
    async fn touch_staff_session(&self, id: i64, now: i64) -> StoreResult<()>;
    /// Ends the session (logout, expiry).
    async fn end_staff_session(&self, id: i64, now: i64) -> StoreResult<()>;
    /// Ends every session of a member; returns how many were open.
    async fn end_member_sessions(&self, member_id: i64, now: i64) -> StoreResult<u64>;

    // ---- audit -----------------------------------------------------------------------------
    /// Appends an entry at `at`; returns its id.
    async fn append_audit(&self, at: i64, entry: &AuditEntry) -> StoreResult<i64>;
    /// Entries matching the filter, newest first.
    async fn query_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Up to `limit` entries with an id above `after_id` and `at >= since`, oldest first
    /// (the export reads the log in pages this way).
    async fn audit_after(
        &self,
        after_id: i64,
        since: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// The stored name of a session kind.
pub(crate) fn kind_str(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Cookie => "cookie",
        SessionKind::Bearer => "bearer",
    }
}

pub(crate) fn parse_kind(s: &str) -> StoreResult<SessionKind> {
    match s {
        "cookie" => Ok(SessionKind::Cookie),
        "bearer" => Ok(SessionKind::Bearer),
        other => Err(super::StoreError::Corrupt(format!(
            "unknown session kind {other:?}"
        ))),
    }
}

/// A grant from its stored columns (`''` is no scope).
pub(crate) fn grant_from_parts(role: &str, scope: &str) -> StoreResult<Grant> {
    let role = role
        .parse()
        .map_err(|e: crate::staff::UnknownRole| super::StoreError::Corrupt(e.to_string()))?;
    Ok(Grant {
        role,
        scope: (!scope.is_empty()).then(|| scope.to_owned()),
    })
}

/// The stored audit fields of an actor: kind, member id, username.
pub(crate) fn actor_parts(
    actor: &crate::staff::audit::Actor,
) -> (&'static str, Option<i64>, Option<&str>) {
    match actor {
        crate::staff::audit::Actor::Staff { id, username } => {
            ("staff", Some(*id), Some(username.as_str()))
        }
        other => (other.kind(), None, None),
    }
}

/// An actor from its stored fields.
pub(crate) fn actor_from_parts(
    kind: &str,
    id: Option<i64>,
    name: Option<String>,
) -> StoreResult<crate::staff::audit::Actor> {
    use crate::staff::audit::Actor;
    match (kind, id, name) {
        ("staff", Some(id), Some(username)) => Ok(Actor::Staff { id, username }),
        ("unknown_name", _, _) => Ok(Actor::UnknownName),
        ("system", _, _) => Ok(Actor::System),
        (other, _, _) => Err(super::StoreError::Corrupt(format!(
            "bad audit actor {other:?}"
        ))),
    }
}

/// Decodes the stored columns of an audit record.
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_from_parts(
    id: i64,
    at: i64,
    actor: (String, Option<i64>, Option<String>),
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    outcome: &str,
    client_ip: Option<String>,
    detail: Option<String>,
) -> StoreResult<AuditRecord> {
    let corrupt = |what: &str| super::StoreError::Corrupt(format!("audit {id}: bad {what}"));
    Ok(AuditRecord {
        id,
        at,
        actor: actor_from_parts(&actor.0, actor.1, actor.2)?,
        action,
        target_kind,
        target_id,
        outcome: crate::staff::audit::Outcome::parse(outcome).ok_or_else(|| corrupt("outcome"))?,
        client_ip: client_ip
            .map(|s| s.parse().map_err(|_| corrupt("address")))
            .transpose()?,
        detail: detail
            .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("detail")))
            .transpose()?,
    })
}

/// The effective limit of a query.
pub(crate) fn clamp_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, crate::staff::audit::MAX_QUERY_LIMIT))
}
