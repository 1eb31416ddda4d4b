//! `GET /v1/documents`: the documents of the caller's account.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::Device;
use crate::error::ApiError;
use crate::state::AppState;

/// One document in a listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct DocumentEntry {
    /// base58check id.
    pub id: String,
    /// `automerge:<id>`.
    pub url: String,
    /// Schema kind, e.g. "proposal".
    pub kind: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Answer of `GET /v1/documents`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DocumentList {
    /// Oldest first.
    pub documents: Vec<DocumentEntry>,
}

/// `GET /v1/documents` (bearer).
pub async fn list(
    State(state): State<AppState>,
    device: Device,
) -> Result<Json<DocumentList>, ApiError> {
    let documents = state
        .store
        .documents_of(device.account_id)
        .await?
        .into_iter()
        .map(|meta| DocumentEntry {
            id: meta.id.to_string(),
            url: meta.id.url(),
            kind: meta.kind,
            created_at: meta.created_at,
        })
        .collect();
    Ok(Json(DocumentList { documents }))
}
