//! The SOS beacon sender: its own task, never behind draft sync, that drains
//! [`Client::sos_pending_beacons`] over the live sync connection when one is online (a
//! `sotong-sos-beacon` frame, [`super::lane`]) and otherwise to `POST /v1/sos/beacons` over
//! the phone's HTTPS client (plain `http://` only to this machine); a batch whose connection
//! closes, or whose acknowledgment does not come within [`SosOptions::live_ack_timeout`], is
//! sent over HTTPS at once (the server stores each beacon once, so a late ack is harmless).
//! It confirms what the server durably stored with
//! [`Client::sos_mark_delivered`] and applies dispatch's events. With nothing left to send it
//! long-polls the incident's events (acknowledgment, unit, messages), and a new beacon cuts
//! the wait short. Failures are retried with the shared full-jitter backoff; with no data
//! network the listener is handed the SMS text to send. It runs while an incident is live
//! and stops by itself once the incident is over and fully delivered.
//!
//! Nothing here makes a sound: events go to the [`SosListener`], and the app decides how
//! discreetly to show them. When to take the next fix stays in [`super::cadence`].

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::oneshot;

use super::lane::LaneBatch;
use super::{SmsText, SosError};
use crate::client::api::Api;
use crate::client::backoff::Backoff;
use crate::client::{Client, ClientError};
use crate::sos::{Beacon, IncidentId, ServerEvent};

/// Where the beacon sender stands, as its listener sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SosLinkState {
    /// Sending queued beacons.
    Sending,
    /// Everything is delivered; waiting for dispatch's events or the next beacon.
    Waiting,
    /// The last attempt failed; the next one starts at `until_ms` (or with the next beacon).
    BackingOff {
        /// When the next attempt starts, milliseconds since the Unix epoch.
        until_ms: i64,
        /// Why the last attempt failed (no personal data).
        error: String,
    },
    /// The sender ended: `None` when the incident is over or the app stopped it, else why.
    Stopped {
        /// Why, unless it ended normally.
        error: Option<String>,
    },
}

/// Timings of the beacon sender; the defaults suit a phone, tests shorten them.
#[derive(Debug, Clone)]
pub struct SosOptions {
    /// The ceiling of the first retry's delay; it doubles with every failed attempt.
    pub first_retry: Duration,
    /// The largest retry delay (short: a person in danger is waiting).
    pub max_retry: Duration,
    /// How long one events long-poll may wait at the server (at most 30 s).
    pub events_wait: Duration,
    /// Beacons per request (the server takes 1 to 100).
    pub batch: usize,
    /// How long a batch sent over the live connection waits for its acknowledgment before
    /// it goes over HTTPS.
    pub live_ack_timeout: Duration,
}

impl Default for SosOptions {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(15),
            events_wait: Duration::from_secs(25),
            batch: 100,
            live_ack_timeout: Duration::from_secs(5),
        }
    }
}

/// What the server refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The incident's beacons: they stay stored on the phone and are no longer sent.
    Beacons,
    /// The person's feedback on the incident: kept, not resent.
    Feedback,
}

/// Receives what the beacon sender does. Called from its task: return quickly.
pub trait SosListener: Send + Sync + 'static {
    /// The sender changed state.
    fn state_changed(&self, state: SosLinkState) {
        let _ = state;
    }
    /// Dispatch did something the app may show, discreetly (never under the duress cover).
    fn event(&self, event: ServerEvent);
    /// There is no data network: send this SMS (handed once per new text).
    fn send_sms(&self, sms: SmsText) {
        let _ = sms;
    }
    /// The server refused something for good (400, 404 or 410: malformed, or not this
    /// device's incident): it is kept on the phone, marked with `reason`
    /// ([`super::SosStatus::send_error`], [`super::FeedbackStatus::send_error`]) and no
    /// longer sent; the sender goes on with the rest.
    fn send_failed(&self, incident: IncidentId, what: SendFailure, reason: String) {
        let _ = (incident, what, reason);
    }
    /// The sender ended: `None` when the incident is over or the app stopped it, else why.
    /// Called once, right after [`SosLinkState::Stopped`].
    fn stopped(&self, error: Option<String>) {
        let _ = error;
    }
}

/// A running beacon sender; dropping it (or [`SosTransport::stop`]) ends it.
pub struct SosTransport {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SosTransport {
    /// Ends the sender and waits until the listener is told.
    pub async fn stop(mut self) {
        self.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the sender ends by itself (the incident is over) or fails for good.
    pub async fn finished(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Asks the sender to end, without waiting.
    pub fn cancel(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether the sender has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for SosTransport {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl Client {
    /// Starts the SOS beacon sender on the current tokio runtime. It sends every queued
    /// beacon, then long-polls dispatch's events while the incident is live, and stops by
    /// itself when no incident is live and nothing is left to send (at once if there is
    /// none). A second sender for the same client is harmless (the server stores each
    /// beacon once) but wasteful.
    pub fn sos_start_transport(
        &self,
        listener: Arc<dyn SosListener>,
        options: SosOptions,
    ) -> Result<SosTransport, SosError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::Internal("the SOS sender needs a tokio runtime".into()))?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let sender = Sender {
            backoff: Backoff::new(
                options.first_retry,
                options.max_retry,
                StdRng::from_entropy(),
            ),
            client: self.clone(),
            listener,
            options,
            stop: stop_rx,
            last_event: 0,
            last_sms: None,
            last_state: None,
        };
        let task = runtime.spawn(sender.run());
        Ok(SosTransport {
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

impl Client {
    /// Asks the server for this device's SMS key and the SMS gateway's number and stores
    /// them ([`Client::sos_set_sms_channel`]), so the SMS fallback works later offline.
    pub async fn sos_provision_sms_channel(&self) -> Result<(), SosError> {
        use base64::Engine as _;
        let token = self.inner.device.token()?;
        let answer = self.inner.device.api.sos_sms_channel(&token).await?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(answer.key.trim_end_matches('='))
            .map_err(|_| ClientError::Protocol("the SMS key is not base64url".into()))?;
        let key = crate::sos::SmsKey::from_bytes(&bytes)
            .map_err(|_| ClientError::Protocol("the SMS key is not 32 bytes".into()))?;
        self.sos_set_sms_channel(&answer.number, answer.key_id, &key)
    }
}

/// How a batch fared over the live connection.
enum Live {
    /// Stored: the server's answer.
    Answered(crate::client::api::BeaconAnswer),
    /// No live connection, or it failed or was late: send over HTTPS.
    NotThere,
    /// The app stopped the sender.
    Stopped,
}

/// How one round ended without an error.
enum Round {
    /// Go on with the next round.
    Continue,
    /// No incident is live and everything is delivered.
    Over,
    /// The app stopped the sender.
    Stopped,
}

struct Sender {
    client: Client,
    listener: Arc<dyn SosListener>,
    options: SosOptions,
    stop: oneshot::Receiver<()>,
    backoff: Backoff,
    /// The last event id received (long-poll or beacon answer): both ask only for later ones.
    last_event: i64,
    /// The last SMS text handed to the listener.
    last_sms: Option<String>,
    last_state: Option<SosLinkState>,
}

/// What the sender does after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The server refused this item for good (400, 404, 410, 422): mark it failed with the
    /// reason, keep it, go on with the rest.
    Refused,
    /// Nothing can work until the person acts (signed out, token refused, plain HTTP to
    /// another machine): stop.
    Stop,
    /// Try again with backoff: no network, a timeout, 5xx, 429, 409, a malformed answer,
    /// local storage.
    Later,
}

/// Sorts a failure into [`Retry`].
pub(crate) fn classify(e: &SosError) -> Retry {
    match e {
        SosError::Server(
            ClientError::NotRegistered
            | ClientError::Unauthorized(_)
            | ClientError::InsecureServer { .. },
        ) => Retry::Stop,
        SosError::Server(ClientError::InvalidInput(_) | ClientError::NotFound(_)) => Retry::Refused,
        SosError::Server(ClientError::Server {
            status: 400 | 404 | 410 | 422,
            ..
        }) => Retry::Refused,
        _ => Retry::Later,
    }
}

impl Sender {
    async fn run(mut self) {
        let error = loop {
            let failure = match self.round().await {
                Ok(Round::Continue) => continue,
                Ok(Round::Over) => {
                    match self.client.sos_finish_signed_out() {
                        Ok(true) => {
                            tracing::info!("sos: signed out and done; ended incidents wiped")
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "sos: wipe after sign-out failed"),
                    }
                    break None;
                }
                Ok(Round::Stopped) => break None,
                Err(e) => e,
            };
            if classify(&failure) == Retry::Stop {
                tracing::warn!(error = %failure, "sos sender stopped");
                break Some(failure.to_string());
            }
            if matches!(&failure, SosError::Server(e) if e.is_network()) {
                self.offer_sms();
            }
            let delay = self.backoff.next_delay();
            let until_ms = crate::client::now_millis()
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            tracing::info!(error = %failure, delay_ms = delay.as_millis() as u64, "sos send failed; retrying");
            self.set_state(SosLinkState::BackingOff {
                until_ms,
                error: failure.to_string(),
            });
            let wake = self.client.inner.sos_wake.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // A new beacon is worth an attempt at once (the cadence bounds how often).
                _ = wake.notified() => {}
                _ = &mut self.stop => break None,
            }
        };
        self.set_state(SosLinkState::Stopped {
            error: error.clone(),
        });
        self.listener.stopped(error);
    }

    fn set_state(&mut self, state: SosLinkState) {
        if self.last_state.as_ref() != Some(&state) {
            self.listener.state_changed(state.clone());
            self.last_state = Some(state);
        }
    }

    fn api(&self) -> &Api {
        &self.client.inner.device.api
    }

    /// Sends one batch (one incident's, so that a refusal names it), or the feedback when
    /// no incident is live, or waits for events or the next beacon.
    async fn round(&mut self) -> Result<Round, SosError> {
        let pending = self
            .client
            .sos_pending_beacons(self.options.batch.clamp(1, 100))?;
        if let Some(first) = pending.first().map(|b| b.incident) {
            let pending: Vec<Beacon> = pending
                .into_iter()
                .take_while(|b| b.incident == first)
                .collect();
            let token = self.client.sos_token()?;
            self.set_state(SosLinkState::Sending);
            let result = match self.over_live(&pending).await {
                Live::Answered(answer) => Ok(answer),
                Live::Stopped => return Ok(Round::Stopped),
                Live::NotThere => {
                    let api = self.api().clone();
                    tokio::select! {
                        r = api.sos_beacons(&token, &pending, self.last_event) => r,
                        _ = &mut self.stop => return Ok(Round::Stopped),
                    }
                }
            };
            let answer = match result {
                Ok(answer) => answer,
                Err(e) => return self.refused_or(first, SendFailure::Beacons, 0, e.into()),
            };
            let mut delivered = 0;
            for ack in &answer.acked {
                delivered += self
                    .client
                    .sos_mark_delivered(&ack.incident, ack.up_to_seq)?;
            }
            self.apply(&answer.events)?;
            if let Some(last) = answer.last_event_id {
                self.last_event = self.last_event.max(last);
            }
            if delivered == 0 {
                // Sending the same batch again at once would only spin.
                return Err(ClientError::Protocol(
                    "the server acknowledged none of the beacons sent".into(),
                )
                .into());
            }
            self.backoff.reset();
            return Ok(Round::Continue);
        }
        let live = self.client.sos_live_incident()?;
        if live.is_none() {
            // Feedback waits while an incident is live: its events come first.
            if let Some(fb) = self.client.sos_pending_feedback()? {
                let token = self.client.sos_token()?;
                self.set_state(SosLinkState::Sending);
                let api = self.api().clone();
                let result = tokio::select! {
                    r = api.sos_feedback(&token, &fb.incident, &fb.feedback) => r,
                    _ = &mut self.stop => return Ok(Round::Stopped),
                };
                return match result {
                    Ok(()) => {
                        self.client
                            .sos_mark_feedback_sent(&fb.incident, fb.written_at)?;
                        self.backoff.reset();
                        Ok(Round::Continue)
                    }
                    // Dispatch has not closed it yet: wait for its events, then try again.
                    Err(ClientError::Server { status: 409, .. }) => {
                        self.backoff.reset();
                        self.wait_events(fb.incident).await
                    }
                    Err(e) => {
                        self.refused_or(fb.incident, SendFailure::Feedback, fb.written_at, e.into())
                    }
                };
            }
        }
        match live {
            Some(incident) => self.wait_events(incident).await,
            None => Ok(Round::Over),
        }
    }

    /// A failed request: an item the server refused for good is marked (`written_at` is
    /// the feedback's version) and the listener told, and the sender goes on; anything else
    /// is returned for the caller to retry or stop on.
    fn refused_or(
        &mut self,
        incident: IncidentId,
        what: SendFailure,
        written_at: i64,
        e: SosError,
    ) -> Result<Round, SosError> {
        if classify(&e) != Retry::Refused {
            return Err(e);
        }
        let reason = e.to_string();
        match what {
            SendFailure::Beacons => self.client.sos_mark_refused(&incident, &reason)?,
            SendFailure::Feedback => {
                self.client
                    .sos_mark_feedback_failed(&incident, written_at, &reason)?;
            }
        }
        tracing::warn!(error = %reason, ?what, "sos: refused by the server for good; kept, not resent");
        self.listener.send_failed(incident, what, reason);
        Ok(Round::Continue)
    }

    /// Long-polls `incident`'s events until one comes, the wait ends, or a beacon is
    /// queued.
    async fn wait_events(&mut self, incident: IncidentId) -> Result<Round, SosError> {
        let token = self.client.sos_token()?;
        self.set_state(SosLinkState::Waiting);
        let api = self.api().clone();
        let wake = self.client.inner.sos_wake.clone();
        tokio::select! {
            _ = wake.notified() => Ok(Round::Continue),
            _ = &mut self.stop => Ok(Round::Stopped),
            r = api.sos_events(&token, &incident, self.last_event, self.options.events_wait) => {
                let events = match r {
                    Ok(events) => events,
                    Err(e) => return self.refused_or(incident, SendFailure::Beacons, 0, e.into()),
                };
                self.backoff.reset();
                if events.is_empty() {
                    // A server that answers at once instead of waiting is not polled in a
                    // tight loop.
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.first_retry) => {}
                        _ = wake.notified() => {}
                        _ = &mut self.stop => return Ok(Round::Stopped),
                    }
                    return Ok(Round::Continue);
                }
                let max = events.iter().map(|e| e.id).max().unwrap_or(self.last_event);
                let events: Vec<ServerEvent> = events.into_iter().map(|e| e.event).collect();
                self.apply(&events)?;
                self.last_event = self.last_event.max(max);
                Ok(Round::Continue)
            }
        }
    }

    /// Sends a batch over the live connection, if one is online, and waits (bounded) for
    /// the server's acknowledgment.
    async fn over_live(&mut self, pending: &[crate::sos::Beacon]) -> Live {
        let (tx, rx) = oneshot::channel();
        let batch = LaneBatch {
            beacons: pending.to_vec(),
            after: self.last_event,
            answer: tx,
        };
        if self.client.inner.device.sos_lane.send(batch).is_err() {
            return Live::NotThere;
        }
        let wait = tokio::time::timeout(self.options.live_ack_timeout, rx);
        tokio::select! {
            r = wait => match r {
                Ok(Ok(Ok(answer))) => Live::Answered(answer),
                Ok(Ok(Err(e))) => {
                    // HTTPS will answer the same batch with the full error, or store it.
                    tracing::info!(error = %e, "sos: batch refused over the live connection");
                    Live::NotThere
                }
                Ok(Err(_)) => {
                    tracing::info!("sos: live connection closed before the ack; sending over HTTPS");
                    Live::NotThere
                }
                Err(_) => {
                    tracing::info!("sos: no ack over the live connection in time; sending over HTTPS");
                    Live::NotThere
                }
            },
            _ = &mut self.stop => Live::Stopped,
        }
    }

    /// Applies dispatch's events and tells the listener those the app may show. An event
    /// the phone cannot apply (stale, for an incident it no longer has) is skipped; a
    /// storage failure is retried.
    fn apply(&mut self, events: &[ServerEvent]) -> Result<(), SosError> {
        for event in events {
            match self.client.sos_apply_server_event(event) {
                Ok(Some(shown)) => self.listener.event(ServerEvent {
                    incident: event.incident,
                    event: shown,
                }),
                Ok(None) => {}
                Err(e @ SosError::Store(_)) => return Err(e),
                Err(e) => tracing::info!(error = %e, "sos: server event skipped"),
            }
        }
        Ok(())
    }

    /// Hands the listener the SMS to send, once per new text.
    fn offer_sms(&mut self) {
        match self.client.sos_sms_text() {
            Ok(Some(sms)) if self.last_sms.as_deref() != Some(sms.text.as_str()) => {
                self.last_sms = Some(sms.text.clone());
                self.listener.send_sms(sms);
            }
            Ok(_) | Err(SosError::SmsNotConfigured) => {}
            Err(e) => tracing::warn!(error = %e, "sos: no SMS text"),
        }
    }
}

#[cfg(test)]
mod tests;
