//! How one-time codes reach people: an SMS/e-mail adapter behind the [`Notifier`] trait.
//! Development uses [`LogNotifier`]; production adapters (HTTP SMS gateway, SMTP) plug in
//! the same way.

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::{Store, StoreError};

/// Why a code could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The development notifier could not record the code.
    #[error("could not record the code: {0}")]
    Store(#[from] StoreError),
    /// A gateway refused or did not answer.
    #[error("gateway: {0}")]
    Gateway(String),
}

/// Sends one-time codes.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends `code` to the normalized number `phone`.
    async fn send_code(&self, phone: &str, code: &str) -> Result<(), NotifyError>;
}

/// Development notifier: writes the code to the log (number masked) and to the store's
/// `dev_codes` table, where tests read it with `Store::latest_dev_code`. Never use it in
/// production: it puts codes in the log.
pub struct LogNotifier {
    store: Arc<dyn Store>,
}

impl LogNotifier {
    /// A notifier recording into `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Notifier for LogNotifier {
    async fn send_code(&self, phone: &str, code: &str) -> Result<(), NotifyError> {
        tracing::info!("one-time code for {}: {}", mask_phone(phone), code);
        self.store
            .record_dev_code(phone, code, crate::unix_now())
            .await?;
        Ok(())
    }
}

/// `***5678`: only the last four digits of a number, for logs.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_last_four_digits() {
        assert_eq!(mask_phone("+821012345678"), "***5678");
        assert_eq!(mask_phone("+12"), "***12");
    }
}
