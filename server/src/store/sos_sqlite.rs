//! [`SosStore`] on SQLite. Writes are IMMEDIATE transactions; SQLite's AUTOINCREMENT ids
//! are assigned under the write lock, so event ids commit in order.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sotong_core::sos::{Feedback, IncidentId, ReportedState};

use super::sos::{
    action_feed, action_phone_event, beacon_events, beacon_from_parts, event_from_parts,
    incident_from_parts, phase_after, to_json, Acked, DispatchAction, RoutedBeacon, SmsKeyRow,
    SosEvent, SosIncident, SosIngest, SosMessage, SosStore, StoredBeacon,
};
use super::sos::{
    merge_summary, FeedbackPut, FeedbackRow, MonthRange, SummaryRow, NO_REGION,
    SUMMARY_UTC_OFFSET_SECS,
};
use super::{DeviceRef, SqliteStore, StoreError, StoreResult};

const INCIDENT_COLUMNS: &str = "id, account_id, device_id, trigger_method, triggered_at, region, \
     reported_state, phase, duress, unit, outcome, up_to_seq, created_at, updated_at, closed_at";
const EVENT_COLUMNS: &str = "id, incident_id, region, kind, body, phone_event, at";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<SosIncident>> {
    Ok(incident_from_parts(
        &r.get::<_, Vec<u8>>(0)?,
        r.get(1)?,
        r.get(2)?,
        &r.get::<_, String>(3)?,
        r.get(4)?,
        r.get(5)?,
        &r.get::<_, String>(6)?,
        &r.get::<_, String>(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<SosEvent>> {
    Ok(event_from_parts(
        r.get(0)?,
        &r.get::<_, Vec<u8>>(1)?,
        r.get(2)?,
        r.get(3)?,
        &r.get::<_, String>(4)?,
        r.get::<_, Option<String>>(5)?.as_deref(),
        r.get(6)?,
    ))
}

fn load_incident(conn: &Connection, id: &IncidentId) -> StoreResult<Option<SosIncident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE id = ?1");
    conn.query_row(&sql, [id.as_bytes().as_slice()], incident_row)
        .optional()?
        .transpose()
}

fn must_load(conn: &Connection, id: &IncidentId) -> StoreResult<SosIncident> {
    load_incident(conn, id)?
        .ok_or_else(|| StoreError::Corrupt("sos incident vanished mid-transaction".into()))
}

fn append_event(
    conn: &Connection,
    incident: &SosIncident,
    kind: &str,
    body: &serde_json::Value,
    phone_event: Option<&sotong_core::sos::ServerEvent>,
    now: i64,
) -> StoreResult<SosEvent> {
    conn.execute(
        "INSERT INTO sos_events (incident_id, region, kind, body, phone_event, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            incident.id.as_bytes().as_slice(),
            incident.region,
            kind,
            to_json(body)?,
            phone_event.map(to_json).transpose()?,
            now
        ],
    )?;
    Ok(SosEvent {
        id: conn.last_insert_rowid(),
        incident: incident.id,
        region: incident.region.clone(),
        kind: kind.to_owned(),
        body: body.clone(),
        phone_event: phone_event.cloned(),
        at: now,
    })
}

/// The regions as a bound JSON array (`None`: every region); the SQL reads it with
/// `REGION_IN`.
fn regions_param(regions: Option<&[String]>) -> StoreResult<Option<String>> {
    regions.map(to_json).transpose()
}

/// `region` is in the JSON array bound as `?9` (or `?9` is NULL: every region).
const REGION_IN: &str = "(?9 IS NULL OR region IN (SELECT value FROM json_each(?9)))";

fn ingest(
    conn: &mut Connection,
    device: DeviceRef,
    beacons: &[RoutedBeacon],
    now: i64,
) -> StoreResult<SosIngest> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut order: Vec<IncidentId> = Vec::new();
    for rb in beacons {
        let b = &rb.beacon;
        let id_bytes = b.incident.as_bytes().as_slice();
        let before = load_incident(&tx, &b.incident)?;
        if let Some(inc) = &before {
            if inc.account_id != device.account_id {
                return Ok(SosIngest::NotOwner(b.incident));
            }
        } else {
            tx.execute(
                "INSERT INTO sos_incidents (id, account_id, device_id, trigger_method,
                     triggered_at, region, reported_state, duress, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    id_bytes,
                    device.account_id,
                    device.device_id,
                    b.trigger.as_str(),
                    b.triggered_at,
                    rb.region,
                    b.state.as_str(),
                    b.state == ReportedState::Duress,
                    now
                ],
            )?;
        }
        if !order.contains(&b.incident) {
            order.push(b.incident);
        }
        let max_seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM sos_beacons WHERE incident_id = ?1",
            [id_bytes],
            |r| r.get(0),
        )?;
        let fix = b.fix.as_ref();
        let inserted = tx.execute(
            "INSERT INTO sos_beacons (incident_id, seq, state, lat, lon, accuracy_m,
                 fix_time_ms, body, via, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (incident_id, seq) DO NOTHING",
            params![
                id_bytes,
                b.seq,
                b.state.as_str(),
                fix.map(|f| f.lat),
                fix.map(|f| f.lon),
                fix.map(|f| f.accuracy_m),
                fix.map(|f| f.time_ms),
                to_json(b)?,
                rb.via.as_str(),
                now
            ],
        )? == 1;
        if !inserted {
            continue;
        }
        let newest = i64::from(b.seq) > max_seq;
        tx.execute(
            "UPDATE sos_incidents SET
                 reported_state = CASE WHEN ?2 THEN ?3 ELSE reported_state END,
                 duress = duress OR ?4,
                 region = COALESCE(region, ?5),
                 updated_at = ?6
             WHERE id = ?1",
            params![
                id_bytes,
                newest,
                b.state.as_str(),
                b.state == ReportedState::Duress,
                rb.region,
                now
            ],
        )?;
        let after = must_load(&tx, &b.incident)?;
        for (kind, body, phone) in beacon_events(before.as_ref(), &after, b) {
            append_event(&tx, &after, kind, &body, phone.as_ref(), now)?;
        }
    }
    let mut acked = Vec::with_capacity(order.len());
    for id in order {
        let id_bytes = id.as_bytes().as_slice();
        let mut up_to: i64 = tx.query_row(
            "SELECT up_to_seq FROM sos_incidents WHERE id = ?1",
            [id_bytes],
            |r| r.get(0),
        )?;
        let start = up_to;
        while tx
            .query_row(
                "SELECT 1 FROM sos_beacons WHERE incident_id = ?1 AND seq = ?2",
                params![id_bytes, up_to + 1],
                |_| Ok(()),
            )
            .optional()?
            .is_some()
        {
            up_to += 1;
        }
        if up_to != start {
            tx.execute(
                "UPDATE sos_incidents SET up_to_seq = ?2 WHERE id = ?1",
                params![id_bytes, up_to],
            )?;
        }
        acked.push(Acked {
            incident: id,
            up_to_seq: u32::try_from(up_to)
                .map_err(|_| StoreError::Corrupt("sos up_to_seq".into()))?,
        });
    }
    tx.commit()?;
    Ok(SosIngest::Stored(acked))
}

fn dispatch(
    conn: &mut Connection,
    id: &IncidentId,
    author_id: i64,
    action: &DispatchAction,
    now: i64,
) -> StoreResult<Option<SosEvent>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(before) = load_incident(&tx, id)? else {
        return Ok(None);
    };
    let id_bytes = id.as_bytes().as_slice();
    let mut message_id = 0;
    match action {
        DispatchAction::Message { text } | DispatchAction::Note { text } => {
            let kind = if matches!(action, DispatchAction::Message { .. }) {
                "message"
            } else {
                "note"
            };
            tx.execute(
                "INSERT INTO sos_messages (incident_id, kind, author_id, text, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_bytes, kind, author_id, text, now],
            )?;
            message_id = tx.last_insert_rowid();
        }
        DispatchAction::Assign { unit } => {
            tx.execute(
                "UPDATE sos_incidents SET unit = ?2, acknowledged_at = COALESCE(acknowledged_at, ?3)
                 WHERE id = ?1",
                params![id_bytes, unit, now],
            )?;
        }
        DispatchAction::Close { outcome } => {
            tx.execute(
                "UPDATE sos_incidents SET outcome = ?2, closed_at = COALESCE(closed_at, ?3)
                 WHERE id = ?1",
                params![id_bytes, outcome.as_str(), now],
            )?;
        }
        DispatchAction::Acknowledge => {
            tx.execute(
                "UPDATE sos_incidents SET acknowledged_at = COALESCE(acknowledged_at, ?2)
                 WHERE id = ?1",
                params![id_bytes, now],
            )?;
        }
    }
    let phase = phase_after(before.phase, action);
    tx.execute(
        "UPDATE sos_incidents SET phase = ?2, updated_at = ?3 WHERE id = ?1",
        params![id_bytes, phase.as_str(), now],
    )?;
    let after = must_load(&tx, id)?;
    let (kind, body) = action_feed(&after, action, author_id, message_id);
    let phone = action_phone_event(*id, action, message_id);
    let event = append_event(&tx, &after, kind, &body, phone.as_ref(), now)?;
    tx.commit()?;
    Ok(Some(event))
}

fn sms_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SmsKeyRow> {
    Ok(SmsKeyRow {
        key_id: r.get(0)?,
        device: DeviceRef {
            account_id: r.get(1)?,
            device_id: r.get(2)?,
        },
        key: r.get(3)?,
    })
}

#[async_trait]
impl SosStore for SqliteStore {
    async fn sos_ingest(
        &self,
        device: DeviceRef,
        beacons: &[RoutedBeacon],
        now: i64,
    ) -> StoreResult<SosIngest> {
        let beacons = beacons.to_vec();
        self.call(move |conn| ingest(conn, device, &beacons, now))
            .await
    }

    async fn sos_incident(&self, id: &IncidentId) -> StoreResult<Option<SosIncident>> {
        let id = *id;
        self.call(move |conn| load_incident(conn, &id)).await
    }

    async fn sos_open_incidents(
        &self,
        regions: Option<&[String]>,
    ) -> StoreResult<Vec<SosIncident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE closed_at IS NULL AND {REGION_IN}
             ORDER BY duress DESC, created_at, id"
        );
        let regions = regions_param(regions)?;
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::named_params! {"?9": regions}, incident_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn sos_beacons(&self, id: &IncidentId) -> StoreResult<Vec<StoredBeacon>> {
        let id = *id;
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT body, via, received_at FROM sos_beacons WHERE incident_id = ?1
                 ORDER BY seq",
            )?;
            let rows = stmt.query_map([id.as_bytes().as_slice()], |r| {
                Ok(beacon_from_parts(
                    &r.get::<_, String>(0)?,
                    &r.get::<_, String>(1)?,
                    r.get(2)?,
                ))
            })?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn sos_messages(&self, id: &IncidentId) -> StoreResult<Vec<SosMessage>> {
        let id = *id;
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, author_id, text, at FROM sos_messages WHERE incident_id = ?1
                 ORDER BY id",
            )?;
            let rows = stmt.query_map([id.as_bytes().as_slice()], |r| {
                Ok(SosMessage {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    author_id: r.get(2)?,
                    text: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn sos_events_after(
        &self,
        after: i64,
        regions: Option<&[String]>,
        limit: u32,
    ) -> StoreResult<Vec<SosEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM sos_events WHERE id > ?1 AND {REGION_IN}
             ORDER BY id LIMIT ?2"
        );
        let regions = regions_param(regions)?;
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                rusqlite::named_params! {"?1": after, "?2": i64::from(limit.max(1)), "?9": regions},
                event_row,
            )?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn sos_phone_events(&self, id: &IncidentId, after: i64) -> StoreResult<Vec<SosEvent>> {
        let id = *id;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM sos_events
             WHERE incident_id = ?1 AND id > ?2 AND phone_event IS NOT NULL ORDER BY id"
        );
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![id.as_bytes().as_slice(), after], event_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn sos_dispatch(
        &self,
        id: &IncidentId,
        author_id: i64,
        action: &DispatchAction,
        now: i64,
    ) -> StoreResult<Option<SosEvent>> {
        let id = *id;
        let action = action.clone();
        self.call(move |conn| dispatch(conn, &id, author_id, &action, now))
            .await
    }

    async fn sos_sms_key(
        &self,
        device: DeviceRef,
        new_key: &[u8],
        now: i64,
    ) -> StoreResult<SmsKeyRow> {
        let new_key = new_key.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let select = "SELECT key_id, account_id, device_id, key FROM sos_sms_keys
                          WHERE device_id = ?1";
            if let Some(row) = tx
                .query_row(select, [device.device_id], sms_key_row)
                .optional()?
            {
                return Ok(row);
            }
            let key_id: i64 = tx.query_row(
                "SELECT COALESCE(MAX(key_id), 0) + 1 FROM sos_sms_keys",
                [],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO sos_sms_keys (key_id, device_id, account_id, key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key_id, device.device_id, device.account_id, new_key, now],
            )?;
            let row = tx.query_row(select, [device.device_id], sms_key_row)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    async fn sos_sms_key_by_id(&self, key_id: u32) -> StoreResult<Option<SmsKeyRow>> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT key_id, account_id, device_id, key FROM sos_sms_keys
                     WHERE key_id = ?1",
                    [key_id],
                    sms_key_row,
                )
                .optional()?)
        })
        .await
    }

    async fn sos_purge(&self, closed_before: i64) -> StoreResult<u64> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old = "SELECT id FROM sos_incidents WHERE closed_at IS NOT NULL AND closed_at < ?1";
            let purged: i64 = tx.query_row(
                &format!(
                    "SELECT COUNT(*) FROM sos_incidents WHERE id IN ({old}) AND
                     (EXISTS (SELECT 1 FROM sos_beacons b WHERE b.incident_id = sos_incidents.id)
                      OR EXISTS (SELECT 1 FROM sos_messages m WHERE m.incident_id = sos_incidents.id))"
                ),
                [closed_before],
                |r| r.get(0),
            )?;
            for table in ["sos_beacons", "sos_messages", "sos_events"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE incident_id IN ({old})"),
                    [closed_before],
                )?;
            }
            tx.commit()?;
            Ok(u64::try_from(purged).unwrap_or(0))
        })
        .await
    }

    async fn sos_last_event_id(&self) -> StoreResult<i64> {
        self.call(move |conn| {
            Ok(
                conn.query_row("SELECT COALESCE(MAX(id), 0) FROM sos_events", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn sos_put_feedback(
        &self,
        id: &IncidentId,
        device: DeviceRef,
        feedback: &Feedback,
        now: i64,
    ) -> StoreResult<FeedbackPut> {
        let id = *id;
        let feedback = feedback.clone();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id_bytes = id.as_bytes().as_slice();
            let found: Option<(i64, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT account_id, device_id, closed_at FROM sos_incidents WHERE id = ?1",
                    [id_bytes],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((account_id, device_id, closed_at)) = found else {
                return Ok(FeedbackPut::NotFound);
            };
            if account_id != device.account_id || device_id != device.device_id {
                return Ok(FeedbackPut::NotFound);
            }
            if closed_at.is_none() {
                return Ok(FeedbackPut::StillOpen);
            }
            let replaced = tx
                .query_row(
                    "SELECT 1 FROM sos_feedback WHERE incident_id = ?1",
                    [id_bytes],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            tx.execute(
                "INSERT INTO sos_feedback
                     (incident_id, device_id, rating, felt_safe, comment, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (incident_id) DO UPDATE SET rating = excluded.rating,
                     felt_safe = excluded.felt_safe, comment = excluded.comment,
                     updated_at = excluded.updated_at",
                params![
                    id_bytes,
                    device.device_id,
                    feedback.rating,
                    feedback.felt_safe,
                    feedback.comment,
                    now
                ],
            )?;
            tx.commit()?;
            Ok(FeedbackPut::Stored { replaced })
        })
        .await
    }

    async fn sos_feedback(&self, id: &IncidentId) -> StoreResult<Option<FeedbackRow>> {
        let id = *id;
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT device_id, rating, felt_safe, comment, created_at, updated_at
                     FROM sos_feedback WHERE incident_id = ?1",
                    [id.as_bytes().as_slice()],
                    |r| {
                        Ok(FeedbackRow {
                            incident: id,
                            device_id: r.get(0)?,
                            feedback: Feedback {
                                rating: r.get(1)?,
                                felt_safe: r.get(2)?,
                                comment: r.get(3)?,
                            },
                            created_at: r.get(4)?,
                            updated_at: r.get(5)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn sos_summary(&self, range: MonthRange) -> StoreResult<Vec<SummaryRow>> {
        self.call(move |conn| summary(conn, range)).await
    }
}

/// `(region, month)` of an incident row, as SQL over `sos_incidents` aliased `i`; `?3` is
/// the time zone offset.
fn keyed(extra: &str) -> String {
    format!(
        "SELECT COALESCE(i.region, '{NO_REGION}') AS r,
                strftime('%Y-%m', i.created_at + ?3, 'unixepoch') AS m, {extra}
         FROM sos_incidents i WHERE i.created_at >= ?1 AND i.created_at < ?2"
    )
}

fn summary(conn: &Connection, range: MonthRange) -> StoreResult<Vec<SummaryRow>> {
    let p = params![range.from, range.to, SUMMARY_UTC_OFFSET_SECS];
    let base_sql = format!(
        "SELECT k.r, k.m, COUNT(*), SUM(k.duress), COUNT(f.incident_id), AVG(f.rating),
                AVG(CASE WHEN f.felt_safe = 1 THEN 1.0 WHEN f.felt_safe = 0 THEN 0.0 END)
         FROM ({}) k LEFT JOIN sos_feedback f ON f.incident_id = k.id
         GROUP BY k.r, k.m",
        keyed("i.id, i.duress")
    );
    let mut stmt = conn.prepare(&base_sql)?;
    let base = stmt
        .query_map(p, |r| {
            Ok(SummaryRow {
                region: r.get(0)?,
                month: r.get(1)?,
                incidents: r.get(2)?,
                duress: r.get(3)?,
                median_ack_secs: None,
                closed_by_outcome: Default::default(),
                feedback: r.get(4)?,
                mean_rating: r.get(5)?,
                felt_safe_share: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // The median: the middle row, or the mean of the two middle rows.
    let median_sql = format!(
        "WITH b AS ({}),
              a AS (SELECT r, m, d, ROW_NUMBER() OVER (PARTITION BY r, m ORDER BY d) AS rn,
                           COUNT(*) OVER (PARTITION BY r, m) AS n FROM b)
         SELECT r, m, AVG(d) FROM a WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY r, m",
        keyed("i.acknowledged_at - i.created_at AS d") + " AND i.acknowledged_at IS NOT NULL"
    );
    let mut stmt = conn.prepare(&median_sql)?;
    let medians = stmt
        .query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let outcome_sql = format!(
        "SELECT r, m, o, COUNT(*) FROM ({}) GROUP BY r, m, o",
        keyed("i.outcome AS o") + " AND i.closed_at IS NOT NULL AND i.outcome IS NOT NULL"
    );
    let mut stmt = conn.prepare(&outcome_sql)?;
    let outcomes = stmt
        .query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(merge_summary(base, medians, outcomes))
}
