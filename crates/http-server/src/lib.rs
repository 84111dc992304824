//! The Ollama and OpenAI HTTP APIs on axum: `app(state)` returns the router; `serve` binds
//! and serves.
//!
//! One module per resource under `routes/`; each handler parses the wire format into the
//! serving core's types (`wire`), calls the core, and renders its events. `ApiError` renders
//! every failure, the core's included, as Ollama's error body.

mod access;
mod error;
mod json;
mod layers;
mod ndjson;
mod routes;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use model_store::Store;
use serving::Core;

pub use access::{AccessDecision, AccessPolicy, ForbiddenReason};
pub use error::ApiError;

/// Settings of the HTTP face, read from the environment by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Reported by `/api/version`.
    pub version: String,
    /// Which origins and hosts may call the API (`OLLAMA_ORIGINS`, the bind address).
    pub access: AccessPolicy,
    /// Largest blob `POST /api/blobs` accepts, in bytes (`MODELD_MAX_BLOB_SIZE`).
    pub max_blob_bytes: u64,
    /// Unreferenced blobs younger than this survive garbage collection, so a client's upload
    /// waits for its create (`MODELD_BLOB_GRACE`).
    pub blob_grace: Duration,
    /// Size of the parts a pull fetches a blob in, instead of a sixteenth of it between 100 MB
    /// and 1 GB (`MODELD_PULL_PART_SIZE`).
    pub pull_part_bytes: Option<u64>,
}

/// How long running streams get to finish after a shutdown signal before the server stops
/// waiting for them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    config: ServerConfig,
}

impl AppState {
    /// State over the serving core.
    pub fn new(core: Core, config: ServerConfig) -> AppState {
        AppState { inner: Arc::new(Inner { core, config }) }
    }

    /// Ends running streams with an error line and refuses requests still waiting for a model.
    pub fn begin_shutdown(&self) {
        self.inner.core.begin_shutdown();
    }

    /// Completes once [`AppState::begin_shutdown`] has been called.
    pub(crate) fn shutdown_started(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.inner.core.shutdown_started()
    }

    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    pub(crate) fn store(&self) -> &Store {
        self.inner.core.store()
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.inner.config
    }
}

/// A service served beside the API at a path of its own, behind the same layers and access
/// policy: the MCP endpoint at `/mcp`, which the `mcp` crate builds.
pub struct Mounted(Router);

impl Mounted {
    /// `service` at exactly `path`.
    pub fn at<S, B>(path: &str, service: S) -> Mounted
    where
        S: tower::Service<axum::extract::Request, Response = axum::http::Response<B>, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        Mounted(Router::new().route_service(path, service))
    }
}

/// The whole API, behind the access policy, panic catching and per-request logging.
pub fn app(state: AppState) -> Router {
    app_with(state, Vec::new())
}

/// The API and `mounted` services, all behind the same layers.
pub fn app_with(state: AppState, mounted: Vec<Mounted>) -> Router {
    let access = Arc::new(state.config().access.clone());
    let mut router = routes::router().with_state(state);
    for Mounted(service) in mounted {
        router = router.merge(service);
    }
    layers::wrap(router, access)
}

/// Serves the API on `listener` until `shutdown` completes. Then it stops accepting, ends
/// running streams with an error line, and returns once their connections close, or after
/// [`SHUTDOWN_GRACE`] at the latest.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mounted: Vec<Mounted>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signalled = state.clone();
    let graceful = async move {
        shutdown.await;
        signalled.begin_shutdown();
    };
    let deadline = {
        let started = state.shutdown_started();
        async move {
            started.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    // Each streamed line goes out as it is written: with Nagle's algorithm on, a line written
    // right after the response head waited for the client's delayed acknowledgement (up to 40
    // ms on Linux), which was most of the first token's time for a prompt already cached.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("could not turn Nagle's algorithm off on a connection: {error}");
        }
    });
    let server = std::future::IntoFuture::into_future(
        axum::serve(listener, app_with(state, mounted)).with_graceful_shutdown(graceful),
    );
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("connections still open {} s after the shutdown signal; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
