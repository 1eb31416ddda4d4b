//! The application: shared state, the router, and starting and stopping a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::ApiError;
use crate::notifier::{LogNotifier, Notifier};
use crate::store::{open_store, Store, StoreError};
use crate::{auth, documents, sync};

/// How long `ServerHandle::shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Sends one-time codes.
    pub notifier: Arc<dyn Notifier>,
    /// Document sync.
    pub hub: Arc<sync::Hub>,
}

impl AppState {
    /// State over `store`, with a fresh sync hub.
    pub fn new(config: Config, store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            hub: Arc::new(sync::Hub::new(store.clone(), config.sync.clone())),
            store,
            config: Arc::new(config),
            notifier,
        }
    }
}

/// All routes, with request logging.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/auth/code", post(auth::request_code))
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/ticket", post(auth::create_ticket))
        .route("/v1/documents", get(documents::list))
        .layer(DefaultBodyLimit::max(state.config.max_json_body));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .merge(sync::router())
        .fallback(not_found)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

/// Logs method, path (never the query string: it may carry a ticket), status and latency.
async fn log_requests(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store did not open (or its schema is newer than this code).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A running server. Dropping it stops the server too (without waiting).
pub struct ServerHandle {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    hub: Arc<sync::Hub>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Its sync hub (loaded documents, connections; for metrics and tests).
    pub fn hub(&self) -> Arc<sync::Hub> {
        self.hub.clone()
    }

    /// Stops accepting, lets open requests finish (for at most 10 s, then cuts them) and
    /// waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; closing them");
                self.task.abort();
            }
        }
    }
}

/// Serves on `listener` with the store `config` names and the development notifier
/// ([`LogNotifier`]).
pub async fn serve(listener: TcpListener, config: Config) -> Result<ServerHandle, ServeError> {
    let store = open_store(&config).await?;
    let notifier = Arc::new(LogNotifier::new(store.clone()));
    serve_with(listener, config, store, notifier).await
}

/// Serves on `listener` with a given store and notifier.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
) -> Result<ServerHandle, ServeError> {
    let addr = listener.local_addr()?;
    let state = AppState::new(config, store.clone(), notifier);
    let hub = state.hub.clone();
    let state_hub = hub.clone();
    if let Some(url) = &state.config.database_url {
        sync::feed::start(&hub, url);
    }
    let app = router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // No Nagle: sync frames are small and latency-bound (40 ms delayed-ACK stalls).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            // A dropped handle stops the server as well.
            let _ = stopped.await;
            // WebSocket sessions last until a peer leaves: close them, or graceful shutdown
            // would wait for them.
            hub.shutdown();
        })
        .await
    });
    Ok(ServerHandle {
        addr,
        store,
        hub: state_hub,
        stop: Some(stop),
        task,
    })
}
