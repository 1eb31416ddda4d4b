//! Live changes across server instances on one PostgreSQL: when an instance stores a chunk,
//! the same transaction sends `NOTIFY sotong_chunks` (payload: [`notice`], with the chunk
//! itself when it is small); every instance `LISTEN`s on a dedicated connection (reconnecting
//! if it drops), applies the chunk if it holds everything before it, or else catches the
//! document up from the store, and fans the change out to its own peers. The SQLite store is
//! single-instance: no feed.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::notice::{self, CHANNEL};
use crate::store::{postgres, StoreError};

use super::Hub;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the feed of `hub` on the PostgreSQL database at `url` (TLS as the store uses it:
/// `sslmode=require` verifies against the Mozilla roots or `ca_file`); it stops when the hub
/// shuts down or is dropped.
pub fn start(hub: &Arc<Hub>, url: &str, ca_file: Option<&Path>) -> Result<(), StoreError> {
    let pg = Pg {
        config: postgres::parse_url(url)?,
        tls: postgres::tls_connector(ca_file)?,
    };
    let instance = hub.peer_id().to_owned();
    hub.announce_chunks();
    let mut closing = hub.closing();
    let listener = listen(Arc::downgrade(hub), pg, instance);
    tokio::spawn(async move {
        tokio::select! {
            () = listener => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    });
    Ok(())
}

/// How to reach the database: parsed settings and the TLS connector.
struct Pg {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// Listens, reconnecting with exponential backoff while the hub exists.
async fn listen(hub: Weak<Hub>, pg: Pg, instance: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&hub, &pg, &instance).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "instance feed failed; reconnecting"),
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One LISTEN connection, until it drops.
async fn session(hub: &Weak<Hub>, pg: &Pg, instance: &str) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.config.connect(pg.tls.clone()).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The connection must be polled for queries to progress; notifications go to `rx`.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "instance feed connection failed");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    tracing::info!("listening for other instances' changes");
    // Whatever changed while this instance was not listening.
    if let Some(hub) = hub.upgrade() {
        hub.catch_up_all().await;
    }
    while let Some(payload) = rx.recv().await {
        let Some(notice) = notice::parse(&payload) else {
            continue;
        };
        if notice.from == instance {
            continue;
        }
        tracing::debug!(target: "sotong_timing", doc = %notice.id, "notification in");
        let Some(hub) = hub.upgrade() else {
            break;
        };
        tokio::spawn(async move { hub.remote_change(notice.id, Some(notice)).await });
    }
    driver.abort();
    Ok(())
}
