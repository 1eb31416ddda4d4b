//! Live sync: a task that stays connected, pushes local edits at once and applies the
//! server's pushes as they come. It reconnects by itself after a server restart, a network
//! loss or a close by the server, waiting with exponential backoff and full jitter between
//! attempts, and stops only when told to or on an error retrying cannot fix (a refused
//! token, a signed-out device). Every change of state goes to the listener.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::engine::Engine;
use super::transport::Transport;
use super::{flush, Device, SyncListener};
use crate::client::api::BeaconAnswer;
use crate::client::backoff::Backoff;
use crate::client::error::ClientError;
use crate::client::sos::lane::{LaneBatch, LaneGuard};
use crate::wire::WireMessage;
use crate::DocumentId;

/// Where a live session stands, as its listener sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveState {
    /// Opening a connection.
    Connecting,
    /// Connected and joined: edits flow both ways.
    Online,
    /// The connection failed or broke; the next attempt starts at `until_ms`.
    BackingOff {
        /// When the next attempt starts, in milliseconds since the Unix epoch.
        until_ms: i64,
        /// Why the last attempt ended (no personal data).
        error: String,
    },
    /// The session ended for good: `None` when the app stopped it, else why.
    Stopped {
        /// Why, unless the app stopped it.
        error: Option<String>,
    },
}

/// Timings of a live session; the defaults suit a phone, tests shorten them.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// How often the phone pings the server.
    pub ping_interval: Duration,
    /// Silence (not even a pong) after which the connection is taken for lost.
    pub silence_timeout: Duration,
    /// The ceiling of the first retry's delay; it doubles with every failed attempt.
    pub first_retry: Duration,
    /// The largest retry delay.
    pub max_retry: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(90),
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }
}

/// What the rest of the client tells a running live session.
#[derive(Debug)]
pub(crate) enum Nudge {
    /// A draft changed on the device.
    Changed(DocumentId),
    /// The device signed out: stop.
    SignedOut,
}

/// A running live sync session; dropping it (or [`LiveSync::stop`]) ends it.
pub struct LiveSync {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LiveSync {
    /// Ends the session and waits until its connection is closed and the listener told.
    pub async fn stop(mut self) {
        self.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Asks the session to end, without waiting.
    pub fn cancel(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether the session has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for LiveSync {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Starts a live session. Returns once the first connection is online, or once it failed
/// with an error worth retrying (the session then keeps trying); fails on a permanent one.
pub(crate) async fn start_live(
    device: Arc<Device>,
    listener: Arc<dyn SyncListener>,
    options: LiveOptions,
    nudges: mpsc::UnboundedReceiver<Nudge>,
) -> Result<LiveSync, ClientError> {
    device.token()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut live = Live {
            device,
            listener,
            options,
            nudges,
            stop: stop_rx,
            ready: Some(ready_tx),
        };
        live.run().await;
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(LiveSync {
            stop: Some(stop_tx),
            task: Some(task),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClientError::Internal(
            "live sync ended before it started".into(),
        )),
    }
}

/// How a session ended without an error.
enum Ended {
    Stopped,
    SignedOut,
}

/// The live task's state.
struct Live {
    device: Arc<Device>,
    listener: Arc<dyn SyncListener>,
    options: LiveOptions,
    nudges: mpsc::UnboundedReceiver<Nudge>,
    stop: oneshot::Receiver<()>,
    /// Told once, when the first attempt is online or has failed.
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
}

impl Live {
    async fn run(&mut self) {
        let mut backoff = Backoff::new(
            self.options.first_retry,
            self.options.max_retry,
            StdRng::from_entropy(),
        );
        let error = loop {
            self.listener.state_changed(LiveState::Connecting);
            let mut online_since = None;
            let failure = match self.session(&mut online_since).await {
                Ok(Ended::Stopped) => break None,
                Ok(Ended::SignedOut) => break Some(ClientError::NotRegistered.to_string()),
                Err(e) => e,
            };
            if failure.is_permanent() {
                let reason = failure.to_string();
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Err(failure));
                }
                break Some(reason);
            }
            self.tell_ready();
            if online_since.is_some_and(|t| t.elapsed() >= self.options.stable_after) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let until_ms = crate::client::now_millis()
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            tracing::info!(error = %failure, delay_ms = delay.as_millis() as u64, "live sync lost its connection; retrying");
            self.listener.state_changed(LiveState::BackingOff {
                until_ms,
                error: failure.to_string(),
            });
            match self.wait(delay).await {
                None => continue,
                Some(Ended::Stopped) => break None,
                Some(Ended::SignedOut) => break Some(ClientError::NotRegistered.to_string()),
            }
        };
        self.listener.state_changed(LiveState::Stopped {
            error: error.clone(),
        });
        self.listener.stopped(error);
    }

    fn tell_ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
    }

    /// Waits out a backoff delay; `Some` if the session must end instead.
    async fn wait(&mut self, delay: Duration) -> Option<Ended> {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return None,
                _ = &mut self.stop => return Some(Ended::Stopped),
                nudge = self.nudges.recv() => match nudge {
                    // The next session announces every draft anyway.
                    Some(Nudge::Changed(_)) => {}
                    Some(Nudge::SignedOut) => return Some(Ended::SignedOut),
                    None => return Some(Ended::Stopped),
                },
            }
        }
    }

    /// One connection, from connecting to its end.
    async fn session(&mut self, online_since: &mut Option<Instant>) -> Result<Ended, ClientError> {
        let device = self.device.clone();
        let token = device.token()?;
        let remote = tokio::select! {
            r = device.api.documents(&token) => r?,
            _ = &mut self.stop => return Ok(Ended::Stopped),
        };
        let me = device.store.peer_id()?;
        let mut transport = tokio::select! {
            t = Transport::connect(&device.api, &token, me) => t?,
            _ = &mut self.stop => return Ok(Ended::Stopped),
        };
        *online_since = Some(Instant::now());
        // Edits made before now are announced with every other draft below.
        while let Ok(nudge) = self.nudges.try_recv() {
            if matches!(nudge, Nudge::SignedOut) {
                return Ok(Ended::SignedOut);
            }
        }
        // SOS beacons may now come this way, until this connection ends.
        let mut lane = device.sos_lane.open();
        let _lane_open = LaneGuard(&device.sos_lane);
        let mut sos = SosBatches::default();
        self.listener.state_changed(LiveState::Online);
        self.tell_ready();

        let mut engine = Engine::new(&device.drafts, &remote)?;
        engine.fill()?;
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.options.ping_interval,
            self.options.ping_interval,
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ended = loop {
            flush(&mut transport, &mut engine, Some(self.listener.as_ref())).await?;
            tokio::select! {
                _ = &mut self.stop => break Ended::Stopped,
                nudge = self.nudges.recv() => match nudge {
                    Some(Nudge::Changed(id)) => engine.local_change(id)?,
                    Some(Nudge::SignedOut) => break Ended::SignedOut,
                    None => break Ended::Stopped,
                },
                _ = ping.tick() => {
                    let silent = transport.silent_for();
                    if silent >= self.options.silence_timeout {
                        return Err(ClientError::Silent(silent));
                    }
                    transport.ping().await?;
                }
                Some(batch) = lane.recv() => sos.send(&mut transport, batch).await?,
                msg = transport.recv() => match msg? {
                    WireMessage::SosAck { batch, code, data, .. } => sos.answered(&batch, code, &data),
                    msg => {
                        engine.handle(msg)?;
                        engine.fill()?;
                    }
                },
            }
        };
        engine.finish();
        transport.close().await;
        Ok(ended)
    }
}

/// SOS beacon batches sent over this connection and not yet answered; dropped (and so
/// failed, for the beacon sender) with the connection.
#[derive(Default)]
struct SosBatches {
    next: u64,
    waiting: std::collections::HashMap<
        String,
        tokio::sync::oneshot::Sender<Result<BeaconAnswer, ClientError>>,
    >,
}

impl SosBatches {
    async fn send(
        &mut self,
        transport: &mut Transport,
        batch: LaneBatch,
    ) -> Result<(), ClientError> {
        self.next += 1;
        let name = self.next.to_string();
        let body = crate::client::api::BeaconBatch {
            beacons: &batch.beacons,
            after: batch.after,
        };
        let data = serde_json::to_vec(&body)
            .map_err(|e| ClientError::Internal(format!("sos batch: {e}")))?;
        transport.send_sos(name.clone(), data).await?;
        self.waiting.insert(name, batch.answer);
        Ok(())
    }

    fn answered(&mut self, batch: &str, code: Option<String>, data: &[u8]) {
        let Some(answer) = self.waiting.remove(batch) else {
            return;
        };
        let result = match code {
            None => serde_json::from_slice(data)
                .map_err(|e| ClientError::Protocol(format!("sos ack: {e}"))),
            Some(code) => Err(ClientError::Server {
                status: 0,
                message: code,
            }),
        };
        let _ = answer.send(result);
    }
}
