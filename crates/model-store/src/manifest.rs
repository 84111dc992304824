//! Manifest and config JSON, byte-compatible with Ollama's Docker v2 manifests.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Media types of manifests, configs and layers.
pub mod media_type {
    /// The manifest itself.
    pub const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// The config blob.
    pub const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// GGUF weights.
    pub const MODEL: &str = "application/vnd.ollama.image.model";
    /// Vision or audio projector.
    pub const PROJECTOR: &str = "application/vnd.ollama.image.projector";
    /// LoRA adapter.
    pub const ADAPTER: &str = "application/vnd.ollama.image.adapter";
    /// Prompt template text.
    pub const TEMPLATE: &str = "application/vnd.ollama.image.template";
    /// Legacy alias of the template layer.
    pub const PROMPT: &str = "application/vnd.ollama.image.prompt";
    /// Default system prompt text.
    pub const SYSTEM: &str = "application/vnd.ollama.image.system";
    /// JSON object of default options.
    pub const PARAMS: &str = "application/vnd.ollama.image.params";
    /// JSON array of few-shot messages.
    pub const MESSAGES: &str = "application/vnd.ollama.image.messages";
    /// License text.
    pub const LICENSE: &str = "application/vnd.ollama.image.license";
}

/// A model manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`media_type::MANIFEST`].
    #[serde(default)]
    pub media_type: String,
    /// The config blob.
    pub config: Layer,
    /// Weights, template, system, params, messages, license...
    pub layers: Vec<Layer>,
}

/// One blob referenced from a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// What the blob holds.
    pub media_type: String,
    /// Its content address.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The model this layer was reused from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The config blob (`model.ConfigV2` in Ollama).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigV2 {
    /// `gguf`.
    #[serde(default)]
    pub model_format: String,
    /// Architecture family, e.g. `llama`.
    #[serde(default)]
    pub model_family: String,
    /// All families.
    #[serde(default)]
    pub model_families: Option<Vec<String>>,
    /// Parameter size, e.g. `134.52M`.
    #[serde(default)]
    pub model_type: String,
    /// Quantization, e.g. `Q4_1`.
    #[serde(default)]
    pub file_type: String,
    /// The least Ollama version the model needs (a Modelfile's `REQUIRES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    /// A built-in prompt renderer's name (a Modelfile's `RENDERER`); kept and shown, while
    /// modeld prompts with the chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
    /// A built-in output parser's name (a Modelfile's `PARSER`); kept and shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    /// Extra capabilities declared at create time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Context length from the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// Embedding length from the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_length: Option<u64>,
    /// A remote model: the server it lives on, as Ollama names it (`host:port` of the first
    /// endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// A remote model: its name on the remote side (a Modelfile's `FROM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A remote model: its replicas (a Modelfile's `ENDPOINT` lines), modeld's own field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoints: Option<Vec<crate::RemoteEndpoint>>,
    /// Platform fields Ollama writes.
    #[serde(default)]
    pub architecture: String,
    /// Platform fields Ollama writes.
    #[serde(default)]
    pub os: String,
    /// Fields this version does not know, kept on rewrite.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ConfigV2 {
    /// The model's family: the config's, else the GGUF header's architecture (when there is
    /// one), else empty.
    pub fn family_or_architecture(&self, gguf: Option<&crate::gguf::GgufHeader>) -> String {
        if self.model_family.is_empty() {
            gguf.map(crate::gguf::GgufHeader::architecture).unwrap_or_default()
        } else {
            self.model_family.clone()
        }
    }
}

impl Manifest {
    /// A manifest with the given config and layers.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Manifest {
        Manifest { schema_version: 2, media_type: media_type::MANIFEST.to_owned(), config, layers }
    }

    /// The first layer of the given media type.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|layer| layer.media_type == media_type)
    }

    /// The template layer, under its current or legacy media type.
    pub fn template_layer(&self) -> Option<&Layer> {
        self.layer(media_type::TEMPLATE).or_else(|| self.layer(media_type::PROMPT))
    }

    /// Every blob the manifest references, config included.
    pub fn all_digests(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.config.digest).chain(self.layers.iter().map(|layer| &layer.digest))
    }

    /// Every blob once, layers first and the config last, as registries take them.
    pub fn blobs(&self) -> Vec<&Layer> {
        let mut seen = std::collections::HashSet::new();
        self.layers.iter().chain([&self.config]).filter(|layer| seen.insert(&layer.digest)).collect()
    }

    /// Config plus layer sizes, as `/api/tags` reports.
    pub fn total_size(&self) -> u64 {
        self.config.size + self.layers.iter().map(|layer| layer.size).sum::<u64>()
    }
}
