//! `POST /v1/sos/incidents/{id}/feedback` (device bearer token): the person's feedback once
//! dispatch has closed the incident (issue 7 item 7). Only the device that sent the
//! incident's first beacon may leave it; any other device, of the same account or not, gets
//! the same 404 as an unknown id. While the incident is open the answer is 409
//! `incident_open` (the phone keeps the feedback queued and tries again): a phone that looks
//! cancelled under the duress cover cannot end anything by leaving feedback. A second
//! feedback replaces the first. Audited with the rating only, never the comment.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use sotong_core::sos::{Feedback, IncidentId};

use crate::auth::Device;
use crate::error::{ApiError, ApiJson};
use crate::staff::audit::{self, actions, Actor, AuditEntry, Outcome};
use crate::state::AppState;
use crate::store::FeedbackPut;

/// Answer of the route.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FeedbackAnswer {
    /// Whether it replaced earlier feedback.
    pub replaced: bool,
}

fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such incident")
}

/// `POST /v1/sos/incidents/{id}/feedback {rating, felt_safe?, comment?}`.
pub async fn post_feedback(
    State(state): State<AppState>,
    device: Device,
    Path(id): Path<String>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> Result<Json<FeedbackAnswer>, ApiError> {
    let id: IncidentId = id.parse().map_err(|_| not_found())?;
    feedback
        .validate()
        .map_err(|e| ApiError::bad_request("invalid_feedback", e.to_string()))?;
    let put = state
        .store
        .sos_put_feedback(&id, device.into(), &feedback, state.now_secs())
        .await?;
    let replaced = match put {
        FeedbackPut::Stored { replaced } => replaced,
        FeedbackPut::NotFound => return Err(not_found()),
        FeedbackPut::StillOpen => {
            return Err(ApiError::conflict(
                "incident_open",
                "feedback can be left once dispatch has closed the incident",
            ))
        }
    };
    audit::record(
        &state,
        AuditEntry::new(Actor::System, actions::SOS_FEEDBACK, Outcome::Success)
            .target("sos_incident", id.to_string())
            .detail(json!({
                "device_id": device.device_id,
                "rating": feedback.rating,
                "felt_safe": feedback.felt_safe,
                "comment_chars": feedback.comment.as_ref().map_or(0, |c| c.chars().count()),
                "replaced": replaced,
            })),
    )
    .await;
    Ok(Json(FeedbackAnswer { replaced }))
}
