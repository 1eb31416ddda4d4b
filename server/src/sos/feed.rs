//! `GET /v1/dispatch/feed`: the dispatcher's Server-Sent Events feed. Events of the regions
//! in the dispatcher's grants only (scope `all`: every region, unrouted included), each with
//! `id:` = the store-wide event id and `event:` = its kind (`incident`, `fix`, `state`,
//! `message`, `note`); `Last-Event-ID` (or `?after=`) resumes after that id, replaying from
//! the store, so a reconnect misses nothing. A comment every 15 s
//! (`SosConfig::feed_heartbeat`) keeps proxies from closing it. The store is the source of truth: the feed wakes on [`super::SosHub`] (local writes
//! and, on PostgreSQL, other instances' through [`super::listener`]) and reads by id.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::regions;
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::staff::audit::{self, actions, AuditEntry, Outcome};
use crate::staff::session::StaffSession;
use crate::staff::Role;
use crate::state::AppState;
use crate::store::SosEvent;

/// Events read from the store at a time.
const PAGE: u32 = 500;

/// Query of the feed.
#[derive(Debug, Default, Deserialize)]
pub struct FeedQuery {
    /// Resume after this event id (`Last-Event-ID` wins when both are given).
    #[serde(default)]
    pub after: Option<i64>,
}

/// `GET /v1/dispatch/feed` (dispatcher).
pub async fn feed(
    State(state): State<AppState>,
    Extension(session): Extension<StaffSession>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last.or(q.after).unwrap_or(0).max(0);
    let scopes = session.member.scopes(Role::Dispatcher);
    let visible = regions::visible(&scopes);
    audit::record(
        &state,
        AuditEntry::new(
            crate::staff::login::staff_actor(&session.member),
            actions::SOS_FEED_OPEN,
            Outcome::Success,
        )
        .from_ip(ip)
        .detail(json!({ "after": after, "regions": visible })),
    )
    .await;
    let heartbeat = state.config.sos.feed_heartbeat;
    let feed = Feed {
        changed: state.sos.subscribe(),
        closing: state.sos.closing(),
        state,
        cursor: after,
        visible,
        buffer: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

struct Feed {
    state: AppState,
    changed: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    cursor: i64,
    visible: Option<Vec<String>>,
    buffer: VecDeque<SosEvent>,
}

impl Feed {
    /// The next event, waiting for one; `None` when the server stops.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.buffer.pop_front() {
                self.cursor = ev.id;
                return Some(sse_event(&ev));
            }
            // Marks the current notification seen before reading, so a write after the
            // read wakes the wait below.
            self.changed.borrow_and_update();
            match self
                .state
                .store
                .sos_events_after(self.cursor, self.visible.as_deref(), PAGE)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.buffer.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sos feed cannot read the store; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.closing.wait_for(|c| *c) => return None,
                    }
                    continue;
                }
            }
            tokio::select! {
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.closing.wait_for(|c| *c) => return None,
            }
        }
    }
}

/// The SSE form of an event: `id`, `event` = kind, `data` = JSON.
pub fn sse_event(ev: &SosEvent) -> Event {
    let data = json!({
        "id": ev.id,
        "incident": ev.incident,
        "region": ev.region,
        "at": ev.at,
        "data": ev.body,
    });
    Event::default()
        .id(ev.id.to_string())
        .event(ev.kind.clone())
        .data(data.to_string())
}
