//! [`StaffStore`] on SQLite. Multi-statement operations are IMMEDIATE transactions, which
//! also serializes them against other processes on the same file.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::staff::{
    actor_parts, audit_from_parts, clamp_limit, grant_from_parts, kind_str, parse_kind,
    LockoutPolicy, LoginFailure, NewStaffMember, NewStaffSession, StaffCredentials, StaffStore,
};
use super::{SqliteStore, StoreResult};
use crate::staff::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::staff::session::StaffSession;
use crate::staff::StaffMember;

const MEMBER_COLUMNS: &str =
    "id, username, display_name, disabled, totp_secret IS NOT NULL, password_hash, totp_secret";

/// A member row (without grants) and its credentials.
fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StaffMember, String, Option<Vec<u8>>)> {
    Ok((
        StaffMember {
            id: r.get(0)?,
            username: r.get(1)?,
            display_name: r.get(2)?,
            grants: Vec::new(),
            disabled: r.get(3)?,
            totp_enabled: r.get(4)?,
        },
        r.get(5)?,
        r.get(6)?,
    ))
}

fn load_grants(conn: &Connection, member: &mut StaffMember) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT role, scope FROM staff_grants WHERE member_id = ?1 ORDER BY role, scope",
    )?;
    let rows = stmt.query_map([member.id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    member.grants = rows
        .map(|row| {
            let (role, scope) = row?;
            grant_from_parts(&role, &scope)
        })
        .collect::<StoreResult<_>>()?;
    Ok(())
}

fn credentials_where(
    conn: &Connection,
    clause: &str,
    param: &dyn rusqlite::ToSql,
) -> StoreResult<Option<StaffCredentials>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM staff_members WHERE {clause}");
    let Some((mut member, password_hash, totp_secret)) =
        conn.query_row(&sql, [param], member_row).optional()?
    else {
        return Ok(None);
    };
    load_grants(conn, &mut member)?;
    Ok(Some(StaffCredentials {
        member,
        password_hash,
        totp_secret,
    }))
}

const AUDIT_COLUMNS: &str = "id, at, actor_kind, actor_id, actor_name, action, target_kind, \
                             target_id, outcome, client_ip, detail";

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditParts> {
    Ok(AuditParts {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: (r.get(2)?, r.get(3)?, r.get(4)?),
        action: r.get(5)?,
        target_kind: r.get(6)?,
        target_id: r.get(7)?,
        outcome: r.get(8)?,
        client_ip: r.get(9)?,
        detail: r.get(10)?,
    })
}

struct AuditParts {
    id: i64,
    at: i64,
    actor: (String, Option<i64>, Option<String>),
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    outcome: String,
    client_ip: Option<String>,
    detail: Option<String>,
}

impl AuditParts {
    fn decode(self) -> StoreResult<AuditRecord> {
        audit_from_parts(
            self.id,
            self.at,
            self.actor,
            self.action,
            self.target_kind,
            self.target_id,
            &self.outcome,
            self.client_ip,
            self.detail,
        )
    }
}

fn query_audit_rows(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<AuditRecord>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, audit_row)?;
    rows.map(|r| r?.decode()).collect()
}

#[async_trait]
impl StaffStore for SqliteStore {
    async fn add_staff(&self, new: &NewStaffMember) -> StoreResult<Option<StaffMember>> {
        let new = new.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                "INSERT INTO staff_members (username, display_name, password_hash,
                     password_changed_at, totp_secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4) ON CONFLICT (username) DO NOTHING",
                params![
                    new.username,
                    new.display_name,
                    new.password_hash,
                    new.created_at,
                    new.totp_secret
                ],
            )?;
            if inserted == 0 {
                return Ok(None);
            }
            let id = tx.last_insert_rowid();
            for g in &new.grants {
                tx.execute(
                    "INSERT INTO staff_grants (member_id, role, scope) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![id, g.role.as_str(), g.scope.as_deref().unwrap_or("")],
                )?;
            }
            let creds = credentials_where(&tx, "id = ?1", &id)?;
            tx.commit()?;
            Ok(creds.map(|c| c.member))
        })
        .await
    }

    async fn staff_member(&self, id: i64) -> StoreResult<Option<StaffMember>> {
        self.call(move |conn| Ok(credentials_where(conn, "id = ?1", &id)?.map(|c| c.member)))
            .await
    }

    async fn staff_credentials(&self, username: &str) -> StoreResult<Option<StaffCredentials>> {
        let username = username.to_owned();
        self.call(move |conn| credentials_where(conn, "username = ?1", &username))
            .await
    }

    async fn list_staff(&self) -> StoreResult<Vec<StaffMember>> {
        self.call(|conn| {
            let sql = format!("SELECT {MEMBER_COLUMNS} FROM staff_members ORDER BY username");
            let mut stmt = conn.prepare(&sql)?;
            let members: Vec<StaffMember> = stmt
                .query_map([], member_row)?
                .map(|r| r.map(|(m, _, _)| m))
                .collect::<rusqlite::Result<_>>()?;
            members
                .into_iter()
                .map(|mut m| {
                    load_grants(conn, &mut m)?;
                    Ok(m)
                })
                .collect()
        })
        .await
    }

    async fn set_staff_disabled(&self, id: i64, disabled: bool) -> StoreResult<bool> {
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE staff_members SET disabled = ?2 WHERE id = ?1",
                params![id, disabled],
            )? == 1)
        })
        .await
    }

    async fn set_staff_password(
        &self,
        id: i64,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let password_hash = password_hash.to_owned();
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE staff_members SET password_hash = ?2, password_changed_at = ?3
                 WHERE id = ?1",
                params![id, password_hash, now],
            )? == 1)
        })
        .await
    }

    async fn set_staff_totp(&self, id: i64, secret: Option<&[u8]>) -> StoreResult<bool> {
        let secret = secret.map(<[u8]>::to_vec);
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE staff_members SET totp_secret = ?2, totp_last_step = NULL WHERE id = ?1",
                params![id, secret],
            )? == 1)
        })
        .await
    }

    async fn use_totp_step(&self, id: i64, step: i64) -> StoreResult<bool> {
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE staff_members SET totp_last_step = ?2
                 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                params![id, step],
            )? == 1)
        })
        .await
    }

    async fn login_locked_until(&self, name_key: &[u8; 32], now: i64) -> StoreResult<Option<i64>> {
        let key = *name_key;
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT locked_until FROM staff_login_locks
                     WHERE name_key = ?1 AND locked_until > ?2",
                    params![key.as_slice(), now],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn record_login_failure(
        &self,
        name_key: &[u8; 32],
        now: i64,
        policy: &LockoutPolicy,
    ) -> StoreResult<LoginFailure> {
        let key = *name_key;
        let policy = *policy;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let since = now.saturating_sub(policy.window_secs);
            // Failures older than the window and ended locks are forgotten, for every name.
            tx.execute("DELETE FROM staff_login_failures WHERE at <= ?1", [since])?;
            tx.execute(
                "DELETE FROM staff_login_locks WHERE locked_until <= ?1",
                [now],
            )?;
            tx.execute(
                "INSERT INTO staff_login_failures (name_key, at) VALUES (?1, ?2)",
                params![key.as_slice(), now],
            )?;
            let failures: i64 = tx.query_row(
                "SELECT COUNT(*) FROM staff_login_failures WHERE name_key = ?1 AND at > ?2",
                params![key.as_slice(), since],
                |r| r.get(0),
            )?;
            let failures = u32::try_from(failures).unwrap_or(u32::MAX);
            let mut locked_until = None;
            if failures >= policy.threshold {
                let until = now.saturating_add(policy.lock_secs);
                tx.execute(
                    "INSERT INTO staff_login_locks (name_key, locked_until) VALUES (?1, ?2)
                     ON CONFLICT (name_key) DO UPDATE SET locked_until = excluded.locked_until",
                    params![key.as_slice(), until],
                )?;
                tx.execute(
                    "DELETE FROM staff_login_failures WHERE name_key = ?1",
                    [key.as_slice()],
                )?;
                locked_until = Some(until);
            }
            tx.commit()?;
            Ok(LoginFailure {
                failures,
                locked_until,
            })
        })
        .await
    }

    async fn clear_login_failures(&self, name_key: &[u8; 32]) -> StoreResult<()> {
        let key = *name_key;
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM staff_login_failures WHERE name_key = ?1",
                [key.as_slice()],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_staff_session(&self, new: &NewStaffSession) -> StoreResult<i64> {
        let new = new.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM staff_sessions WHERE expires_at <= ?1",
                [new.now],
            )?;
            tx.execute(
                "INSERT INTO staff_sessions (token_hash, member_id, kind, csrf_token, created_at,
                     last_seen_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                params![
                    new.token_hash.as_slice(),
                    new.member_id,
                    kind_str(new.kind),
                    new.csrf_token,
                    new.now,
                    new.expires_at
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn staff_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<StaffSession>> {
        let hash = *token_hash;
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT id, member_id, kind, csrf_token, created_at, last_seen_at, expires_at
                     FROM staff_sessions WHERE token_hash = ?1 AND ended_at IS NULL",
                    [hash.as_slice()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, member_id, kind, csrf_token, created_at, last_seen_at, expires_at)) = row
            else {
                return Ok(None);
            };
            let Some(creds) = credentials_where(conn, "id = ?1", &member_id)? else {
                return Ok(None);
            };
            Ok(Some(StaffSession {
                id,
                member: creds.member,
                kind: parse_kind(&kind)?,
                csrf_token,
                created_at,
                last_seen_at,
                expires_at,
            }))
        })
        .await
    }

    async fn touch_staff_session(&self, id: i64, now: i64) -> StoreResult<()> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE staff_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn end_staff_session(&self, id: i64, now: i64) -> StoreResult<()> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE staff_sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
                params![id, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn end_member_sessions(&self, member_id: i64, now: i64) -> StoreResult<u64> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE staff_sessions SET ended_at = ?2 WHERE member_id = ?1 AND ended_at IS NULL",
                params![member_id, now],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn append_audit(&self, at: i64, entry: &AuditEntry) -> StoreResult<i64> {
        let entry = entry.clone();
        self.call(move |conn| {
            let (kind, actor_id, actor_name) = actor_parts(&entry.actor);
            conn.execute(
                "INSERT INTO audit_log (at, actor_kind, actor_id, actor_name, action, target_kind,
                     target_id, outcome, client_ip, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    at,
                    kind,
                    actor_id,
                    actor_name,
                    entry.action,
                    entry.target_kind,
                    entry.target_id,
                    entry.outcome.as_str(),
                    entry.client_ip.map(|ip| ip.to_string()),
                    entry.detail.as_ref().map(|d| d.to_string()),
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn query_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let f = filter.clone();
        self.call(move |conn| {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log
                 WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2)
                   AND (?3 IS NULL OR actor_name = ?3) AND (?4 IS NULL OR action = ?4)
                   AND (?5 IS NULL OR id < ?5)
                 ORDER BY id DESC LIMIT ?6"
            );
            query_audit_rows(
                conn,
                &sql,
                &[
                    &f.since,
                    &f.until,
                    &f.actor,
                    &f.action,
                    &f.before_id,
                    &clamp_limit(f.limit),
                ],
            )
        })
        .await
    }

    async fn audit_after(
        &self,
        after_id: i64,
        since: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log
                 WHERE id > ?1 AND (?2 IS NULL OR at >= ?2) ORDER BY id LIMIT ?3"
            );
            query_audit_rows(conn, &sql, &[&after_id, &since, &clamp_limit(limit)])
        })
        .await
    }
}
