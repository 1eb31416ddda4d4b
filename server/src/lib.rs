//! # sotong-server
//!
//! Sotong's sync and API server: citizen accounts (one-time codes, device tokens, WebSocket
//! tickets), document listing and sync, on SQLite or PostgreSQL.
//!
//! `serve` starts a server on a listener and returns a handle to stop it; `main.rs` is a thin
//! command line around it, and tests run real servers in-process the same way.

pub mod app;
pub mod auth;
pub mod config;
pub mod documents;
pub mod error;
pub mod notifier;
pub mod store;
pub mod sync;

pub use app::{serve, serve_with, AppState, ServeError, ServerHandle};
pub use config::Config;
pub use error::ApiError;
pub use store::{open_store, Store};

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
