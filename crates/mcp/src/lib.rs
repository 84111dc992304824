//! modeld's Model Context Protocol faces, the only crate that imports `rmcp`:
//!
//! - the server ([`ModelServer`]): local models as tools for agents, over Streamable HTTP at
//!   the daemon's `/mcp` ([`http_service`]) and over stdio through `modeld mcp`
//!   ([`serve_stdio_proxy`], which forwards to the daemon);
//! - the client ([`McpClients`]): the servers of the `mcpServers` config, supervised, whose
//!   tools the serving core's tool loop calls, and whose sampling requests a local model
//!   answers.

mod client;
pub mod config;
mod convert;
mod proxy;
mod sampling;
mod server;
mod tools;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

pub use client::McpClients;
pub use proxy::serve_stdio_proxy;
pub use server::ModelServer;
pub use tokio_util::sync::CancellationToken;

/// Locks `mutex`, also after a panic elsewhere poisoned it (the state it guards stays usable:
/// lists of peers, routes and tools).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The Streamable HTTP endpoint for `server`, to mount at `/mcp`: sessions for clients of
/// the `initialize` era, stateless requests for 2026-07-28 clients. Its own Host check is off
/// because the HTTP face applies the daemon's one Origin and Host policy before it.
pub fn http_service(
    server: ModelServer,
    shutdown: CancellationToken,
) -> StreamableHttpService<ModelServer, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().with_cancellation_token(shutdown);
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config)
}
