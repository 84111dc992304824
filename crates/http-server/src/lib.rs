//! The Ollama HTTP API on axum: `app(state)` returns the router; `main` binds and serves.
//!
//! One module per resource under `routes/`; `inference` holds the prompt-to-stream pipeline
//! shared by generate and chat; `ApiError` renders every failure as Ollama's error body.

mod access;
mod error;
mod inference;
mod json;
mod layers;
mod ndjson;
mod resolve;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use engine::Scheduler;
use model_store::Store;

pub use access::{AccessDecision, AccessPolicy, ForbiddenReason};
pub use error::ApiError;
pub use resolve::{is_jinja, ResolvedModel};

/// Server settings, read from the environment by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Reported by `/api/version`.
    pub version: String,
    /// Context window when neither request nor model sets `num_ctx` (`OLLAMA_CONTEXT_LENGTH`).
    pub default_num_ctx: usize,
    /// Keep-alive when a request sets none (`OLLAMA_KEEP_ALIVE`); `None` is forever.
    pub default_keep_alive: Option<Duration>,
    /// Which origins and hosts may call the API (`OLLAMA_ORIGINS`, the bind address).
    pub access: AccessPolicy,
    /// Largest blob `POST /api/blobs` accepts, in bytes (`MODELD_MAX_BLOB_SIZE`).
    pub max_blob_bytes: u64,
    /// Unreferenced blobs younger than this survive garbage collection, so a client's upload
    /// waits for its create (`MODELD_BLOB_GRACE`).
    pub blob_grace: Duration,
    /// Worker processes that render chat templates under a memory limit; `None` renders in
    /// this process (fuel and the output cap still apply).
    pub template_workers: Option<Arc<engine::TemplateWorkers>>,
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
    store: Store,
    scheduler: Arc<Scheduler>,
    config: ServerConfig,
    headers: resolve::HeaderCache,
    /// `true` once the server is shutting down: streams end with an error line and waiting
    /// requests are refused.
    shutting_down: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// State over a store and a scheduler.
    pub fn new(store: Store, scheduler: Arc<Scheduler>, config: ServerConfig) -> AppState {
        let shutting_down = tokio::sync::watch::Sender::new(false);
        AppState { inner: Arc::new(Inner { store, scheduler, config, headers: Default::default(), shutting_down }) }
    }

    /// Ends running streams with an error line and refuses requests still waiting for a model.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.send_replace(true);
    }

    /// Completes once [`AppState::begin_shutdown`] has been called.
    pub(crate) fn shutdown_started(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.inner.shutting_down.subscribe();
        async move {
            let _ = receiver.wait_for(|shutting_down| *shutting_down).await;
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn scheduler(&self) -> &Arc<Scheduler> {
        &self.inner.scheduler
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn resolve(&self, name: &model_store::ModelName) -> Result<ResolvedModel, ApiError> {
        ResolvedModel::load(&self.inner.store, &self.inner.headers, name)
    }
}

/// The whole API, behind the access policy, panic catching and per-request logging.
pub fn app(state: AppState) -> Router {
    let access = Arc::new(state.config().access.clone());
    layers::wrap(routes::router().with_state(state), access)
}

/// Serves the API on `listener` until `shutdown` completes. Then it stops accepting, ends
/// running streams with an error line, and returns once their connections close, or after
/// [`SHUTDOWN_GRACE`] at the latest.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
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
    let server =
        std::future::IntoFuture::into_future(axum::serve(listener, app(state)).with_graceful_shutdown(graceful));
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("connections still open {} s after the shutdown signal; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
