//! Records and enums crossing the FFI, and their conversions from and to the core's types.
//! Document ids cross as base58 strings (the id in `automerge:<id>`).

use sotong_core::client as core;
use sotong_core::schema::proposal as schema;

/// The registered account and device of this install.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccountInfo {
    /// The citizen's account id on the server.
    pub account_id: i64,
    /// This device's id within the account.
    pub device_id: i64,
    /// The server this install is registered with.
    pub server_url: String,
}

impl From<core::AccountInfo> for AccountInfo {
    fn from(a: core::AccountInfo) -> Self {
        Self {
            account_id: a.account_id,
            device_id: a.device_id,
            server_url: a.server_url,
        }
    }
}

/// A proposal draft's content.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Proposal {
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
    /// The policy category, e.g. "transport".
    pub category: String,
}

impl From<schema::Proposal> for Proposal {
    fn from(p: schema::Proposal) -> Self {
        Self {
            title: p.title,
            body: p.body,
            category: p.category,
        }
    }
}

/// One line of the list of proposal drafts on this phone.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProposalSummary {
    /// The document id (base58, as in `automerge:<id>`).
    pub id: String,
    /// The title.
    pub title: String,
    /// The policy category.
    pub category: String,
    /// When the draft last changed on this phone, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

impl From<core::ProposalSummary> for ProposalSummary {
    fn from(s: core::ProposalSummary) -> Self {
        Self {
            id: s.id.to_string(),
            title: s.title,
            category: s.category,
            updated_at: s.updated_at,
        }
    }
}

/// A draft whose changes the server refused, and why. The refused changes are not stored on
/// the server; the draft stays on the phone.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectedDraft {
    /// The document id (base58).
    pub id: String,
    /// The server's stable refusal code (e.g. `too_long`), to choose what to show.
    pub code: String,
    /// The server's reason, for logs and developers.
    pub reason: String,
}

impl From<core::Rejected> for RejectedDraft {
    fn from(r: core::Rejected) -> Self {
        Self {
            id: r.id.to_string(),
            code: r.code,
            reason: r.reason,
        }
    }
}

/// What one sync round did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Documents with changes sent to the server.
    pub documents_sent: u32,
    /// Documents with changes received from the server.
    pub documents_received: u32,
    /// Drafts whose changes the server refused.
    pub rejected: Vec<RejectedDraft>,
}

impl From<core::SyncReport> for SyncReport {
    fn from(r: core::SyncReport) -> Self {
        Self {
            documents_sent: r.documents_sent,
            documents_received: r.documents_received,
            rejected: r.rejected.into_iter().map(Into::into).collect(),
        }
    }
}

/// One of a proposal's two text fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TextField {
    /// The title.
    Title,
    /// The body.
    Body,
}

impl From<TextField> for schema::TextField {
    fn from(f: TextField) -> Self {
        match f {
            TextField::Title => schema::TextField::Title,
            TextField::Body => schema::TextField::Body,
        }
    }
}

/// An edit to a proposal draft. Positions and counts are in Unicode code points (not UTF-16
/// units): in Kotlin use `text.codePointCount(0, index)`, in Swift `unicodeScalars`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ProposalEdit {
    /// Delete `delete` code points at `pos` in a text field and insert `insert` there.
    /// Concurrent splices from other devices merge character by character.
    Splice {
        /// Which text.
        field: TextField,
        /// Where, in code points from the start.
        pos: u32,
        /// How many code points to delete.
        delete: u32,
        /// What to insert.
        insert: String,
    },
    /// Replace a whole text field; stored as a minimal character diff, for editors that cannot
    /// report individual edits.
    Replace {
        /// Which text.
        field: TextField,
        /// The new text.
        text: String,
    },
    /// Set the policy category.
    SetCategory {
        /// The new category.
        category: String,
    },
}

impl From<ProposalEdit> for schema::ProposalEdit {
    fn from(e: ProposalEdit) -> Self {
        match e {
            // u32 always fits in usize on the platforms Sotong targets (32 and 64 bit).
            ProposalEdit::Splice {
                field,
                pos,
                delete,
                insert,
            } => schema::ProposalEdit::Splice {
                field: field.into(),
                pos: pos as usize,
                delete: delete as usize,
                insert,
            },
            ProposalEdit::Replace { field, text } => schema::ProposalEdit::Replace {
                field: field.into(),
                text,
            },
            ProposalEdit::SetCategory { category } => schema::ProposalEdit::SetCategory(category),
        }
    }
}

/// Where a live sync session stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum LiveSyncState {
    /// Opening a connection.
    Connecting,
    /// Connected: edits flow both ways as they are made.
    Online,
    /// Offline after a failure; the next attempt starts at `untilMs`.
    BackingOff {
        /// When the next attempt starts, in milliseconds since the Unix epoch.
        until_ms: i64,
        /// Why the last attempt ended.
        error: String,
    },
    /// Ended for good: `error` is null when the app stopped it.
    Stopped {
        /// Why, unless the app stopped it (a refused token, a sign-out…).
        error: Option<String>,
    },
}

impl From<core::LiveState> for LiveSyncState {
    fn from(s: core::LiveState) -> Self {
        match s {
            core::LiveState::Connecting => Self::Connecting,
            core::LiveState::Online => Self::Online,
            core::LiveState::BackingOff { until_ms, error } => Self::BackingOff { until_ms, error },
            core::LiveState::Stopped { error } => Self::Stopped { error },
        }
    }
}
