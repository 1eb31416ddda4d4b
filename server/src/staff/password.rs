//! Staff passwords: argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), hashed and
//! verified on the blocking pool. New hashes use [`PARAMS`] (ADR 0004); verification reads the
//! parameters from each stored string, so raising them later needs no migration, and a login
//! with an older hash re-hashes it ([`needs_rehash`]).

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rand::Rng;

/// Memory cost, KiB: 19 MiB, OWASP's recommended minimum for argon2id.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// Shortest password accepted, in characters.
pub const MIN_LEN: usize = 12;
/// Longest password accepted, in characters (hashing cost is per byte of input too).
pub const MAX_LEN: usize = 256;

/// Why hashing failed (parameters or encoding; never because of the password's content).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// argon2 refused the parameters or the stored string.
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task died.
    #[error("password task failed: {0}")]
    Task(String),
}

/// A password that may not be used, and why, in words for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Too short.
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    /// Too long.
    #[error("the password must be at most {MAX_LEN} characters long")]
    TooLong,
    /// Few distinct characters (`aaaaaaaaaaaa`, `121212121212`).
    #[error(
        "the password repeats too few different characters; use a passphrase of several words"
    )]
    Repetitive,
    /// A well-known password or keyboard run.
    #[error("the password is on the list of commonly used passwords; choose another")]
    Common,
    /// Contains the username.
    #[error("the password must not contain the username")]
    ContainsUsername,
}

/// Passwords (lower case, at least 12 characters) that attackers try first.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "password1234",
    "password12345",
    "password123!",
    "passwordpassword",
    "iloveyou1234",
    "administrator",
    "administrator1",
    "adminadmin123",
    "letmein12345",
    "welcome12345",
    "changeme1234",
    "sotong123456",
    "sotongsotong",
    "asdfghjkl123",
    "zxcvbnm12345",
    "abcdefghijkl",
    "abcd12345678",
];

/// Checks a new password: 12 to 256 characters, not one of a few characters repeated, not
/// a well-known password, not containing the username.
pub fn check_new(password: &str, username: &str) -> Result<(), WeakPassword> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(WeakPassword::TooShort);
    }
    if len > MAX_LEN {
        return Err(WeakPassword::TooLong);
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return Err(WeakPassword::Repetitive);
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) || is_run(&lower) {
        return Err(WeakPassword::Common);
    }
    let name = super::normalize_username(username);
    if name.len() >= 3 && lower.contains(&name) {
        return Err(WeakPassword::ContainsUsername);
    }
    Ok(())
}

/// `abcdefghijklm`, `0123456789012`…: every character one after the previous.
fn is_run(s: &str) -> bool {
    let chars: Vec<u32> = s.chars().map(u32::from).collect();
    chars
        .windows(2)
        .all(|w| w[1] == w[0] + 1 || (w[0] == u32::from('9') && w[1] == u32::from('0')))
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = argon2::Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| PasswordError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Argon2(e.to_string()))?
        .to_string())
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The parameters come from the stored string, not from PARAMS.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Hashes and verifications running at once, at most: each holds [`MEMORY_KIB`] of memory,
/// so a burst of logins costs at most 8 × 19 MiB; the others wait their turn.
pub const MAX_CONCURRENT: usize = 8;

static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);

/// Runs `f` on the blocking pool once a hashing slot is free.
async fn on_blocking_slot<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, PasswordError> + Send + 'static,
) -> Result<R, PasswordError> {
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
}

/// Hashes `password` with [`MEMORY_KIB`], [`ITERATIONS`], [`PARALLELISM`] and a random salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    on_blocking_slot(move || hash_blocking(&password)).await
}

/// Whether `password` matches the PHC string `phc`. With `None` (no such member) it
/// verifies against a dummy hash of the same cost and answers false, so that the time
/// taken does not tell a known name from an unknown one.
pub async fn verify(password: String, phc: Option<String>) -> Result<bool, PasswordError> {
    on_blocking_slot(move || match phc {
        Some(phc) => Ok(verify_blocking(&password, &phc)),
        None => {
            let _ = verify_blocking(&password, dummy_hash()?);
            Ok(false)
        }
    })
    .await
}

/// Whether a stored hash was made with other (older) parameters than today's.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != Algorithm::Argon2id.ident()
        || params.m_cost() < MEMORY_KIB
        || params.t_cost() < ITERATIONS
        || params.p_cost() < PARALLELISM
}

/// A hash of a random password with today's parameters, made once per process.
fn dummy_hash() -> Result<&'static str, PasswordError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_blocking(&generate())?;
    Ok(DUMMY.get_or_init(|| h))
}

/// Makes the dummy hash now (at server start), so that the first login of an unknown name
/// costs the same as any other.
pub async fn warm_up() {
    let made = tokio::task::spawn_blocking(|| dummy_hash().map(|_| ())).await;
    if !matches!(made, Ok(Ok(()))) {
        tracing::error!("could not make the dummy password hash");
    }
}

/// A random password for `staff add --generate-password`: 4 groups of 5 letters and digits
/// without look-alikes (about 112 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..4)
        .map(|_| {
            (0..5)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_record_their_parameters() {
        let phc = hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify("x".into(), None).await.unwrap());
        assert!(!verify("x".into(), Some("garbage".into())).await.unwrap());
        assert!(!needs_rehash(&phc));
    }

    #[tokio::test]
    async fn older_parameters_still_verify_and_ask_for_a_rehash() {
        // A hash made with weaker parameters (as before a raise): the stored string says how.
        let weak = argon2::Params::new(8 * 1024, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak)
            .hash_password(b"an older password", &salt)
            .unwrap()
            .to_string();
        assert!(verify("an older password".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(needs_rehash(&phc));
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert_eq!(check_new("short", "kim"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_new(&"a".repeat(300), "kim"),
            Err(WeakPassword::TooLong)
        );
        assert_eq!(
            check_new("aaaaaaaaaaaa", "kim"),
            Err(WeakPassword::Repetitive)
        );
        assert_eq!(
            check_new("121212121212", "kim"),
            Err(WeakPassword::Repetitive)
        );
        assert_eq!(check_new("Password1234", "kim"), Err(WeakPassword::Common));
        assert_eq!(
            check_new("abcdefghijklmn", "kim"),
            Err(WeakPassword::Common)
        );
        assert_eq!(
            check_new("officer.kim-2026!", "Officer.Kim"),
            Err(WeakPassword::ContainsUsername)
        );
        assert_eq!(check_new("river stone lamp 42", "kim"), Ok(()));
        assert!(WeakPassword::TooShort.to_string().contains("12"));
        let generated = generate();
        assert_eq!(generated.len(), 23);
        assert_eq!(check_new(&generated, "kim"), Ok(()));
    }
}
