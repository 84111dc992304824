//! Remote models: models served by another server (an Ollama, another modeld, or an
//! OpenAI-compatible vLLM, SGLang, TGI or llama-server), behind the same faces.
//!
//! The core does for a remote model what stays local (the model's system prompt, messages and
//! parameters, the tool loop, events to the faces) and hands the request to the
//! [`RemoteModels`] the daemon registered (the `remote` crate), which picks a replica, speaks
//! its API and translates its stream into [`Event`]s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use model_store::RemoteEndpoint;

use crate::{
    Capability, ChatInput, ChatMessage, Core, EmbedInput, Embeddings, EventStream, GenerateInput, ResolvedModel,
    ServingError, Started,
};

/// A boxed future, as trait objects return them.
pub type RemoteFuture<T> = Pin<Box<dyn Future<Output = Result<T, ServingError>> + Send>>;

/// Where a remote model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteModel {
    /// The model's local name, in full: the key of its replicas' routing state.
    pub local_name: String,
    /// Its name on the remote side.
    pub remote_name: String,
    /// Its replicas.
    pub endpoints: Vec<RemoteEndpoint>,
}

/// Runs requests on remote models; the daemon registers one ([`Core::set_remote_models`]).
pub trait RemoteModels: Send + Sync {
    /// A chat turn, with the model's system prompt, messages and parameters already applied.
    fn chat(&self, model: RemoteModel, input: ChatInput) -> RemoteFuture<EventStream>;
    /// A completion, with the model's system prompt and parameters already applied.
    fn generate(&self, model: RemoteModel, input: GenerateInput) -> RemoteFuture<EventStream>;
    /// Vectors as the remote gives them; the core checks, normalises and cuts them.
    fn embed(&self, model: RemoteModel, input: EmbedInput) -> RemoteFuture<Embeddings>;
    /// What the model can do, asked of the remote where its API can tell (`create` asks).
    fn capabilities(&self, model: RemoteModel) -> RemoteFuture<Vec<Capability>>;
}

impl ResolvedModel {
    /// Where the model is served, when it is remote.
    pub fn remote_model(&self) -> Option<RemoteModel> {
        let endpoints = self.config.remote_endpoints.clone().filter(|endpoints| !endpoints.is_empty())?;
        Some(RemoteModel {
            local_name: self.name.display_full(),
            remote_name: self.config.remote_model.clone().unwrap_or_default(),
            endpoints,
        })
    }
}

/// Where `model` is served; the pipelines call this module for remote models only.
fn remote_of(model: &ResolvedModel) -> Result<RemoteModel, ServingError> {
    model.remote_model().ok_or_else(|| ServingError::internal(format!("{} is not a remote model", model.name)))
}

fn remote_models(core: &Core) -> Result<Arc<dyn RemoteModels>, ServingError> {
    core.remote_models()
        .ok_or_else(|| ServingError::NotImplemented("remote models are not enabled in this modeld".into()))
}

/// The model's messages layer and system prompt before the conversation, as for local models.
fn with_model_messages(model: &ResolvedModel, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut all = Vec::with_capacity(messages.len() + model.messages.len() + 1);
    if let Some(system) = &model.system {
        if messages.first().is_none_or(|first| !first.role.eq_ignore_ascii_case("system")) {
            all.push(ChatMessage::new("system", system.clone()));
        }
    }
    all.extend(model.messages.iter().cloned());
    all.extend(messages);
    all
}

pub(crate) async fn chat(core: &Core, model: &ResolvedModel, mut input: ChatInput) -> Result<Started, ServingError> {
    let remote = remote_of(model)?;
    if input.messages.iter().any(|message| message.n_images > 0) {
        return Err(ServingError::NotImplemented("images are not passed to remote models yet".into()));
    }
    input.messages = with_model_messages(model, std::mem::take(&mut input.messages));
    input.options = model.options.merged_with(&input.options);
    Ok(Started::Running(with_shutdown(core, remote_models(core)?.chat(remote, input).await?)))
}

pub(crate) async fn generate(
    core: &Core,
    model: &ResolvedModel,
    mut input: GenerateInput,
) -> Result<Started, ServingError> {
    let remote = remote_of(model)?;
    if input.n_images > 0 {
        return Err(ServingError::NotImplemented("images are not passed to remote models yet".into()));
    }
    if input.context.as_ref().is_some_and(|context| !context.is_empty()) {
        return Err(ServingError::invalid(
            "context is not supported by remote models: send the conversation to /api/chat",
        ));
    }
    // A TEMPLATE that names `.Suffix` prompts fill-in-the-middle here, as Ollama's templates
    // do, and the remote completes the text as it is (`/v1/completions` or a raw
    // `/api/generate`): the way to FIM on servers without llama-server's `/infill`.
    let suffix = input.suffix.clone().filter(|suffix| !suffix.is_empty());
    if let (Some(suffix), Some(crate::PromptTemplate::Go(template))) = (suffix, &model.prompt_template) {
        if template.uses("suffix") && !input.raw {
            let no_thinking = crate::prompt::ThinkSettings {
                mode: model_formats::ThinkingMode::Off,
                enable_thinking: Some(false),
                reasoning_effort: None,
            };
            let prompt = std::mem::take(&mut input.prompt);
            input.prompt =
                crate::prompt::render_go_fill_in_the_middle(template.clone(), prompt, suffix, &no_thinking).await?;
            input.suffix = None;
            input.system = None;
            input.raw = true;
        }
    }
    if input.system.is_none() && !input.raw {
        input.system = model.system.clone();
    }
    input.options = model.options.merged_with(&input.options);
    Ok(Started::Running(with_shutdown(core, remote_models(core)?.generate(remote, input).await?)))
}

pub(crate) async fn embed(
    core: &Core,
    model: &ResolvedModel,
    mut input: EmbedInput,
) -> Result<Embeddings, ServingError> {
    let remote = remote_of(model)?;
    input.options = model.options.merged_with(&input.options);
    let (dimensions, normalize) = (input.dimensions, input.normalize);
    let mut embeddings = remote_models(core)?.embed(remote, input).await?;
    embeddings.vectors = std::mem::take(&mut embeddings.vectors)
        .into_iter()
        .map(|vector| crate::embed::finish_vector(vector, dimensions, normalize))
        .collect::<Result<_, _>>()?;
    Ok(embeddings)
}

/// A remote stream that ends with the shutdown error when the daemon shuts down, as local
/// generations do.
fn with_shutdown(core: &Core, events: EventStream) -> EventStream {
    use futures_util::StreamExt;
    let shutdown = core.shutdown_started();
    let ended =
        futures_util::stream::once(shutdown).map(|()| crate::Event::Failed(ServingError::ShuttingDown.to_string()));
    // Whichever comes first: the remote's events run to their end, or the shutdown line ends
    // the stream (and drops the remote request).
    Box::pin(futures_util::stream::unfold(
        (events, Box::pin(ended), false),
        |(mut events, mut ended, finished)| async move {
            if finished {
                return None;
            }
            tokio::select! {
                biased;
                event = events.next() => event.map(|event| (event, (events, ended, false))),
                Some(failed) = ended.next() => Some((failed, (events, ended, true))),
            }
        },
    ))
}
