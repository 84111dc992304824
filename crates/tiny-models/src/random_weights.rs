//! Models of real shapes with random quantized weights, for measuring speed: `modeld bench`
//! needs a second architecture and a larger size than SmolLM2, and speed does not depend on
//! what the weights say.
//!
//! The blocks are written as stored (no quantizer runs), from a seeded generator, so the same
//! recipe always gives the same file. Scales are chosen so that activations stay in the range
//! of trained models (weights of standard deviation about 0.02), with no infinities.

use model_store::gguf::{write_gguf_tensors, GgmlType, TensorValues, WriteValue};

/// The shapes [`random_recipe`] knows.
pub const RANDOM_RECIPE_NAMES: &[&str] = &["qwen2-0.5b-q4_1"];

/// ChatML, as Qwen2 instruct models use it.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
'<|im_start|>assistant\\n' }}{% endif %}";

/// A model shape with random weights: matrices in `matrix_type`, the (tied) token embeddings in
/// `embedding_type`, norms and biases in F32.
#[derive(Debug, Clone)]
pub struct RandomModel {
    /// `general.name`.
    pub name: String,
    /// `general.architecture`; also the prefix of the shape's metadata keys.
    pub architecture: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub context_length: usize,
    pub rope_freq_base: f32,
    /// Whether q, k and v projections have biases (Qwen2 does).
    pub attention_bias: bool,
    pub matrix_type: RandomBlockType,
    pub embedding_type: RandomBlockType,
    /// Seed of the weights.
    pub seed: u64,
}

/// The quantized types random blocks can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomBlockType {
    /// Scale and minimum (two `f16`), then 32 four-bit values.
    Q4_1,
    /// Scale (`f16`), then 32 signed bytes.
    Q8_0,
}

impl RandomBlockType {
    fn ggml_type(self) -> GgmlType {
        let id = match self {
            RandomBlockType::Q4_1 => 3,
            RandomBlockType::Q8_0 => 8,
        };
        GgmlType::from_id(id).expect("a GGML type of the table")
    }

    /// `rows` rows of `columns` random values (`columns` a multiple of 32).
    fn random_blocks(self, columns: usize, rows: usize, random: &mut SplitMix64) -> Vec<u8> {
        let kind = self.ggml_type();
        let n_blocks = columns / kind.block_elements as usize * rows;
        let mut bytes = Vec::with_capacity(n_blocks * kind.block_bytes as usize);
        // Uniform values in [-HALF_RANGE, HALF_RANGE]: a standard deviation of about 0.02.
        const HALF_RANGE: f32 = 0.035;
        for _ in 0..n_blocks {
            match self {
                RandomBlockType::Q4_1 => {
                    bytes.extend_from_slice(&half::f16::from_f32(2.0 * HALF_RANGE / 15.0).to_le_bytes());
                    bytes.extend_from_slice(&half::f16::from_f32(-HALF_RANGE).to_le_bytes());
                    bytes.extend_from_slice(&random.next().to_le_bytes());
                    bytes.extend_from_slice(&random.next().to_le_bytes());
                }
                RandomBlockType::Q8_0 => {
                    bytes.extend_from_slice(&half::f16::from_f32(HALF_RANGE / 127.0).to_le_bytes());
                    for _ in 0..4 {
                        // Signed bytes from -127 to 127 (-128 is outside llama.cpp's range).
                        let word = random.next().to_le_bytes().map(|byte| if byte == 0x80 { 0x81 } else { byte });
                        bytes.extend_from_slice(&word);
                    }
                }
            }
        }
        bytes
    }
}

/// A random-weights recipe by name.
pub fn random_recipe(name: &str) -> Option<RandomModel> {
    match name {
        // Qwen2.5-0.5B-Instruct's shape, in Q4_1 with Q8_0 tied embeddings (how llama.cpp's
        // `llama-quantize Q4_1` writes a model with tied embeddings).
        "qwen2-0.5b-q4_1" => Some(RandomModel {
            name: "random-qwen2-0.5b".into(),
            architecture: "qwen2".into(),
            n_vocab: 151_936,
            n_embd: 896,
            n_layer: 24,
            n_head: 14,
            n_head_kv: 2,
            n_ff: 4864,
            context_length: 32_768,
            rope_freq_base: 1_000_000.0,
            attention_bias: true,
            matrix_type: RandomBlockType::Q4_1,
            embedding_type: RandomBlockType::Q8_0,
            seed: 0x5eed,
        }),
        _ => None,
    }
}

impl RandomModel {
    /// Parameters, as `general.parameter_count` would say.
    pub fn parameter_count(&self) -> usize {
        let head_dimension = self.n_embd / self.n_head;
        let kv_width = head_dimension * self.n_head_kv;
        let attention = 2 * self.n_embd * self.n_embd + 2 * self.n_embd * kv_width;
        let biases = if self.attention_bias { self.n_embd + 2 * kv_width } else { 0 };
        let layer = attention + biases + 3 * self.n_embd * self.n_ff + 2 * self.n_embd;
        self.n_vocab * self.n_embd + self.n_layer * layer + self.n_embd
    }

    /// The vocabulary: GPT-2's 256 byte tokens, Qwen's three control tokens, and fillers up to
    /// `n_vocab` (reachable only by sampling, as there are no merges).
    fn tokens(&self) -> (Vec<String>, Vec<i32>) {
        let mut tokens: Vec<String> = crate::byte_level_alphabet().into_iter().map(String::from).collect();
        let mut types = vec![1; tokens.len()];
        for control in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
            tokens.push(control.to_owned());
            types.push(3);
        }
        while tokens.len() < self.n_vocab {
            tokens.push(format!("<|filler_{}|>", tokens.len()));
            types.push(1);
        }
        (tokens, types)
    }

    /// The GGUF file.
    pub fn to_gguf(&self) -> Result<Vec<u8>, String> {
        if !self.n_embd.is_multiple_of(self.n_head) || !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(format!("{} heads do not divide {} dimensions into groups", self.n_head, self.n_embd));
        }
        if !self.n_embd.is_multiple_of(32) || !self.n_ff.is_multiple_of(32) {
            return Err("widths must be multiples of the 32-element block".to_owned());
        }
        let (tokens, token_types) = self.tokens();
        let kv_width = self.n_embd / self.n_head * self.n_head_kv;
        let mut random = SplitMix64(self.seed);
        let (n_embd, n_ff) = (self.n_embd, self.n_ff);
        let shape = |columns: usize, rows: usize| vec![columns as u64, rows as u64];

        let mut tensors: Vec<(String, Vec<u64>, TensorValues)> = Vec::new();
        let embedding = self.embedding_type.random_blocks(n_embd, self.n_vocab, &mut random);
        let embedding = TensorValues::Blocks { kind: self.embedding_type.ggml_type(), bytes: embedding };
        tensors.push(("token_embd.weight".into(), shape(n_embd, self.n_vocab), embedding));
        tensors.push(("output_norm.weight".into(), vec![n_embd as u64], TensorValues::F32(vec![1.0; n_embd])));
        for layer in 0..self.n_layer {
            let mut matrix = |name: &str, columns: usize, rows: usize| {
                let bytes = self.matrix_type.random_blocks(columns, rows, &mut random);
                let values = TensorValues::Blocks { kind: self.matrix_type.ggml_type(), bytes };
                (format!("blk.{layer}.{name}.weight"), shape(columns, rows), values)
            };
            let norm = |name: &str| {
                (format!("blk.{layer}.{name}.weight"), vec![n_embd as u64], TensorValues::F32(vec![1.0; n_embd]))
            };
            tensors.push(norm("attn_norm"));
            tensors.push(matrix("attn_q", n_embd, n_embd));
            tensors.push(matrix("attn_k", n_embd, kv_width));
            tensors.push(matrix("attn_v", n_embd, kv_width));
            tensors.push(matrix("attn_output", n_embd, n_embd));
            tensors.push(norm("ffn_norm"));
            tensors.push(matrix("ffn_gate", n_embd, n_ff));
            tensors.push(matrix("ffn_up", n_embd, n_ff));
            tensors.push(matrix("ffn_down", n_ff, n_embd));
            if self.attention_bias {
                for (name, width) in [("attn_q", n_embd), ("attn_k", kv_width), ("attn_v", kv_width)] {
                    let bias = TensorValues::F32(vec![0.0; width]);
                    tensors.push((format!("blk.{layer}.{name}.bias"), vec![width as u64], bias));
                }
            }
        }

        let arch = &self.architecture;
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let file_type = match self.matrix_type {
            RandomBlockType::Q4_1 => 3,
            RandomBlockType::Q8_0 => 7,
        };
        let keys: Vec<(String, WriteValue)> = vec![
            ("general.architecture".into(), WriteValue::String(arch.clone())),
            ("general.name".into(), WriteValue::String(self.name.clone())),
            ("general.file_type".into(), WriteValue::U32(file_type)),
            (key("context_length"), WriteValue::U32(self.context_length as u32)),
            (key("embedding_length"), WriteValue::U32(n_embd as u32)),
            (key("block_count"), WriteValue::U32(self.n_layer as u32)),
            (key("feed_forward_length"), WriteValue::U32(n_ff as u32)),
            (key("attention.head_count"), WriteValue::U32(self.n_head as u32)),
            (key("attention.head_count_kv"), WriteValue::U32(self.n_head_kv as u32)),
            (key("attention.layer_norm_rms_epsilon"), WriteValue::F32(1e-6)),
            (key("rope.freq_base"), WriteValue::F32(self.rope_freq_base)),
            ("tokenizer.ggml.model".into(), WriteValue::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), WriteValue::String("qwen2".into())),
            ("tokenizer.ggml.tokens".into(), WriteValue::Strings(tokens)),
            ("tokenizer.ggml.token_type".into(), WriteValue::I32s(token_types)),
            ("tokenizer.ggml.merges".into(), WriteValue::Strings(Vec::new())),
            ("tokenizer.ggml.bos_token_id".into(), WriteValue::U32(256)),
            ("tokenizer.ggml.eos_token_id".into(), WriteValue::U32(258)),
            ("tokenizer.ggml.padding_token_id".into(), WriteValue::U32(256)),
            ("tokenizer.ggml.add_bos_token".into(), WriteValue::Bool(false)),
            ("tokenizer.chat_template".into(), WriteValue::String(CHATML_TEMPLATE.into())),
        ];
        // The writer takes borrowed names.
        let metadata: Vec<(&str, WriteValue)> = keys.iter().map(|(key, value)| (key.as_str(), value.clone())).collect();
        let (names, tensors): (Vec<String>, Vec<(Vec<u64>, TensorValues)>) =
            tensors.into_iter().map(|(name, shape, values)| (name, (shape, values))).unzip();
        let tensors: Vec<(&str, Vec<u64>, TensorValues)> =
            names.iter().zip(tensors).map(|(name, (shape, values))| (name.as_str(), shape, values)).collect();
        let mut bytes = Vec::new();
        write_gguf_tensors(&mut bytes, &metadata, &tensors).map_err(|error| error.to_string())?;
        Ok(bytes)
    }
}

/// A small seeded generator (SplitMix64): fast, and the same on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RandomModel {
        RandomModel {
            name: "small".into(),
            n_vocab: 300,
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 96,
            ..random_recipe("qwen2-0.5b-q4_1").unwrap()
        }
    }

    #[test]
    fn random_model_has_its_shape_and_types_and_is_the_same_every_time() {
        let model = small();
        let bytes = model.to_gguf().unwrap();
        assert_eq!(bytes, model.to_gguf().unwrap(), "seeded: the same file every time");
        let header = model_store::gguf::parse_header(&mut std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(header.architecture(), "qwen2");
        assert_eq!(header.parameter_count(), model.parameter_count() as u64);
        assert_eq!(header.quantization_level(), "Q4_1");
        let kind_of = |name: &str| header.tensors.iter().find(|tensor| tensor.name == name).unwrap().kind.clone();
        assert_eq!(kind_of("token_embd.weight"), "Q8_0");
        assert_eq!(kind_of("blk.1.ffn_down.weight"), "Q4_1");
        assert_eq!(kind_of("blk.1.attn_k.bias"), "F32");
        assert_eq!(header.metadata["tokenizer.ggml.tokens"].as_array().unwrap().len(), 300);
        assert_eq!(header.metadata["qwen2.attention.head_count_kv"], 2);

        let other_seed = RandomModel { seed: 1, ..model.clone() }.to_gguf().unwrap();
        assert_eq!(other_seed.len(), bytes.len());
        assert_ne!(other_seed, bytes);
    }

    #[test]
    fn qwen2_recipe_has_qwen2_5_0_5b_parameter_count() {
        assert_eq!(random_recipe("qwen2-0.5b-q4_1").unwrap().parameter_count(), 494_032_768);
    }

    #[test]
    fn shapes_that_do_not_split_into_blocks_or_heads_are_refused() {
        assert!(RandomModel { n_embd: 60, n_head: 4, ..small() }.to_gguf().is_err());
        assert!(RandomModel { n_head: 3, ..small() }.to_gguf().is_err());
        assert!(RandomModel { n_ff: 100, ..small() }.to_gguf().is_err());
    }

    #[test]
    fn q8_0_blocks_never_hold_minus_128() {
        let bytes = RandomBlockType::Q8_0.random_blocks(32 * 64, 64, &mut SplitMix64(7));
        for block in bytes.chunks(34) {
            assert!(block[2..].iter().all(|&byte| byte != 0x80));
        }
    }
}
