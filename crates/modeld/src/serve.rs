//! `modeld serve`: wires store, engine, scheduler and HTTP API together and runs until a
//! signal arrives.

use std::sync::Arc;

use anyhow::Context;
use engine::{Engine, Engines, ModelKind, Scheduler, SchedulerConfig};
use http_server::{AppState, ServerConfig};
use serving::{Core, CoreConfig};

use crate::environment;

/// Largest upload by default: above the biggest GGUF files published (405B at 4 bits).
const DEFAULT_MAX_BLOB_BYTES: u64 = 512 << 30;

/// How long an unreferenced blob is kept by default: long enough for a client to upload all
/// of a model's files and call create.
const DEFAULT_BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

pub(crate) async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MODELD_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,mistralrs_core=warn,mistralrs=warn,rmcp=warn")
        }))
        .init();
    let models_dir = environment::models_dir();
    let store = model_store::Store::open(&models_dir)
        .with_context(|| format!("opening models directory {}", models_dir.display()))?;
    let blob_grace = environment::duration("MODELD_BLOB_GRACE", DEFAULT_BLOB_GRACE)?;
    recover_store(&store, blob_grace);
    let scheduler_config = SchedulerConfig {
        max_loaded_models: environment::unsigned("OLLAMA_MAX_LOADED_MODELS", 3)?,
        default_keep_alive: environment::default_keep_alive()?,
        num_parallel: environment::unsigned("OLLAMA_NUM_PARALLEL", 1)?.max(1),
        reserved_interactive: 1,
        max_queue: environment::unsigned("OLLAMA_MAX_QUEUE", 512)?,
        max_memory: environment::byte_size("MODELD_MAX_MEMORY")?,
    };
    // The engine decodes every request the scheduler lets run at once together, the
    // interactive ones on reserved slots included.
    let max_running_sequences = scheduler_config.num_parallel + scheduler_config.reserved_interactive;
    let generation_engine: Arc<dyn Engine> = match environment::variable("MODELD_ENGINE").as_deref() {
        None | Some("mistralrs") => {
            Arc::new(engine_mistralrs::MistralRsEngine::new(environment::mistralrs_config(max_running_sequences)?))
        }
        Some("scripted") => Arc::new(engine::scripted::ScriptedEngine::new()),
        Some(other) => anyhow::bail!("unknown MODELD_ENGINE {other:?} (expected mistralrs or scripted)"),
    };
    let engines = Engines::new()
        .register(ModelKind::Generation, generation_engine)
        .register(ModelKind::Embedding, Arc::new(engine_bert::BertEngine::new()));
    let max_queue = scheduler_config.max_queue;
    let scheduler = Scheduler::new(engines, scheduler_config);
    let core = Core::new(
        store,
        scheduler.clone(),
        CoreConfig {
            tools_without_template: tools_without_template()?,
            max_tool_rounds: environment::unsigned("MODELD_MAX_TOOL_ROUNDS", serving::DEFAULT_MAX_TOOL_ROUNDS)?,
            ..CoreConfig::new(environment::unsigned("OLLAMA_CONTEXT_LENGTH", 4096)?, Some(template_workers()?))
        },
    );
    core.set_quantizer(Arc::new(engine_mistralrs::GgufQuantizer));
    // Remote models' API keys are read from the environment when each request is sent (the
    // Modelfile names the variable), so a rotated key needs no re-create.
    core.set_remote_models(Arc::new(remote::RemoteClient::new(remote::RemoteSettings {
        keys: Arc::new(|variable: &str| std::env::var(variable).ok()),
        max_queue,
        // Routing by cached prefix is on unless `MODELD_REMOTE_AFFINITY` says false.
        prefix_affinity: environment::variable("MODELD_REMOTE_AFFINITY")
            .is_none_or(|_| environment::flag("MODELD_REMOTE_AFFINITY")),
    })));
    // The MCP client: the configured servers start now; their tools serve chat requests with
    // `mcp_servers`. A config that cannot be read is logged and the daemon serves without it.
    let mcp_clients = match mcp_config() {
        Ok(config) => {
            let clients = mcp::McpClients::start(config, core.clone());
            core.set_tool_provider(Arc::new(clients.clone()));
            Some(clients)
        }
        Err(error) => {
            tracing::error!("{error}; no MCP servers are used");
            None
        }
    };
    // The MCP server at /mcp, behind the same access policy as the API.
    let mcp_shutdown = mcp::CancellationToken::new();
    let model_server = mcp::ModelServer::new(core.clone());
    let model_watch = model_server.watch_models();
    let mounted = vec![http_server::Mounted::at("/mcp", mcp::http_service(model_server, mcp_shutdown.clone()))];
    let address = environment::bind_address()?;
    let config = ServerConfig {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        access: http_server::AccessPolicy::new(
            environment::variable("OLLAMA_ORIGINS").as_deref(),
            address.ip(),
            environment::machine_hostname(),
        ),
        max_blob_bytes: environment::byte_size("MODELD_MAX_BLOB_SIZE")?.unwrap_or(DEFAULT_MAX_BLOB_BYTES),
        blob_grace,
        pull_part_bytes: environment::byte_size("MODELD_PULL_PART_SIZE")?.filter(|bytes| *bytes > 0),
    };
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    let local_address = listener.local_addr()?;
    tracing::info!(models = %models_dir.display(), "Listening on {local_address} (version {})", config.version);
    let state = AppState::new(core, config);
    let shutdown = {
        let mcp_shutdown = mcp_shutdown.clone();
        async move {
            shutdown_signal().await;
            mcp_shutdown.cancel();
        }
    };
    http_server::serve(listener, state, mounted, shutdown).await?;
    model_watch.abort();
    if let Some(clients) = mcp_clients {
        clients.shut_down();
    }
    scheduler.unload_all();
    Ok(())
}

/// `MODELD_TOOLS_WITHOUT_TEMPLATE`: `prompt` (the default) or `refuse`.
fn tools_without_template() -> anyhow::Result<serving::ToolsWithoutTemplate> {
    match environment::variable("MODELD_TOOLS_WITHOUT_TEMPLATE").as_deref() {
        None | Some("" | "prompt") => Ok(serving::ToolsWithoutTemplate::Prompt),
        Some("refuse") => Ok(serving::ToolsWithoutTemplate::Refuse),
        Some(other) => anyhow::bail!("MODELD_TOOLS_WITHOUT_TEMPLATE must be prompt or refuse (got {other:?})"),
    }
}

/// The MCP servers to use: `MODELD_MCP_CONFIG`, else `$XDG_CONFIG_HOME/modeld/mcp.json`, else
/// `~/.config/modeld/mcp.json`; no file is no servers.
fn mcp_config() -> Result<mcp::config::McpConfig, String> {
    let path = mcp::config::config_path(
        environment::variable("MODELD_MCP_CONFIG").as_deref(),
        environment::variable("XDG_CONFIG_HOME").as_deref(),
        environment::variable("HOME").as_deref(),
    );
    let Some(path) = path else { return Ok(mcp::config::McpConfig::default()) };
    let config = mcp::config::read_config(&path)?;
    if !config.servers.is_empty() {
        tracing::info!(path = %path.display(), servers = config.servers.len(), "MCP servers configured");
    }
    Ok(config)
}

/// Template workers: this binary's `template-worker` command, its errors discarded (a worker
/// that runs out of memory prints an allocation failure the daemon reports itself).
fn template_workers() -> anyhow::Result<Arc<engine::TemplateWorkers>> {
    let binary = std::env::current_exe().context("locating the modeld binary for template workers")?;
    let limit = crate::template_worker::memory_limit()?;
    Ok(Arc::new(engine::TemplateWorkers::new(
        move || {
            let mut command = std::process::Command::new(&binary);
            command.arg("template-worker").env("MODELD_TEMPLATE_MEMORY", limit.to_string());
            command.stderr(std::process::Stdio::null());
            command
        },
        engine::human_binary_bytes(limit),
    )))
}

/// Start-up recovery after `Store::open` removed temporary files: unreferenced blobs older
/// than the grace period (unless `OLLAMA_NOPRUNE`, as in Ollama) and requantized copies whose
/// weights are gone or that a crash left half written.
fn recover_store(store: &model_store::Store, blob_grace: std::time::Duration) {
    if environment::flag("OLLAMA_NOPRUNE") {
        tracing::info!("OLLAMA_NOPRUNE is set: keeping unreferenced blobs");
    } else {
        match store.collect_garbage(model_store::GcPolicy::with_grace(blob_grace)) {
            Ok(report) => {
                for path in report.unparsable_manifests.iter().chain(&report.unreadable) {
                    tracing::warn!(path = %path.display(), "manifest could not be read; its blobs are kept");
                }
                if !report.removed.is_empty() {
                    tracing::info!(
                        n_blobs = report.removed.len(),
                        bytes = report.bytes_freed,
                        "removed unreferenced blobs"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "garbage collection at start-up failed"),
        }
    }
    if let Some(cache_dir) = environment::requantized_weights_dir() {
        let n_removed = engine_mistralrs::remove_stale_copies(&cache_dir, |source| {
            let digest = model_store::Digest::parse(source).ok()?;
            store.has_blob(&digest).then(|| store.blob_path(&digest))
        });
        if n_removed > 0 {
            tracing::info!(n_removed, dir = %cache_dir.display(), "removed stale requantized copies");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => {
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
