//! The BERT encoder (post-norm, GELU, learned positions) over a padded batch, with mean or CLS
//! pooling: what sentence-transformers runs for all-MiniLM and what Ollama's GGUF layout holds.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;

/// A dense layer whose weight is stored transposed (`[in, out]`, contiguous), applied to the
/// batch's tokens as one 2-D matrix product: the layout the CPU matrix product runs fastest.
pub(crate) struct Dense {
    weight_transposed: Tensor,
    bias: Tensor,
}

impl Dense {
    /// From a weight in PyTorch's `[out, in]` layout; several such weights side by side make
    /// one wider layer (the attention's query, key and value in one product).
    pub(crate) fn new(weights: &[Tensor], biases: &[Tensor]) -> candle_core::Result<Dense> {
        let weight = Tensor::cat(weights, 0)?;
        Ok(Dense { weight_transposed: weight.t()?.contiguous()?, bias: Tensor::cat(biases, 0)? })
    }

    fn forward(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let (n_sequences, length, width) = input.dims3()?;
        let rows = input.reshape((n_sequences * length, width))?;
        let output = rows.matmul(&self.weight_transposed)?.broadcast_add(&self.bias)?;
        output.reshape((n_sequences, length, ()))
    }
}

/// How a sequence's token vectors become one vector (GGUF `bert.pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// The mean over the sequence's tokens, [CLS] and [SEP] included (1).
    Mean,
    /// The first token's vector (2).
    Cls,
    /// The last token's vector (3).
    Last,
}

impl Pooling {
    pub(crate) fn from_gguf(value: u32) -> Option<Pooling> {
        match value {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }
}

/// The sizes read from GGUF metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BertConfig {
    pub(crate) hidden: usize,
    pub(crate) heads: usize,
    pub(crate) layer_norm_epsilon: f64,
    pub(crate) context_length: usize,
    pub(crate) pooling: Pooling,
}

pub(crate) struct Layer {
    /// Query, key and value in one product.
    pub(crate) query_key_value: Dense,
    pub(crate) attention_output: Dense,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) up: Dense,
    pub(crate) down: Dense,
    pub(crate) output_norm: LayerNorm,
}

pub(crate) struct Bert {
    pub(crate) config: BertConfig,
    pub(crate) token_embeddings: Tensor,
    pub(crate) position_embeddings: Tensor,
    /// Row 0 of the token-type embeddings: every input is one segment.
    pub(crate) token_type_embedding: Tensor,
    pub(crate) embeddings_norm: LayerNorm,
    pub(crate) layers: Vec<Layer>,
    pub(crate) device: Device,
}

impl Bert {
    /// One pooled vector per sequence of `batch` (token ids, each no longer than the context),
    /// not normalised. The sequences are padded to the longest; padding is masked out of the
    /// attention and the pooling, so each vector is what the sequence gives alone.
    pub(crate) fn embed(&self, batch: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let n_sequences = batch.len();
        let length = batch.iter().map(Vec::len).max().unwrap_or(0);
        if n_sequences == 0 || length == 0 {
            return Ok(vec![Vec::new(); n_sequences]);
        }
        let mut ids = Vec::with_capacity(n_sequences * length);
        let mut mask = Vec::with_capacity(n_sequences * length);
        for sequence in batch {
            ids.extend(sequence.iter().copied().chain(std::iter::repeat_n(0, length - sequence.len())));
            mask.extend((0..length).map(|position| if position < sequence.len() { 1f32 } else { 0f32 }));
        }
        let ids = Tensor::from_vec(ids, (n_sequences, length), &self.device)?;
        let mask = Tensor::from_vec(mask, (n_sequences, length), &self.device)?;

        let words = self.token_embeddings.index_select(&ids.flatten_all()?, 0)?.reshape((n_sequences, length, ()))?;
        let positions = self.position_embeddings.narrow(0, 0, length)?;
        let mut hidden = words.broadcast_add(&positions)?.broadcast_add(&self.token_type_embedding)?;
        hidden = self.embeddings_norm.forward(&hidden)?;

        // 0 where a token is real, a large negative number where it is padding, for every query.
        let attention_bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((n_sequences, 1, 1, length))?;
        for layer in &self.layers {
            hidden = self.layer(layer, &hidden, &attention_bias)?;
        }
        let pooled = match self.config.pooling {
            Pooling::Mean => {
                let weights = mask.unsqueeze(2)?;
                let sums = hidden.broadcast_mul(&weights)?.sum(1)?;
                let counts = mask.sum_keepdim(1)?;
                sums.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Last => {
                let rows = batch
                    .iter()
                    .enumerate()
                    .map(|(index, sequence)| hidden.get(index)?.get(sequence.len() - 1))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::stack(&rows, 0)?
            }
        };
        pooled.to_dtype(DType::F32)?.to_vec2::<f32>()
    }

    fn layer(&self, layer: &Layer, hidden: &Tensor, attention_bias: &Tensor) -> candle_core::Result<Tensor> {
        let (n_sequences, length, width) = hidden.dims3()?;
        let heads = self.config.heads;
        let head_width = width / heads;
        let query_key_value = layer.query_key_value.forward(hidden)?;
        let split = |index: usize| -> candle_core::Result<Tensor> {
            query_key_value
                .narrow(2, index * width, width)?
                .reshape((n_sequences, length, heads, head_width))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (query, key, value) = (split(0)?, split(1)?, split(2)?);
        let scale = 1.0 / (head_width as f64).sqrt();
        let scores = (query.matmul(&key.t()?)? * scale)?.broadcast_add(attention_bias)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probabilities.matmul(&value)?.transpose(1, 2)?.reshape((n_sequences, length, width))?;
        let attended = layer.attention_norm.forward(&(hidden + layer.attention_output.forward(&context)?)?)?;
        let intermediate = layer.up.forward(&attended)?.gelu_erf()?;
        layer.output_norm.forward(&(&attended + layer.down.forward(&intermediate)?)?)
    }
}
