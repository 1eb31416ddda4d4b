//! The audit log: who did what to which record, when, from where, and how it went. Append
//! only (the database refuses UPDATE and DELETE on it), and never holding a secret: no
//! password, code, token or TOTP secret reaches an entry. For a login under a name that
//! does not exist, the entry says [`Actor::UnknownName`] and keeps at most a short peppered
//! hash prefix of the name typed (it may be a password typed into the wrong field).

use std::net::IpAddr;

use crate::state::AppState;
use crate::store::{StaffStore, StoreError};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A staff member.
    Staff {
        /// Their id.
        id: i64,
        /// Their username at the time.
        username: String,
    },
    /// A login under a name no member has.
    UnknownName,
    /// The server itself or its administration command line.
    System,
}

impl Actor {
    /// The stored kind: `staff`, `unknown_name` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Staff { .. } => "staff",
            Actor::UnknownName => "unknown_name",
            Actor::System => "system",
        }
    }
}

/// How it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Tried and failed (wrong password, …).
    Failure,
    /// Refused by the access check or a lock.
    Denied,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Actions written now (features add their own).
pub mod actions {
    /// A login that opened a session.
    pub const LOGIN: &str = "login";
    /// A refused login (unknown name, wrong password, disabled, missing or wrong code).
    pub const LOGIN_FAILED: &str = "login_failed";
    /// A name locked after too many failures, or a login refused because it is locked.
    pub const LOGIN_LOCKED: &str = "login_locked";
    /// A session ended by its member.
    pub const LOGOUT: &str = "logout";
    /// A route refused for lack of role or scope.
    pub const ACCESS_DENIED: &str = "access_denied";
    /// A member added.
    pub const STAFF_ADD: &str = "staff_add";
    /// A member disabled.
    pub const STAFF_DISABLE: &str = "staff_disable";
    /// A member enabled again.
    pub const STAFF_ENABLE: &str = "staff_enable";
    /// A member's TOTP second factor set anew or removed.
    pub const STAFF_TOTP: &str = "staff_totp";
    /// A member's password replaced.
    pub const STAFF_RESET_PASSWORD: &str = "staff_reset_password";
    /// The audit log read.
    pub const AUDIT_VIEW: &str = "audit_view";
    /// The audit log exported.
    pub const AUDIT_EXPORT: &str = "audit_export";
    /// The SOS dispatch feed opened.
    pub const SOS_FEED_OPEN: &str = "sos_feed_open";
    /// The active SOS incidents listed.
    pub const SOS_INCIDENT_LIST: &str = "sos_incident_list";
    /// An SOS incident viewed (with its trail and messages).
    pub const INCIDENT_VIEW: &str = "incident_view";
    /// An SOS incident acknowledged.
    pub const SOS_ACKNOWLEDGE: &str = "sos_acknowledge";
    /// A unit assigned to an SOS incident.
    pub const SOS_ASSIGN: &str = "sos_assign";
    /// A message sent to the person in an SOS incident.
    pub const SOS_MESSAGE: &str = "sos_message";
    /// A dispatcher note added to an SOS incident.
    pub const SOS_NOTE: &str = "sos_note";
    /// An SOS incident closed with an outcome.
    pub const SOS_CLOSE: &str = "sos_close";
    /// An SOS incident exported (PIDF-LO, AML).
    pub const SOS_EXPORT: &str = "sos_export";
    /// The person left (or replaced) feedback on a closed SOS incident.
    pub const SOS_FEEDBACK: &str = "sos_feedback";
    /// The SOS summary by region and month viewed (page or JSON).
    pub const SOS_SUMMARY_VIEW: &str = "sos_summary_view";
    /// The SOS summary downloaded as CSV.
    pub const SOS_SUMMARY_EXPORT: &str = "sos_summary_export";
}

/// One entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who.
    pub actor: Actor,
    /// What, e.g. [`actions::LOGIN`].
    pub action: &'static str,
    /// What kind of record it touched (`staff`, `route`, `case`, …).
    pub target_kind: Option<String>,
    /// Which record.
    pub target_id: Option<String>,
    /// How it went.
    pub outcome: Outcome,
    /// From where (proxies accounted for).
    pub client_ip: Option<IpAddr>,
    /// More, as JSON. Never a secret.
    pub detail: Option<serde_json::Value>,
}

impl AuditEntry {
    /// An entry with no target, address or detail.
    pub fn new(actor: Actor, action: &'static str, outcome: Outcome) -> Self {
        Self {
            actor,
            action,
            target_kind: None,
            target_id: None,
            outcome,
            client_ip: None,
            detail: None,
        }
    }

    /// With a target.
    pub fn target(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind.into());
        self.target_id = Some(id.into());
        self
    }

    /// With the client's address.
    pub fn from_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// With a detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: String,
    /// Record kind.
    pub target_kind: Option<String>,
    /// Record id.
    pub target_id: Option<String>,
    /// How it went.
    pub outcome: Outcome,
    /// From where.
    pub client_ip: Option<IpAddr>,
    /// More.
    pub detail: Option<serde_json::Value>,
}

impl AuditRecord {
    /// The actor's username, if a member.
    pub fn actor_name(&self) -> Option<&str> {
        match &self.actor {
            Actor::Staff { username, .. } => Some(username),
            _ => None,
        }
    }

    /// As JSON (the API and the JSONL export).
    pub fn to_json(&self) -> serde_json::Value {
        let (actor_id, actor_name) = match &self.actor {
            Actor::Staff { id, username } => (Some(*id), Some(username.as_str())),
            _ => (None, None),
        };
        serde_json::json!({
            "id": self.id,
            "at": self.at,
            "actor": self.actor.kind(),
            "actor_id": actor_id,
            "actor_name": actor_name,
            "action": self.action,
            "target_kind": self.target_kind,
            "target_id": self.target_id,
            "outcome": self.outcome.as_str(),
            "client_ip": self.client_ip.map(|ip| ip.to_string()),
            "detail": self.detail,
        })
    }
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// From this Unix second on (inclusive).
    pub since: Option<i64>,
    /// Before this Unix second (exclusive).
    pub until: Option<i64>,
    /// Only this member's entries (by username).
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries older than this id (the next page).
    pub before_id: Option<i64>,
    /// At most this many (clamped to 1..=1000).
    pub limit: u32,
}

/// Most entries one query returns.
pub const MAX_QUERY_LIMIT: u32 = 1000;

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            actor: None,
            action: None,
            before_id: None,
            limit: 100,
        }
    }
}

/// Appends `entry` at the configured clock's now. Never fails the request: a store failure
/// is logged (without the entry's detail).
pub async fn record(state: &AppState, entry: AuditEntry) {
    append(state.store.as_ref(), state.now_secs(), &entry).await;
}

/// [`record`] for callers without an [`AppState`] (the admin command line).
pub async fn append<S: StaffStore + ?Sized>(store: &S, now: i64, entry: &AuditEntry) {
    if let Err(e) = store.append_audit(now, entry).await {
        tracing::error!(error = %e, action = entry.action, "could not write an audit entry");
    }
}

/// Entries matching `f`, newest first.
pub async fn query(state: &AppState, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
    state.store.query_audit(f).await
}
