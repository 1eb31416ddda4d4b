//! Feedback and the admins' summary on PostgreSQL ([`SosStore::sos_put_feedback`],
//! [`SosStore::sos_feedback`], [`SosStore::sos_summary`]), apart from the beacon path.
//!
//! [`SosStore::sos_put_feedback`]: super::SosStore::sos_put_feedback
//! [`SosStore::sos_feedback`]: super::SosStore::sos_feedback
//! [`SosStore::sos_summary`]: super::SosStore::sos_summary

use sotong_core::sos::{Feedback, IncidentId};

use super::sos::{
    merge_summary, FeedbackPut, FeedbackRow, MonthRange, SummaryRow, NO_REGION,
    SUMMARY_UTC_OFFSET_SECS,
};
use super::{DeviceRef, PgStore, StoreError, StoreResult};

pub(super) async fn put_feedback(
    store: &PgStore,
    id: &IncidentId,
    device: DeviceRef,
    feedback: &Feedback,
    now: i64,
) -> StoreResult<FeedbackPut> {
    let mut conn = store.conn().await?;
    let tx = conn.transaction().await?;
    let id_bytes = id.as_bytes().as_slice();
    // FOR UPDATE: a close running alongside is either seen or waited for.
    let Some(row) = tx
        .query_opt(
            "SELECT account_id, device_id, closed_at FROM sos_incidents WHERE id = $1
             FOR UPDATE",
            &[&id_bytes],
        )
        .await?
    else {
        return Ok(FeedbackPut::NotFound);
    };
    let (account_id, device_id, closed_at): (i64, i64, Option<i64>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if account_id != device.account_id || device_id != device.device_id {
        return Ok(FeedbackPut::NotFound);
    }
    if closed_at.is_none() {
        return Ok(FeedbackPut::StillOpen);
    }
    let replaced = tx
        .query_opt(
            "SELECT 1 FROM sos_feedback WHERE incident_id = $1",
            &[&id_bytes],
        )
        .await?
        .is_some();
    tx.execute(
        "INSERT INTO sos_feedback
             (incident_id, device_id, rating, felt_safe, comment, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (incident_id) DO UPDATE SET rating = EXCLUDED.rating,
             felt_safe = EXCLUDED.felt_safe, comment = EXCLUDED.comment,
             updated_at = EXCLUDED.updated_at",
        &[
            &id_bytes,
            &device.device_id,
            &i16::from(feedback.rating),
            &feedback.felt_safe,
            &feedback.comment,
            &now,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(FeedbackPut::Stored { replaced })
}

pub(super) async fn feedback(store: &PgStore, id: &IncidentId) -> StoreResult<Option<FeedbackRow>> {
    let conn = store.conn().await?;
    let Some(r) = conn
        .query_opt(
            "SELECT device_id, rating, felt_safe, comment, created_at, updated_at
             FROM sos_feedback WHERE incident_id = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await?
    else {
        return Ok(None);
    };
    let rating: i16 = r.try_get(1)?;
    Ok(Some(FeedbackRow {
        incident: *id,
        device_id: r.try_get(0)?,
        feedback: Feedback {
            rating: u8::try_from(rating)
                .map_err(|_| StoreError::Corrupt("sos feedback rating".into()))?,
            felt_safe: r.try_get(2)?,
            comment: r.try_get(3)?,
        },
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
    }))
}

/// `(region, month)` of an incident row plus `extra`, over `sos_incidents` aliased `i`; `$3`
/// is the time zone offset.
fn keyed(extra: &str) -> String {
    format!(
        "SELECT COALESCE(i.region, '{NO_REGION}') AS r,
                to_char(to_timestamp(i.created_at + $3) AT TIME ZONE 'UTC', 'YYYY-MM') AS m,
                {extra}
         FROM sos_incidents i WHERE i.created_at >= $1 AND i.created_at < $2"
    )
}

pub(super) async fn summary(store: &PgStore, range: MonthRange) -> StoreResult<Vec<SummaryRow>> {
    let conn = store.conn().await?;
    let p: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&range.from, &range.to, &SUMMARY_UTC_OFFSET_SECS];
    let base_sql = format!(
        "SELECT k.r, k.m, COUNT(*), COUNT(*) FILTER (WHERE k.duress), COUNT(f.incident_id),
                AVG(f.rating)::float8,
                AVG(CASE WHEN f.felt_safe THEN 1.0 WHEN NOT f.felt_safe THEN 0.0 END)::float8
         FROM ({}) k LEFT JOIN sos_feedback f ON f.incident_id = k.id
         GROUP BY k.r, k.m",
        keyed("i.id, i.duress")
    );
    let mut base = Vec::new();
    for r in conn.query(&base_sql, &p).await? {
        base.push(SummaryRow {
            region: r.try_get(0)?,
            month: r.try_get(1)?,
            incidents: r.try_get(2)?,
            duress: r.try_get(3)?,
            median_ack_secs: None,
            closed_by_outcome: Default::default(),
            feedback: r.try_get(4)?,
            mean_rating: r.try_get(5)?,
            felt_safe_share: r.try_get(6)?,
        });
    }
    let median_sql = format!(
        "SELECT r, m, percentile_cont(0.5) WITHIN GROUP (ORDER BY d::float8)::float8 FROM ({}) b
         GROUP BY r, m",
        keyed("i.acknowledged_at - i.created_at AS d") + " AND i.acknowledged_at IS NOT NULL"
    );
    let mut medians = Vec::new();
    for r in conn.query(&median_sql, &p).await? {
        medians.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    let outcome_sql = format!(
        "SELECT r, m, o, COUNT(*) FROM ({}) b GROUP BY r, m, o",
        keyed("i.outcome AS o") + " AND i.closed_at IS NOT NULL AND i.outcome IS NOT NULL"
    );
    let mut outcomes = Vec::new();
    for r in conn.query(&outcome_sql, &p).await? {
        outcomes.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
    }
    Ok(merge_summary(base, medians, outcomes))
}
