//! Tiny llama models made by code, whose replies are programmed, so that end-to-end tests can
//! drive the real engine (tokenizer, chat template, sampling, decoding) and still know the
//! exact answer.
//!
//! # How the weights program the reply
//!
//! The vocabulary is the 256 byte-level tokens of GPT-2 BPE (with no merges, every byte is a
//! token) plus added tokens. The embedding of token `i` is the one-hot vector `e_i`, and the
//! single layer's feed-forward weights are zero, so the hidden state at the last position is
//! `e_last` and the output layer reads the next token straight from it: a bigram table,
//! [`TinyModel::rules`]. A token without a rule is followed by the end-of-sequence token.
//!
//! One attention head adds a second input. Every position queries the same direction, and only
//! the [`Trigger`] token has a key there, so when the trigger occurs anywhere earlier in the
//! context the head copies a flag into a spare dimension; otherwise it reads only zero values.
//! The output layer weighs the flag so that [`Trigger::rules`] win over the plain rules, and
//! lose everywhere else. The query and key sit in a head dimension whose rotary frequency is
//! negligible (`rope.freq_base` is huge), so position does not disturb them.

use model_store::gguf::{write_gguf, WriteValue};

pub mod random_weights;

/// The recipes [`recipe`] knows.
pub const RECIPE_NAMES: &[&str] = &["fim", "agent", "mcp-agent"];

/// A programmed model.
#[derive(Debug, Clone)]
pub struct TinyModel {
    /// `general.name`.
    pub name: String,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Tokens beyond the 256 bytes, matched whole in text (GGUF token type "control").
    pub added_tokens: Vec<String>,
    /// The end-of-sequence token; one of `added_tokens`.
    pub eos_token: String,
    /// Bigram rules `(after, next)`, by token text. A single byte's text names its byte token.
    pub rules: Vec<(String, String)>,
    /// Rules that apply instead when a trigger token occurs in the context.
    pub trigger: Option<Trigger>,
}

/// A token whose presence earlier in the context switches some rules.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The token.
    pub token: String,
    /// Rules `(after, next)` taking precedence while the trigger is in the context.
    pub rules: Vec<(String, String)>,
}

const HEAD_DIMENSION: usize = 64;
/// Where queries and keys meet: a head dimension with a negligible rotary frequency.
const QUERY_KEY_DIMENSION: usize = 48;
/// Output weights: plain rule, the flag's pull towards a triggered next token, and the
/// one-hot part of a triggered rule. Chosen so that a triggered rule beats the plain rule
/// only when the flag is on (1 + 1.5 > 2 - 1) and never beats another token's rule (1.5 < 2).
const PLAIN_WEIGHT: f32 = 8.0;
const TRIGGERED_TOKEN_WEIGHT: f32 = 4.0;
const TRIGGERED_FLAG_WEIGHT: f32 = 6.0;
const DISPLACED_FLAG_WEIGHT: f32 = -4.0;

impl TinyModel {
    /// The vocabulary: 256 byte tokens, then the added tokens.
    pub fn tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = byte_level_alphabet().into_iter().map(String::from).collect();
        tokens.extend(self.added_tokens.iter().cloned());
        tokens
    }

    fn token_id(&self, text: &str) -> Result<usize, String> {
        if let Some(index) = self.added_tokens.iter().position(|token| token == text) {
            return Ok(256 + index);
        }
        match text.as_bytes() {
            // Byte token `i` stands for byte `i`.
            [byte] => Ok(usize::from(*byte)),
            _ => Err(format!("{text:?} is neither an added token nor a single byte")),
        }
    }

    /// The GGUF file.
    pub fn to_gguf(&self) -> Result<Vec<u8>, String> {
        let tokens = self.tokens();
        let n_vocab = tokens.len();
        let flag_dimension = n_vocab;
        let n_embd = (n_vocab + 1).div_ceil(HEAD_DIMENSION) * HEAD_DIMENSION;
        let n_head = n_embd / HEAD_DIMENSION;
        let n_ff = HEAD_DIMENSION;
        let eos = self.token_id(&self.eos_token)?;

        let mut token_embd = vec![0f32; n_vocab * n_embd];
        for token in 0..n_vocab {
            token_embd[token * n_embd + token] = 1.0;
        }

        let mut next_of = vec![eos; n_vocab];
        for (after, next) in &self.rules {
            next_of[self.token_id(after)?] = self.token_id(next)?;
        }
        // Output rows are tokens; columns are hidden dimensions.
        let mut output = vec![0f32; n_vocab * n_embd];
        for (after, next) in next_of.iter().enumerate() {
            output[next * n_embd + after] += PLAIN_WEIGHT;
        }

        // Attention: query from every token, key and value only from the trigger; the value
        // lands in the flag dimension.
        let mut attn_q = vec![0f32; n_embd * n_embd];
        let mut attn_k = vec![0f32; n_embd * n_embd];
        let mut attn_v = vec![0f32; n_embd * n_embd];
        let mut attn_output = vec![0f32; n_embd * n_embd];
        if let Some(trigger) = &self.trigger {
            let trigger_id = self.token_id(&trigger.token)?;
            for token in 0..n_vocab {
                attn_q[QUERY_KEY_DIMENSION * n_embd + token] = 1.0;
            }
            attn_k[QUERY_KEY_DIMENSION * n_embd + trigger_id] = 1.0;
            attn_v[trigger_id] = 1.0;
            attn_output[flag_dimension * n_embd] = 1.0 / (n_embd as f32).sqrt();
            for (after, next) in &trigger.rules {
                let (after, next) = (self.token_id(after)?, self.token_id(next)?);
                output[next * n_embd + after] += TRIGGERED_TOKEN_WEIGHT;
                output[next * n_embd + flag_dimension] = TRIGGERED_FLAG_WEIGHT;
                output[next_of[after] * n_embd + flag_dimension] = DISPLACED_FLAG_WEIGHT;
            }
        }

        let ones = vec![1f32; n_embd];
        let (n_embd64, n_vocab64, n_ff64) = (n_embd as u64, n_vocab as u64, n_ff as u64);
        let square = vec![n_embd64, n_embd64];
        let tensors: Vec<(&str, Vec<u64>, Vec<f32>)> = vec![
            ("token_embd.weight", vec![n_embd64, n_vocab64], token_embd),
            ("output_norm.weight", vec![n_embd64], ones.clone()),
            ("output.weight", vec![n_embd64, n_vocab64], output),
            ("blk.0.attn_norm.weight", vec![n_embd64], ones.clone()),
            ("blk.0.attn_q.weight", square.clone(), attn_q),
            ("blk.0.attn_k.weight", square.clone(), attn_k),
            ("blk.0.attn_v.weight", square.clone(), attn_v),
            ("blk.0.attn_output.weight", square, attn_output),
            ("blk.0.ffn_norm.weight", vec![n_embd64], ones),
            ("blk.0.ffn_gate.weight", vec![n_embd64, n_ff64], vec![0.0; n_embd * n_ff]),
            ("blk.0.ffn_up.weight", vec![n_embd64, n_ff64], vec![0.0; n_embd * n_ff]),
            ("blk.0.ffn_down.weight", vec![n_ff64, n_embd64], vec![0.0; n_embd * n_ff]),
        ];

        let token_types: Vec<i32> = (0..n_vocab).map(|index| if index < 256 { 1 } else { 3 }).collect();
        let mut metadata = vec![
            ("general.architecture", WriteValue::String("llama".into())),
            ("general.name", WriteValue::String(self.name.clone())),
            ("general.file_type", WriteValue::U32(0)),
            ("llama.context_length", WriteValue::U32(4096)),
            ("llama.embedding_length", WriteValue::U32(n_embd as u32)),
            ("llama.block_count", WriteValue::U32(1)),
            ("llama.feed_forward_length", WriteValue::U32(n_ff as u32)),
            ("llama.attention.head_count", WriteValue::U32(n_head as u32)),
            ("llama.attention.head_count_kv", WriteValue::U32(n_head as u32)),
            ("llama.attention.layer_norm_rms_epsilon", WriteValue::F32(1e-6)),
            ("llama.rope.dimension_count", WriteValue::U32(HEAD_DIMENSION as u32)),
            ("llama.rope.freq_base", WriteValue::F32(1e30)),
            ("llama.vocab_size", WriteValue::U32(n_vocab as u32)),
            ("tokenizer.ggml.model", WriteValue::String("gpt2".into())),
            ("tokenizer.ggml.pre", WriteValue::String("default".into())),
            ("tokenizer.ggml.tokens", WriteValue::Strings(tokens)),
            ("tokenizer.ggml.token_type", WriteValue::I32s(token_types)),
            ("tokenizer.ggml.merges", WriteValue::Strings(Vec::new())),
            ("tokenizer.ggml.eos_token_id", WriteValue::U32(eos as u32)),
            ("tokenizer.ggml.bos_token_id", WriteValue::U32(eos as u32)),
            ("tokenizer.ggml.add_bos_token", WriteValue::Bool(false)),
        ];
        if let Some(template) = &self.chat_template {
            metadata.push(("tokenizer.chat_template", WriteValue::String(template.clone())));
        }
        let mut bytes = Vec::new();
        write_gguf(&mut bytes, &metadata, &tensors).map_err(|error| error.to_string())?;
        Ok(bytes)
    }
}

/// GPT-2's byte-level alphabet: the character that stands for each byte.
pub fn byte_level_alphabet() -> Vec<char> {
    let printable =
        |byte: u32| (33..=126).contains(&byte) || (161..=172).contains(&byte) || (174..=255).contains(&byte);
    let mut next_spare = 256u32;
    (0..256u32)
        .map(|byte| {
            if printable(byte) {
                char::from_u32(byte).unwrap()
            } else {
                let spare = char::from_u32(next_spare).unwrap();
                next_spare += 1;
                spare
            }
        })
        .collect()
}

/// Tokens StarCoder-family models use for fill-in-the-middle.
pub const FIM_MIDDLE_TEXT: &str = "return left + right";

/// The reply of the `agent` model to a tool result.
pub const AGENT_ANSWER: &str = "It is 18 degrees and sunny in Paris.";

/// The `agent` model's thinking.
pub const AGENT_THINKING: &str = "The user wants the weather, so I call the tools.";

/// The two calls the `agent` model makes, as the text it emits between the tags.
pub const AGENT_CALLS: [&str; 2] = [
    r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}"#,
    r#"{"name": "get_time", "arguments": {"city": "Paris"}}"#,
];

/// The reply of the `mcp-agent` model once the tools answered.
pub const MCP_AGENT_ANSWER: &str = "The tools have answered.";

/// The calls the `mcp-agent` model makes: tools of the MCP reference server
/// `@modelcontextprotocol/server-everything` configured as `everything` (its echo, and its
/// sampling trigger, which asks the daemon's own model for an answer).
pub const MCP_AGENT_CALLS: [&str; 2] = [
    r#"{"name": "everything__echo", "arguments": {"message": "hello from tiny"}}"#,
    r#"{"name": "everything__trigger-sampling-request", "arguments": {"prompt": "Say hello", "maxTokens": 16}}"#,
];

/// A recipe by name.
pub fn recipe(name: &str) -> Option<TinyModel> {
    match name {
        "fim" => Some(fim_model()),
        "agent" => Some(agent_model()),
        "mcp-agent" => Some(agent_with("tiny-mcp-agent", &MCP_AGENT_CALLS, MCP_AGENT_ANSWER)),
        _ => None,
    }
}

/// A StarCoder-style code model: after `<fim_middle>` it writes [`FIM_MIDDLE_TEXT`]. It has no
/// chat template.
pub fn fim_model() -> TinyModel {
    let added =
        ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>", FIM_MIDDLE_TEXT];
    TinyModel {
        name: "tiny-fim".into(),
        chat_template: None,
        added_tokens: added.iter().map(|token| token.to_string()).collect(),
        eos_token: "<|endoftext|>".into(),
        rules: vec![("<fim_middle>".into(), FIM_MIDDLE_TEXT.into())],
        trigger: None,
    }
}

/// A Qwen3-style agent with Qwen3's chat template. After the assistant header it thinks in a
/// `<think>` block, then makes the two [`AGENT_CALLS`]; with thinking switched off (the
/// template closes an empty think block) it calls at once; once a `<tool_response>` is in the
/// context it answers [`AGENT_ANSWER`] instead.
pub fn agent_model() -> TinyModel {
    agent_with("tiny-agent", &AGENT_CALLS, AGENT_ANSWER)
}

/// A Qwen3-style agent that makes the two `calls` and, once a tool replied, says `answer`.
fn agent_with(name: &str, calls: &[&str; 2], answer: &str) -> TinyModel {
    let call = |index: usize| format!("\n{}\n", calls[index]);
    let chain: Vec<String> = vec![
        "\n".into(),
        "<think>".into(),
        format!("\n{AGENT_THINKING}\n"),
        "</think>".into(),
        "\n\n".into(),
        "<tool_call>".into(),
        call(0),
        "</tool_call>".into(),
        "\n<tool_call>".into(),
        call(1),
        "</tool_call>\n".into(),
        "<|im_end|>".into(),
    ];
    let mut added: Vec<String> = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
        answer,
    ]
    .iter()
    .map(|token| token.to_string())
    .collect();
    for token in &chain[1..] {
        if !added.contains(token) {
            added.push(token.clone());
        }
    }
    TinyModel {
        name: name.into(),
        chat_template: Some(include_str!("../../../tests/fixtures/chat_templates/qwen3.jinja").to_owned()),
        added_tokens: added,
        eos_token: "<|im_end|>".into(),
        rules: chain.windows(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect(),
        trigger: Some(Trigger { token: "<tool_response>".into(), rules: vec![("\n".into(), answer.into())] }),
    }
}
