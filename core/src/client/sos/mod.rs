//! The phone's side of SOS: the [`Client`] API the app and the platform call.
//!
//! Everything is written to the phone's SQLite file before anything is sent: a trigger
//! records the incident and queues its first beacon, every fix becomes a numbered beacon in
//! the SOS queue (its own table, never behind drafts), and the transport (next to come) only
//! reads [`Client::sos_pending_beacons`] and confirms with [`Client::sos_mark_delivered`].
//! State changes go through [`crate::sos::state`]; PINs are checked in `pins`; when to take
//! the next fix is decided by [`cadence`].
//!
//! Nothing here makes a sound or shows a notification: the app decides how discreetly to
//! surface what these calls return. Under the duress cover every call a person can reach
//! answers as it would for a cancelled incident.

pub mod cadence;
mod error;
pub(crate) mod lane;
mod pins;
pub mod transport;

pub use error::SosError;
pub use transport::{SendFailure, SosLinkState, SosListener, SosOptions, SosTransport};

use super::store::sos::{self as rows, NewBeacon};
use super::store::{IncidentRow, SmsChannel, SosPins};
use super::Client;
use crate::sos::state::{self, Input, Phase, TransitionError};
use crate::sos::{
    sms, Beacon, Feedback, Fix, IncidentEvent, IncidentId, Reply, ServerEvent, SmsKey,
    TriggerMethod,
};
use pins::PinMatch;
use rusqlite::Connection;

/// What the app may show about the latest incident. Under the duress cover it is exactly
/// what a cancelled incident shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SosStatus {
    /// The incident.
    pub incident: IncidentId,
    /// Its phase as the phone shows it (`Cancelled` under duress).
    pub phase: Phase,
    /// How it was triggered.
    pub trigger: TriggerMethod,
    /// When, milliseconds since the Unix epoch.
    pub triggered_at: i64,
    /// The assigned unit's call sign, if dispatch shared one (never once cancelled).
    pub unit: Option<String>,
    /// The conversation with dispatch that may be shown, oldest first.
    pub messages: Vec<SosMessage>,
    /// Why the server refused this incident's beacons for good (400/404/410), if it did:
    /// they are kept on the phone and no longer sent.
    pub send_error: Option<String>,
    /// The person's feedback, once given.
    pub feedback: Option<FeedbackStatus>,
}

/// The person's feedback on an incident and where its sending stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackStatus {
    /// What they said.
    pub feedback: Feedback,
    /// Whether the server has it.
    pub sent: bool,
    /// Why the server refused it for good, if it did (kept, not resent).
    pub send_error: Option<String>,
}

/// One line of the conversation with dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SosMessage {
    /// True for dispatch's messages, false for the person's replies.
    pub from_dispatcher: bool,
    /// What it says (dispatch's messages are always text).
    pub content: Reply,
    /// When it was received or sent, milliseconds since the Unix epoch.
    pub at: i64,
}

/// A text for the platform to send by SMS when there is no data network.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsText {
    /// The number to send it to.
    pub number: String,
    /// The text ([`crate::sos::sms`]; one GSM-7 SMS).
    pub text: String,
}

impl std::fmt::Debug for SmsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text holds a position.
        f.debug_struct("SmsText").finish_non_exhaustive()
    }
}

impl Client {
    fn sos_now(&self) -> i64 {
        self.inner.clock.now_unix_millis()
    }

    /// Tells a running beacon sender that something was queued.
    fn sos_wake(&self) {
        self.inner.sos_wake.notify_one();
    }

    /// The latest incident, if it is truly live (under the duress cover too) and the server
    /// has not refused it for good: the one the sender long-polls.
    pub(crate) fn sos_live_incident(&self) -> Result<Option<IncidentId>, SosError> {
        self.inner.store().sos_read(|c| {
            Ok::<_, SosError>(
                rows::latest_incident(c)?
                    .filter(|i| i.state.is_live() && i.send_error.is_none())
                    .map(|i| i.id),
            )
        })
    }

    /// For the transport: the server refused `incident`'s beacons for good. They stay
    /// stored and queued, and are no longer sent.
    pub(crate) fn sos_mark_refused(
        &self,
        incident: &IncidentId,
        reason: &str,
    ) -> Result<(), SosError> {
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::set_send_error(tx, incident, reason))?)
    }

    /// For the transport: the server has version `written_at` of the feedback on
    /// `incident`.
    pub(crate) fn sos_mark_feedback_sent(
        &self,
        incident: &IncidentId,
        written_at: i64,
    ) -> Result<bool, SosError> {
        let now = self.sos_now();
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::mark_feedback_sent(tx, incident, written_at, now))?)
    }

    /// For the transport: the server refused version `written_at` of the feedback on
    /// `incident` for good (kept, not resent).
    pub(crate) fn sos_mark_feedback_failed(
        &self,
        incident: &IncidentId,
        written_at: i64,
        reason: &str,
    ) -> Result<bool, SosError> {
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::mark_feedback_failed(tx, incident, written_at, reason))?)
    }

    /// For the transport, after a sign-out: once nothing is live or left to send, wipes the
    /// ended incidents and the kept token. Returns whether it did.
    pub(crate) fn sos_finish_signed_out(&self) -> Result<bool, SosError> {
        if self.inner.store().account()?.is_some() {
            return Ok(false);
        }
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::finish_signed_out(tx))?)
    }

    /// Checks a PIN, counting wrong ones in a row: after [`pins::FREE_ATTEMPTS`], PIN entry
    /// locks for a while ([`SosError::PinLocked`]). The count depends only on the PINs
    /// entered, never on the incident's state, so a locked phone under the duress cover
    /// behaves as a cancelled one does.
    fn sos_check_pin(&self, candidate: &str) -> Result<PinMatch, SosError> {
        let now = self.sos_now();
        let (stored, (_, until)) = self
            .inner
            .store()
            .sos_read(|c| Ok::<_, SosError>((rows::pins(c)?, rows::pin_attempts(c)?)))?;
        if now < until {
            return Err(SosError::PinLocked { until });
        }
        let found = pins::check(&stored, candidate)?;
        self.inner.store().sos_write(|tx| {
            // Read again under the write lock: attempts may run side by side.
            let (failed, _) = rows::pin_attempts(tx)?;
            let (failed, until) = match found {
                PinMatch::Neither => {
                    let failed = failed.saturating_add(1);
                    let lock = pins::lock_after(failed);
                    (failed, lock.map_or(0, |ms| now.saturating_add(ms)))
                }
                PinMatch::Real | PinMatch::Duress => (0, 0),
            };
            rows::set_pin_attempts(tx, failed, until)
        })?;
        if found == PinMatch::Neither {
            tracing::info!("sos: wrong PIN entered");
        }
        Ok(found)
    }

    /// Starts an SOS incident (or, if one is live, returns it; one under the duress cover
    /// comes back into view). Works offline: the incident and its first beacon (state only,
    /// no fix yet) are stored at once and queued for sending. Push fixes with
    /// [`Client::sos_push_fix`] as the platform gets them.
    pub fn sos_trigger(&self, method: TriggerMethod) -> Result<IncidentId, SosError> {
        let now = self.sos_now();
        let id = self.inner.store().sos_write(|tx| {
            if let Some(inc) = rows::latest_incident(tx)? {
                match state::apply(inc.state, Input::Trigger) {
                    Ok(step) => {
                        persist(tx, &inc, step, None, now)?;
                        return Ok(inc.id);
                    }
                    Err(TransitionError::Ended) => {}
                    Err(e) => return Err(SosError::from(e)),
                }
            }
            let id = IncidentId::random();
            rows::insert_incident(tx, &id, method, now)?;
            let first = NewBeacon {
                state: state::IncidentState::TRIGGERED.reported(),
                fix: None,
                reply: None,
            };
            rows::append_beacon(tx, &id, first, now)?;
            Ok::<_, SosError>(id)
        })?;
        tracing::info!(method = method.as_str(), "sos triggered");
        self.sos_wake();
        Ok(id)
    }

    /// Records a location fix for the live incident and queues it; returns its sequence
    /// number. The fix is in SQLite when this returns. Refused when invalid
    /// ([`SosError::Fix`]) or when no incident is live.
    pub fn sos_push_fix(&self, fix: Fix) -> Result<u32, SosError> {
        let now = self.sos_now();
        fix.validate(now)?;
        let seq = self.inner.store().sos_write(|tx| {
            let inc = live_incident(tx)?;
            let beacon = NewBeacon {
                state: inc.state.reported(),
                fix: Some((&fix, true)),
                reply: None,
            };
            Ok::<_, SosError>(rows::append_beacon(tx, &inc.id, beacon, now)?)
        })?;
        self.sos_wake();
        Ok(seq)
    }

    /// Cancels the latest incident with a PIN. The real PIN cancels it (and tells the
    /// server); the duress PIN makes the phone show it as cancelled while it stays live and
    /// is reported as duress. Any other PIN: [`TransitionError::WrongPin`], whichever PINs
    /// are set. Returns what the app should now show.
    pub fn sos_cancel(&self, pin: &str) -> Result<SosStatus, SosError> {
        let now = self.sos_now();
        // Before looking at the incident, so that the time taken is the same in every state.
        let input = match self.sos_check_pin(pin)? {
            PinMatch::Real => Input::CancelPin,
            PinMatch::Duress => Input::DuressPin,
            PinMatch::Neither => Input::WrongPin,
        };
        let id = self.inner.store().sos_write(|tx| {
            let inc = rows::latest_incident(tx)?.ok_or(SosError::NoIncident)?;
            let step = state::apply(inc.state, input)?;
            persist(tx, &inc, step, None, now)?;
            Ok::<_, SosError>(inc.id)
        })?;
        tracing::info!("sos cancel accepted");
        self.sos_wake();
        self.inner
            .store()
            .sos_read(|c| status(c, &id))?
            .ok_or(SosError::NoIncident)
    }

    /// What the app may show about the latest incident, if there ever was one.
    pub fn sos_status(&self) -> Result<Option<SosStatus>, SosError> {
        Ok(self
            .inner
            .store()
            .sos_read(|c| match rows::latest_incident(c)? {
                Some(inc) => status(c, &inc.id),
                None => Ok(None),
            })?)
    }

    /// Sets the cancel PIN and, optionally, the duress PIN (4 to 64 characters each, and
    /// different). Once a PIN is set, changing them needs the current PIN. Given the duress
    /// PIN as the current one, this answers as if it succeeded and changes nothing, so that
    /// whoever forced it out learns nothing.
    pub fn sos_set_pins(
        &self,
        current: Option<&str>,
        pin: &str,
        duress_pin: Option<&str>,
    ) -> Result<(), SosError> {
        pins::check_format(pin)?;
        if let Some(d) = duress_pin {
            pins::check_format(d)?;
            if d == pin {
                return Err(SosError::SamePins);
            }
        }
        let stored = self.inner.store().sos_read(rows::pins)?;
        if stored.pin_hash.is_some() {
            match self.sos_check_pin(current.unwrap_or(""))? {
                PinMatch::Real => {}
                PinMatch::Duress => return Ok(()),
                PinMatch::Neither => return Err(TransitionError::WrongPin.into()),
            }
        }
        let new = SosPins {
            pin_hash: Some(pins::hash(pin)?),
            duress_hash: duress_pin.map(pins::hash).transpose()?,
        };
        self.inner
            .store()
            .sos_write(|tx| rows::set_pins(tx, &new))?;
        Ok(())
    }

    /// Sends the person's reply to dispatch (queued like a beacon; returns its sequence
    /// number). Refused unless the incident is live and shown as live.
    pub fn sos_reply(&self, reply: Reply) -> Result<u32, SosError> {
        if let Reply::Text(text) = &reply {
            crate::sos::beacon::check_text(text, crate::sos::beacon::MAX_REPLY_CHARS)?;
        }
        let now = self.sos_now();
        let seq = self.inner.store().sos_write(|tx| {
            let inc = rows::latest_incident(tx)?.ok_or(SosError::NoIncident)?;
            state::apply(inc.state, Input::Reply)?;
            let fix = rows::latest_fix(tx, &inc.id)?;
            let beacon = NewBeacon {
                state: inc.state.reported(),
                fix: fix.as_ref().map(|f| (f, false)),
                reply: Some(&reply),
            };
            Ok::<_, SosError>(rows::append_beacon(tx, &inc.id, beacon, now)?)
        })?;
        self.sos_wake();
        Ok(seq)
    }

    /// Leaves feedback on an incident that has ended as the phone shows it (resolved, or
    /// cancelled): a rating 1 to 5, whether the person felt safe, a comment of at most
    /// 1,000 characters. Stored at once and sent by the SOS sender (start it, or it is sent
    /// with the next incident); the server accepts it only once dispatch has closed the
    /// incident, and until then it stays queued. So under the duress cover (the phone looks
    /// cancelled, the incident is live) this answers exactly as for a real cancel, and the
    /// feedback waits for dispatch to close. One feedback per incident: a second replaces
    /// the first, also after it was sent (it is sent again). Refused while the incident is
    /// shown as live ([`SosError::NotEnded`]), or when invalid ([`SosError::Feedback`]).
    pub fn sos_feedback(&self, incident: &IncidentId, feedback: Feedback) -> Result<(), SosError> {
        feedback.validate()?;
        let now = self.sos_now();
        self.inner.store().sos_write(|tx| {
            let inc = rows::incident(tx, incident)?.ok_or(SosError::UnknownIncident)?;
            if inc.state.apparent_phase().is_live() {
                return Err(SosError::NotEnded);
            }
            rows::put_feedback(tx, incident, &feedback, now)?;
            Ok::<_, SosError>(())
        })?;
        tracing::info!(rating = feedback.rating, "sos feedback stored");
        self.sos_wake();
        Ok(())
    }

    /// For the transport: the oldest feedback still to send.
    pub(crate) fn sos_pending_feedback(&self) -> Result<Option<rows::StoredFeedback>, SosError> {
        Ok(self.inner.store().sos_read(rows::pending_feedback)?)
    }

    /// The token the SOS sender uses: the account's, or after a sign-out the one kept while
    /// an incident still has something to send.
    pub(crate) fn sos_token(&self) -> Result<String, SosError> {
        if let Some(account) = self.inner.store().account()? {
            return Ok(account.token);
        }
        self.inner
            .store()
            .sos_read(rows::kept_credential)?
            .map(|(_, token)| token)
            .ok_or(SosError::Server(crate::client::ClientError::NotRegistered))
    }

    /// For the transport: up to `limit` beacons the server has not confirmed, oldest
    /// incident first, each incident's in sequence order. They stay queued until
    /// [`Client::sos_mark_delivered`].
    pub fn sos_pending_beacons(&self, limit: usize) -> Result<Vec<Beacon>, SosError> {
        Ok(self.inner.store().sos_read(|c| rows::pending(c, limit))?)
    }

    /// For the transport: the server has durably stored every beacon of `incident` up to
    /// `up_to_seq`; they leave the queue. Returns how many did.
    pub fn sos_mark_delivered(
        &self,
        incident: &IncidentId,
        up_to_seq: u32,
    ) -> Result<usize, SosError> {
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::mark_delivered(tx, incident, up_to_seq))?)
    }

    /// Configures the SMS fallback: the gateway's number and this device's SMS key (the
    /// server knows it as `key_id`).
    pub fn sos_set_sms_channel(
        &self,
        number: &str,
        key_id: u32,
        key: &SmsKey,
    ) -> Result<(), SosError> {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SosError::Sms(sms::SmsError::Malformed("number")));
        }
        let channel = SmsChannel {
            number: number.to_owned(),
            key_id,
            key: key.clone(),
        };
        self.inner
            .store()
            .sos_write(|tx| rows::set_sms_channel(tx, &channel))?;
        Ok(())
    }

    /// For the platform, when there is no data network: the SMS to send for the latest
    /// incident (its latest position and reported state), or `None` when there is nothing to
    /// say (no position yet, or an incident that is over and fully delivered).
    pub fn sos_sms_text(&self) -> Result<Option<SmsText>, SosError> {
        let now = self.sos_now();
        self.inner.store().sos_read(|c| {
            let channel = rows::sms_channel(c)?;
            let Some(inc) = rows::latest_incident(c)? else {
                return Ok(None);
            };
            let channel = channel.ok_or(SosError::SmsNotConfigured)?;
            if !inc.state.is_live() && !rows::has_pending(c, &inc.id)? {
                return Ok(None);
            }
            let Some(beacon) = rows::latest_fix_beacon(c, &inc.id)? else {
                return Ok(None);
            };
            let Some(fix) = beacon.fix else {
                return Ok(None);
            };
            let text = sms::encode(
                &fix,
                &inc.id,
                beacon.seq,
                beacon.state,
                channel.key_id,
                &channel.key,
                now,
            )?;
            Ok(Some(SmsText {
                number: channel.number,
                text,
            }))
        })
    }

    /// Applies something dispatch did (from the server's event stream). Duplicates and
    /// stale events are harmless. Returns the event when the app may surface it (it changed
    /// something and the phone is not under the duress cover or cancelled); `None`
    /// otherwise.
    pub fn sos_apply_server_event(
        &self,
        event: &ServerEvent,
    ) -> Result<Option<IncidentEvent>, SosError> {
        event.validate()?;
        let now = self.sos_now();
        let (shown, queued) = self.inner.store().sos_write(|tx| {
            let inc = rows::incident(tx, &event.incident)?.ok_or(SosError::UnknownIncident)?;
            let (input, unit) = match &event.event {
                IncidentEvent::Received => (Input::Received, None),
                IncidentEvent::Acknowledged => (Input::Acknowledged, None),
                IncidentEvent::UnitAssigned { unit } => (Input::UnitAssigned, unit.as_deref()),
                IncidentEvent::Resolved => (Input::Resolved, None),
                IncidentEvent::Message { .. } => (Input::DispatcherMessage, None),
            };
            let step = state::apply(inc.state, input)?;
            let fresh = match &event.event {
                IncidentEvent::Message { id, text } => {
                    rows::insert_message(tx, &inc.id, *id, text, step.visible, now)?
                }
                _ => step.state != inc.state,
            };
            persist(tx, &inc, step, unit, now)?;
            Ok::<_, SosError>((
                (step.visible && fresh).then(|| event.event.clone()),
                step.report,
            ))
        })?;
        if queued {
            self.sos_wake();
        }
        Ok(shown)
    }

    /// For the platform: when to take the next fix (milliseconds since the Unix epoch; now
    /// or earlier means at once), by [`cadence::RULES`]. `None` when no incident is live.
    pub fn sos_next_fix_due(&self) -> Result<Option<i64>, SosError> {
        let now = self.sos_now();
        self.inner.store().sos_read(|c| {
            let Some(inc) = rows::latest_incident(c)?.filter(|i| i.state.is_live()) else {
                return Ok(None);
            };
            let history = rows::recent_fixes(c, &inc.id, 2)?;
            Ok(Some(cadence::RULES.next_fix_due(
                inc.triggered_at,
                &history,
                now,
            )))
        })
    }

    /// Deletes the trail, messages and record of every incident that ended (resolved, or
    /// cancelled with the real PIN) more than `retention` ago and has nothing left to send,
    /// so that a phone picked up later does not hold a past incident's movements. Live
    /// incidents, including one under the duress cover, are never touched. Returns how many
    /// incidents were deleted.
    pub fn sos_purge_ended(&self, retention: std::time::Duration) -> Result<usize, SosError> {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let ended_before = self.sos_now().saturating_sub(retention_ms);
        Ok(self
            .inner
            .store()
            .sos_write(|tx| rows::purge_ended(tx, ended_before))?)
    }

    /// Test support: every beacon of an incident, in sequence order, delivered or not.
    #[doc(hidden)]
    pub fn sos_beacon_log(&self, incident: &IncidentId) -> Result<Vec<Beacon>, SosError> {
        Ok(self
            .inner
            .store()
            .sos_read(|c| rows::beacons(c, incident))?)
    }

    /// Test support: the incident's true state, which the app must never be shown.
    #[doc(hidden)]
    pub fn sos_true_state_for_tests(
        &self,
        incident: &IncidentId,
    ) -> Result<Option<state::IncidentState>, SosError> {
        Ok(self
            .inner
            .store()
            .sos_read(|c| rows::incident(c, incident))?
            .map(|i| i.state))
    }
}

/// The latest incident if it is truly live.
fn live_incident(conn: &Connection) -> Result<IncidentRow, SosError> {
    rows::latest_incident(conn)?
        .filter(|i| i.state.is_live())
        .ok_or(SosError::NoLiveIncident)
}

/// Saves a step's state and, when it must be reported, queues a beacon with the new reported
/// state and the last fix.
fn persist(
    conn: &Connection,
    inc: &IncidentRow,
    step: state::Step,
    unit: Option<&str>,
    now: i64,
) -> Result<(), SosError> {
    if step.state != inc.state || unit.is_some() {
        rows::set_state(conn, &inc.id, step.state, unit, now)?;
    }
    if step.report {
        let fix = rows::latest_fix(conn, &inc.id)?;
        let beacon = NewBeacon {
            state: step.state.reported(),
            fix: fix.as_ref().map(|f| (f, false)),
            reply: None,
        };
        rows::append_beacon(conn, &inc.id, beacon, now)?;
    }
    Ok(())
}

fn status(
    conn: &Connection,
    id: &IncidentId,
) -> Result<Option<SosStatus>, super::store::StoreError> {
    let Some(inc) = rows::incident(conn, id)? else {
        return Ok(None);
    };
    let phase = inc.state.apparent_phase();
    let messages = rows::visible_messages(conn, id)?
        .into_iter()
        .map(|m| SosMessage {
            from_dispatcher: m.from_dispatcher,
            content: m.content,
            at: m.at,
        })
        .collect();
    let feedback = rows::feedback(conn, id)?.map(|f| FeedbackStatus {
        feedback: f.feedback,
        sent: f.sent,
        send_error: f.send_error,
    });
    Ok(Some(SosStatus {
        incident: inc.id,
        phase,
        trigger: inc.trigger,
        triggered_at: inc.triggered_at,
        unit: inc.unit.filter(|_| phase != Phase::Cancelled),
        messages,
        send_error: inc.send_error,
        feedback,
    }))
}

#[cfg(test)]
mod tests;
