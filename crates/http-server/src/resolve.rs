//! Turns a model name into everything a request needs: manifest, weights path, template,
//! system prompt, parameters, messages, GGUF facts and capabilities.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use model_formats::FimTemplate;
use model_store::gguf::{self, GgufHeader};
use model_store::{media_type, ConfigV2, Digest, ModelEntry, ModelName, Store};
use ollama_api::{Message, ModelDetails, Options};

use crate::ApiError;

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
    /// System layer text.
    pub system: Option<String>,
    /// Params layer as JSON.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Params layer checked.
    pub options: Options,
    /// Messages layer.
    pub messages: Vec<Message>,
    /// License layers.
    pub licenses: Vec<String>,
}

/// Caches GGUF headers, and what is derived from their vocabulary, by blob digest; blobs are
/// immutable, so entries never go stale.
#[derive(Default)]
pub struct HeaderCache {
    headers: Mutex<HashMap<Digest, CachedHeader>>,
}

/// A GGUF header and its FIM template.
type CachedHeader = (Arc<GgufHeader>, Option<FimTemplate>);

impl HeaderCache {
    /// The header of the GGUF blob `digest`, and its FIM template.
    pub fn header(&self, store: &Store, digest: &Digest) -> Result<CachedHeader, ApiError> {
        if let Some(cached) = self.headers.lock().unwrap().get(digest) {
            return Ok(cached.clone());
        }
        let header = gguf::read_header(&store.blob_path(digest))
            .map_err(|error| ApiError::internal(format!("reading GGUF {digest}: {error}")))?;
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
    /// Reads a model; `ModelNotFound` when absent.
    pub fn load(store: &Store, headers: &HeaderCache, name: &ModelName) -> Result<ResolvedModel, ApiError> {
        let entry = store.get(name)?;
        let manifest = &entry.manifest;
        let config: ConfigV2 = store
            .read_blob_string(&manifest.config.digest)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let model_layer = manifest
            .layer(media_type::MODEL)
            .ok_or_else(|| ApiError::internal(format!("{} has no model layer", entry.name)))?;
        let (gguf, fim) = headers.header(store, &model_layer.digest)?;
        let read_text = |layer: Option<&model_store::Layer>| -> Result<Option<String>, ApiError> {
            layer.map(|layer| store.read_blob_string(&layer.digest).map_err(ApiError::from)).transpose()
        };
        let template_layer = read_text(manifest.template_layer())?;
        let system = read_text(manifest.layer(media_type::SYSTEM))?;
        let parameters: serde_json::Map<String, serde_json::Value> = read_text(manifest.layer(media_type::PARAMS))?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let options = Options::from_map(&parameters).unwrap_or_default();
        let messages: Vec<Message> = read_text(manifest.layer(media_type::MESSAGES))?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let licenses = manifest
            .layers
            .iter()
            .filter(|layer| layer.media_type == media_type::LICENSE)
            .map(|layer| store.read_blob_string(&layer.digest))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResolvedModel {
            name: entry.name.clone(),
            model_path: store.blob_path(&model_layer.digest),
            entry,
            config,
            gguf,
            fim,
            template_layer,
            system,
            parameters,
            options,
            messages,
            licenses,
        })
    }

    /// The Jinja chat template used to build prompts: a Jinja template layer, else the one
    /// embedded in the GGUF. Go templates (Ollama's own format) are not executed; the GGUF's
    /// template stands in for them.
    pub fn chat_template(&self) -> Option<String> {
        match &self.template_layer {
            Some(layer) if is_jinja(layer) => Some(layer.clone()),
            _ => self.gguf.chat_template(),
        }
    }

    /// The template text `/api/show` reports.
    pub fn shown_template(&self) -> Option<String> {
        self.template_layer.clone().or_else(|| self.gguf.chat_template())
    }

    /// Capabilities, derived from the weights and template as Ollama derives them.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut capabilities = Vec::new();
        let architecture = self.gguf.architecture();
        if self.gguf.metadata.contains_key(&format!("{architecture}.pooling_type")) {
            capabilities.push("embedding");
        } else {
            capabilities.push("completion");
        }
        let template = self.chat_template();
        if template.as_deref().is_some_and(|template| template.contains("tools")) {
            capabilities.push("tools");
        }
        if self.fim.is_some() {
            capabilities.push("insert");
        }
        if template.as_deref().is_some_and(model_formats::template_supports_thinking) {
            capabilities.push("thinking");
        }
        capabilities
    }

    /// `details` for tags, show and ps.
    pub fn details(&self) -> ModelDetails {
        details_from(&self.config, Some(&self.gguf))
    }

    /// The context length the weights were trained for.
    pub fn trained_context_length(&self) -> Option<u64> {
        self.gguf.context_length().or(self.config.context_length)
    }
}

/// `details` from a config blob, filled from the GGUF header where the config is silent.
pub(crate) fn details_from(config: &ConfigV2, gguf: Option<&GgufHeader>) -> ModelDetails {
    let family = if config.model_family.is_empty() {
        gguf.map(GgufHeader::architecture).unwrap_or_default()
    } else {
        config.model_family.clone()
    };
    ModelDetails {
        parent_model: String::new(),
        format: if config.model_format.is_empty() { "gguf".into() } else { config.model_format.clone() },
        families: config.model_families.clone().or_else(|| (!family.is_empty()).then(|| vec![family.clone()])),
        family,
        parameter_size: if config.model_type.is_empty() {
            gguf.map(GgufHeader::parameter_size).unwrap_or_default()
        } else {
            config.model_type.clone()
        },
        quantization_level: if config.file_type.is_empty() {
            gguf.map(GgufHeader::quantization_level).unwrap_or_default()
        } else {
            config.file_type.clone()
        },
    }
}

/// Whether template text is Jinja rather than a Go template.
pub fn is_jinja(template: &str) -> bool {
    template.contains("{%") || (template.contains("{{") && !template.contains("{{ .") && !template.contains("{{- ."))
}
