//! The serving core: where a request becomes a generation, for every face (the Ollama and
//! OpenAI HTTP APIs, the language server, MCP, the tool loop).
//!
//! A front end parses its wire format into [`GenerateInput`] or [`ChatInput`], calls
//! [`Core::generate`] or [`Core::chat`], and renders the [`Event`]s it gets back. The core
//! resolves the model (off the async threads), validates the request against what the model
//! can do, renders the prompt (templates, tools, thinking, fill-in-the-middle), takes a turn on
//! the model from the scheduler by [`Priority`], and runs the generation. Failures are
//! [`ServingError`]s, which each front end maps to its protocol's errors. No protocol crate is
//! imported here.

mod embed;
mod error;
mod events;
mod model;
mod pipeline;
mod prompt;
mod remote;
mod request;
mod tool_loop;
mod tools;

use std::sync::Arc;

use engine::Scheduler;
use model_store::{ModelEntry, ModelName, Store};

pub use model_store::Options;

pub use embed::{EmbedInput, EmbedText, Embeddings};
pub use engine::{DoneReason, KeepAlive, LoadedModelStatus, Priority};
pub use error::ServingError;
pub use events::{collect, new_tool_call_id, Event, EventStream, Exchange, Finished, Metrics, Reply, Started};
pub use model::{Capability, PromptTemplate, ResolvedModel};
pub use prompt::output_schema;
pub use remote::{RemoteFuture, RemoteModel, RemoteModels};
pub use request::{ChatInput, ChatMessage, GenerateInput, Think, ToolCall};
pub use tool_loop::{parse_tool_servers, DEFAULT_MAX_TOOL_ROUNDS};
pub use tools::{
    ProvidedTool, ToolCallFuture, ToolChoice, ToolOutput, ToolProvider, ToolServerStatus, ToolServers,
    ToolsWithoutTemplate,
};

/// Settings of the core, read once where the daemon starts.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Context window when neither request nor model sets `num_ctx` (`OLLAMA_CONTEXT_LENGTH`).
    pub default_num_ctx: usize,
    /// Worker processes that render chat templates under a memory limit; `None` renders in
    /// this process (fuel and the output cap still apply).
    pub template_workers: Option<Arc<engine::TemplateWorkers>>,
    /// How a model whose template has no tool format answers a request with tools
    /// (`MODELD_TOOLS_WITHOUT_TEMPLATE`).
    pub tools_without_template: ToolsWithoutTemplate,
    /// Rounds with tools in a tool loop before a last one without (`MODELD_MAX_TOOL_ROUNDS`).
    pub max_tool_rounds: usize,
}

impl CoreConfig {
    /// The defaults, with the context window and template workers given.
    pub fn new(default_num_ctx: usize, template_workers: Option<Arc<engine::TemplateWorkers>>) -> CoreConfig {
        CoreConfig {
            default_num_ctx,
            template_workers,
            tools_without_template: ToolsWithoutTemplate::default(),
            max_tool_rounds: DEFAULT_MAX_TOOL_ROUNDS,
        }
    }
}

/// The core, shared by every front end of one daemon.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    scheduler: Arc<Scheduler>,
    config: CoreConfig,
    headers: model::HeaderCache,
    /// Runs the tools of a chat's tool loop (the MCP client), once the daemon has one.
    tool_provider: std::sync::OnceLock<Arc<dyn ToolProvider>>,
    /// Runs requests on remote models, once the daemon has one.
    remote_models: std::sync::OnceLock<Arc<dyn RemoteModels>>,
    /// Writes quantized weights for `create --quantize`, once the daemon has one.
    quantizer: std::sync::OnceLock<Arc<dyn engine::Quantizer>>,
    /// `true` once the daemon is shutting down: streams end with an error and waiting
    /// requests are refused.
    shutting_down: tokio::sync::watch::Sender<bool>,
}

impl Core {
    /// A core over a store and a scheduler.
    pub fn new(store: Store, scheduler: Arc<Scheduler>, config: CoreConfig) -> Core {
        let shutting_down = tokio::sync::watch::Sender::new(false);
        Core {
            inner: Arc::new(Inner {
                store,
                scheduler,
                config,
                headers: Default::default(),
                tool_provider: std::sync::OnceLock::new(),
                quantizer: std::sync::OnceLock::new(),
                remote_models: std::sync::OnceLock::new(),
                shutting_down,
            }),
        }
    }

    /// The model store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    /// Gives the core the tools it runs in tool loops; only the first call counts.
    pub fn set_tool_provider(&self, provider: Arc<dyn ToolProvider>) {
        let _ = self.inner.tool_provider.set(provider);
    }

    /// The tools the core runs in tool loops, if any.
    pub fn tool_provider(&self) -> Option<Arc<dyn ToolProvider>> {
        self.inner.tool_provider.get().cloned()
    }

    /// Whether a model with these weights can be loaded at all: an engine for its kind that
    /// runs its architecture. `create` asks before it writes anything.
    pub fn check_loadable(&self, header: &model_store::gguf::GgufHeader) -> Result<(), ServingError> {
        let kind = model::model_kind(header);
        self.inner
            .scheduler
            .check_architecture(kind, &header.architecture())
            .map_err(|error| ServingError::InvalidRequest(error.to_string()))
    }

    /// Gives the core what runs remote models; the first one set stays.
    pub fn set_remote_models(&self, remote_models: Arc<dyn RemoteModels>) {
        let _ = self.inner.remote_models.set(remote_models);
    }

    /// What runs remote models, if the daemon has it.
    pub fn remote_models(&self) -> Option<Arc<dyn RemoteModels>> {
        self.inner.remote_models.get().cloned()
    }

    /// Gives the core the quantizer `create --quantize` uses; the first one set stays.
    pub fn set_quantizer(&self, quantizer: Arc<dyn engine::Quantizer>) {
        let _ = self.inner.quantizer.set(quantizer);
    }

    /// The quantizer, if the daemon has one.
    pub fn quantizer(&self) -> Option<Arc<dyn engine::Quantizer>> {
        self.inner.quantizer.get().cloned()
    }

    /// Ends running generations with [`ServingError::ShuttingDown`] and refuses requests still
    /// waiting for a model.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.send_replace(true);
    }

    /// Completes once [`Core::begin_shutdown`] has been called.
    pub fn shutdown_started(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.inner.shutting_down.subscribe();
        async move {
            let _ = receiver.wait_for(|shutting_down| *shutting_down).await;
        }
    }

    /// The model `name`, read on a blocking thread; not found names it as `spelled`.
    pub async fn resolve(&self, name: &ModelName, spelled: &str) -> Result<Arc<ResolvedModel>, ServingError> {
        let (core, name, spelled) = (self.clone(), name.clone(), spelled.to_owned());
        tokio::task::spawn_blocking(move || {
            model::ResolvedModel::load(&core.inner.store, &core.inner.headers, &name, &spelled).map(Arc::new)
        })
        .await
        .map_err(|error| ServingError::internal(error.to_string()))?
    }

    /// The model a client named: a name that does not parse is not found, as in Ollama.
    pub async fn resolve_spelled(&self, spelled: &str) -> Result<Arc<ResolvedModel>, ServingError> {
        let name = ModelName::parse(spelled).map_err(|_| ServingError::ModelNotFound(spelled.to_owned()))?;
        self.resolve(&name, spelled).await
    }

    /// Every stored model, with its layers read where they can be, read on a blocking thread.
    pub async fn list_models(&self) -> Vec<(ModelEntry, Option<Arc<ResolvedModel>>)> {
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            core.inner
                .store
                .list()
                .into_iter()
                .map(|entry| {
                    let display = entry.name.display_shortest();
                    let resolved =
                        model::ResolvedModel::load(&core.inner.store, &core.inner.headers, &entry.name, &display)
                            .ok()
                            .map(Arc::new);
                    (entry, resolved)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Loaded models with the stored model each is, latest deadline first.
    pub async fn running_models(&self) -> Vec<(LoadedModelStatus, Arc<ResolvedModel>)> {
        let statuses = self.inner.scheduler.status();
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            statuses
                .into_iter()
                .filter_map(|status| {
                    let name = ModelName::parse(&status.key).ok()?;
                    let model =
                        model::ResolvedModel::load(&core.inner.store, &core.inner.headers, &name, &status.key).ok()?;
                    Some((status, Arc::new(model)))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Unloads `name` now, or when its running requests finish; whether it was loaded.
    pub fn unload(&self, name: &ModelName) -> bool {
        self.inner.scheduler.unload(&name.display_full())
    }

    /// Copies a model, on a blocking thread; not found names the source as `spelled`.
    pub async fn copy_model(&self, source: ModelName, destination: ModelName) -> Result<(), ServingError> {
        let store = self.inner.store.clone();
        let spelled = source.display_shortest();
        tokio::task::spawn_blocking(move || store.copy(&source, &destination))
            .await
            .map_err(|error| ServingError::internal(error.to_string()))?
            .map_err(|error| match error {
                model_store::Error::ModelNotFound(_) => ServingError::ModelNotFound(spelled),
                other => other.into(),
            })
    }

    /// Unloads and deletes a model, on a blocking thread; not found names it as `spelled`.
    pub async fn delete_model(&self, name: ModelName, spelled: &str) -> Result<(), ServingError> {
        self.unload(&name);
        let store = self.inner.store.clone();
        let spelled = spelled.to_owned();
        tokio::task::spawn_blocking(move || store.delete(&name))
            .await
            .map_err(|error| ServingError::internal(error.to_string()))?
            .map_err(|error| match error {
                model_store::Error::ModelNotFound(_) => ServingError::ModelNotFound(spelled),
                other => other.into(),
            })
    }

    /// Runs a completion: validates it against the model, loads the model (or unloads it, for
    /// an empty prompt with a zero keep-alive), renders the prompt and starts generating.
    pub async fn generate(&self, input: GenerateInput) -> Result<Started, ServingError> {
        pipeline::generate(self, input).await
    }

    /// Embeds the inputs on an embedding model: validates, loads the model (or unloads it,
    /// for no inputs with a zero keep-alive), tokenizes and truncates, runs one batch.
    pub async fn embed(&self, input: EmbedInput) -> Result<Embeddings, ServingError> {
        embed::embed(self, input).await
    }

    /// Runs a chat turn: validates it against the model, loads the model (or unloads it, for an
    /// empty conversation with a zero keep-alive), renders the conversation and starts
    /// generating.
    ///
    /// With `mcp_servers`, runs the tool loop: calls to those servers' tools are made by the
    /// daemon and answered in the conversation until the model gives a final answer.
    pub async fn chat(&self, mut input: ChatInput) -> Result<Started, ServingError> {
        let servers = input.mcp_servers.take().or_else(|| self.default_tool_servers(&input.model));
        match servers {
            Some(servers) => tool_loop::start(self, input, servers).await,
            None => pipeline::chat(self, input).await,
        }
    }

    /// The MCP servers configured for `model`'s chats, if any.
    fn default_tool_servers(&self, model: &str) -> Option<ToolServers> {
        let provider = self.tool_provider()?;
        let name = ModelName::parse(model).ok()?.display_full();
        provider
            .model_defaults()
            .into_iter()
            .find(|(configured, _)| ModelName::parse(configured).is_ok_and(|parsed| parsed.display_full() == name))
            .map(|(_, servers)| servers)
    }

    fn scheduler(&self) -> &Arc<Scheduler> {
        &self.inner.scheduler
    }
}

#[cfg(test)]
mod go_template_tests;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
