//! Citizen accounts: a device registers with a one-time code sent to a phone number and then
//! holds a random bearer token; the server keeps only hashes.
//!
//! - `POST /v1/auth/code` `{ phone }` → 202; the code goes out through the [`Notifier`].
//! - `POST /v1/auth/register` `{ phone, code, device_name }` → the device's token.
//! - `POST /v1/auth/ticket` (bearer) → a single-use ticket for WebSocket clients that cannot
//!   set headers.
//!
//! Phone numbers are never stored in accounts nor logged: accounts are keyed by a SHA-256 of
//! the normalized number with the server's pepper.
//!
//! [`Notifier`]: crate::notifier::Notifier

use std::net::IpAddr;

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sotong_core::hash::sha256;

use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store::{
    AccountId, CodeCheck, CodeIssue, CodeLimits, DeviceId, DeviceRef, NewCode, NewDevice,
};

/// Length of a token or ticket: 32 random bytes in unpadded base64url.
const SECRET_LEN: usize = 43;
/// Longest device name kept, in characters.
const MAX_DEVICE_NAME: usize = 64;

/// An authenticated device: the extractor for routes that need a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// The account the device belongs to.
    pub account_id: AccountId,
    /// The device.
    pub device_id: DeviceId,
}

impl From<DeviceRef> for Device {
    fn from(d: DeviceRef) -> Self {
        Self {
            account_id: d.account_id,
            device_id: d.device_id,
        }
    }
}

impl From<Device> for DeviceRef {
    fn from(d: Device) -> Self {
        Self {
            account_id: d.account_id,
            device_id: d.device_id,
        }
    }
}

impl FromRequestParts<AppState> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "this route needs an `Authorization: Bearer <token>` header",
            )
        })?;
        let token = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_token",
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
        authenticate_token(state, token).await
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The device holding `token`, if the token is known and not expired. For the WebSocket
/// handler and anything else that gets a token outside the `Authorization` header.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Device, ApiError> {
    let invalid = || ApiError::unauthorized("invalid_token", "the token is not valid");
    if !looks_like_secret(token) {
        return Err(invalid());
    }
    let owner = state
        .store
        .token_owner(&sha256(token.as_bytes()))
        .await?
        .ok_or_else(invalid)?;
    if owner.expires_at <= state.now_secs() {
        return Err(ApiError::unauthorized(
            "token_expired",
            "the token has expired; register the device again",
        ));
    }
    Ok(owner.device.into())
}

/// Consumes a WebSocket ticket: the first redemption before it expires gets its device;
/// any other gets 401. Atomic across instances sharing a store.
pub async fn redeem_ticket(state: &AppState, ticket: &str) -> Result<Device, ApiError> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_ticket",
            "the ticket is unknown, already used or expired; ask for a new one",
        )
    };
    if !looks_like_secret(ticket) {
        return Err(invalid());
    }
    state
        .store
        .redeem_ticket(&sha256(ticket.as_bytes()), state.now_secs())
        .await?
        .map(Device::from)
        .ok_or_else(invalid)
}

// ---- handlers -------------------------------------------------------------------------------

/// Body of `POST /v1/auth/code`.
#[derive(Debug, Deserialize)]
pub struct CodeRequest {
    /// Phone number in international format.
    pub phone: String,
}

/// Answer of `POST /v1/auth/code`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CodeSent {
    /// Always "sent".
    pub status: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
}

/// `POST /v1/auth/code`: sends a one-time code, rate-limited per number and per client
/// address (behind trusted proxies, the address they forward).
pub async fn request_code(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let phone = normalize_phone(&req.phone)?;
    let config = &state.config;
    let code = format!("{:06}", OsRng.gen_range(0..1_000_000u32));
    let now = state.now_secs();
    let new = NewCode {
        phone_key: phone_key(&config.pepper, &phone),
        client_key: client_key(&config.pepper, client),
        code_hash: code_hash(&config.pepper, &phone, &code),
        created_at: now,
        expires_at: now.saturating_add(secs(config.code_ttl)),
    };
    let limits = CodeLimits {
        per_phone: config.codes_per_phone_per_hour,
        per_client: config.codes_per_client_per_hour,
        window_secs: 3600,
    };
    match state.store.issue_code(&new, &limits).await? {
        CodeIssue::Issued => {}
        CodeIssue::PhoneLimited { retry_after_secs } => {
            return Err(ApiError::RateLimited {
                retry_after_secs: retry_after_secs.unsigned_abs(),
                message: "too many codes requested for this number; try again later".into(),
            })
        }
        CodeIssue::ClientLimited { retry_after_secs } => {
            return Err(ApiError::RateLimited {
                retry_after_secs: retry_after_secs.unsigned_abs(),
                message: "too many codes requested from this address; try again later".into(),
            })
        }
    }
    if let Err(e) = state.notifier.send_code(&phone, &code).await {
        tracing::error!(error = %e, "could not send a one-time code");
        return Err(ApiError::Unavailable {
            code: "notifier_unavailable",
            message: "the code could not be sent; try again later".into(),
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeSent {
            status: "sent".into(),
            expires_in: config.code_ttl.as_secs(),
        }),
    ))
}

/// Body of `POST /v1/auth/register`.
#[derive(Debug, Deserialize)]
pub struct RegisterRequest {
    /// The number the code was sent to.
    pub phone: String,
    /// The six-digit code.
    pub code: String,
    /// Shown in the account's device list.
    pub device_name: String,
}

/// Answer of `POST /v1/auth/register`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The account (the same for every device of one number).
    pub account_id: AccountId,
    /// This device.
    pub device_id: DeviceId,
    /// Bearer token: 32 random bytes, unpadded base64url (43 characters).
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/auth/register`: trades a one-time code for a device token.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Json<Registered>, ApiError> {
    let phone = normalize_phone(&req.phone)?;
    let code = req.code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "invalid_code_format",
            "the code must be the 6 digits that were sent",
        ));
    }
    let device_name = req.device_name.trim();
    if device_name.is_empty()
        || device_name.chars().count() > MAX_DEVICE_NAME
        || device_name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_device_name",
            format!("device_name must be 1 to {MAX_DEVICE_NAME} printable characters"),
        ));
    }
    let config = &state.config;
    let now = state.now_secs();
    let pkey = phone_key(&config.pepper, &phone);
    let check = state
        .store
        .check_code(
            &pkey,
            &code_hash(&config.pepper, &phone, code),
            config.code_max_attempts,
            now,
        )
        .await?;
    match check {
        CodeCheck::Accepted => {}
        CodeCheck::Rejected { attempts_left } => {
            return Err(ApiError::unauthorized(
                "wrong_code",
                format!("the code is wrong; {attempts_left} attempt(s) left"),
            ))
        }
        CodeCheck::Dead => {
            return Err(ApiError::unauthorized(
                "code_expired",
                "no valid code for this number: it expired, was already used or had too many \
                 wrong attempts; request a new code",
            ))
        }
    }
    let token = random_secret();
    let expires_at = now.saturating_add(secs(config.token_ttl));
    let device = state
        .store
        .register_device(&NewDevice {
            phone_key: pkey,
            name: device_name,
            token_hash: sha256(token.as_bytes()),
            token_expires_at: expires_at,
            now,
        })
        .await?;
    tracing::info!(
        account_id = device.account_id,
        device_id = device.device_id,
        "device registered"
    );
    Ok(Json(Registered {
        account_id: device.account_id,
        device_id: device.device_id,
        token,
        expires_at,
    }))
}

/// Answer of `POST /v1/auth/ticket`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ticket {
    /// Single-use; pass it where a header cannot go (the WebSocket URL).
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// `POST /v1/auth/ticket`: a short-lived single-use ticket for the bearer's device.
pub async fn create_ticket(
    State(state): State<AppState>,
    device: Device,
) -> Result<Json<Ticket>, ApiError> {
    let ticket = random_secret();
    let now = state.now_secs();
    let ttl = secs(state.config.ticket_ttl);
    state
        .store
        .create_ticket(
            &sha256(ticket.as_bytes()),
            device.into(),
            now.saturating_add(ttl),
            now,
        )
        .await?;
    Ok(Json(Ticket {
        ticket,
        expires_in: state.config.ticket_ttl.as_secs(),
    }))
}

// ---- helpers --------------------------------------------------------------------------------

/// Normalizes a phone number to `+` and 8–15 digits. Spaces, dashes, dots and parentheses
/// are dropped; anything else is refused.
pub fn normalize_phone(input: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_phone",
            "phone must be in international format: + followed by 8 to 15 digits, \
             e.g. +821012345678",
        )
    };
    if input.len() > 32 {
        return Err(invalid());
    }
    let rest = input.trim().strip_prefix('+').ok_or_else(invalid)?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(invalid()),
        }
    }
    // E.164 country codes never start with 0.
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(invalid());
    }
    Ok(format!("+{digits}"))
}

pub(crate) fn peppered(domain: &str, pepper: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update((pepper.len() as u64).to_be_bytes());
    h.update(pepper);
    for part in parts {
        h.update([0]);
        h.update(part);
    }
    h.finalize().into()
}

/// The account key of a normalized number.
pub fn phone_key(pepper: &[u8], phone: &str) -> [u8; 32] {
    peppered("sotong/phone", pepper, &[phone.as_bytes()])
}

fn code_hash(pepper: &[u8], phone: &str, code: &str) -> [u8; 32] {
    peppered("sotong/code", pepper, &[phone.as_bytes(), code.as_bytes()])
}

/// Rate-limit key of a client address. IPv6 clients are grouped by /64, since one
/// subscriber usually gets a whole /64.
pub(crate) fn client_key(pepper: &[u8], ip: IpAddr) -> [u8; 32] {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    };
    peppered("sotong/client", pepper, &[ip.to_string().as_bytes()])
}

pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn looks_like_secret(s: &str) -> bool {
    s.len() == SECRET_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_phone_numbers() {
        assert_eq!(normalize_phone("+821012345678").unwrap(), "+821012345678");
        assert_eq!(
            normalize_phone(" +82 10-1234-5678 ").unwrap(),
            "+821012345678"
        );
        assert_eq!(
            normalize_phone("+1 (415) 555.0100").unwrap(),
            "+14155550100"
        );
        for bad in [
            "821012345678",
            "+8210",
            "+1234567890123456",
            "+0101234567",
            "+82abc1234567",
            "",
            "+",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secrets_are_43_base64url_chars() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        assert!(looks_like_secret(&s));
        assert_ne!(s, random_secret());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(b"p", a), client_key(b"p", b));
        assert_ne!(client_key(b"p", a), client_key(b"p", c));
    }
}
