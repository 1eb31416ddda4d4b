//! How one-time codes reach people: an SMS/e-mail adapter behind the [`Notifier`] trait.
//! Development uses [`LogNotifier`]; production adapters (HTTP SMS gateway, SMTP) plug in
//! the same way. None is built yet, so a server without `--dev` refuses to start.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use sotong_core::privacy::mask_phone;

/// Most numbers whose last code the development notifier remembers.
const DEV_CODES_KEPT: usize = 100_000;

/// Why a code could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A gateway refused or did not answer.
    #[error("gateway: {0}")]
    Gateway(String),
}

/// Sends one-time codes.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends `code` to the normalized number `phone`.
    async fn send_code(&self, phone: &str, code: &str) -> Result<(), NotifyError>;

    /// Whether this notifier exposes codes (logs them): allowed only in development mode.
    fn is_development(&self) -> bool {
        false
    }
}

/// Development notifier: writes the code to the log (number masked) and remembers the last
/// code of each number in memory, where tests read it with [`LogNotifier::latest_code`].
/// Nothing is written to the store. Only a server in development mode accepts it.
#[derive(Default)]
pub struct LogNotifier {
    codes: Mutex<DevCodes>,
}

#[derive(Default)]
struct DevCodes {
    by_phone: HashMap<String, String>,
    // Insertion order, to forget the oldest number once `DEV_CODES_KEPT` is reached.
    order: VecDeque<String>,
}

impl LogNotifier {
    /// A notifier remembering nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code sent to the normalized number `phone`.
    pub fn latest_code(&self, phone: &str) -> Option<String> {
        self.lock().by_phone.get(phone).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DevCodes> {
        self.codes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    async fn send_code(&self, phone: &str, code: &str) -> Result<(), NotifyError> {
        tracing::info!("one-time code for {}: {}", mask_phone(phone), code);
        let mut codes = self.lock();
        if codes
            .by_phone
            .insert(phone.to_owned(), code.to_owned())
            .is_none()
        {
            codes.order.push_back(phone.to_owned());
            if codes.order.len() > DEV_CODES_KEPT {
                if let Some(oldest) = codes.order.pop_front() {
                    codes.by_phone.remove(&oldest);
                }
            }
        }
        Ok(())
    }

    fn is_development(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_the_last_code_per_number() {
        let n = LogNotifier::new();
        assert_eq!(n.latest_code("+821012345678"), None);
        n.send_code("+821012345678", "111111").await.unwrap();
        n.send_code("+821012345678", "222222").await.unwrap();
        n.send_code("+14155550100", "333333").await.unwrap();
        assert_eq!(n.latest_code("+821012345678").as_deref(), Some("222222"));
        assert_eq!(n.latest_code("+14155550100").as_deref(), Some("333333"));
        assert!(n.is_development());
    }
}
