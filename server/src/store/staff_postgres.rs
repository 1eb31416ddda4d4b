//! [`StaffStore`] on PostgreSQL. Counting a login failure and locking the name is one
//! transaction under an advisory lock keyed by the name, so that instances sharing the
//! database count every failure exactly once.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::staff::{
    actor_parts, audit_from_parts, clamp_limit, grant_from_parts, kind_str, parse_kind,
    LockoutPolicy, LoginFailure, NewStaffMember, NewStaffSession, StaffCredentials, StaffStore,
};
use super::{PgStore, StoreResult};
use crate::staff::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::staff::session::StaffSession;
use crate::staff::StaffMember;

/// First half of the two-key advisory lock taken per login name.
const LOGIN_LOCK_SPACE: i32 = 0x534f_5403;

const MEMBER_COLUMNS: &str =
    "id, username, display_name, disabled, totp_secret IS NOT NULL, password_hash, totp_secret";

fn member_from_row(row: &Row) -> StoreResult<(StaffMember, String, Option<Vec<u8>>)> {
    Ok((
        StaffMember {
            id: row.try_get(0)?,
            username: row.try_get(1)?,
            display_name: row.try_get(2)?,
            grants: Vec::new(),
            disabled: row.try_get(3)?,
            totp_enabled: row.try_get(4)?,
        },
        row.try_get(5)?,
        row.try_get(6)?,
    ))
}

async fn load_grants<C: GenericClient>(client: &C, member: &mut StaffMember) -> StoreResult<()> {
    let rows = client
        .query(
            "SELECT role, scope FROM staff_grants WHERE member_id = $1 ORDER BY role, scope",
            &[&member.id],
        )
        .await?;
    member.grants = rows
        .iter()
        .map(|r| grant_from_parts(r.try_get(0)?, r.try_get(1)?))
        .collect::<StoreResult<_>>()?;
    Ok(())
}

async fn credentials_where<C: GenericClient>(
    client: &C,
    clause: &str,
    param: &(dyn ToSql + Sync),
) -> StoreResult<Option<StaffCredentials>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM staff_members WHERE {clause}");
    let Some(row) = client.query_opt(&sql, &[param]).await? else {
        return Ok(None);
    };
    let (mut member, password_hash, totp_secret) = member_from_row(&row)?;
    load_grants(client, &mut member).await?;
    Ok(Some(StaffCredentials {
        member,
        password_hash,
        totp_secret,
    }))
}

const AUDIT_COLUMNS: &str = "id, at, actor_kind, actor_id, actor_name, action, target_kind, \
                             target_id, outcome, client_ip, detail";

fn audit_from_row(r: &Row) -> StoreResult<AuditRecord> {
    audit_from_parts(
        r.try_get(0)?,
        r.try_get(1)?,
        (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
        r.try_get(5)?,
        r.try_get(6)?,
        r.try_get(7)?,
        r.try_get::<_, &str>(8)?,
        r.try_get(9)?,
        r.try_get(10)?,
    )
}

fn name_lock_key(key: &[u8; 32]) -> i32 {
    i32::from_be_bytes([key[0], key[1], key[2], key[3]])
}

#[async_trait]
impl StaffStore for PgStore {
    async fn add_staff(&self, new: &NewStaffMember) -> StoreResult<Option<StaffMember>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO staff_members (username, display_name, password_hash,
                     password_changed_at, totp_secret, created_at)
                 VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (username) DO NOTHING RETURNING id",
                &[
                    &new.username,
                    &new.display_name,
                    &new.password_hash,
                    &new.created_at,
                    &new.totp_secret,
                ],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        for g in &new.grants {
            tx.execute(
                "INSERT INTO staff_grants (member_id, role, scope) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &g.role.as_str(), &g.scope.as_deref().unwrap_or("")],
            )
            .await?;
        }
        let creds = credentials_where(&*tx, "id = $1", &id).await?;
        tx.commit().await?;
        Ok(creds.map(|c| c.member))
    }

    async fn staff_member(&self, id: i64) -> StoreResult<Option<StaffMember>> {
        let conn = self.conn().await?;
        Ok(credentials_where(&**conn, "id = $1", &id)
            .await?
            .map(|c| c.member))
    }

    async fn staff_credentials(&self, username: &str) -> StoreResult<Option<StaffCredentials>> {
        let conn = self.conn().await?;
        credentials_where(&**conn, "username = $1", &username).await
    }

    async fn list_staff(&self) -> StoreResult<Vec<StaffMember>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {MEMBER_COLUMNS} FROM staff_members ORDER BY username");
        let rows = conn.query(&sql, &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (mut member, _, _) = member_from_row(row)?;
            load_grants(&**conn, &mut member).await?;
            out.push(member);
        }
        Ok(out)
    }

    async fn set_staff_disabled(&self, id: i64, disabled: bool) -> StoreResult<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE staff_members SET disabled = $2 WHERE id = $1",
                &[&id, &disabled],
            )
            .await?
            == 1)
    }

    async fn set_staff_password(
        &self,
        id: i64,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE staff_members SET password_hash = $2, password_changed_at = $3
                 WHERE id = $1",
                &[&id, &password_hash, &now],
            )
            .await?
            == 1)
    }

    async fn set_staff_totp(&self, id: i64, secret: Option<&[u8]>) -> StoreResult<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE staff_members SET totp_secret = $2, totp_last_step = NULL WHERE id = $1",
                &[&id, &secret],
            )
            .await?
            == 1)
    }

    async fn use_totp_step(&self, id: i64, step: i64) -> StoreResult<bool> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE staff_members SET totp_last_step = $2
                 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                &[&id, &step],
            )
            .await?
            == 1)
    }

    async fn login_locked_until(&self, name_key: &[u8; 32], now: i64) -> StoreResult<Option<i64>> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT locked_until FROM staff_login_locks
                 WHERE name_key = $1 AND locked_until > $2",
                &[&name_key.as_slice(), &now],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn record_login_failure(
        &self,
        name_key: &[u8; 32],
        now: i64,
        policy: &LockoutPolicy,
    ) -> StoreResult<LoginFailure> {
        let key = name_key.as_slice();
        let since = now.saturating_sub(policy.window_secs);
        let mut conn = self.conn().await?;
        // Failures older than the window and ended locks are forgotten, for every name; on
        // their own, outside the name's lock, so that two names never wait on each other.
        conn.batch_execute(&format!(
            "DELETE FROM staff_login_failures WHERE at <= {since};
             DELETE FROM staff_login_locks WHERE locked_until <= {now};"
        ))
        .await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOGIN_LOCK_SPACE, &name_lock_key(name_key)],
        )
        .await?;
        tx.execute(
            "DELETE FROM staff_login_failures WHERE name_key = $1 AND at <= $2",
            &[&key, &since],
        )
        .await?;
        tx.execute(
            "INSERT INTO staff_login_failures (name_key, at) VALUES ($1, $2)",
            &[&key, &now],
        )
        .await?;
        let failures: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM staff_login_failures WHERE name_key = $1 AND at > $2",
                &[&key, &since],
            )
            .await?
            .try_get(0)?;
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let mut locked_until = None;
        if failures >= policy.threshold {
            let until = now.saturating_add(policy.lock_secs);
            tx.execute(
                "INSERT INTO staff_login_locks (name_key, locked_until) VALUES ($1, $2)
                 ON CONFLICT (name_key) DO UPDATE SET locked_until = EXCLUDED.locked_until",
                &[&key, &until],
            )
            .await?;
            tx.execute(
                "DELETE FROM staff_login_failures WHERE name_key = $1",
                &[&key],
            )
            .await?;
            locked_until = Some(until);
        }
        tx.commit().await?;
        Ok(LoginFailure {
            failures,
            locked_until,
        })
    }

    async fn clear_login_failures(&self, name_key: &[u8; 32]) -> StoreResult<()> {
        let conn = self.conn().await?;
        conn.execute(
            "DELETE FROM staff_login_failures WHERE name_key = $1",
            &[&name_key.as_slice()],
        )
        .await?;
        Ok(())
    }

    async fn create_staff_session(&self, new: &NewStaffSession) -> StoreResult<i64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "DELETE FROM staff_sessions WHERE expires_at <= $1",
            &[&new.now],
        )
        .await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO staff_sessions (token_hash, member_id, kind, csrf_token, created_at,
                     last_seen_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
                &[
                    &new.token_hash.as_slice(),
                    &new.member_id,
                    &kind_str(new.kind),
                    &new.csrf_token,
                    &new.now,
                    &new.expires_at,
                ],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(id)
    }

    async fn staff_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<StaffSession>> {
        let conn = self.conn().await?;
        let Some(row) = conn
            .query_opt(
                "SELECT id, member_id, kind, csrf_token, created_at, last_seen_at, expires_at
                 FROM staff_sessions WHERE token_hash = $1 AND ended_at IS NULL",
                &[&token_hash.as_slice()],
            )
            .await?
        else {
            return Ok(None);
        };
        let member_id: i64 = row.try_get(1)?;
        let Some(creds) = credentials_where(&**conn, "id = $1", &member_id).await? else {
            return Ok(None);
        };
        Ok(Some(StaffSession {
            id: row.try_get(0)?,
            member: creds.member,
            kind: parse_kind(row.try_get(2)?)?,
            csrf_token: row.try_get(3)?,
            created_at: row.try_get(4)?,
            last_seen_at: row.try_get(5)?,
            expires_at: row.try_get(6)?,
        }))
    }

    async fn touch_staff_session(&self, id: i64, now: i64) -> StoreResult<()> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE staff_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        Ok(())
    }

    async fn end_staff_session(&self, id: i64, now: i64) -> StoreResult<()> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE staff_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
            &[&id, &now],
        )
        .await?;
        Ok(())
    }

    async fn end_member_sessions(&self, member_id: i64, now: i64) -> StoreResult<u64> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE staff_sessions SET ended_at = $2 WHERE member_id = $1 AND ended_at IS NULL",
                &[&member_id, &now],
            )
            .await?)
    }

    async fn append_audit(&self, at: i64, entry: &AuditEntry) -> StoreResult<i64> {
        let (kind, actor_id, actor_name) = actor_parts(&entry.actor);
        let client_ip = entry.client_ip.map(|ip| ip.to_string());
        let detail = entry.detail.as_ref().map(|d| d.to_string());
        let conn = self.conn().await?;
        Ok(conn
            .query_one(
                "INSERT INTO audit_log (at, actor_kind, actor_id, actor_name, action, target_kind,
                     target_id, outcome, client_ip, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                &[
                    &at,
                    &kind,
                    &actor_id,
                    &actor_name,
                    &entry.action,
                    &entry.target_kind,
                    &entry.target_id,
                    &entry.outcome.as_str(),
                    &client_ip,
                    &detail,
                ],
            )
            .await?
            .try_get(0)?)
    }

    async fn query_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE ($1::BIGINT IS NULL OR at >= $1) AND ($2::BIGINT IS NULL OR at < $2)
               AND ($3::TEXT IS NULL OR actor_name = $3) AND ($4::TEXT IS NULL OR action = $4)
               AND ($5::BIGINT IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        );
        conn.query(
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
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    async fn audit_after(
        &self,
        after_id: i64,
        since: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE id > $1 AND ($2::BIGINT IS NULL OR at >= $2) ORDER BY id LIMIT $3"
        );
        conn.query(&sql, &[&after_id, &since, &clamp_limit(limit)])
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }
}
