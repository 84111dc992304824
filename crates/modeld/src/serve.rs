//! `modeld serve`: wires store, engine, scheduler and HTTP API together and runs until a
//! signal arrives.

use std::sync::Arc;

use anyhow::Context;
use engine::{Engine, Scheduler, SchedulerConfig};
use http_server::{AppState, ServerConfig};

use crate::environment;

pub(crate) async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MODELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,mistralrs_core=warn,mistralrs=warn")),
        )
        .init();
    let models_dir = environment::models_dir();
    let store = model_store::Store::open(&models_dir)
        .with_context(|| format!("opening models directory {}", models_dir.display()))?;
    let num_parallel = environment::unsigned("OLLAMA_NUM_PARALLEL", 1)?.max(1);
    let engine: Arc<dyn Engine> = match environment::variable("MODELD_ENGINE").as_deref() {
        None | Some("mistralrs") => {
            Arc::new(engine_mistralrs::MistralRsEngine::new(environment::requantized_weights_dir(), num_parallel))
        }
        Some("scripted") => Arc::new(engine::scripted::ScriptedEngine::new()),
        Some(other) => anyhow::bail!("unknown MODELD_ENGINE {other:?} (expected mistralrs or scripted)"),
    };
    let default_keep_alive = environment::default_keep_alive()?;
    let scheduler = Scheduler::new(
        engine,
        SchedulerConfig {
            max_loaded_models: environment::unsigned("OLLAMA_MAX_LOADED_MODELS", 3)?,
            default_keep_alive,
            num_parallel,
            max_queue: environment::unsigned("OLLAMA_MAX_QUEUE", 512)?,
        },
    );
    let config = ServerConfig {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        default_num_ctx: environment::unsigned("OLLAMA_CONTEXT_LENGTH", 4096)?,
        default_keep_alive,
    };
    let address = environment::bind_address()?;
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    let local_address = listener.local_addr()?;
    tracing::info!(models = %models_dir.display(), "Listening on {local_address} (version {})", config.version);
    let state = AppState::new(store, scheduler.clone(), config);
    http_server::serve(listener, state, shutdown_signal()).await?;
    scheduler.unload_all();
    Ok(())
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
