//! The embedding engine: BERT encoders (all-MiniLM and its kin) from GGUF files in Ollama's and
//! llama.cpp's layout, run on candle on the CPU behind the engine traits, so they load, queue,
//! expire and show in `/api/ps` like every other model.

mod batches;
mod model;
mod vocabulary;

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_nn::LayerNorm;
use engine::{Engine, EngineError, LoadSpec, LoadedModel, ModelDescription};
use tokenizers::Tokenizer;

use crate::model::{Bert, BertConfig, Dense, Layer, Pooling};
use crate::vocabulary::VocabularySpec;

/// Loads BERT GGUF files.
#[derive(Debug, Default)]
pub struct BertEngine;

impl BertEngine {
    pub fn new() -> BertEngine {
        BertEngine
    }
}

#[async_trait::async_trait]
impl Engine for BertEngine {
    async fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn LoadedModel>, EngineError> {
        let path = spec.model_path.clone();
        let model = tokio::task::spawn_blocking(move || load(&path))
            .await
            .map_err(|error| EngineError::Load(error.to_string()))??;
        Ok(Arc::new(model))
    }
}

struct LoadedBert {
    bert: Arc<Bert>,
    tokenizer: Tokenizer,
    separator: u32,
    /// Rows of the token embeddings: token ids from clients are checked against it.
    vocabulary_size: usize,
    memory_bytes: u64,
}

fn load_error(error: impl std::fmt::Display) -> EngineError {
    EngineError::Load(error.to_string())
}

fn load(path: &Path) -> Result<LoadedBert, EngineError> {
    let mut file = std::fs::File::open(path).map_err(load_error)?;
    let content = gguf_file::Content::read(&mut file).map_err(load_error)?;
    let architecture = metadata_string(&content, "general.architecture")?;
    if architecture != "bert" {
        return Err(load_error(format!("the embedding engine runs BERT models, not {architecture}")));
    }
    let number = |key: &str| -> Result<u32, EngineError> {
        content.metadata.get(key).ok_or_else(|| load_error(format!("missing {key}")))?.to_u32().map_err(load_error)
    };
    let pooling_value = number("bert.pooling_type")?;
    let config = BertConfig {
        hidden: number("bert.embedding_length")? as usize,
        heads: number("bert.attention.head_count")? as usize,
        layer_norm_epsilon: content
            .metadata
            .get("bert.attention.layer_norm_epsilon")
            .and_then(|value| value.to_f32().ok())
            .map_or(1e-12, f64::from),
        context_length: number("bert.context_length")? as usize,
        pooling: Pooling::from_gguf(pooling_value)
            .ok_or_else(|| load_error(format!("pooling type {pooling_value} is not supported")))?,
    };
    if config.heads == 0 || !config.hidden.is_multiple_of(config.heads) {
        return Err(load_error(format!("{} heads do not divide a width of {}", config.heads, config.hidden)));
    }
    let n_layers = number("bert.block_count")? as usize;

    let tokens = content
        .metadata
        .get("tokenizer.ggml.tokens")
        .ok_or_else(|| load_error("missing tokenizer.ggml.tokens"))?
        .to_vec()
        .map_err(load_error)?
        .iter()
        .map(|token| token.to_string().cloned().map_err(load_error))
        .collect::<Result<Vec<String>, EngineError>>()?;
    let lowercase = content
        .metadata
        .get("tokenizer.ggml.normalizer.lowercase")
        .and_then(|value| value.to_bool().ok())
        .unwrap_or(true);
    let vocabulary = VocabularySpec {
        unknown: number("tokenizer.ggml.unknown_token_id")?,
        cls: number("tokenizer.ggml.cls_token_id").or_else(|_| number("tokenizer.ggml.bos_token_id"))?,
        separator: number("tokenizer.ggml.seperator_token_id").or_else(|_| number("tokenizer.ggml.eos_token_id"))?,
        tokens,
        lowercase,
    };
    let tokenizer = vocabulary::tokenizer(&vocabulary).map_err(load_error)?;

    let mut weights = Weights { content: &content, file: &mut file, device: Device::Cpu, memory_bytes: 0 };
    let epsilon = config.layer_norm_epsilon;
    // Grown as layers load: the count comes from the file.
    let mut layers = Vec::new();
    for index in 0..n_layers {
        let prefix = format!("blk.{index}");
        let attention = ["attn_q", "attn_k", "attn_v"].map(|name| format!("{prefix}.{name}"));
        layers.push(Layer {
            query_key_value: weights.dense(&attention)?,
            attention_output: weights.dense(&[format!("{prefix}.attn_output")])?,
            attention_norm: weights.layer_norm(&format!("{prefix}.attn_output_norm"), epsilon)?,
            up: weights.dense(&[format!("{prefix}.ffn_up")])?,
            down: weights.dense(&[format!("{prefix}.ffn_down")])?,
            output_norm: weights.layer_norm(&format!("{prefix}.layer_output_norm"), epsilon)?,
        });
    }
    let token_embeddings = weights.tensor("token_embd.weight")?;
    let position_embeddings = weights.tensor("position_embd.weight")?;
    let token_types = weights.tensor("token_types.weight")?;
    let embeddings_norm = weights.layer_norm("token_embd_norm", epsilon)?;
    let (device, memory_bytes) = (weights.device.clone(), weights.memory_bytes);
    let token_type_embedding = token_types.get(0).map_err(load_error)?;
    let (positions, _) = position_embeddings.dims2().map_err(load_error)?;
    let config = BertConfig { context_length: config.context_length.min(positions), ..config };
    let bert =
        Bert { config, token_embeddings, position_embeddings, token_type_embedding, embeddings_norm, layers, device };
    let vocabulary_size = bert.token_embeddings.dims2().map_err(load_error)?.0;
    Ok(LoadedBert { bert: Arc::new(bert), tokenizer, separator: vocabulary.separator, vocabulary_size, memory_bytes })
}

/// Reads a GGUF's tensors as F32, counting their memory.
struct Weights<'a> {
    content: &'a gguf_file::Content,
    file: &'a mut std::fs::File,
    device: Device,
    memory_bytes: u64,
}

impl Weights<'_> {
    fn tensor(&mut self, name: &str) -> Result<Tensor, EngineError> {
        let quantized = self
            .content
            .tensor(&mut *self.file, name, &self.device)
            .map_err(|error| load_error(format!("{name}: {error}")))?;
        let tensor = quantized.dequantize(&self.device).map_err(load_error)?;
        self.memory_bytes += (tensor.elem_count() * 4) as u64;
        Ok(tensor)
    }

    /// One dense layer of the weights and biases under each prefix, side by side.
    fn dense(&mut self, prefixes: &[String]) -> Result<Dense, EngineError> {
        let mut weights = Vec::with_capacity(prefixes.len());
        let mut biases = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            weights.push(self.tensor(&format!("{prefix}.weight"))?);
            biases.push(self.tensor(&format!("{prefix}.bias"))?);
        }
        Dense::new(&weights, &biases).map_err(load_error)
    }

    fn layer_norm(&mut self, prefix: &str, epsilon: f64) -> Result<LayerNorm, EngineError> {
        Ok(LayerNorm::new(self.tensor(&format!("{prefix}.weight"))?, self.tensor(&format!("{prefix}.bias"))?, epsilon))
    }
}

fn metadata_string(content: &gguf_file::Content, key: &str) -> Result<String, EngineError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| load_error(format!("missing {key}")))?
        .to_string()
        .cloned()
        .map_err(load_error)
}

#[async_trait::async_trait]
impl LoadedModel for LoadedBert {
    fn description(&self) -> ModelDescription {
        ModelDescription {
            trained_context_length: Some(self.bert.config.context_length),
            memory_bytes: self.memory_bytes,
            bos_token: None,
            eos_token: None,
        }
    }

    async fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EngineError> {
        let encoding =
            self.tokenizer.encode(text, add_special_tokens).map_err(|error| EngineError::Request(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    async fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        self.tokenizer.decode(tokens, true).map_err(|error| EngineError::Request(error.to_string()))
    }

    fn fit_to_context(&self, tokens: Vec<u32>, limit: usize) -> Vec<u32> {
        let ends_with_separator = tokens.last() == Some(&self.separator);
        vocabulary::fit(tokens, limit.min(self.bert.config.context_length), ends_with_separator)
    }

    async fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        let limit = self.bert.config.context_length;
        if let Some(long) = inputs.iter().find(|input| input.len() > limit) {
            return Err(EngineError::Request(format!(
                "an input of {} tokens is longer than the model's {limit}",
                long.len()
            )));
        }
        let vocabulary_size = self.vocabulary_size;
        if let Some(id) = inputs.iter().flatten().find(|id| **id as usize >= vocabulary_size) {
            return Err(EngineError::Unsupported(format!(
                "token id {id} is outside the vocabulary of {vocabulary_size} tokens"
            )));
        }
        let bert = self.bert.clone();
        tokio::task::spawn_blocking(move || {
            let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
            let mut vectors = vec![Vec::new(); inputs.len()];
            for group in batches::plan(&lengths) {
                let batch: Vec<Vec<u32>> = group.iter().map(|index| inputs[*index].clone()).collect();
                let embedded = bert.embed(&batch).map_err(|error| EngineError::Request(error.to_string()))?;
                for (index, vector) in group.into_iter().zip(embedded) {
                    vectors[index] = vector;
                }
            }
            Ok(vectors)
        })
        .await
        .map_err(|error| EngineError::Request(error.to_string()))?
    }
}
