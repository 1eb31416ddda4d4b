//! # sotong-server
//!
//! Sotong's sync and API server: citizen accounts (one-time codes, device tokens, WebSocket
//! tickets), document listing and sync, on SQLite or PostgreSQL; and the officials' side
//! (`staff`: staff accounts, sessions, the access check and the audit log; `console`: their
//! web pages); SOS silent calls (`sos`: beacons, dispatch feed and actions, SMS gateway).
//!
//! `serve` starts a server on a listener and returns a handle to stop it; `main.rs` is a thin
//! command line around it, and tests run real servers in-process the same way.

pub mod app;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod console;
pub mod documents;
pub mod error;
pub mod log_filter;
pub mod notifier;
pub mod sos;
pub mod staff;
pub mod state;
pub mod store;
pub mod sync;

pub use app::{serve, serve_with, ServeError, ServerHandle};
pub use config::Config;
pub use error::ApiError;
pub use state::AppState;
pub use store::{open_store, Store};
