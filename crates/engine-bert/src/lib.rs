//! The embedding engine: BERT encoders (all-MiniLM and its kin) from GGUF files in Ollama's and
//! llama.cpp's layout (read with candle), run on the CPU by `cpu-kernels` behind the engine
//! traits, so they load, queue, expire and show in `/api/ps` like every other model.

mod batches;
mod model;
mod vocabulary;

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use cpu_kernels::math::LayerNorm;
use cpu_kernels::matmul::{PackedWeights, Storage};
use engine::{Engine, EngineError, LoadSpec, LoadedModel, ModelDescription};
use tokenizers::Tokenizer;

use crate::model::{Bert, BertConfig, Layer, Pooling};
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
    fn architectures(&self) -> Option<&'static [&'static str]> {
        Some(&["bert"])
    }

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
            .unwrap_or(1e-12),
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

    let mut weights = Weights { content: &content, file: &mut file };
    let epsilon = config.layer_norm_epsilon;
    // Grown as layers load: the count comes from the file.
    let mut layers = Vec::new();
    let hidden = config.hidden;
    for index in 0..n_layers {
        let prefix = format!("blk.{index}");
        let attention = ["attn_q", "attn_k", "attn_v"].map(|name| format!("{prefix}.{name}"));
        let query_key_value = weights.dense(&attention, hidden)?;
        let attention_output = weights.dense(&[format!("{prefix}.attn_output")], hidden)?;
        let up = weights.dense(&[format!("{prefix}.ffn_up")], hidden)?;
        let down = weights.dense(&[format!("{prefix}.ffn_down")], up.outputs())?;
        if query_key_value.outputs() != 3 * hidden || attention_output.outputs() != hidden || down.outputs() != hidden {
            return Err(load_error(format!("the layers of block {index} do not keep a width of {hidden}")));
        }
        layers.push(Layer {
            query_key_value,
            attention_output,
            attention_norm: weights.layer_norm(&format!("{prefix}.attn_output_norm"), epsilon, hidden)?,
            up,
            down,
            output_norm: weights.layer_norm(&format!("{prefix}.layer_output_norm"), epsilon, hidden)?,
        });
    }
    let token_embeddings = weights.matrix("token_embd.weight", hidden)?;
    let position_embeddings = weights.matrix("position_embd.weight", hidden)?;
    let token_types = weights.matrix("token_types.weight", hidden)?;
    let embeddings_norm = weights.layer_norm("token_embd_norm", epsilon, hidden)?;
    let vocabulary_size = token_embeddings.rows();
    let config = BertConfig { context_length: config.context_length.min(position_embeddings.rows()), ..config };
    let bert = Bert {
        config,
        token_embeddings: token_embeddings.values,
        position_embeddings: position_embeddings.values,
        token_type_embedding: token_types.values[..hidden].to_vec(),
        embeddings_norm,
        layers,
    };
    Ok(LoadedBert { bert: Arc::new(bert), tokenizer, separator: vocabulary.separator, vocabulary_size })
}

/// Reads a GGUF's tensors as F32.
struct Weights<'a> {
    content: &'a gguf_file::Content,
    file: &'a mut std::fs::File,
}

/// A tensor as read: its values as F32, its dimensions (outermost first), and whether the file
/// holds it as F16.
struct ReadTensor {
    values: Vec<f32>,
    dimensions: Vec<usize>,
    is_f16: bool,
}

impl ReadTensor {
    /// The outermost dimension: a matrix's rows.
    fn rows(&self) -> usize {
        self.dimensions[0]
    }
}

impl Weights<'_> {
    fn tensor(&mut self, name: &str) -> Result<ReadTensor, EngineError> {
        let quantized = self
            .content
            .tensor(&mut *self.file, name, &Device::Cpu)
            .map_err(|error| load_error(format!("{name}: {error}")))?;
        let is_f16 = quantized.dtype() == candle_core::quantized::GgmlDType::F16;
        let tensor = quantized.dequantize(&Device::Cpu).map_err(load_error)?;
        let dimensions = tensor.dims().to_vec();
        let values = tensor.flatten_all().and_then(|flat| flat.to_vec1::<f32>()).map_err(load_error)?;
        Ok(ReadTensor { values, dimensions, is_f16 })
    }

    /// A matrix of at least one row, `width` wide.
    fn matrix(&mut self, name: &str, width: usize) -> Result<ReadTensor, EngineError> {
        let read = self.tensor(name)?;
        match read.dimensions[..] {
            [rows, columns] if columns == width && rows > 0 => Ok(read),
            _ => Err(load_error(format!("{name} is {:?}, not rows of {width}", read.dimensions))),
        }
    }

    /// A vector of `length` values.
    fn vector(&mut self, name: &str, length: usize) -> Result<Vec<f32>, EngineError> {
        let ReadTensor { values, dimensions, .. } = self.tensor(name)?;
        if dimensions[..] != [length] {
            return Err(load_error(format!("{name} is {dimensions:?}, not {length} values")));
        }
        Ok(values)
    }

    /// One dense layer of the weights and biases under each prefix, side by side, all over
    /// inputs `inputs` wide. Weights the file holds as F16 stay F16 (exactly, in half the
    /// memory); others are F32.
    fn dense(&mut self, prefixes: &[String], inputs: usize) -> Result<PackedWeights, EngineError> {
        let mut parts = Vec::with_capacity(prefixes.len());
        let mut all_f16 = true;
        for prefix in prefixes {
            let weight = self.matrix(&format!("{prefix}.weight"), inputs)?;
            let outputs = weight.rows();
            all_f16 &= weight.is_f16;
            let bias = self.vector(&format!("{prefix}.bias"), outputs)?;
            parts.push((weight.values, bias, outputs));
        }
        let parts: Vec<(&[f32], &[f32], usize)> =
            parts.iter().map(|(weight, bias, outputs)| (&weight[..], &bias[..], *outputs)).collect();
        let storage = if all_f16 { Storage::F16 } else { Storage::F32 };
        Ok(PackedWeights::concatenated(&parts, inputs, storage))
    }

    fn layer_norm(&mut self, prefix: &str, epsilon: f32, width: usize) -> Result<LayerNorm, EngineError> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{prefix}.weight"), width)?,
            bias: self.vector(&format!("{prefix}.bias"), width)?,
            epsilon,
        })
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
            memory_bytes: self.bert.memory_bytes(),
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
            cpu_kernels::on_thread_pool(|| {
                let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
                let threads = cpu_kernels::thread_count();
                let mut vectors = Vec::with_capacity(inputs.len());
                for batch in batches::plan(&lengths) {
                    let parts = batches::split(&lengths[batch.clone()], threads);
                    let embedded: Vec<Vec<Vec<f32>>> = cpu_kernels::map_in_parallel(&parts, |part| {
                        bert.embed(&inputs[batch.start + part.start..batch.start + part.end])
                    });
                    vectors.extend(embedded.into_iter().flatten());
                }
                Ok(vectors)
            })
        })
        .await
        .map_err(|error| EngineError::Request(error.to_string()))?
    }
}
