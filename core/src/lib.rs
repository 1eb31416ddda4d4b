//! # sotong-core
//!
//! Everything Sotong's phones and server share: document ids, the automerge-repo wire
//! messages, document schemas, the change check the server runs before applying anything,
//! and the SOS wire types, state machine and SMS codec ([`sos`]). With the `client` feature
//! (on by default) it is also the phone: its SQLite store, drafts as Automerge documents,
//! account registration, the sync engine and the SOS incident API. `sotong-ffi` wraps that
//! for Kotlin and Swift; the server uses this crate with `client` off.

pub mod changes;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod doc_id;
pub mod hash;
pub mod privacy;
pub mod schema;
pub mod sos;
pub mod wire;

pub use automerge;
pub use doc_id::DocumentId;
