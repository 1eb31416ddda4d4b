//! The SOS SMS channel. `POST /v1/sos/sms-channel` gives the phone the gateway's number and
//! a per-device key (`--sms-gateway-number`); `POST /v1/sos/sms-gateway` is the gateway's
//! webhook: its body is signed with HMAC-SHA256 under `--sms-gateway-secret`
//! (`X-Sotong-Signature: <hex>`, checked in constant time by the `hmac` crate), and the text
//! inside is checked with the device's key (`sms::decode_verified`) before it is stored as
//! that beacon, into the same incident. A forged or altered text is refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sotong_core::sos::sms::{self, SmsError, SmsKey, PREFIX};
use sotong_core::sos::{Beacon, TriggerMethod};

use super::ingest::{store_beacons, BeaconAnswer};
use crate::auth::Device;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Via;

/// The gateway's signature header.
pub const SIGNATURE_HEADER: &str = "x-sotong-signature";

/// Answer of `POST /v1/sos/sms-channel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmsChannel {
    /// The number to text.
    pub number: String,
    /// The key's id (the text's `k`).
    pub key_id: u32,
    /// base64url (no padding) of the 32-byte key.
    pub key: String,
}

/// `POST /v1/sos/sms-channel` (device bearer token): the device's key, made on first call.
pub async fn provision(
    State(state): State<AppState>,
    device: Device,
) -> Result<Json<SmsChannel>, ApiError> {
    let Some(number) = state.config.sos.sms_gateway_number.clone() else {
        return Err(ApiError::Unavailable {
            code: "sms_unavailable",
            message: "this server has no SMS gateway (--sms-gateway-number)".into(),
        });
    };
    let fresh = SmsKey::random();
    let row = state
        .store
        .sos_sms_key(device.into(), fresh.as_bytes(), state.now_secs())
        .await?;
    Ok(Json(SmsChannel {
        number,
        key_id: row.key_id,
        key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&row.key),
    }))
}

/// Body of the webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayMessage {
    /// The sender's number (not stored, not logged).
    pub from: String,
    /// The text.
    pub text: String,
}

/// The gateway's signature of `body` under `secret`, hex (for the gateway and tests).
/// `None` only if HMAC refused the key, which it never does.
pub fn sign(secret: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` (hex) is `body`'s HMAC under `secret`, compared in constant time.
pub fn signature_ok(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let (Ok(tag), Ok(mut mac)) = (
        hex::decode(signature.trim()),
        Hmac::<Sha256>::new_from_slice(secret),
    ) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The key id of a text, read before it can be verified.
fn key_id(text: &str) -> Option<u32> {
    let rest = text.strip_prefix(PREFIX)?.strip_prefix("k=")?;
    rest.split(';').next()?.parse().ok()
}

fn refused() -> ApiError {
    ApiError::unauthorized("sms_refused", "the SMS text is not authentic")
}

/// `POST /v1/sos/sms-gateway` (the gateway; no citizen token).
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BeaconAnswer>, ApiError> {
    let Some(secret) = state.config.sos.sms_gateway_secret.as_deref() else {
        return Err(ApiError::Unavailable {
            code: "sms_unavailable",
            message: "this server has no SMS gateway secret (--sms-gateway-secret)".into(),
        });
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signature_ok(secret, &body, signature) {
        tracing::warn!("SMS gateway webhook with a bad signature refused");
        return Err(ApiError::unauthorized(
            "bad_signature",
            "the webhook signature does not match",
        ));
    }
    let message: GatewayMessage = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let text = message.text.trim();
    let row = match key_id(text) {
        Some(k) => state.store.sos_sms_key_by_id(k).await?,
        None => None,
    };
    let key = row.as_ref().and_then(|r| SmsKey::from_bytes(&r.key).ok());
    let decoded = sms::decode_verified(text, |k| {
        key.filter(|_| row.as_ref().is_some_and(|r| r.key_id == k))
    })
    .map_err(|e| match e {
        SmsError::UnknownKey | SmsError::BadMac => refused(),
        other => ApiError::bad_request("invalid_sms", other.to_string()),
    })?;
    let Some(row) = row else {
        return Err(refused());
    };
    // The text carries no trigger: the incident's own if known, else "other" at the fix.
    let (trigger, triggered_at) = match state.store.sos_incident(&decoded.incident).await? {
        Some(inc) => (inc.trigger, inc.triggered_at),
        None => (TriggerMethod::Other, decoded.fix.time_ms),
    };
    let beacon = Beacon {
        incident: decoded.incident,
        seq: decoded.seq,
        state: decoded.state,
        trigger,
        triggered_at,
        fix: Some(decoded.fix),
        reply: None,
    };
    let answer = store_beacons(&state, row.device, vec![beacon], 0, Via::Sms).await?;
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_changes() {
        let sig = sign(b"secret", b"{\"a\":1}").unwrap();
        assert!(signature_ok(b"secret", b"{\"a\":1}", &sig));
        assert!(!signature_ok(b"secret", b"{\"a\":2}", &sig));
        assert!(!signature_ok(b"other", b"{\"a\":1}", &sig));
        assert!(!signature_ok(b"secret", b"{\"a\":1}", "zz"));
        assert!(!signature_ok(b"secret", b"{\"a\":1}", ""));
    }

    #[test]
    fn key_id_is_read_from_the_prefix() {
        assert_eq!(key_id("SOS1;k=12;id=x"), Some(12));
        assert_eq!(key_id("SOS1;id=x"), None);
        assert_eq!(key_id("hello"), None);
    }
}
