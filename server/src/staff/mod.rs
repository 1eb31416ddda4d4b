//! The officials' side: staff members (agency officers, dispatchers, admins) with roles and
//! scopes held as data, password and TOTP login with lock-out, cookie and bearer sessions,
//! the one access check every staff route goes through, and the append-only audit log.
//!
//! Staff are not citizens: they never use one-time codes, and their sessions live in their
//! own table, so a citizen's device token is no staff token and the other way round.

use std::fmt;
use std::str::FromStr;

pub mod access;
pub mod admin_cli;
pub mod api;
pub mod audit;
pub mod csrf;
pub mod login;
pub mod password;
pub mod session;
pub mod totp;

/// What a staff member may do; where, is the grant's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Manages staff and reads the audit log. Never scoped.
    Admin,
    /// Answers proposals and processes documents of the agencies in its scopes.
    AgencyOfficer,
    /// Watches SOS incidents of the regions in its scopes.
    Dispatcher,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Admin, Role::AgencyOfficer, Role::Dispatcher];

    /// The stored name: `admin`, `agency_officer` or `dispatcher`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::AgencyOfficer => "agency_officer",
            Role::Dispatcher => "dispatcher",
        }
    }

    /// Whether a grant of this role names a scope (an agency or a region).
    pub fn is_scoped(self) -> bool {
        !matches!(self, Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, agency_officer or dispatcher")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// One role held in one scope: an agency code for officers, a region code for dispatchers,
/// none for admins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Where it applies; `None` only for [`Role::Admin`].
    pub scope: Option<String>,
}

impl Grant {
    /// A grant, checked: scoped roles need a scope, admin takes none, and a scope is 1 to 32
    /// characters of letters, digits, `-` and `_`.
    pub fn new(role: Role, scope: Option<&str>) -> Result<Self, GrantError> {
        match (role.is_scoped(), scope) {
            (true, None) => Err(GrantError::MissingScope(role)),
            (false, Some(_)) => Err(GrantError::UnexpectedScope(role)),
            (_, Some(s)) if !valid_scope(s) => Err(GrantError::BadScope(s.to_owned())),
            (_, scope) => Ok(Self {
                role,
                scope: scope.map(str::to_owned),
            }),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(scope) => write!(f, "{}:{scope}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

/// Why a grant is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// An officer or dispatcher grant without a scope.
    #[error("{0} needs a scope (--scope <agency or region code>)")]
    MissingScope(Role),
    /// An admin grant with a scope.
    #[error("{0} takes no scope")]
    UnexpectedScope(Role),
    /// A scope with characters outside the allowed set.
    #[error("scope {0:?} must be 1 to 32 letters, digits, '-' or '_'")]
    BadScope(String),
}

fn valid_scope(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A staff member as the access check sees them (never their password or TOTP secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    /// Store row id.
    pub id: i64,
    /// Normalized login name (lower case).
    pub username: String,
    /// Name shown in the console and the audit log.
    pub display_name: String,
    /// Roles and scopes.
    pub grants: Vec<Grant>,
    /// A disabled member cannot log in, and their sessions no longer work.
    pub disabled: bool,
    /// Whether login asks for a TOTP code.
    pub totp_enabled: bool,
}

impl StaffMember {
    /// Whether the member holds `r` in any scope.
    pub fn has_role(&self, r: Role) -> bool {
        self.grants.iter().any(|g| g.role == r)
    }

    /// The scopes in which the member holds `r`.
    pub fn scopes(&self, r: Role) -> Vec<&str> {
        self.grants
            .iter()
            .filter(|g| g.role == r)
            .filter_map(|g| g.scope.as_deref())
            .collect()
    }
}

/// Longest login name, in bytes.
pub const MAX_USERNAME: usize = 64;

/// A login name as typed, normalized for lookup and lock-out counting: trimmed and in
/// lower case (so `Officer` and `officer ` are one name).
pub fn normalize_username(input: &str) -> String {
    input.trim().to_lowercase()
}

/// Checks a new member's login name: 3 to 64 of `a-z 0-9 . _ -` after normalization.
pub fn check_new_username(input: &str) -> Result<String, UsernameError> {
    let name = normalize_username(input);
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !(3..=MAX_USERNAME).contains(&name.len()) || !ok_chars {
        return Err(UsernameError);
    }
    Ok(name)
}

/// A login name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a username is 3 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
pub struct UsernameError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_grants_are_checked() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!(Grant::new(Role::Admin, None).is_ok());
        assert_eq!(
            Grant::new(Role::Admin, Some("MOIS")),
            Err(GrantError::UnexpectedScope(Role::Admin))
        );
        assert_eq!(
            Grant::new(Role::Dispatcher, None),
            Err(GrantError::MissingScope(Role::Dispatcher))
        );
        assert!(Grant::new(Role::AgencyOfficer, Some("MO IS")).is_err());
        let m = StaffMember {
            id: 1,
            username: "kim".into(),
            display_name: "Kim".into(),
            grants: vec![
                Grant::new(Role::AgencyOfficer, Some("MOIS")).unwrap(),
                Grant::new(Role::AgencyOfficer, Some("MOLIT")).unwrap(),
            ],
            disabled: false,
            totp_enabled: false,
        };
        assert!(m.has_role(Role::AgencyOfficer));
        assert!(!m.has_role(Role::Admin));
        assert_eq!(m.scopes(Role::AgencyOfficer), vec!["MOIS", "MOLIT"]);
        assert!(m.scopes(Role::Dispatcher).is_empty());
    }

    #[test]
    fn usernames_are_normalized_and_checked() {
        assert_eq!(check_new_username(" Officer.Kim ").unwrap(), "officer.kim");
        assert!(check_new_username("ab").is_err());
        assert!(check_new_username("kim lee").is_err());
        assert!(check_new_username("김철수").is_err());
        assert_eq!(normalize_username("  KIM "), "kim");
    }
}
