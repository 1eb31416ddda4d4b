//! [`SosStore`] on PostgreSQL. Beacons are stored under a transaction-scoped advisory lock
//! per incident (its owner, beacons and `up_to_seq` are decided once, and its events are
//! inserted in commit order); events are inserted unnumbered and numbered after the commit
//! by the short serialized step of [`super::sos_sequence`], so that SOS writers commit in
//! parallel while a feed reading "pos > last" still never skips one, on any instance.

use async_trait::async_trait;
use sotong_core::sos::{IncidentId, ReportedState, ServerEvent};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::sos::{
    action_feed, action_phone_event, beacon_events, beacon_from_parts, event_from_parts,
    incident_from_parts, phase_after, to_json, Acked, DispatchAction, RoutedBeacon, SmsKeyRow,
    SosEvent, SosIncident, SosIngest, SosMessage, SosStore, StoredBeacon,
};
use super::{DeviceRef, PgStore, StoreError, StoreResult};

/// Store-wide advisory lock of the event numbering step (`sos_sequence`), SMS key ids and
/// the purge ("SOT" + a number, as in `postgres.rs`).
pub(super) const SOS_LOCK: i64 = 0x534f_5407;
/// First key of the two-key advisory lock taken per incident; the second is from its id.
const INCIDENT_LOCK_SPACE: i32 = 0x534f_5408;

fn incident_lock_key(id: &IncidentId) -> i32 {
    let b = id.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Notified (on commit) by every step that numbers SOS events: other instances' feeds and long-polls wake up
/// (`crate::sos::listener`).
pub const SOS_CHANNEL: &str = "sotong_sos";

pub(super) async fn notify<C: GenericClient>(c: &C) -> StoreResult<()> {
    c.execute("SELECT pg_notify($1, '')", &[&SOS_CHANNEL])
        .await?;
    Ok(())
}

const INCIDENT_COLUMNS: &str = "id, account_id, device_id, trigger_method, triggered_at, region, \
     reported_state, phase, duress, unit, outcome, up_to_seq, created_at, updated_at, closed_at";
const EVENT_COLUMNS: &str = "pos, incident_id, region, kind, body, phone_event, at";

fn incident_row(r: &Row) -> StoreResult<SosIncident> {
    incident_from_parts(
        r.try_get::<_, &[u8]>(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get::<_, &str>(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get::<_, &str>(6)?,
        r.try_get::<_, &str>(7)?,
        r.try_get(8)?,
        r.try_get(9)?,
        r.try_get(10)?,
        r.try_get(11)?,
        r.try_get(12)?,
        r.try_get(13)?,
        r.try_get(14)?,
    )
}

fn event_row(r: &Row) -> StoreResult<SosEvent> {
    event_from_parts(
        r.try_get(0)?,
        r.try_get::<_, &[u8]>(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get::<_, &str>(4)?,
        r.try_get::<_, Option<&str>>(5)?,
        r.try_get(6)?,
    )
}

async fn load_incident<C: GenericClient>(
    c: &C,
    id: &IncidentId,
) -> StoreResult<Option<SosIncident>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE id = $1");
    c.query_opt(&sql, &[&id.as_bytes().as_slice()])
        .await?
        .map(|r| incident_row(&r))
        .transpose()
}

async fn must_load<C: GenericClient>(c: &C, id: &IncidentId) -> StoreResult<SosIncident> {
    load_incident(c, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("sos incident vanished mid-transaction".into()))
}

/// Inserts an event, unnumbered (`sos_sequence` numbers it after the commit); the returned
/// event's `id` is the row's id until then.
async fn append_event<C: GenericClient>(
    c: &C,
    incident: &SosIncident,
    kind: &str,
    body: &serde_json::Value,
    phone_event: Option<&ServerEvent>,
    now: i64,
) -> StoreResult<SosEvent> {
    let phone = phone_event.map(to_json).transpose()?;
    let row = c
        .query_one(
            "INSERT INTO sos_events (incident_id, region, kind, body, phone_event, at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &incident.id.as_bytes().as_slice(),
                &incident.region,
                &kind,
                &to_json(body)?,
                &phone,
                &now,
            ],
        )
        .await?;
    Ok(SosEvent {
        id: row.try_get(0)?,
        incident: incident.id,
        region: incident.region.clone(),
        kind: kind.to_owned(),
        body: body.clone(),
        phone_event: phone_event.cloned(),
        at: now,
    })
}

fn sms_key_row(r: &Row) -> StoreResult<SmsKeyRow> {
    let key_id: i64 = r.try_get(0)?;
    Ok(SmsKeyRow {
        key_id: u32::try_from(key_id)
            .map_err(|_| StoreError::Corrupt("sms key id out of range".into()))?,
        device: DeviceRef {
            account_id: r.try_get(1)?,
            device_id: r.try_get(2)?,
        },
        key: r.try_get(3)?,
    })
}

#[async_trait]
impl SosStore for PgStore {
    async fn sos_ingest(
        &self,
        device: DeviceRef,
        beacons: &[RoutedBeacon],
        now: i64,
    ) -> StoreResult<SosIngest> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Every statement prepared once per pooled connection: this is the hot path.
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1, $2)")
            .await?;
        let select_incident = tx
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE id = $1"
            ))
            .await?;
        let insert_beacon = tx
            .prepare_cached(
                "INSERT INTO sos_beacons (incident_id, seq, state, lat, lon, accuracy_m,
                     fix_time_ms, body, via, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (incident_id, seq) DO NOTHING",
            )
            .await?;
        // The beacon is the newest if no stored one has a higher seq (itself included now).
        let update_incident = tx
            .prepare_cached(&format!(
                "UPDATE sos_incidents SET
                     reported_state = CASE WHEN $2 >= (SELECT MAX(seq) FROM sos_beacons
                         WHERE incident_id = $1) THEN $3 ELSE reported_state END,
                     duress = duress OR $4,
                     region = COALESCE(region, $5),
                     updated_at = $6
                 WHERE id = $1 RETURNING {INCIDENT_COLUMNS}"
            ))
            .await?;
        // The contiguous prefix from the stored up_to_seq: the first stored seq above it with
        // no successor, if the one right after it is stored.
        let advance = tx
            .prepare_cached(
                "UPDATE sos_incidents i SET up_to_seq = CASE
                     WHEN EXISTS (SELECT 1 FROM sos_beacons WHERE incident_id = i.id
                                  AND seq = i.up_to_seq + 1)
                     THEN (SELECT MIN(s.seq) FROM sos_beacons s WHERE s.incident_id = i.id
                           AND s.seq > i.up_to_seq AND NOT EXISTS (
                               SELECT 1 FROM sos_beacons t
                               WHERE t.incident_id = i.id AND t.seq = s.seq + 1))
                     ELSE i.up_to_seq END
                 WHERE i.id = $1 RETURNING up_to_seq",
            )
            .await?;
        // Each incident of the batch under its own lock (in a fixed order: no deadlock), so
        // that owner, beacons and up_to_seq are decided once and its events are inserted in
        // commit order (see the module comment).
        let mut locks: Vec<i32> = beacons
            .iter()
            .map(|rb| incident_lock_key(&rb.beacon.incident))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        for key in locks {
            tx.execute(&lock, &[&INCIDENT_LOCK_SPACE, &key]).await?;
        }
        let mut order: Vec<IncidentId> = Vec::new();
        let mut pending = Vec::new();
        for rb in beacons {
            let b = &rb.beacon;
            let id_bytes = b.incident.as_bytes().as_slice();
            let before = tx
                .query_opt(&select_incident, &[&id_bytes])
                .await?
                .map(|r| incident_row(&r))
                .transpose()?;
            let duress = b.state == ReportedState::Duress;
            if let Some(inc) = &before {
                if inc.account_id != device.account_id {
                    return Ok(SosIngest::NotOwner(b.incident));
                }
            } else {
                tx.execute(
                    "INSERT INTO sos_incidents (id, account_id, device_id, trigger_method,
                         triggered_at, region, reported_state, duress, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                    &[
                        &id_bytes,
                        &device.account_id,
                        &device.device_id,
                        &b.trigger.as_str(),
                        &b.triggered_at,
                        &rb.region,
                        &b.state.as_str(),
                        &duress,
                        &now,
                    ],
                )
                .await?;
            }
            if !order.contains(&b.incident) {
                order.push(b.incident);
            }
            let fix = b.fix.as_ref();
            let seq = i64::from(b.seq);
            let inserted = tx
                .execute(
                    &insert_beacon,
                    &[
                        &id_bytes,
                        &seq,
                        &b.state.as_str(),
                        &fix.map(|f| f.lat),
                        &fix.map(|f| f.lon),
                        &fix.map(|f| f.accuracy_m),
                        &fix.map(|f| f.time_ms),
                        &to_json(b)?,
                        &rb.via.as_str(),
                        &now,
                    ],
                )
                .await?
                == 1;
            if !inserted {
                continue;
            }
            let after = incident_row(
                &tx.query_one(
                    &update_incident,
                    &[
                        &id_bytes,
                        &seq,
                        &b.state.as_str(),
                        &duress,
                        &rb.region,
                        &now,
                    ],
                )
                .await?,
            )?;
            for (kind, body, phone) in beacon_events(before.as_ref(), &after, b) {
                pending.push((after.clone(), kind, body, phone));
            }
        }
        let mut acked = Vec::with_capacity(order.len());
        for id in order {
            let up_to: i64 = tx
                .query_one(&advance, &[&id.as_bytes().as_slice()])
                .await?
                .try_get(0)?;
            acked.push(Acked {
                incident: id,
                up_to_seq: u32::try_from(up_to)
                    .map_err(|_| StoreError::Corrupt("sos up_to_seq".into()))?,
            });
        }
        if !pending.is_empty() {
            let insert_event = tx
                .prepare_cached(
                    "INSERT INTO sos_events (incident_id, region, kind, body, phone_event, at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            for (incident, kind, body, phone) in &pending {
                let phone = phone.as_ref().map(to_json).transpose()?;
                tx.execute(
                    &insert_event,
                    &[
                        &incident.id.as_bytes().as_slice(),
                        &incident.region,
                        kind,
                        &to_json(body)?,
                        &phone,
                        &now,
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        // Back to the pool first: the step needs a connection of its own.
        drop(conn);
        if !pending.is_empty() {
            self.sos_publish().await?;
        }
        Ok(SosIngest::Stored(acked))
    }

    async fn sos_incident(&self, id: &IncidentId) -> StoreResult<Option<SosIncident>> {
        let conn = self.conn().await?;
        load_incident(&**conn, id).await
    }

    async fn sos_open_incidents(
        &self,
        regions: Option<&[String]>,
    ) -> StoreResult<Vec<SosIncident>> {
        let conn = self.conn().await?;
        let order = "ORDER BY duress DESC, created_at, id";
        let rows = match regions {
            None => {
                let sql = format!(
                    "SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE closed_at IS NULL {order}"
                );
                conn.query(&sql, &[]).await?
            }
            Some(list) => {
                let list = list.to_vec();
                let sql = format!(
                    "SELECT {INCIDENT_COLUMNS} FROM sos_incidents
                     WHERE closed_at IS NULL AND region = ANY($1) {order}"
                );
                conn.query(&sql, &[&list]).await?
            }
        };
        rows.iter().map(incident_row).collect()
    }

    async fn sos_beacons(&self, id: &IncidentId) -> StoreResult<Vec<StoredBeacon>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT body, via, received_at FROM sos_beacons WHERE incident_id = $1
                 ORDER BY seq",
                &[&id.as_bytes().as_slice()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                beacon_from_parts(
                    r.try_get::<_, &str>(0)?,
                    r.try_get::<_, &str>(1)?,
                    r.try_get(2)?,
                )
            })
            .collect()
    }

    async fn sos_messages(&self, id: &IncidentId) -> StoreResult<Vec<SosMessage>> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT id, kind, author_id, text, at FROM sos_messages WHERE incident_id = $1
                 ORDER BY id",
                &[&id.as_bytes().as_slice()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SosMessage {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    author_id: r.try_get(2)?,
                    text: r.try_get(3)?,
                    at: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn sos_events_after(
        &self,
        after: i64,
        regions: Option<&[String]>,
        limit: u32,
    ) -> StoreResult<Vec<SosEvent>> {
        let conn = self.conn().await?;
        let limit = i64::from(limit.max(1));
        let rows = match regions {
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM sos_events WHERE pos > $1 ORDER BY pos LIMIT $2"
                );
                conn.query(&sql, &[&after, &limit]).await?
            }
            Some(list) => {
                let list = list.to_vec();
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM sos_events
                     WHERE pos > $1 AND region = ANY($3) ORDER BY pos LIMIT $2"
                );
                let params: [&(dyn ToSql + Sync); 3] = [&after, &limit, &list];
                conn.query(&sql, &params).await?
            }
        };
        rows.iter().map(event_row).collect()
    }

    async fn sos_phone_events(&self, id: &IncidentId, after: i64) -> StoreResult<Vec<SosEvent>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM sos_events
             WHERE incident_id = $1 AND pos > $2 AND phone_event IS NOT NULL ORDER BY pos"
        );
        let statement = conn.prepare_cached(&sql).await?;
        let rows = conn
            .query(&statement, &[&id.as_bytes().as_slice(), &after])
            .await?;
        rows.iter().map(event_row).collect()
    }

    async fn sos_dispatch(
        &self,
        id: &IncidentId,
        author_id: i64,
        action: &DispatchAction,
        now: i64,
    ) -> StoreResult<Option<SosEvent>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // The incident's lock, as ingest takes it: its events are inserted in commit order.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&INCIDENT_LOCK_SPACE, &incident_lock_key(id)],
        )
        .await?;
        let Some(before) = load_incident(&*tx, id).await? else {
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
                message_id = tx
                    .query_one(
                        "INSERT INTO sos_messages (incident_id, kind, author_id, text, at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&id_bytes, &kind, &author_id, text, &now],
                    )
                    .await?
                    .try_get(0)?;
            }
            DispatchAction::Assign { unit } => {
                tx.execute(
                    "UPDATE sos_incidents SET unit = $2,
                         acknowledged_at = COALESCE(acknowledged_at, $3)
                     WHERE id = $1",
                    &[&id_bytes, unit, &now],
                )
                .await?;
            }
            DispatchAction::Close { outcome } => {
                tx.execute(
                    "UPDATE sos_incidents SET outcome = $2, closed_at = COALESCE(closed_at, $3)
                     WHERE id = $1",
                    &[&id_bytes, &outcome.as_str(), &now],
                )
                .await?;
            }
            DispatchAction::Acknowledge => {
                tx.execute(
                    "UPDATE sos_incidents SET acknowledged_at = COALESCE(acknowledged_at, $2)
                     WHERE id = $1",
                    &[&id_bytes, &now],
                )
                .await?;
            }
        }
        let phase = phase_after(before.phase, action);
        tx.execute(
            "UPDATE sos_incidents SET phase = $2, updated_at = $3 WHERE id = $1",
            &[&id_bytes, &phase.as_str(), &now],
        )
        .await?;
        let after = must_load(&*tx, id).await?;
        let (kind, body) = action_feed(&after, action, author_id, message_id);
        let phone = action_phone_event(*id, action, message_id);
        let mut event = append_event(&*tx, &after, kind, &body, phone.as_ref(), now).await?;
        tx.commit().await?;
        drop(conn);
        self.sos_publish().await?;
        // The feed's cursor is the number the step gave it.
        event.id = self
            .conn()
            .await?
            .query_one("SELECT pos FROM sos_events WHERE id = $1", &[&event.id])
            .await?
            .try_get::<_, Option<i64>>(0)?
            .ok_or_else(|| StoreError::Corrupt("sos event left unnumbered".into()))?;
        Ok(Some(event))
    }

    async fn sos_sms_key(
        &self,
        device: DeviceRef,
        new_key: &[u8],
        now: i64,
    ) -> StoreResult<SmsKeyRow> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SOS_LOCK])
            .await?;
        let select = "SELECT key_id, account_id, device_id, key FROM sos_sms_keys
                      WHERE device_id = $1";
        if let Some(row) = tx.query_opt(select, &[&device.device_id]).await? {
            return sms_key_row(&row);
        }
        tx.execute(
            "INSERT INTO sos_sms_keys (key_id, device_id, account_id, key, created_at)
             SELECT COALESCE(MAX(key_id), 0) + 1, $1, $2, $3, $4 FROM sos_sms_keys",
            &[&device.device_id, &device.account_id, &new_key, &now],
        )
        .await?;
        let row = tx.query_one(select, &[&device.device_id]).await?;
        tx.commit().await?;
        sms_key_row(&row)
    }

    async fn sos_sms_key_by_id(&self, key_id: u32) -> StoreResult<Option<SmsKeyRow>> {
        let conn = self.conn().await?;
        conn.query_opt(
            "SELECT key_id, account_id, device_id, key FROM sos_sms_keys WHERE key_id = $1",
            &[&i64::from(key_id)],
        )
        .await?
        .map(|r| sms_key_row(&r))
        .transpose()
    }

    async fn sos_purge(&self, closed_before: i64) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SOS_LOCK])
            .await?;
        let old = "SELECT id FROM sos_incidents WHERE closed_at IS NOT NULL AND closed_at < $1";
        let purged: i64 = tx
            .query_one(
                &format!(
                    "SELECT COUNT(*) FROM sos_incidents i WHERE i.id IN ({old}) AND
                     (EXISTS (SELECT 1 FROM sos_beacons b WHERE b.incident_id = i.id)
                      OR EXISTS (SELECT 1 FROM sos_messages m WHERE m.incident_id = i.id))"
                ),
                &[&closed_before],
            )
            .await?
            .try_get(0)?;
        for table in ["sos_beacons", "sos_messages", "sos_events"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE incident_id IN ({old})"),
                &[&closed_before],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(purged).unwrap_or(0))
    }

    async fn sos_last_event_id(&self) -> StoreResult<i64> {
        let conn = self.conn().await?;
        Ok(conn
            .query_one("SELECT COALESCE(MAX(pos), 0)::BIGINT FROM sos_events", &[])
            .await?
            .get(0))
    }

    async fn sos_put_feedback(
        &self,
        id: &IncidentId,
        device: DeviceRef,
        feedback: &sotong_core::sos::Feedback,
        now: i64,
    ) -> StoreResult<super::FeedbackPut> {
        super::sos_feedback_postgres::put_feedback(self, id, device, feedback, now).await
    }

    async fn sos_feedback(&self, id: &IncidentId) -> StoreResult<Option<super::FeedbackRow>> {
        super::sos_feedback_postgres::feedback(self, id).await
    }

    async fn sos_summary(&self, range: super::MonthRange) -> StoreResult<Vec<super::SummaryRow>> {
        super::sos_feedback_postgres::summary(self, range).await
    }
}
