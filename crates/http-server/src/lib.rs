//! The Ollama HTTP API on axum: `app(state)` returns the router; `main` binds and serves.
//!
//! One module per resource under `routes/`; `inference` holds the prompt-to-stream pipeline
//! shared by generate and chat; `ApiError` renders every failure as Ollama's error body.

mod error;
mod inference;
mod json;
mod ndjson;
mod resolve;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use engine::Scheduler;
use model_store::Store;

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
}

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
}

impl AppState {
    /// State over a store and a scheduler.
    pub fn new(store: Store, scheduler: Arc<Scheduler>, config: ServerConfig) -> AppState {
        AppState { inner: Arc::new(Inner { store, scheduler, config, headers: Default::default() }) }
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

/// The whole API.
pub fn app(state: AppState) -> Router {
    routes::router().with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes; running requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
