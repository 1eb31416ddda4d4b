//! What every handler can reach: the shared state of one server instance. Its own module, so
//! that handlers and the router depend on it and never on each other.

use std::sync::Arc;

use crate::config::Config;
use crate::notifier::Notifier;
use crate::store::Store;
use crate::{sos, sync};

/// Shared state of handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Configuration (with the clock).
    pub config: Arc<Config>,
    /// Sends one-time codes.
    pub notifier: Arc<dyn Notifier>,
    /// Document sync.
    pub hub: Arc<sync::Hub>,
    /// SOS: wakes long-polls and dispatcher feeds.
    pub sos: Arc<sos::SosHub>,
}

impl AppState {
    /// State over `store`, with a fresh sync hub.
    pub fn new(config: Config, store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            hub: Arc::new(sync::Hub::new(store.clone(), config.sync.clone())),
            sos: Arc::new(sos::SosHub::new()),
            store,
            config: Arc::new(config),
            notifier,
        }
    }

    /// Now, in Unix seconds, by the configured clock.
    pub fn now_secs(&self) -> i64 {
        self.config.now_secs()
    }
}
