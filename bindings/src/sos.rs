//! The SOS silent call across the FFI: trigger, fixes, cancel (the duress PIN is a cancel
//! that only looks like one), status, replies, PINs, when to take the next fix, and the
//! beacon sender, whose events reach the app's [`SosListener`] and whose SMS texts (when
//! there is no data network) reach the platform's [`SmsSender`]. Nothing here makes a sound.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use sotong_core::client::{self as core, SmsText, SosOptions, SosTransport};
use sotong_core::sos::{IncidentId, ServerEvent, SmsKey};

use crate::guard::{async_call, sync_call};
use crate::sos_types::{
    SosEvent, SosFeedback, SosFix, SosLinkState, SosReply, SosSendFailure, SosStatus, SosTrigger,
};
use crate::{SotongClient, SotongError};

/// Receives what the SOS sender does. Called on a background thread: return quickly, and
/// show events discreetly (the person may not be alone).
#[uniffi::export(callback_interface)]
pub trait SosListener: Send + Sync {
    /// The sender's state changed. The last call is `Stopped`.
    fn on_state_changed(&self, state: SosLinkState);
    /// Dispatch did something the app may show (never under the duress cover).
    fn on_event(&self, incident: String, event: SosEvent);
    /// The server refused something for good (it is kept, marked in `sos_status`, and no
    /// longer sent).
    fn on_send_failed(&self, incident: String, what: SosSendFailure, reason: String);
}

/// Implemented by the platform: sends an SMS silently (no sent-message notification, not
/// kept in the visible conversation list). Called when there is no data network, once per
/// new text.
#[uniffi::export(callback_interface)]
pub trait SmsSender: Send + Sync {
    /// Sends `text` to `number`.
    fn send_sms(&self, number: String, text: String);
}

/// Adapts the app's listener and SMS sender to the core's, keeping an exception thrown by
/// the app (which uniffi turns into a panic) from ending the sender.
struct Bridge {
    listener: Box<dyn SosListener>,
    sms: Option<Box<dyn SmsSender>>,
}

fn shielded(what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::warn!(callback = what, "the app's SOS callback failed");
    }
}

impl core::SosListener for Bridge {
    fn state_changed(&self, state: core::SosLinkState) {
        shielded("on_state_changed", || {
            self.listener.on_state_changed(state.into())
        });
    }
    fn event(&self, event: ServerEvent) {
        shielded("on_event", || {
            self.listener
                .on_event(event.incident.to_string(), event.event.into())
        });
    }
    fn send_failed(&self, incident: IncidentId, what: core::SendFailure, reason: String) {
        shielded("on_send_failed", || {
            self.listener
                .on_send_failed(incident.to_string(), what.into(), reason)
        });
    }
    fn send_sms(&self, sms: SmsText) {
        if let Some(sender) = &self.sms {
            shielded("send_sms", || sender.send_sms(sms.number, sms.text));
        }
    }
}

/// A running SOS sender. Releasing it (Kotlin `close()`, Swift deinit) stops it too.
#[derive(uniffi::Object)]
pub struct SosTransportHandle {
    sender: Mutex<Option<SosTransport>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl SosTransportHandle {
    /// Asks the sender to stop and returns at once; the listener then sees `Stopped`.
    pub fn cancel(&self) {
        if let Ok(mut s) = self.sender.lock() {
            if let Some(s) = s.as_mut() {
                s.cancel();
            }
        }
    }

    /// Stops the sender and returns once the listener has seen `Stopped`.
    pub async fn stop(&self) {
        let sender = self.sender.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = sender {
            s.stop().await;
        }
    }

    /// Whether the sender has ended (the incident is over, stopped, or failed for good).
    pub fn is_finished(&self) -> bool {
        self.sender
            .lock()
            .ok()
            .is_none_or(|s| s.as_ref().is_none_or(SosTransport::is_finished))
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl SotongClient {
    /// Starts an SOS incident (or returns the live one) and its id. Works offline: the
    /// incident is stored and queued at once. Then push fixes and run the sender.
    pub fn sos_trigger(&self, how: SosTrigger) -> Result<String, SotongError> {
        sync_call(|| Ok(self.inner.sos_trigger(how.into())?.to_string()))
    }

    /// Records a location fix for the live incident (stored before this returns) and
    /// returns its sequence number.
    pub fn sos_push_fix(&self, fix: SosFix) -> Result<u32, SotongError> {
        sync_call(|| Ok(self.inner.sos_push_fix(fix.into())?))
    }

    /// Cancels with a PIN and returns what to show. The duress PIN shows a cancelled
    /// incident while it stays live and dispatch sees duress. A wrong PIN: `WrongPin`.
    pub fn sos_cancel(&self, pin: String) -> Result<SosStatus, SotongError> {
        sync_call(|| Ok(self.inner.sos_cancel(&pin)?.into()))
    }

    /// What the app may show about the latest incident, or null if there never was one.
    pub fn sos_status(&self) -> Result<Option<SosStatus>, SotongError> {
        sync_call(|| Ok(self.inner.sos_status()?.map(Into::into)))
    }

    /// Sends the person's answer to dispatch (queued like a fix); returns its sequence number.
    pub fn sos_reply(&self, reply: SosReply) -> Result<u32, SotongError> {
        sync_call(|| Ok(self.inner.sos_reply(reply.into())?))
    }

    /// Sets the cancel PIN and optionally the duress PIN; `current` once a PIN is set.
    pub fn sos_set_pins(
        &self,
        current: Option<String>,
        pin: String,
        duress_pin: Option<String>,
    ) -> Result<(), SotongError> {
        sync_call(|| {
            Ok(self
                .inner
                .sos_set_pins(current.as_deref(), &pin, duress_pin.as_deref())?)
        })
    }

    /// Leaves feedback on an incident that has ended as the phone shows it (resolved or
    /// cancelled): stored at once, sent by the SOS sender once dispatch has closed the
    /// incident. A second replaces the first. Invalid feedback: `InvalidInput`; an
    /// incident still shown as live: `NoIncident`.
    pub fn sos_feedback(&self, incident: String, feedback: SosFeedback) -> Result<(), SotongError> {
        sync_call(|| {
            let id: IncidentId = incident.parse().map_err(|_| SotongError::InvalidInput {
                reason: "not an incident id".into(),
            })?;
            Ok(self.inner.sos_feedback(&id, feedback.into())?)
        })
    }

    /// When to take the next fix (milliseconds since the Unix epoch; now or earlier means
    /// at once), or null when no incident is live.
    pub fn sos_next_fix_due(&self) -> Result<Option<i64>, SotongError> {
        sync_call(|| Ok(self.inner.sos_next_fix_due()?))
    }

    /// Configures the SMS fallback: the gateway's number and this device's 32-byte key.
    pub fn sos_set_sms_channel(
        &self,
        number: String,
        key_id: u32,
        key: Vec<u8>,
    ) -> Result<(), SotongError> {
        sync_call(|| {
            let key = SmsKey::from_bytes(&key).map_err(|e| SotongError::InvalidInput {
                reason: e.to_string(),
            })?;
            Ok(self.inner.sos_set_sms_channel(&number, key_id, &key)?)
        })
    }

    /// Fetches this device's SMS key and the SMS gateway's number from the server and
    /// stores them, so the SMS fallback works later without a data network.
    pub async fn sos_provision_sms_channel(&self) -> Result<(), SotongError> {
        let inner = self.inner.clone();
        async_call(async move { Ok(inner.sos_provision_sms_channel().await?) }).await
    }

    /// Starts the SOS sender: it sends every queued beacon, then waits for dispatch's
    /// events while the incident is live, retrying by itself, and stops when the incident
    /// is over. With no data network it hands `sms` the text to send, if given.
    pub async fn sos_start_transport(
        &self,
        listener: Box<dyn SosListener>,
        sms: Option<Box<dyn SmsSender>>,
    ) -> Result<Arc<SosTransportHandle>, SotongError> {
        let inner = self.inner.clone();
        async_call(async move {
            let sender = inner
                .sos_start_transport(Arc::new(Bridge { listener, sms }), SosOptions::default())?;
            Ok(Arc::new(SosTransportHandle {
                sender: Mutex::new(Some(sender)),
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sos_types::{SosFixMethod, SosPhase};

    fn open() -> (tempfile::TempDir, Arc<SotongClient>) {
        let dir = tempfile::tempdir().unwrap();
        let client = SotongClient::open(
            dir.path().to_string_lossy().into_owned(),
            "http://127.0.0.1:9".to_owned(),
        )
        .unwrap();
        (dir, client)
    }

    fn fix(n: u32) -> SosFix {
        SosFix {
            lat: 37.56 + f64::from(n) * 0.001,
            lon: 126.97,
            accuracy_m: 12.0,
            altitude_m: None,
            speed_mps: None,
            heading_deg: None,
            time_ms: sotong_core::clock::unix_millis_now() - 500,
            method: SosFixMethod::Gps,
            battery_pct: Some(60),
        }
    }

    #[test]
    fn trigger_fixes_cancel_and_duress_through_the_ffi() {
        let (_dir, client) = open();
        assert_eq!(client.sos_status().unwrap(), None);
        assert_eq!(client.sos_next_fix_due().unwrap(), None);
        assert!(matches!(
            client.sos_push_fix(fix(0)),
            Err(SotongError::NoIncident { .. })
        ));
        client
            .sos_set_pins(None, "2468".into(), Some("1357".into()))
            .unwrap();
        let id = client.sos_trigger(SosTrigger::Widget).unwrap();
        assert!(client.sos_next_fix_due().unwrap().is_some());
        assert_eq!(client.sos_push_fix(fix(0)).unwrap(), 2);
        let mut bad = fix(1);
        bad.lat = 91.0;
        assert!(matches!(
            client.sos_push_fix(bad),
            Err(SotongError::InvalidInput { .. })
        ));
        assert_eq!(client.sos_reply(SosReply::CantTalk).unwrap(), 3);
        let status = client.sos_status().unwrap().unwrap();
        assert_eq!(
            (status.incident.as_str(), status.phase, status.trigger),
            (id.as_str(), SosPhase::Active, SosTrigger::Widget)
        );
        assert_eq!(status.messages[0].content, SosReply::CantTalk);
        assert!(matches!(
            client.sos_cancel("0000".into()),
            Err(SotongError::WrongPin { .. })
        ));
        let shown = client.sos_cancel("1357".into()).unwrap();
        assert_eq!(shown.phase, SosPhase::Cancelled);
        // Still live underneath: fixes are still taken.
        assert_eq!(client.sos_push_fix(fix(2)).unwrap(), 5);
        assert!(matches!(
            client.sos_set_sms_channel("+82100".into(), 1, vec![1; 5]),
            Err(SotongError::InvalidInput { .. })
        ));
    }
}
