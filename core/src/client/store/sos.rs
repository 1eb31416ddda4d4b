//! SOS rows: incidents, their beacons (numbered per incident, written before any send), the
//! SOS outbound queue, dispatchers' messages, and the SOS settings (hashed PINs, SMS channel).
//!
//! The functions take a connection so that the caller can read the incident, decide with the
//! state machine and write the result in one transaction ([`Store::sos_write`]).

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{Store, StoreError};
use crate::sos::{
    Beacon, Feedback, Fix, FixMethod, IncidentId, IncidentState, Phase, QuickReply, Reply,
    ReportedState, SmsKey, TriggerMethod,
};

/// One incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    /// The incident.
    pub id: IncidentId,
    /// How it was triggered.
    pub trigger: TriggerMethod,
    /// When, by the phone's clock.
    pub triggered_at: i64,
    /// Its true state.
    pub state: IncidentState,
    /// The last beacon sequence number given (0 before the first).
    pub last_seq: u32,
    /// The assigned unit's call sign, if dispatch shared one.
    pub unit: Option<String>,
    /// Why the server refused its beacons for good, if it did (they are kept, not resent).
    pub send_error: Option<String>,
}

/// A fix as recorded, for the cadence rules.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFix {
    /// The beacon that carried it.
    pub seq: u32,
    /// When the phone recorded it (its clock).
    pub recorded_at: i64,
    /// The fix.
    pub fix: Fix,
}

/// The hashed PINs (argon2id PHC strings).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SosPins {
    /// The real PIN's hash, if set.
    pub pin_hash: Option<String>,
    /// The duress PIN's hash, if set.
    pub duress_hash: Option<String>,
}

impl std::fmt::Debug for SosPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SosPins")
            .field("pin_set", &self.pin_hash.is_some())
            .field("duress_set", &self.duress_hash.is_some())
            .finish()
    }
}

/// Where and how the SMS fallback sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsChannel {
    /// The number to text (the SMS gateway's).
    pub number: String,
    /// The server's id for this device's key.
    pub key_id: u32,
    /// The key.
    pub key: SmsKey,
}

/// A stored message, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// When it was received or written (phone clock).
    pub at: i64,
    /// True for dispatch's messages, false for the person's replies.
    pub from_dispatcher: bool,
    /// What it says.
    pub content: Reply,
}

impl Store {
    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, committed only if `f`
    /// succeeds: read, decide and write happen under one lock.
    ///
    /// The commit runs with `synchronous=FULL` (the WAL is synced at every commit), where
    /// drafts use `NORMAL`: a fix the platform was told is stored must survive the battery
    /// dying a moment later, not only the app being killed. About one sync every few seconds
    /// during an incident; `NORMAL` is restored afterwards.
    pub(crate) fn sos_write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.writer()?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(StoreError::from)?;
        let out = in_transaction(&mut conn, f);
        let restored = conn.pragma_update(None, "synchronous", "NORMAL");
        let out = out?;
        restored.map_err(StoreError::from)?;
        Ok(out)
    }

    /// Runs `f` on a read connection.
    pub(crate) fn sos_read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut out = None;
        self.read(|c| {
            out = Some(f(c));
            Ok(())
        })?;
        out.ok_or_else(|| E::from(StoreError::Poisoned))?
    }
}

fn in_transaction<T, E: From<StoreError>>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::from)?;
    let out = f(&tx)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(out)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("sos: {what}"))
}

const INCIDENT_COLUMNS: &str =
    "incident_id, trigger, triggered_at, phase, duress, last_seq, unit, send_error";

fn incident_row(r: &Row<'_>) -> rusqlite::Result<RawIncident> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

type RawIncident = (
    Vec<u8>,
    String,
    i64,
    String,
    bool,
    i64,
    Option<String>,
    Option<String>,
);

fn decode_incident(raw: RawIncident) -> Result<IncidentRow, StoreError> {
    let (id, trigger, triggered_at, phase, duress, last_seq, unit, send_error) = raw;
    let phase = Phase::from_name(&phase).ok_or_else(|| corrupt("phase"))?;
    Ok(IncidentRow {
        id: IncidentId::from_bytes(&id).map_err(|_| corrupt("incident id"))?,
        trigger: TriggerMethod::from_name(&trigger).ok_or_else(|| corrupt("trigger"))?,
        triggered_at,
        state: IncidentState::from_parts(phase, duress).map_err(|_| corrupt("state"))?,
        last_seq: u32::try_from(last_seq).map_err(|_| corrupt("seq"))?,
        unit,
        send_error,
    })
}

/// The most recently triggered incident, live or not.
pub(crate) fn latest_incident(conn: &Connection) -> Result<Option<IncidentRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {INCIDENT_COLUMNS} FROM sos_incidents ORDER BY local_id DESC LIMIT 1"),
        [],
        incident_row,
    )
    .optional()?
    .map(decode_incident)
    .transpose()
}

/// The incident `id`, if this phone has it.
pub(crate) fn incident(
    conn: &Connection,
    id: &IncidentId,
) -> Result<Option<IncidentRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {INCIDENT_COLUMNS} FROM sos_incidents WHERE incident_id = ?1"),
        params![id.as_bytes()],
        incident_row,
    )
    .optional()?
    .map(decode_incident)
    .transpose()
}

/// Records a new incident in its triggered state.
pub(crate) fn insert_incident(
    conn: &Connection,
    id: &IncidentId,
    trigger: TriggerMethod,
    now: i64,
) -> Result<(), StoreError> {
    let state = IncidentState::TRIGGERED;
    conn.execute(
        "INSERT INTO sos_incidents
             (incident_id, trigger, triggered_at, phase, duress, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?3)",
        params![
            id.as_bytes(),
            trigger.as_str(),
            now,
            state.phase().as_str(),
            state.duress()
        ],
    )?;
    Ok(())
}

/// Saves an incident's new state (and unit, when given).
pub(crate) fn set_state(
    conn: &Connection,
    id: &IncidentId,
    state: IncidentState,
    unit: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sos_incidents SET phase = ?2, duress = ?3, unit = COALESCE(?4, unit),
             updated_at = ?5
         WHERE incident_id = ?1",
        params![
            id.as_bytes(),
            state.phase().as_str(),
            state.duress(),
            unit,
            now
        ],
    )?;
    Ok(())
}

/// What a new beacon carries besides its state.
pub(crate) struct NewBeacon<'a> {
    /// Its state.
    pub state: ReportedState,
    /// Its fix and whether the fix is new (pushed just now) rather than a repeat.
    pub fix: Option<(&'a Fix, bool)>,
    /// Its reply.
    pub reply: Option<&'a Reply>,
}

/// Appends the incident's next beacon and queues it; returns its sequence number.
pub(crate) fn append_beacon(
    conn: &Connection,
    id: &IncidentId,
    beacon: NewBeacon<'_>,
    now: i64,
) -> Result<u32, StoreError> {
    let seq: i64 = conn.query_row(
        "UPDATE sos_incidents SET last_seq = last_seq + 1 WHERE incident_id = ?1
         RETURNING last_seq",
        params![id.as_bytes()],
        |r| r.get(0),
    )?;
    let fix = beacon.fix.map(|(f, _)| f);
    let (reply_text, reply_quick) = match beacon.reply {
        Some(Reply::Text(t)) => (Some(t.as_str()), None),
        Some(Reply::Quick(q)) => (None, Some(q.as_str())),
        None => (None, None),
    };
    conn.execute(
        "INSERT INTO sos_beacons
             (incident_id, seq, state, created_at, new_fix, lat, lon, accuracy_m, altitude_m,
              speed_mps, heading_deg, fix_time, method, battery_pct, reply_text, reply_quick)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            id.as_bytes(),
            seq,
            beacon.state.as_str(),
            now,
            beacon.fix.is_some_and(|(_, new)| new),
            fix.map(|f| f.lat),
            fix.map(|f| f.lon),
            fix.map(|f| f.accuracy_m),
            fix.and_then(|f| f.altitude_m),
            fix.and_then(|f| f.speed_mps),
            fix.and_then(|f| f.heading_deg),
            fix.map(|f| f.time_ms),
            fix.map(|f| f.method.as_str()),
            fix.and_then(|f| f.battery_pct),
            reply_text,
            reply_quick,
        ],
    )?;
    conn.execute(
        "INSERT INTO sos_outbox (incident_id, seq, queued_at) VALUES (?1, ?2, ?3)",
        params![id.as_bytes(), seq, now],
    )?;
    u32::try_from(seq).map_err(|_| corrupt("seq"))
}

const BEACON_COLUMNS: &str = "b.incident_id, b.seq, b.state, i.trigger, i.triggered_at, b.lat, \
     b.lon, b.accuracy_m, b.altitude_m, b.speed_mps, b.heading_deg, b.fix_time, b.method, \
     b.battery_pct, b.reply_text, b.reply_quick, b.created_at";

fn read_fix(r: &Row<'_>, at: usize) -> Result<Option<Fix>, StoreError> {
    let lat: Option<f64> = r.get(at)?;
    let Some(lat) = lat else { return Ok(None) };
    let method: String = r.get(at + 7)?;
    Ok(Some(Fix {
        lat,
        lon: r.get(at + 1)?,
        accuracy_m: r.get(at + 2)?,
        altitude_m: r.get(at + 3)?,
        speed_mps: r.get(at + 4)?,
        heading_deg: r.get(at + 5)?,
        time_ms: r.get(at + 6)?,
        method: FixMethod::from_name(&method).ok_or_else(|| corrupt("fix method"))?,
        battery_pct: r.get(at + 8)?,
    }))
}

fn read_beacon(r: &Row<'_>) -> Result<Beacon, StoreError> {
    let id: Vec<u8> = r.get(0)?;
    let seq: i64 = r.get(1)?;
    let state: String = r.get(2)?;
    let trigger: String = r.get(3)?;
    let reply_text: Option<String> = r.get(14)?;
    let reply_quick: Option<String> = r.get(15)?;
    let reply = match (reply_text, reply_quick) {
        (Some(t), None) => Some(Reply::Text(t)),
        (None, Some(q)) => Some(Reply::Quick(
            QuickReply::from_name(&q).ok_or_else(|| corrupt("quick reply"))?,
        )),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(corrupt("reply")),
    };
    Ok(Beacon {
        incident: IncidentId::from_bytes(&id).map_err(|_| corrupt("incident id"))?,
        seq: u32::try_from(seq).map_err(|_| corrupt("seq"))?,
        state: ReportedState::from_name(&state).ok_or_else(|| corrupt("reported state"))?,
        trigger: TriggerMethod::from_name(&trigger).ok_or_else(|| corrupt("trigger"))?,
        triggered_at: r.get(4)?,
        fix: read_fix(r, 5)?,
        reply,
    })
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The latest fix of an incident, new or repeated.
pub(crate) fn latest_fix(conn: &Connection, id: &IncidentId) -> Result<Option<Fix>, StoreError> {
    let found = collect(
        conn,
        &format!(
            "SELECT {BEACON_COLUMNS} FROM sos_beacons b JOIN sos_incidents i USING (incident_id)
             WHERE b.incident_id = ?1 AND b.lat IS NOT NULL ORDER BY b.seq DESC LIMIT 1"
        ),
        params![id.as_bytes()],
        read_beacon,
    )?;
    Ok(found.into_iter().next().and_then(|b| b.fix))
}

/// The latest beacon of an incident that carries a fix and no reply (what an SMS can say).
pub(crate) fn latest_fix_beacon(
    conn: &Connection,
    id: &IncidentId,
) -> Result<Option<Beacon>, StoreError> {
    let found = collect(
        conn,
        &format!(
            "SELECT {BEACON_COLUMNS} FROM sos_beacons b JOIN sos_incidents i USING (incident_id)
             WHERE b.incident_id = ?1 AND b.lat IS NOT NULL
               AND b.reply_text IS NULL AND b.reply_quick IS NULL
             ORDER BY b.seq DESC LIMIT 1"
        ),
        params![id.as_bytes()],
        read_beacon,
    )?;
    Ok(found.into_iter().next())
}

/// The last `n` fixes the platform pushed for an incident, oldest first.
pub(crate) fn recent_fixes(
    conn: &Connection,
    id: &IncidentId,
    n: usize,
) -> Result<Vec<StoredFix>, StoreError> {
    let mut out = collect(
        conn,
        &format!(
            "SELECT {BEACON_COLUMNS} FROM sos_beacons b JOIN sos_incidents i USING (incident_id)
             WHERE b.incident_id = ?1 AND b.new_fix = 1 ORDER BY b.seq DESC LIMIT ?2"
        ),
        params![id.as_bytes(), i64::try_from(n).unwrap_or(i64::MAX)],
        |r| {
            let beacon = read_beacon(r)?;
            Ok(StoredFix {
                seq: beacon.seq,
                recorded_at: r.get(16)?,
                fix: beacon
                    .fix
                    .ok_or_else(|| corrupt("new fix without position"))?,
            })
        },
    )?;
    out.reverse();
    Ok(out)
}

/// Queued beacons, oldest incident first, each incident's in sequence order; not those of
/// an incident the server refused for good.
pub(crate) fn pending(conn: &Connection, limit: usize) -> Result<Vec<Beacon>, StoreError> {
    collect(
        conn,
        &format!(
            "SELECT {BEACON_COLUMNS} FROM sos_outbox o
             JOIN sos_beacons b ON b.incident_id = o.incident_id AND b.seq = o.seq
             JOIN sos_incidents i ON i.incident_id = o.incident_id
             WHERE i.send_error IS NULL
             ORDER BY i.local_id, o.seq LIMIT ?1"
        ),
        params![i64::try_from(limit).unwrap_or(i64::MAX)],
        read_beacon,
    )
}

/// Whether any beacon of `id` is still queued.
pub(crate) fn has_pending(conn: &Connection, id: &IncidentId) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sos_outbox WHERE incident_id = ?1)",
        params![id.as_bytes()],
        |r| r.get(0),
    )?)
}

/// Takes every beacon of `id` up to `up_to_seq` off the queue; returns how many left it.
pub(crate) fn mark_delivered(
    conn: &Connection,
    id: &IncidentId,
    up_to_seq: u32,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sos_outbox WHERE incident_id = ?1 AND seq <= ?2",
        params![id.as_bytes(), up_to_seq],
    )?)
}

/// Every beacon of an incident, in sequence order.
pub(crate) fn beacons(conn: &Connection, id: &IncidentId) -> Result<Vec<Beacon>, StoreError> {
    collect(
        conn,
        &format!(
            "SELECT {BEACON_COLUMNS} FROM sos_beacons b JOIN sos_incidents i USING (incident_id)
             WHERE b.incident_id = ?1 ORDER BY b.seq"
        ),
        params![id.as_bytes()],
        read_beacon,
    )
}

/// Deletes every incident that ended before `ended_before` and has nothing left to send,
/// with its beacons, messages and feedback; returns how many incidents went. An incident
/// whose beacons the server refused for good keeps them queued, so it stays.
pub(crate) fn purge_ended(conn: &Connection, ended_before: i64) -> Result<usize, StoreError> {
    let doomed = "SELECT incident_id FROM sos_incidents i
         WHERE phase IN ('resolved', 'cancelled') AND updated_at < ?1
           AND NOT EXISTS (SELECT 1 FROM sos_outbox o WHERE o.incident_id = i.incident_id)";
    for table in ["sos_messages", "sos_feedback"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE incident_id IN ({doomed})"),
            params![ended_before],
        )?;
    }
    conn.execute(
        &format!("DELETE FROM sos_beacons WHERE incident_id IN ({doomed})"),
        params![ended_before],
    )?;
    Ok(conn.execute(
        &format!("DELETE FROM sos_incidents WHERE incident_id IN ({doomed})"),
        params![ended_before],
    )?)
}

/// Marks an incident's beacons as refused for good by the server: they stay stored and
/// queued, [`pending`] skips them.
pub(crate) fn set_send_error(
    conn: &Connection,
    id: &IncidentId,
    reason: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sos_incidents SET send_error = ?2 WHERE incident_id = ?1",
        params![id.as_bytes(), reason],
    )?;
    Ok(())
}

/// The person's feedback as stored, with where its sending stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFeedback {
    /// The incident.
    pub incident: IncidentId,
    /// What they said.
    pub feedback: Feedback,
    /// When they wrote it (phone clock); the version a send confirms.
    pub written_at: i64,
    /// Whether the server has it.
    pub sent: bool,
    /// Why the server refused it for good, if it did.
    pub send_error: Option<String>,
}

const FEEDBACK_COLUMNS: &str =
    "incident_id, rating, felt_safe, comment, written_at, sent_at, send_error";

fn read_feedback(r: &Row<'_>) -> Result<StoredFeedback, StoreError> {
    let id: Vec<u8> = r.get(0)?;
    let rating: i64 = r.get(1)?;
    let sent_at: Option<i64> = r.get(5)?;
    Ok(StoredFeedback {
        incident: IncidentId::from_bytes(&id).map_err(|_| corrupt("incident id"))?,
        feedback: Feedback {
            rating: u8::try_from(rating).map_err(|_| corrupt("rating"))?,
            felt_safe: r.get(2)?,
            comment: r.get(3)?,
        },
        written_at: r.get(4)?,
        sent: sent_at.is_some(),
        send_error: r.get(6)?,
    })
}

/// Stores (or replaces) the feedback on `id`, queued for sending.
pub(crate) fn put_feedback(
    conn: &Connection,
    id: &IncidentId,
    feedback: &Feedback,
    now: i64,
) -> Result<(), StoreError> {
    // A replacement written in the same millisecond still gets a new version.
    let previous: Option<i64> = conn
        .query_row(
            "SELECT written_at FROM sos_feedback WHERE incident_id = ?1",
            params![id.as_bytes()],
            |r| r.get(0),
        )
        .optional()?;
    let written_at = previous.map_or(now, |p| now.max(p.saturating_add(1)));
    conn.execute(
        "INSERT INTO sos_feedback (incident_id, rating, felt_safe, comment, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (incident_id) DO UPDATE SET rating = excluded.rating,
             felt_safe = excluded.felt_safe, comment = excluded.comment,
             written_at = excluded.written_at, sent_at = NULL, send_error = NULL",
        params![
            id.as_bytes(),
            feedback.rating,
            feedback.felt_safe,
            feedback.comment,
            written_at
        ],
    )?;
    Ok(())
}

/// The feedback on `id`, if any.
pub(crate) fn feedback(
    conn: &Connection,
    id: &IncidentId,
) -> Result<Option<StoredFeedback>, StoreError> {
    Ok(collect(
        conn,
        &format!("SELECT {FEEDBACK_COLUMNS} FROM sos_feedback WHERE incident_id = ?1"),
        params![id.as_bytes()],
        read_feedback,
    )?
    .into_iter()
    .next())
}

/// The oldest feedback still to send (not sent, not refused for good).
pub(crate) fn pending_feedback(conn: &Connection) -> Result<Option<StoredFeedback>, StoreError> {
    Ok(collect(
        conn,
        &format!(
            "SELECT {FEEDBACK_COLUMNS} FROM sos_feedback
             WHERE sent_at IS NULL AND send_error IS NULL ORDER BY written_at LIMIT 1"
        ),
        [],
        read_feedback,
    )?
    .into_iter()
    .next())
}

/// The server has version `written_at` of the feedback on `id` (a newer one stays queued).
pub(crate) fn mark_feedback_sent(
    conn: &Connection,
    id: &IncidentId,
    written_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sos_feedback SET sent_at = ?3 WHERE incident_id = ?1 AND written_at = ?2",
        params![id.as_bytes(), written_at, now],
    )? == 1)
}

/// The server refused version `written_at` of the feedback on `id` for good.
pub(crate) fn mark_feedback_failed(
    conn: &Connection,
    id: &IncidentId,
    written_at: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sos_feedback SET send_error = ?3 WHERE incident_id = ?1 AND written_at = ?2",
        params![id.as_bytes(), written_at, reason],
    )? == 1)
}

/// The credential kept at sign-out for the SOS sender, if any: `(server_url, token)`.
pub(crate) fn kept_credential(conn: &Connection) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT server_url, token FROM sos_credential WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Whether any incident is live or still has beacons to send (refused ones aside).
pub(crate) fn has_unfinished(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sos_incidents i
             WHERE i.phase NOT IN ('resolved', 'cancelled')
                OR (i.send_error IS NULL
                    AND EXISTS (SELECT 1 FROM sos_outbox o WHERE o.incident_id = i.incident_id)))",
        [],
        |r| r.get(0),
    )?)
}

/// The SOS side of a sign-out, in the caller's transaction: the data of every incident
/// that is over and fully delivered goes (as after [`purge_ended`] with no retention); a
/// live incident (under the duress cover too) and one with beacons still to send stay, and
/// so does the account's credential (`server_url`, `token`) for the SOS sender, until
/// [`finish_signed_out`]. Returns whether anything was kept.
pub(crate) fn sign_out(
    conn: &Connection,
    credential: Option<(&str, &str)>,
) -> Result<bool, StoreError> {
    drop_refused_ended(conn)?;
    purge_ended(conn, i64::MAX)?;
    let keep = has_unfinished(conn)?;
    match credential {
        Some((url, token)) if keep => {
            conn.execute(
                "INSERT INTO sos_credential (id, server_url, token) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET server_url = excluded.server_url,
                     token = excluded.token",
                params![url, token],
            )?;
        }
        _ if !keep => {
            conn.execute("DELETE FROM sos_credential", [])?;
        }
        _ => {}
    }
    Ok(keep)
}

/// Unqueues the beacons of ended incidents the server refused for good (they would never
/// leave), so that [`purge_ended`] takes those incidents too.
fn drop_refused_ended(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM sos_outbox WHERE incident_id IN (SELECT incident_id FROM sos_incidents
             WHERE phase IN ('resolved', 'cancelled') AND send_error IS NOT NULL)",
        [],
    )?;
    Ok(())
}

/// After a sign-out, once nothing is live or left to send: wipes the ended incidents and
/// the kept credential. Returns whether it did (false while something is unfinished, or
/// when there was no sign-out).
pub(crate) fn finish_signed_out(conn: &Connection) -> Result<bool, StoreError> {
    if kept_credential(conn)?.is_none() || has_unfinished(conn)? {
        return Ok(false);
    }
    drop_refused_ended(conn)?;
    purge_ended(conn, i64::MAX)?;
    conn.execute("DELETE FROM sos_credential", [])?;
    Ok(true)
}

/// Stores a dispatcher's message once; returns false if it was already stored.
pub(crate) fn insert_message(
    conn: &Connection,
    id: &IncidentId,
    server_id: i64,
    body: &str,
    visible: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO sos_messages (incident_id, server_id, body, received_at, visible)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        params![id.as_bytes(), server_id, body, now, visible],
    )?;
    Ok(n == 1)
}

/// The conversation as the phone may show it: visible dispatcher messages and the person's
/// replies, in order.
pub(crate) fn visible_messages(
    conn: &Connection,
    id: &IncidentId,
) -> Result<Vec<StoredMessage>, StoreError> {
    collect(
        conn,
        "SELECT at, from_dispatcher, text, quick FROM (
             SELECT received_at AS at, 1 AS from_dispatcher, body AS text, NULL AS quick,
                    server_id AS ord
             FROM sos_messages WHERE incident_id = ?1 AND visible = 1
             UNION ALL
             SELECT created_at, 0, reply_text, reply_quick, seq
             FROM sos_beacons WHERE incident_id = ?1
               AND (reply_text IS NOT NULL OR reply_quick IS NOT NULL))
         ORDER BY at, from_dispatcher DESC, ord",
        params![id.as_bytes()],
        |r| {
            let text: Option<String> = r.get(2)?;
            let quick: Option<String> = r.get(3)?;
            let content = match (text, quick) {
                (Some(t), _) => Reply::Text(t),
                (None, Some(q)) => {
                    Reply::Quick(QuickReply::from_name(&q).ok_or_else(|| corrupt("quick reply"))?)
                }
                (None, None) => return Err(corrupt("message")),
            };
            Ok(StoredMessage {
                at: r.get(0)?,
                from_dispatcher: r.get(1)?,
                content,
            })
        },
    )
}

/// The hashed PINs.
pub(crate) fn pins(conn: &Connection) -> Result<SosPins, StoreError> {
    Ok(conn
        .query_row(
            "SELECT pin_hash, duress_pin_hash FROM sos_settings WHERE id = 1",
            [],
            |r| {
                Ok(SosPins {
                    pin_hash: r.get(0)?,
                    duress_hash: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Replaces the hashed PINs.
pub(crate) fn set_pins(conn: &Connection, pins: &SosPins) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sos_settings (id, pin_hash, duress_pin_hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET
             pin_hash = excluded.pin_hash, duress_pin_hash = excluded.duress_pin_hash",
        params![pins.pin_hash, pins.duress_hash],
    )?;
    Ok(())
}

/// Wrong PINs in a row and until when PIN entry is locked (0 if never).
pub(crate) fn pin_attempts(conn: &Connection) -> Result<(u32, i64), StoreError> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT failed_pins, pins_locked_until FROM sos_settings WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (failed, until) = row.unwrap_or((0, 0));
    Ok((u32::try_from(failed).unwrap_or(u32::MAX), until))
}

/// Saves the wrong-PIN count and lock.
pub(crate) fn set_pin_attempts(
    conn: &Connection,
    failed: u32,
    locked_until: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sos_settings (id, failed_pins, pins_locked_until) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET failed_pins = excluded.failed_pins,
             pins_locked_until = excluded.pins_locked_until",
        params![failed, locked_until],
    )?;
    Ok(())
}

/// The SMS fallback's settings, if configured.
pub(crate) fn sms_channel(conn: &Connection) -> Result<Option<SmsChannel>, StoreError> {
    type Raw = (Option<String>, Option<i64>, Option<Vec<u8>>);
    let row: Option<Raw> = conn
        .query_row(
            "SELECT sms_number, sms_key_id, sms_key FROM sos_settings WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((Some(number), Some(key_id), Some(key))) = row else {
        return Ok(None);
    };
    Ok(Some(SmsChannel {
        number,
        key_id: u32::try_from(key_id).map_err(|_| corrupt("sms key id"))?,
        key: SmsKey::from_bytes(&key).map_err(|_| corrupt("sms key"))?,
    }))
}

/// Replaces the SMS fallback's settings.
pub(crate) fn set_sms_channel(conn: &Connection, channel: &SmsChannel) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sos_settings (id, sms_number, sms_key_id, sms_key) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET sms_number = excluded.sms_number,
             sms_key_id = excluded.sms_key_id, sms_key = excluded.sms_key",
        params![
            channel.number,
            channel.key_id,
            channel.key.as_bytes().as_slice()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::schema::MIGRATIONS;
    use super::*;

    /// A database as an app with only the first three migrations left it, with a draft row.
    fn freeze_v3(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO documents (doc_id, kind, created_at, updated_at, title_cache)
             VALUES (?1, 'proposal', 1, 2, 'kept')",
            params![[3u8; 16]],
        )
        .unwrap();
    }

    #[test]
    fn upgrades_a_frozen_v3_database_and_the_sos_tables_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        freeze_v3(&path);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.list_documents().unwrap()[0].title.as_deref(),
            Some("kept")
        );

        let id = IncidentId::random();
        let seq = store
            .sos_write(|tx| {
                insert_incident(tx, &id, TriggerMethod::Widget, 10)?;
                append_beacon(
                    tx,
                    &id,
                    NewBeacon {
                        state: ReportedState::Active,
                        fix: None,
                        reply: None,
                    },
                    10,
                )
            })
            .unwrap();
        assert_eq!(seq, 1);
        let inc = store.sos_read(latest_incident).unwrap().unwrap();
        assert_eq!(
            (inc.id, inc.last_seq, inc.state),
            (id, 1, IncidentState::TRIGGERED)
        );
        assert_eq!(store.sos_read(|c| pending(c, 10)).unwrap().len(), 1);
    }

    #[test]
    fn sos_writes_commit_with_full_sync_and_drafts_keep_normal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let sync = |c: &Connection| -> i64 {
            c.pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        let inside = store.sos_write(|tx| Ok::<_, StoreError>(sync(tx))).unwrap();
        assert_eq!(inside, 2, "FULL");
        assert_eq!(sync(&store.writer().unwrap()), 1, "NORMAL again");
        // Also after a failed SOS write.
        let failed: Result<(), StoreError> =
            store.sos_write(|_| Err(StoreError::Corrupt("test".into())));
        assert!(failed.is_err());
        assert_eq!(sync(&store.writer().unwrap()), 1);
    }

    #[test]
    fn impossible_or_corrupt_rows_are_refused_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let id = IncidentId::random();
        store
            .sos_write(|tx| insert_incident(tx, &id, TriggerMethod::Watch, 10))
            .unwrap();
        // The schema itself refuses a cancelled incident under duress.
        let refused = store.writer().unwrap().execute(
            "UPDATE sos_incidents SET phase = 'cancelled', duress = 1",
            [],
        );
        assert!(refused.is_err());
        // A phase this code does not know reads as corrupt.
        store
            .writer()
            .unwrap()
            .execute("UPDATE sos_incidents SET phase = 'exploded'", [])
            .unwrap();
        assert!(matches!(
            store.sos_read(latest_incident),
            Err(StoreError::Corrupt(_))
        ));
        // A beacon's seq is never 0, and a queued entry needs its beacon.
        let w = store.writer().unwrap();
        assert!(w
            .execute(
                "INSERT INTO sos_beacons (incident_id, seq, state, created_at) VALUES (?1, 0, 'active', 1)",
                params![id.as_bytes()],
            )
            .is_err());
        assert!(w
            .execute(
                "INSERT INTO sos_outbox (incident_id, seq, queued_at) VALUES (?1, 5, 1)",
                params![id.as_bytes()],
            )
            .is_err());
    }
}
