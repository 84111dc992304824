//! A model as stored, resolved from its name: manifest, weights path, template, system prompt,
//! parameters, messages, GGUF facts and capabilities.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use engine::ModelKind;
use model_formats::FimTemplate;
use model_store::gguf::{self, GgufHeader};
use model_store::{media_type, ConfigV2, Digest, ModelEntry, ModelName, Options, Store};

use crate::{ChatMessage, ServingError};

/// What a model can do, as Ollama derives it from the weights and the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Generates text (every model that is not an embedding model).
    Completion,
    /// Turns text into vectors.
    Embedding,
    /// Its template renders tools, so it can call them.
    Tools,
    /// It has fill-in-the-middle tokens.
    Insert,
    /// Its template lets it think.
    Thinking,
    /// It reads images.
    Vision,
}

impl Capability {
    /// The capability Ollama names so.
    pub fn parse(name: &str) -> Option<Capability> {
        [
            Capability::Completion,
            Capability::Embedding,
            Capability::Tools,
            Capability::Insert,
            Capability::Thinking,
            Capability::Vision,
        ]
        .into_iter()
        .find(|capability| capability.as_str() == name)
    }

    /// Ollama's name for it, as `/api/show` lists it.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Completion => "completion",
            Capability::Embedding => "embedding",
            Capability::Tools => "tools",
            Capability::Insert => "insert",
            Capability::Thinking => "thinking",
            Capability::Vision => "vision",
        }
    }
}

/// A model as stored, with its layers read.
#[derive(Clone)]
pub struct ResolvedModel {
    /// Name, spelled as on disk.
    pub name: ModelName,
    /// Manifest and its digest.
    pub entry: ModelEntry,
    /// Config blob.
    pub config: ConfigV2,
    /// GGUF weights path.
    pub model_path: PathBuf,
    /// GGUF header.
    pub gguf: Arc<GgufHeader>,
    /// How to prompt the model to fill in the middle, when its vocabulary has FIM tokens.
    pub fim: Option<FimTemplate>,
    /// Template layer text.
    pub template_layer: Option<String>,
    /// The template prompts are rendered with: the template layer, else the GGUF's.
    pub prompt_template: Option<PromptTemplate>,
    /// System layer text.
    pub system: Option<String>,
    /// Params layer as JSON.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Params layer checked.
    pub options: Options,
    /// Messages layer.
    pub messages: Vec<ChatMessage>,
    /// License layers.
    pub licenses: Vec<String>,
    /// What it can do, derived once from the weights and template when it is read.
    capabilities: Vec<Capability>,
}

/// A message of a messages layer (a Modelfile's `MESSAGE`).
#[derive(serde::Deserialize)]
struct LayerMessage {
    role: String,
    #[serde(default)]
    content: String,
}

/// Caches GGUF headers, and what is derived from their vocabulary, by blob digest; blobs are
/// immutable, so entries never go stale.
#[derive(Default)]
pub(crate) struct HeaderCache {
    headers: Mutex<HashMap<Digest, CachedHeader>>,
}

/// A GGUF header and its FIM template.
type CachedHeader = (Arc<GgufHeader>, Option<FimTemplate>);

impl HeaderCache {
    /// The header of the GGUF blob `digest`, and its FIM template. Reads the file: call it on
    /// a blocking thread.
    fn header(&self, store: &Store, digest: &Digest) -> Result<CachedHeader, ServingError> {
        if let Some(cached) = self.headers.lock().unwrap().get(digest) {
            return Ok(cached.clone());
        }
        let header = gguf::read_header(&store.blob_path(digest))
            .map_err(|error| ServingError::internal(format!("reading GGUF {digest}: {error}")))?;
        let vocabulary: std::collections::HashSet<&str> = header
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(serde_json::Value::as_array)
            .map(|tokens| tokens.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        let fim = FimTemplate::detect(|token| vocabulary.contains(token));
        let cached = (Arc::new(header), fim);
        self.headers.lock().unwrap().insert(digest.clone(), cached.clone());
        Ok(cached)
    }
}

impl ResolvedModel {
    /// Reads a model; `ModelNotFound` (naming it as `spelled`) when absent. Reads files: call it
    /// on a blocking thread.
    pub(crate) fn load(
        store: &Store,
        headers: &HeaderCache,
        name: &ModelName,
        spelled: &str,
    ) -> Result<ResolvedModel, ServingError> {
        let entry = store.get(name).map_err(|error| match error {
            model_store::Error::ModelNotFound(_) => ServingError::ModelNotFound(spelled.to_owned()),
            other => other.into(),
        })?;
        let manifest = &entry.manifest;
        let config: ConfigV2 = store
            .read_blob_string(&manifest.config.digest)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        // A remote model has no weights here: its facts come from its config.
        let is_remote = config.remote_endpoints.as_ref().is_some_and(|endpoints| !endpoints.is_empty());
        let (model_path, gguf, fim) = if is_remote {
            (PathBuf::new(), Arc::new(GgufHeader::default()), None)
        } else {
            let model_layer = manifest
                .layer(media_type::MODEL)
                .ok_or_else(|| ServingError::internal(format!("{} has no model layer", entry.name)))?;
            let (gguf, fim) = headers.header(store, &model_layer.digest)?;
            (store.blob_path(&model_layer.digest), gguf, fim)
        };
        let read_text = |layer: Option<&model_store::Layer>| -> Result<Option<String>, ServingError> {
            layer.map(|layer| store.read_blob_string(&layer.digest).map_err(ServingError::from)).transpose()
        };
        let template_layer = read_text(manifest.template_layer())?;
        let system = read_text(manifest.layer(media_type::SYSTEM))?;
        let parameters: serde_json::Map<String, serde_json::Value> = read_text(manifest.layer(media_type::PARAMS))?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let options = Options::from_map(&parameters).unwrap_or_default();
        let messages: Vec<ChatMessage> = read_text(manifest.layer(media_type::MESSAGES))?
            .and_then(|text| serde_json::from_str::<Vec<LayerMessage>>(&text).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|message| ChatMessage::new(message.role, message.content))
            .collect();
        let licenses = manifest
            .layers
            .iter()
            .filter(|layer| layer.media_type == media_type::LICENSE)
            .map(|layer| store.read_blob_string(&layer.digest))
            .collect::<Result<Vec<_>, _>>()?;
        let prompt_template = template_layer
            .as_deref()
            .map(PromptTemplate::from_text)
            .or_else(|| gguf.chat_template().map(PromptTemplate::Jinja));
        let mut model = ResolvedModel {
            name: entry.name.clone(),
            model_path,
            entry,
            config,
            gguf,
            fim,
            prompt_template,
            template_layer,
            system,
            parameters,
            options,
            messages,
            licenses,
            capabilities: Vec::new(),
        };
        model.capabilities = model.derive_capabilities();
        Ok(model)
    }

    /// The template text `/api/show` reports.
    pub fn shown_template(&self) -> Option<String> {
        self.template_layer.clone().or_else(|| self.gguf.chat_template())
    }

    /// What the model does, which picks the engine that loads it: a GGUF that declares a
    /// pooling type is an embedding model.
    pub fn kind(&self) -> ModelKind {
        model_kind(&self.gguf)
    }

    /// Capabilities, as Ollama derives them from the weights and template, in Ollama's order.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    fn derive_capabilities(&self) -> Vec<Capability> {
        if self.config.remote_endpoints.as_ref().is_some_and(|endpoints| !endpoints.is_empty()) {
            // What the remote said when the model was created; completion when it could not tell.
            let mut capabilities: Vec<Capability> =
                self.config.capabilities.iter().flatten().filter_map(|name| Capability::parse(name)).collect();
            if capabilities.is_empty() {
                capabilities.push(Capability::Completion);
            }
            // A template that prompts fill-in-the-middle here makes any remote able to insert.
            if self.prompt_template.as_ref().is_some_and(PromptTemplate::supports_insert)
                && !capabilities.contains(&Capability::Insert)
            {
                capabilities.push(Capability::Insert);
            }
            return capabilities;
        }
        let mut capabilities = vec![match self.kind() {
            ModelKind::Embedding => Capability::Embedding,
            ModelKind::Generation => Capability::Completion,
        }];
        let template = self.prompt_template.as_ref();
        if template.is_some_and(PromptTemplate::supports_tools) {
            capabilities.push(Capability::Tools);
        }
        if self.fim.is_some() || template.is_some_and(PromptTemplate::supports_insert) {
            capabilities.push(Capability::Insert);
        }
        if template.is_some_and(PromptTemplate::supports_thinking) {
            capabilities.push(Capability::Thinking);
        }
        capabilities
    }

    /// Whether the model has `capability`.
    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities().contains(&capability)
    }

    /// The context length the weights were trained for.
    pub fn trained_context_length(&self) -> Option<u64> {
        self.gguf.context_length().or(self.config.context_length)
    }
}

/// A template that prompts are rendered with.
#[derive(Debug, Clone)]
pub enum PromptTemplate {
    /// A Hugging Face style Jinja chat template (GGUF's `tokenizer.chat_template`).
    Jinja(String),
    /// An Ollama Go template, executed as Ollama executes it.
    Go(Arc<go_template::Template>),
    /// A Go template that does not parse; rendering with it fails with this error.
    Broken { source: String, error: String },
}

impl PromptTemplate {
    /// Reads template text: an Ollama Go template when it is written as one, else Jinja.
    pub fn from_text(text: &str) -> PromptTemplate {
        if !go_template::looks_like_go(text) {
            return PromptTemplate::Jinja(text.to_owned());
        }
        match go_template::Template::parse(text) {
            Ok(template) => PromptTemplate::Go(Arc::new(template)),
            Err(error) => PromptTemplate::Broken { source: text.to_owned(), error: error.to_string() },
        }
    }

    /// Checks template text as `create` does: a Go template must parse.
    pub fn check(text: &str) -> Result<(), String> {
        match PromptTemplate::from_text(text) {
            PromptTemplate::Broken { error, .. } => Err(error),
            _ => Ok(()),
        }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        match self {
            PromptTemplate::Jinja(text) | PromptTemplate::Broken { source: text, .. } => text,
            PromptTemplate::Go(template) => template.source(),
        }
    }

    /// Whether it renders the tools a request offers (Ollama: a Go template that names
    /// `.Tools`).
    pub fn supports_tools(&self) -> bool {
        match self {
            PromptTemplate::Go(template) => template.uses("tools"),
            PromptTemplate::Jinja(text) => model_formats::template_supports_tools(text),
            PromptTemplate::Broken { .. } => false,
        }
    }

    /// Whether it prompts for a fill-in-the-middle itself (a Go template that names `.Suffix`).
    pub fn supports_insert(&self) -> bool {
        matches!(self, PromptTemplate::Go(template) if template.uses("suffix"))
    }

    /// Whether it lets the model think.
    pub fn supports_thinking(&self) -> bool {
        !matches!(self, PromptTemplate::Broken { .. }) && model_formats::template_supports_thinking(self.source())
    }
}

/// What a GGUF file's model does: one that declares a pooling type is an embedding model.
pub(crate) fn model_kind(header: &GgufHeader) -> ModelKind {
    let architecture = header.architecture();
    if header.metadata.contains_key(&format!("{architecture}.pooling_type")) {
        ModelKind::Embedding
    } else {
        ModelKind::Generation
    }
}
