//! The SOS PIN and duress PIN, stored only as argon2id hashes.
//!
//! Parameters: argon2id, 19 MiB of memory, 2 passes, 1 lane (OWASP's baseline for
//! argon2id). On a mid-range phone one hash takes roughly 50 to 150 ms and 19 MiB, which is
//! affordable for the rare PIN entry and too slow for trying all 4-digit PINs on a stolen
//! database copy in a blink (each guess costs the same memory and passes).
//!
//! A check always runs two verifications (the PIN, then the duress PIN or, when none is set,
//! the PIN again), so neither the answer nor the time taken tells whether a duress PIN
//! exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use super::error::SosError;
use crate::client::store::SosPins;

/// Memory cost, KiB.
const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
const PASSES: u32 = 2;
/// Lanes.
const LANES: u32 = 1;
/// Shortest and longest PIN, in characters.
const PIN_CHARS: std::ops::RangeInclusive<usize> = 4..=64;

/// Wrong PINs in a row allowed before PIN entry locks.
pub(crate) const FREE_ATTEMPTS: u32 = 5;
/// The first lock; each further wrong PIN doubles it, up to [`MAX_LOCK_MS`].
const FIRST_LOCK_MS: i64 = 30_000;
/// The longest lock.
const MAX_LOCK_MS: i64 = 16 * 60_000;

/// How long PIN entry locks after `failures` wrong PINs in a row (`None`: not at all). With
/// 4-digit PINs, this turns trying them all from half an hour into weeks.
pub(crate) fn lock_after(failures: u32) -> Option<i64> {
    let over = failures.checked_sub(FREE_ATTEMPTS)?;
    Some(
        FIRST_LOCK_MS
            .saturating_mul(1 << over.min(10))
            .min(MAX_LOCK_MS),
    )
}

fn hasher() -> Result<Argon2<'static>, SosError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| SosError::PinHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Refuses PINs too short, too long or blank.
pub(crate) fn check_format(pin: &str) -> Result<(), SosError> {
    if !PIN_CHARS.contains(&pin.chars().count()) || pin.trim().is_empty() {
        return Err(SosError::PinFormat);
    }
    Ok(())
}

/// An argon2id PHC string for `pin`, with a fresh random salt.
pub(crate) fn hash(pin: &str) -> Result<String, SosError> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| SosError::PinHash(e.to_string()))?;
    Ok(hasher()?
        .hash_password(pin.as_bytes(), &salt)
        .map_err(|e| SosError::PinHash(e.to_string()))?
        .to_string())
}

fn verify(phc: &str, candidate: &str) -> Result<bool, SosError> {
    let parsed = PasswordHash::new(phc).map_err(|e| SosError::PinHash(e.to_string()))?;
    match hasher()?.verify_password(candidate.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(SosError::PinHash(e.to_string())),
    }
}

/// Which PIN a candidate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinMatch {
    /// The real PIN.
    Real,
    /// The duress PIN.
    Duress,
    /// Neither.
    Neither,
}

/// Checks `candidate` against both PINs, always doing the same work.
pub(crate) fn check(pins: &SosPins, candidate: &str) -> Result<PinMatch, SosError> {
    let real_hash = pins.pin_hash.as_deref().ok_or(SosError::PinNotSet)?;
    let real = verify(real_hash, candidate)?;
    let duress = match pins.duress_hash.as_deref() {
        Some(h) => verify(h, candidate)?,
        None => {
            // The same cost as a duress check, result unused.
            let _ = verify(real_hash, candidate)?;
            false
        }
    };
    Ok(if real {
        PinMatch::Real
    } else if duress {
        PinMatch::Duress
    } else {
        PinMatch::Neither
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_check_both_pins() {
        let pins = SosPins {
            pin_hash: Some(hash("2468").unwrap()),
            duress_hash: Some(hash("1357").unwrap()),
        };
        let real = pins.pin_hash.as_deref().unwrap();
        assert!(
            real.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{real}"
        );
        assert!(!real.contains("2468"));
        assert_ne!(hash("2468").unwrap(), real, "salted");
        assert_eq!(check(&pins, "2468").unwrap(), PinMatch::Real);
        assert_eq!(check(&pins, "1357").unwrap(), PinMatch::Duress);
        assert_eq!(check(&pins, "0000").unwrap(), PinMatch::Neither);

        let no_duress = SosPins {
            duress_hash: None,
            ..pins.clone()
        };
        assert_eq!(check(&no_duress, "1357").unwrap(), PinMatch::Neither);
        assert_eq!(check(&no_duress, "2468").unwrap(), PinMatch::Real);
        assert!(matches!(
            check(&SosPins::default(), "2468"),
            Err(SosError::PinNotSet)
        ));
        let corrupt = SosPins {
            pin_hash: Some("not a hash".into()),
            duress_hash: None,
        };
        assert!(matches!(check(&corrupt, "2468"), Err(SosError::PinHash(_))));
    }

    #[test]
    fn locks_after_five_wrong_pins_doubling_up_to_sixteen_minutes() {
        for n in 0..5 {
            assert_eq!(lock_after(n), None);
        }
        let locks: Vec<_> = (5..12).map(lock_after).collect();
        let minutes = |m: i64| Some(m * 60_000);
        assert_eq!(
            locks,
            [
                Some(30_000),
                minutes(1),
                minutes(2),
                minutes(4),
                minutes(8),
                minutes(16),
                minutes(16)
            ]
        );
        assert_eq!(lock_after(u32::MAX), minutes(16));
    }

    #[test]
    fn pin_format() {
        for ok in ["1234", "correct horse", &"9".repeat(64), "비밀번호"] {
            check_format(ok).unwrap();
        }
        for bad in ["", "123", "    ", &"9".repeat(65)] {
            assert!(
                matches!(check_format(bad), Err(SosError::PinFormat)),
                "{bad:?}"
            );
        }
    }
}
