//! # sotong-ffi
//!
//! The phone core ([`sotong_core::client`]) as a uniffi API for Kotlin and Swift. This is the
//! only crate that knows about uniffi: it converts between FFI-friendly types (records, enums,
//! document ids as base58 strings) and the core's types, maps every core error to one typed
//! [`SotongError`], and makes sure no Rust panic ever unwinds into the app.
//!
//! Generate the bindings with the workspace's `uniffi-bindgen` binary:
//! `uniffi-bindgen generate --library target/debug/libsotong_ffi.so -l kotlin -o OUT`.

#![warn(missing_docs)]

mod client;
mod error;
mod guard;
mod live;
mod sos;
mod sos_types;
mod types;

pub use client::SotongClient;
pub use error::SotongError;
pub use live::{LiveSyncHandle, LiveSyncListener};
pub use sos::{SmsSender, SosListener, SosTransportHandle};
pub use sos_types::{
    SosEvent, SosFix, SosFixMethod, SosLinkState, SosMessage, SosPhase, SosReply, SosStatus,
    SosTrigger,
};
pub use types::{
    AccountInfo, LiveSyncState, Proposal, ProposalEdit, ProposalSummary, RejectedDraft, SyncReport,
    TextField,
};

uniffi::setup_scaffolding!();
