//! The administration commands' logic (`sotong-server staff …`, `sotong-server audit
//! export`); `main.rs` parses the command line and calls these. Each action writes an audit
//! entry as [`Actor::System`] with `"via": "cli"`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::json;

use super::audit::{self, actions, Actor, AuditEntry, AuditRecord, Outcome};
use super::password::{self, PasswordError, WeakPassword};
use super::totp::{self, TotpError};
use super::{check_new_username, normalize_username, Grant, GrantError, Role, UsernameError};
use crate::store::{NewStaffMember, StaffStore, StoreError};

/// Why an administration command failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("{0}")]
    Password(#[from] PasswordError),
    /// The password is refused.
    #[error("{0}")]
    Weak(#[from] WeakPassword),
    /// The username is refused.
    #[error("{0}")]
    Username(#[from] UsernameError),
    /// A grant is refused.
    #[error("{0}")]
    Grant(#[from] GrantError),
    /// A role name is unknown.
    #[error("{0}")]
    Role(#[from] super::UnknownRole),
    /// TOTP setup failed.
    #[error("{0}")]
    Totp(#[from] TotpError),
    /// No grant given.
    #[error("give at least one --role (agency_officer and dispatcher with --scope)")]
    NoGrant,
    /// A `--scope` before any `--role`.
    #[error("--scope {0:?} comes before any --role; write --role <role> --scope <code>")]
    ScopeWithoutRole(String),
    /// The shown name is unusable.
    #[error("--name must be 1 to 100 characters without control characters")]
    BadDisplayName,
    /// The username is taken.
    #[error("a staff member named {0:?} already exists")]
    Taken(String),
    /// No such member.
    #[error("no staff member is named {0:?}")]
    NoSuchMember(String),
    /// An unreadable time.
    #[error("{0:?} is neither an RFC 3339 time (2026-11-29T09:00:00Z) nor Unix seconds")]
    BadTime(String),
    /// An empty password from stdin or the file.
    #[error(
        "no password was given: pipe it to stdin, or use --password-file or --generate-password"
    )]
    NoPassword,
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AdminError {
    let what = what.into();
    move |source| AdminError::Io { what, source }
}

/// Where a new password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of standard input.
    Stdin,
    /// The first line of a file.
    File(PathBuf),
    /// Generated and printed once.
    Generate,
}

/// `staff add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddStaff {
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Roles and scopes.
    pub grants: Vec<Grant>,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Whether to set up TOTP (the URI is printed once).
    pub totp: bool,
}

/// Pairs `--role` and `--scope` values by their position on the command line: each scope
/// belongs to the nearest role before it; a scoped role may take several scopes (one grant
/// each).
pub fn pair_grants(
    roles: &[(usize, String)],
    scopes: &[(usize, String)],
) -> Result<Vec<Grant>, AdminError> {
    let mut roles: Vec<(usize, Role)> = roles
        .iter()
        .map(|(i, r)| Ok((*i, r.parse::<Role>()?)))
        .collect::<Result<_, AdminError>>()?;
    roles.sort_by_key(|(i, _)| *i);
    let mut grants = Vec::new();
    for (n, (at, role)) in roles.iter().enumerate() {
        let next = roles.get(n + 1).map_or(usize::MAX, |(i, _)| *i);
        let mine: Vec<&str> = scopes
            .iter()
            .filter(|(i, _)| i > at && *i < next)
            .map(|(_, s)| s.as_str())
            .collect();
        if mine.is_empty() {
            grants.push(Grant::new(*role, None)?);
        }
        for scope in mine {
            grants.push(Grant::new(*role, Some(scope))?);
        }
    }
    if let Some((_, orphan)) = scopes
        .iter()
        .find(|(i, _)| roles.first().is_none_or(|(first, _)| i < first))
    {
        return Err(AdminError::ScopeWithoutRole(orphan.clone()));
    }
    if grants.is_empty() {
        return Err(AdminError::NoGrant);
    }
    grants.sort();
    grants.dedup();
    Ok(grants)
}

fn read_password(
    source: &PasswordSource,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<String, AdminError> {
    let first_line = |text: &str| text.lines().next().unwrap_or("").to_owned();
    let password = match source {
        PasswordSource::Generate => {
            let p = password::generate();
            writeln!(out, "password (shown once): {p}").map_err(io_err("cannot write"))?;
            p
        }
        PasswordSource::File(path) => first_line(
            &std::fs::read_to_string(path)
                .map_err(io_err(format!("cannot read {}", path.display())))?,
        ),
        PasswordSource::Stdin => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .map_err(io_err("cannot read the password from stdin"))?;
            first_line(&line)
        }
    };
    if password.is_empty() {
        return Err(AdminError::NoPassword);
    }
    Ok(password)
}

fn cli_entry(action: &'static str, username: &str) -> AuditEntry {
    AuditEntry::new(Actor::System, action, Outcome::Success).target("staff", username)
}

/// `staff add`: checks name, grants and password, stores the member, prints the generated
/// password and the TOTP URI if asked (once).
pub async fn add<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    add: AddStaff,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let username = check_new_username(&add.username)?;
    if add.grants.is_empty() {
        return Err(AdminError::NoGrant);
    }
    let display_name = add.display_name.trim().to_owned();
    if display_name.is_empty()
        || display_name.chars().count() > 100
        || display_name.chars().any(char::is_control)
    {
        return Err(AdminError::BadDisplayName);
    }
    if store.staff_credentials(&username).await?.is_some() {
        return Err(AdminError::Taken(username));
    }
    let pw = read_password(&add.password, stdin, out)?;
    password::check_new(&pw, &username)?;
    let password_hash = password::hash(pw).await?;
    let totp_secret = add.totp.then(totp::new_secret);
    let uri = totp_secret
        .as_deref()
        .map(|s| totp::otpauth_uri(s, &username))
        .transpose()?;
    let member = store
        .add_staff(&NewStaffMember {
            username: username.clone(),
            display_name,
            password_hash,
            grants: add.grants,
            totp_secret,
            created_at: now,
        })
        .await?
        .ok_or_else(|| AdminError::Taken(username.clone()))?;
    let grants: Vec<String> = member.grants.iter().map(Grant::to_string).collect();
    audit::append(
        store,
        now,
        &cli_entry(actions::STAFF_ADD, &username)
            .detail(json!({ "via": "cli", "grants": grants, "totp": member.totp_enabled })),
    )
    .await;
    writeln!(out, "added {username} ({})", grants.join(", ")).map_err(io_err("cannot write"))?;
    if let Some(uri) = uri {
        writeln!(out, "TOTP (add to an authenticator app; shown once): {uri}")
            .map_err(io_err("cannot write"))?;
    }
    Ok(())
}

async fn member_id<S: StaffStore + ?Sized>(
    store: &S,
    username: &str,
) -> Result<(i64, String), AdminError> {
    let name = normalize_username(username);
    store
        .staff_credentials(&name)
        .await?
        .map(|c| (c.member.id, name.clone()))
        .ok_or(AdminError::NoSuchMember(name))
}

/// `staff disable`: the member can no longer log in, and their sessions end.
pub async fn disable<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    username: &str,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (id, name) = member_id(store, username).await?;
    store.set_staff_disabled(id, true).await?;
    let ended = store.end_member_sessions(id, now).await?;
    audit::append(
        store,
        now,
        &cli_entry(actions::STAFF_DISABLE, &name)
            .detail(json!({ "via": "cli", "sessions_ended": ended })),
    )
    .await;
    writeln!(out, "disabled {name}; {ended} session(s) ended").map_err(io_err("cannot write"))
}

/// `staff enable`: a disabled member may log in again (their old sessions stay ended).
pub async fn enable<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    username: &str,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (id, name) = member_id(store, username).await?;
    store.set_staff_disabled(id, false).await?;
    audit::append(
        store,
        now,
        &cli_entry(actions::STAFF_ENABLE, &name).detail(json!({ "via": "cli" })),
    )
    .await;
    writeln!(out, "enabled {name}").map_err(io_err("cannot write"))
}

/// `staff totp`: a new TOTP secret (its URI printed once) or, with `remove`, none; either
/// way the member's sessions end (a lost phone is the usual reason).
pub async fn set_totp<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    username: &str,
    remove: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (id, name) = member_id(store, username).await?;
    let secret = (!remove).then(totp::new_secret);
    let uri = secret
        .as_deref()
        .map(|s| totp::otpauth_uri(s, &name))
        .transpose()?;
    store.set_staff_totp(id, secret.as_deref()).await?;
    let ended = store.end_member_sessions(id, now).await?;
    audit::append(
        store,
        now,
        &cli_entry(actions::STAFF_TOTP, &name).detail(json!({
            "via": "cli",
            "totp": !remove,
            "sessions_ended": ended,
        })),
    )
    .await;
    let w = || io_err("cannot write");
    match uri {
        Some(uri) => writeln!(
            out,
            "new TOTP for {name} (add to an authenticator app; shown once): {uri}"
        )
        .map_err(w())?,
        None => writeln!(out, "TOTP removed for {name}").map_err(w())?,
    }
    writeln!(out, "{ended} session(s) ended").map_err(w())
}

/// `staff reset-password`: a new password (checked), and every session of the member ends.
pub async fn reset_password<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    username: &str,
    source: &PasswordSource,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (id, name) = member_id(store, username).await?;
    let pw = read_password(source, stdin, out)?;
    password::check_new(&pw, &name)?;
    let phc = password::hash(pw).await?;
    store.set_staff_password(id, &phc, now).await?;
    let ended = store.end_member_sessions(id, now).await?;
    audit::append(
        store,
        now,
        &cli_entry(actions::STAFF_RESET_PASSWORD, &name)
            .detail(json!({ "via": "cli", "sessions_ended": ended })),
    )
    .await;
    writeln!(out, "password of {name} replaced; {ended} session(s) ended")
        .map_err(io_err("cannot write"))
}

/// `staff list`: a table of username, name, grants, disabled, totp.
pub async fn list<S: StaffStore + ?Sized>(
    store: &S,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let members = store.list_staff().await?;
    let rows: Vec<[String; 5]> = members
        .iter()
        .map(|m| {
            [
                m.username.clone(),
                m.display_name.clone(),
                m.grants
                    .iter()
                    .map(Grant::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                if m.disabled { "yes" } else { "no" }.to_owned(),
                if m.totp_enabled { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let header = ["USERNAME", "NAME", "GRANTS", "DISABLED", "TOTP"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(io_err("cannot write"))?;
    }
    Ok(())
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// `audit export`: every entry from `since` on, oldest first, then an `audit_export` entry.
pub async fn export<S: StaffStore + ?Sized>(
    store: &S,
    now: i64,
    since: Option<i64>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    const PAGE: u32 = 500;
    let w = || io_err("cannot write the export");
    if format == ExportFormat::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(w())?;
    }
    let mut after = 0;
    let mut rows = 0u64;
    loop {
        let page = store.audit_after(after, since, PAGE).await?;
        for record in &page {
            match format {
                ExportFormat::Jsonl => writeln!(out, "{}", record.to_json()).map_err(w())?,
                ExportFormat::Csv => writeln!(out, "{}", csv_row(record)).map_err(w())?,
            }
            after = record.id;
            rows += 1;
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    out.flush().map_err(w())?;
    audit::append(
        store,
        now,
        &AuditEntry::new(Actor::System, actions::AUDIT_EXPORT, Outcome::Success).detail(json!({
            "via": "cli",
            "since": since,
            "format": match format { ExportFormat::Jsonl => "jsonl", ExportFormat::Csv => "csv" },
            "rows": rows,
        })),
    )
    .await;
    Ok(())
}

/// The header line of the audit log as CSV (the CLI export and the console's download).
pub const CSV_HEADER: &str =
    "id,at,time,actor,actor_id,actor_name,action,target_kind,target_id,outcome,client_ip,detail";

/// One audit entry as a CSV line (no line end), cells quoted and formulas defused.
pub fn csv_row(r: &AuditRecord) -> String {
    let (actor_id, actor_name) = match &r.actor {
        Actor::Staff { id, username } => (id.to_string(), username.clone()),
        _ => (String::new(), String::new()),
    };
    [
        r.id.to_string(),
        r.at.to_string(),
        rfc3339(r.at),
        r.actor.kind().to_owned(),
        actor_id,
        actor_name,
        r.action.clone(),
        r.target_kind.clone().unwrap_or_default(),
        r.target_id.clone().unwrap_or_default(),
        r.outcome.as_str().to_owned(),
        r.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        r.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// One CSV field: quoted when needed, and a leading `= + - @` neutralized so that a
/// spreadsheet never runs it as a formula.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `--since`: Unix seconds, or an RFC 3339 time (`2026-11-29T09:00:00Z`,
/// `2026-11-29T18:00:00+09:00`, fractions ignored).
pub fn parse_since(s: &str) -> Result<i64, AdminError> {
    let bad = || AdminError::BadTime(s.to_owned());
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    let (date, rest) = s.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return Err(bad());
    };
    let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (t, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        (t, sign * (num(oh)? * 3600 + num(om)? * 60))
    };
    let time = time.split('.').next().unwrap_or(time);
    let t: Vec<&str> = time.split(':').collect();
    let [h, mi, se] = t.as_slice() else {
        return Err(bad());
    };
    let (y, mo, da, h, mi, se) = (num(y)?, num(mo)?, num(da)?, num(h)?, num(mi)?, num(se)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's days-from-civil and its inverse (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pairs: &[(usize, &str)]) -> Vec<(usize, String)> {
        pairs.iter().map(|(i, s)| (*i, (*s).to_owned())).collect()
    }

    #[test]
    fn scopes_pair_with_the_role_before_them() {
        let grants = pair_grants(
            &at(&[(1, "agency_officer"), (5, "dispatcher"), (9, "admin")]),
            &at(&[(3, "MOIS"), (4, "MOLIT"), (7, "seoul")]),
        )
        .unwrap();
        let shown: Vec<String> = grants.iter().map(Grant::to_string).collect();
        assert_eq!(
            shown,
            [
                "admin",
                "agency_officer:MOIS",
                "agency_officer:MOLIT",
                "dispatcher:seoul"
            ]
        );
        assert!(matches!(
            pair_grants(&at(&[(1, "dispatcher")]), &[]),
            Err(AdminError::Grant(GrantError::MissingScope(
                Role::Dispatcher
            )))
        ));
        assert!(matches!(
            pair_grants(&at(&[(3, "admin")]), &at(&[(1, "x")])),
            Err(AdminError::ScopeWithoutRole(_))
        ));
        assert!(matches!(
            pair_grants(&at(&[(1, "root")]), &[]),
            Err(AdminError::Role(_))
        ));
        assert!(matches!(pair_grants(&[], &[]), Err(AdminError::NoGrant)));
    }

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_since("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_since("2026-11-29T09:00:00Z").unwrap(), 1_795_942_800);
        assert_eq!(
            parse_since("2026-11-29T18:00:00.250+09:00").unwrap(),
            1_795_942_800
        );
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("2026-13-01T00:00:00Z").is_err());
        assert_eq!(rfc3339(1_795_942_800), "2026-11-29T09:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-5"), "-5");
    }
}
