//! SOS across instances on one PostgreSQL: every SOS write sends `NOTIFY sotong_sos` in its
//! transaction (so it is delivered on commit, `store::sos_postgres`); each instance `LISTEN`s
//! on a connection of its own (reconnecting with backoff) and wakes its long-polls and feeds,
//! which re-read the store by event id. A separate listener from the documents' one
//! (`sync::feed`), sharing only the connection helpers of `store::postgres`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use super::SosHub;
use crate::store::sos_postgres::SOS_CHANNEL;
use crate::store::{postgres, StoreError};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts listening for `hub`'s instance until the hub closes.
pub fn start(hub: &Arc<SosHub>, url: &str, ca_file: Option<&Path>) -> Result<(), StoreError> {
    let config = postgres::parse_url(url)?;
    let tls = postgres::tls_connector(ca_file)?;
    let mut closing = hub.closing();
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let listen = async {
            let mut backoff = Duration::from_millis(100);
            loop {
                match session(&hub, &config, tls.clone()).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => tracing::warn!(error = %e, "sos listener failed; reconnecting"),
                }
                if hub.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        };
        tokio::select! {
            () = listen => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    });
    Ok(())
}

async fn session(
    hub: &std::sync::Weak<SosHub>,
    config: &tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sos listener connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {SOS_CHANNEL}"))
        .await?;
    // Whatever was written while this instance was not listening.
    if let Some(hub) = hub.upgrade() {
        hub.notify();
    }
    while rx.recv().await.is_some() {
        // Coalesce a burst into one wake-up.
        while rx.try_recv().is_ok() {}
        match hub.upgrade() {
            Some(hub) => hub.notify(),
            None => break,
        }
    }
    driver.abort();
    Ok(())
}
