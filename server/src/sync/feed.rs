//! Live changes across server instances on one PostgreSQL: after an instance stores a chunk it
//! sends `NOTIFY sotong_chunks, '<instance>:<document id>'`; every instance `LISTEN`s on a
//! dedicated connection (reconnecting if it drops) and catches the document up from the store,
//! which fans the change out to its own peers. The SQLite store is single-instance: no feed.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use sotong_core::DocumentId;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{postgres, StoreError};

use super::Hub;

/// The notification channel.
const CHANNEL: &str = "sotong_chunks";
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Shared = Arc<Mutex<Option<Arc<Client>>>>;

/// Tells the other instances that a document has a new chunk.
pub struct Publisher {
    instance: String,
    client: Shared,
}

impl Publisher {
    /// Publishes, in the background, that a chunk of `id` was committed. Best effort: an
    /// instance that misses it catches up on the document's next message, and every
    /// instance catches up all its documents when its feed reconnects.
    pub fn publish(&self, id: &DocumentId) {
        let Some(client) = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let payload = format!("{}:{id}", self.instance);
        tokio::spawn(async move {
            if let Err(e) = client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
            {
                tracing::warn!(error = %e, "cannot notify other instances");
            }
        });
    }
}

/// Starts the feed of `hub` on the PostgreSQL database at `url` (TLS as the store uses it:
/// `sslmode=require` verifies against the Mozilla roots or `ca_file`); it stops when the hub
/// shuts down or is dropped.
pub fn start(hub: &Arc<Hub>, url: &str, ca_file: Option<&Path>) -> Result<(), StoreError> {
    let pg = Pg {
        config: postgres::parse_url(url)?,
        tls: postgres::tls_connector(ca_file)?,
    };
    let client: Shared = Arc::default();
    let instance = hub.peer_id().to_owned();
    hub.set_publisher(Publisher {
        instance: instance.clone(),
        client: client.clone(),
    });
    let mut closing = hub.closing();
    let listener = listen(Arc::downgrade(hub), pg, instance, client);
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
async fn listen(hub: Weak<Hub>, pg: Pg, instance: String, client: Shared) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&hub, &pg, &instance, &client).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "instance feed failed; reconnecting"),
        }
        *client.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One LISTEN connection, until it drops.
async fn session(
    hub: &Weak<Hub>,
    pg: &Pg,
    instance: &str,
    shared: &Shared,
) -> Result<(), tokio_postgres::Error> {
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
    *shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(client));
    tracing::info!("listening for other instances' changes");
    // Whatever changed while this instance was not listening.
    if let Some(hub) = hub.upgrade() {
        hub.catch_up_all().await;
    }
    while let Some(payload) = rx.recv().await {
        let Some((from, id)) = payload.split_once(':') else {
            continue;
        };
        if from == instance {
            continue;
        }
        let (Ok(id), Some(hub)) = (id.parse::<DocumentId>(), hub.upgrade()) else {
            continue;
        };
        tokio::spawn(async move { hub.remote_change(id).await });
    }
    driver.abort();
    Ok(())
}
