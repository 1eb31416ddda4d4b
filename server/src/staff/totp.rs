//! The optional second factor: TOTP (RFC 6238) as authenticator apps speak it, SHA-1, 6
//! digits, 30-second steps, one step of clock skew either way. A code is accepted once: the
//! store records the last step used per member and refuses that step and earlier ones.

use totp_rs::{Algorithm, TOTP};

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Steps of skew accepted either way.
pub const SKEW: u8 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation for SHA-1).
pub const SECRET_LEN: usize = 20;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Sotong";

/// A secret or name totp-rs refuses.
#[derive(Debug, thiserror::Error)]
#[error("totp: {0}")]
pub struct TotpError(String);

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], username: &str) -> Result<TOTP, TotpError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW,
        STEP_SECS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        username.to_owned(),
    )
    .map_err(|e| TotpError(e.to_string()))
}

/// The `otpauth://totp/…` URI an authenticator app scans (it holds the secret: shown once).
pub fn otpauth_uri(secret: &[u8], username: &str) -> Result<String, TotpError> {
    Ok(totp(secret, username)?.get_url())
}

/// The code of the step containing `unix_secs`.
pub fn code_at(secret: &[u8], unix_secs: i64) -> Result<String, TotpError> {
    Ok(totp(secret, "x")?.generate(u64::try_from(unix_secs).unwrap_or(0)))
}

/// The time step of `unix_secs`.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS as i64)
}

/// The step (within the skew around `now`) whose code is `code`, if any. Every candidate
/// is compared in full, so the time taken does not depend on which matched.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Result<Option<i64>, TotpError> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let t = totp(secret, "x")?;
    let now_step = step_of(now);
    let mut found = None;
    for step in now_step - i64::from(SKEW)..=now_step + i64::from(SKEW) {
        let at = u64::try_from(step.saturating_mul(STEP_SECS as i64)).unwrap_or(0);
        let expected = t.generate(at);
        if crate::store::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            found = Some(step);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238, appendix B: the ASCII secret "12345678901234567890", T = 59 s → 94287082
        // (8 digits); its last 6 digits are the 6-digit code.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59).unwrap(), "287082");
        assert_eq!(code_at(secret, 1_111_111_109).unwrap(), "081804");
    }

    #[test]
    fn codes_match_within_one_step_of_skew() {
        let secret = new_secret();
        let now = 1_800_000_015;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(
            matching_step(&secret, &code, now).unwrap(),
            Some(step_of(now))
        );
        assert_eq!(
            matching_step(&secret, &code, now + 30).unwrap(),
            Some(step_of(now))
        );
        assert_eq!(matching_step(&secret, &code, now + 60).unwrap(), None);
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
        let uri = otpauth_uri(&secret, "kim").unwrap();
        assert!(uri.starts_with("otpauth://totp/Sotong:kim?"), "{uri}");
        assert!(uri.contains("issuer=Sotong"));
    }
}
