//! The application: the router, and starting and stopping a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::ApiError;
use crate::notifier::{LogNotifier, Notifier};
use crate::state::AppState;
use crate::store::{open_store, Store, StoreError};
use crate::{auth, documents, sos, staff, sync};

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `ServerHandle::shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
        .route("/readyz", get(ready))
        .merge(api)
        .merge(sync::router())
        .merge(sos::router().layer(DefaultBodyLimit::max(state.config.max_json_body)))
        .merge(staff::access::staff_router().into_router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

/// `GET /readyz`: 200 once the store answers a query, 503 while it does not (a load balancer
/// takes the instance out of rotation). `/healthz` only says the process serves HTTP.
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let failure = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => return Ok("ready"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    tracing::warn!(error = %failure, "not ready: the store does not answer");
    Err(ApiError::Unavailable {
        code: "store_unavailable",
        message: "the store does not answer".into(),
    })
}

/// No route: the console's 404 page under `/console/`, the API's JSON error elsewhere.
async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    if uri.path().starts_with("/console/") {
        return crate::console::not_found(&headers);
    }
    ApiError::not_found("not_found", "no such route").into_response()
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
    /// Not in development mode, and no production notifier is given.
    #[error(
        "no production notifier is configured: sending one-time codes by SMS or e-mail is not \
         built yet, and the development notifier writes codes to the log; start with --dev to \
         run a development server"
    )]
    NoNotifier,
    /// A development notifier was given to a server not in development mode.
    #[error("this notifier writes one-time codes to the log and is allowed only with --dev")]
    DevelopmentNotifier,
    /// The pepper is empty: every phone number and code hash would be unpeppered.
    #[error(
        "the pepper is empty: set SOTONG_PEPPER or --pepper-file (the same on every instance \
         of one database)"
    )]
    EmptyPepper,
}

/// A running server. Dropping it stops the server too (without waiting).
pub struct ServerHandle {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    dev_notifier: Option<Arc<LogNotifier>>,
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

    /// The last one-time code the development notifier sent to the normalized number
    /// `phone`; `None` if none was, or if the server was not started by [`serve`].
    pub fn latest_dev_code(&self, phone: &str) -> Option<String> {
        self.dev_notifier.as_ref()?.latest_code(phone)
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

/// Serves on `listener` with the store `config` names. Only a development server
/// (`config.dev`) can start this way, with the development notifier ([`LogNotifier`]): no
/// production notifier exists yet, so otherwise this returns [`ServeError::NoNotifier`].
pub async fn serve(listener: TcpListener, config: Config) -> Result<ServerHandle, ServeError> {
    if !config.dev {
        return Err(ServeError::NoNotifier);
    }
    check_pepper(&config)?;
    tracing::warn!("development mode: one-time codes are written to the log");
    let store = open_store(&config).await?;
    let notifier = Arc::new(LogNotifier::new());
    let mut handle = serve_with(listener, config, store, notifier.clone()).await?;
    handle.dev_notifier = Some(notifier);
    Ok(handle)
}

/// Serves on `listener` with a given store and notifier. A development notifier needs
/// `config.dev`; the pepper must not be empty.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
) -> Result<ServerHandle, ServeError> {
    if notifier.is_development() && !config.dev {
        return Err(ServeError::DevelopmentNotifier);
    }
    check_pepper(&config)?;
    // The dummy hash unknown staff names are verified against, made before any login.
    tokio::spawn(staff::password::warm_up());
    let addr = listener.local_addr()?;
    let state = AppState::new(config, store.clone(), notifier);
    let hub = state.hub.clone();
    let state_hub = hub.clone();
    let sos_hub = state.sos.clone();
    if let Some(url) = &state.config.database_url {
        sync::feed::start(&hub, url, state.config.database_ca_file.as_deref())?;
        sos::listener::start(&sos_hub, url, state.config.database_ca_file.as_deref())?;
    }
    sos::retention::start(state.clone());
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
            // SSE feeds and long-polls too.
            sos_hub.shutdown();
        })
        .await
    });
    Ok(ServerHandle {
        addr,
        store,
        dev_notifier: None,
        hub: state_hub,
        stop: Some(stop),
        task,
    })
}

fn check_pepper(config: &Config) -> Result<(), ServeError> {
    if config.pepper.is_empty() {
        return Err(ServeError::EmptyPepper);
    }
    Ok(())
}
