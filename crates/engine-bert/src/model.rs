//! The BERT encoder (post-norm, GELU, learned positions) over a batch of sequences packed one
//! after another without padding, with mean, CLS or last-token pooling: what sentence-transformers
//! runs for all-MiniLM and what Ollama's GGUF layout holds. The arithmetic is `cpu-kernels`'.

use cpu_kernels::attention::self_attention;
use cpu_kernels::math::{gelu_in_place, LayerNorm};
use cpu_kernels::matmul::{multiply, PackedWeights};

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
    pub(crate) layer_norm_epsilon: f32,
    pub(crate) context_length: usize,
    pub(crate) pooling: Pooling,
}

pub(crate) struct Layer {
    /// Query, key and value in one product.
    pub(crate) query_key_value: PackedWeights,
    pub(crate) attention_output: PackedWeights,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) up: PackedWeights,
    pub(crate) down: PackedWeights,
    pub(crate) output_norm: LayerNorm,
}

pub(crate) struct Bert {
    pub(crate) config: BertConfig,
    /// `vocabulary × hidden`, row-major.
    pub(crate) token_embeddings: Vec<f32>,
    /// `context_length × hidden`, row-major.
    pub(crate) position_embeddings: Vec<f32>,
    /// Row 0 of the token-type embeddings: every input is one segment.
    pub(crate) token_type_embedding: Vec<f32>,
    pub(crate) embeddings_norm: LayerNorm,
    pub(crate) layers: Vec<Layer>,
}

impl Bert {
    /// Bytes its weights hold, as loaded (F16 matrices count two bytes a value).
    pub(crate) fn memory_bytes(&self) -> u64 {
        let norm = |norm: &LayerNorm| norm.weight.len() + norm.bias.len();
        let floats = self.token_embeddings.len()
            + self.position_embeddings.len()
            + self.token_type_embedding.len()
            + norm(&self.embeddings_norm)
            + self.layers.iter().map(|layer| norm(&layer.attention_norm) + norm(&layer.output_norm)).sum::<usize>();
        let matrices: usize = self
            .layers
            .iter()
            .flat_map(|layer| [&layer.query_key_value, &layer.attention_output, &layer.up, &layer.down])
            .map(PackedWeights::memory_bytes)
            .sum();
        (floats * size_of::<f32>() + matrices) as u64
    }

    /// One pooled vector per sequence of `batch` (token ids inside the vocabulary, each sequence
    /// no longer than the context), not normalised; an empty sequence gives an empty vector.
    /// Each vector is what its sequence gives alone: sequences share only the matrix products.
    pub(crate) fn embed(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let width = self.config.hidden;
        let lengths: Vec<usize> = batch.iter().map(Vec::len).collect();
        let rows: usize = lengths.iter().sum();
        if rows == 0 {
            return vec![Vec::new(); batch.len()];
        }
        let mut hidden = vec![0f32; rows * width];
        for (row, (position, token)) in
            hidden.chunks_exact_mut(width).zip(batch.iter().flat_map(|sequence| sequence.iter().enumerate()))
        {
            let token = &self.token_embeddings[*token as usize * width..][..width];
            let position = &self.position_embeddings[position * width..][..width];
            for (((value, token), position), token_type) in
                row.iter_mut().zip(token).zip(position).zip(&self.token_type_embedding)
            {
                *value = token + position + token_type;
            }
            self.embeddings_norm.apply(row);
        }

        let mut query_key_value = vec![0f32; rows * 3 * width];
        let mut context = vec![0f32; rows * width];
        let mut attended = vec![0f32; rows * width];
        // Sized per layer: the feed-forward width is each layer's own.
        let mut intermediate = Vec::new();
        for layer in &self.layers {
            multiply(&hidden, rows, &layer.query_key_value, &mut query_key_value);
            self_attention(&query_key_value, &lengths, self.config.heads, &mut context);
            multiply(&context, rows, &layer.attention_output, &mut attended);
            layer.attention_norm.add_and_apply(&mut attended, &hidden);
            intermediate.resize(rows * layer.up.outputs(), 0.0);
            multiply(&attended, rows, &layer.up, &mut intermediate);
            gelu_in_place(&mut intermediate);
            multiply(&intermediate, rows, &layer.down, &mut hidden);
            layer.output_norm.add_and_apply(&mut hidden, &attended);
        }

        let mut vectors = Vec::with_capacity(batch.len());
        let mut first = 0;
        for length in lengths {
            let sequence = &hidden[first * width..(first + length) * width];
            first += length;
            if length == 0 {
                vectors.push(Vec::new());
                continue;
            }
            let vector = match self.config.pooling {
                Pooling::Mean => {
                    let mut sums = vec![0f32; width];
                    for row in sequence.chunks_exact(width) {
                        for (sum, value) in sums.iter_mut().zip(row) {
                            *sum += value;
                        }
                    }
                    sums.iter().map(|sum| sum / length as f32).collect()
                }
                Pooling::Cls => sequence[..width].to_vec(),
                Pooling::Last => sequence[(length - 1) * width..].to_vec(),
            };
            vectors.push(vector);
        }
        vectors
    }
}
