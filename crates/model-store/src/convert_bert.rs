//! Importing a Hugging Face BERT encoder (a sentence-transformers folder: `config.json`,
//! `tokenizer.json`, `model.safetensors`, `modules.json` and the pooling config) as one GGUF
//! file in the layout Ollama writes for it: `bert.*` keys, a WordPiece vocabulary spelled with
//! `▁` for word starts, tensors renamed (`blk.N.attn_q`...), matrices in F16 and vectors,
//! biases and token types in F32.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::gguf::{write_gguf_tensors, TensorValues, WriteValue};
use crate::safetensors::{ElementType, SafetensorsError, SafetensorsFile};

/// Largest JSON file of the folder read (tokenizer.json of a large vocabulary is a few MB).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// Why a folder could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn invalid(message: impl Into<String>) -> ConvertError {
    ConvertError::Invalid(message.into())
}

/// Whether `files` (paths relative to the model's folder) look like a BERT encoder.
pub fn is_bert_folder(files: &BTreeMap<String, PathBuf>) -> bool {
    let Some(path) = files.get("config.json") else { return false };
    read_json(path).ok().is_some_and(|config| {
        config["architectures"]
            .as_array()
            .is_some_and(|names| names.iter().filter_map(Value::as_str).any(|name| name.starts_with("Bert")))
    })
}

fn read_json(path: &std::path::Path) -> Result<Value, ConvertError> {
    let length = std::fs::metadata(path)?.len();
    if length > MAX_JSON_BYTES {
        return Err(invalid(format!("{} is {length} bytes, more than a model's JSON file holds", path.display())));
    }
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|error| invalid(format!("{}: {error}", path.display())))
}

/// The GGUF file of the BERT folder `files`, as bytes.
pub fn convert_bert(files: &BTreeMap<String, PathBuf>) -> Result<Vec<u8>, ConvertError> {
    let json = |name: &str| -> Result<Value, ConvertError> {
        read_json(files.get(name).ok_or_else(|| invalid(format!("{name} is missing")))?)
    };
    let optional_json = |name: &str| files.get(name).map(|path| read_json(path)).transpose();
    let config = json("config.json")?;
    let size = |key: &str| -> Result<u64, ConvertError> {
        config[key].as_u64().filter(|value| *value > 0).ok_or_else(|| invalid(format!("config.json: no {key}")))
    };
    let hidden = size("hidden_size")?;
    let n_layers = size("num_hidden_layers")?;
    let heads = size("num_attention_heads")?;
    let feed_forward = size("intermediate_size")?;
    // sentence-transformers truncates at its `max_seq_length` (256 for all-MiniLM, whose
    // position table has 512 rows): the context is that, so vectors match its own, and the
    // position table keeps those rows (llama.cpp requires the two to agree).
    let positions = size("max_position_embeddings")?;
    let context = optional_json("sentence_bert_config.json")?
        .and_then(|config| config["max_seq_length"].as_u64())
        .filter(|length| (1..=positions).contains(length))
        .unwrap_or(positions);
    let epsilon = config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32;
    let activation = config["hidden_act"].as_str().unwrap_or("gelu");
    if activation != "gelu" {
        return Err(invalid(format!("config.json: activation {activation} is not supported (only gelu)")));
    }
    if n_layers > 1024 || !hidden.is_multiple_of(heads) {
        return Err(invalid("config.json: the layer sizes do not fit together"));
    }

    let tokenizer = json("tokenizer.json")?;
    let vocabulary = Vocabulary::from_tokenizer_json(&tokenizer, &optional_json("tokenizer_config.json")?)?;
    let (pooling, normalize) = pooling(files, &optional_json("modules.json")?)?;

    let mut metadata: Vec<(&str, WriteValue)> = vec![
        ("general.architecture", WriteValue::String("bert".into())),
        ("general.file_type", WriteValue::U32(1)),
        ("general.quantization_version", WriteValue::U32(2)),
        ("bert.block_count", WriteValue::U32(n_layers as u32)),
        ("bert.context_length", WriteValue::U32(context as u32)),
        ("bert.embedding_length", WriteValue::U32(hidden as u32)),
        ("bert.feed_forward_length", WriteValue::U32(feed_forward as u32)),
        ("bert.attention.head_count", WriteValue::U32(heads as u32)),
        ("bert.attention.layer_norm_epsilon", WriteValue::F32(epsilon)),
        ("bert.attention.causal", WriteValue::Bool(false)),
        ("bert.pooling_type", WriteValue::U32(pooling)),
        ("bert.normalize_embeddings", WriteValue::Bool(normalize)),
        ("tokenizer.ggml.model", WriteValue::String("bert".into())),
        ("tokenizer.ggml.pre", WriteValue::String("default".into())),
        ("tokenizer.ggml.normalizer.lowercase", WriteValue::Bool(vocabulary.lowercase)),
        ("tokenizer.ggml.token_type_count", WriteValue::U32(2)),
    ];
    for (key, id) in &vocabulary.special_ids {
        metadata.push((key, WriteValue::U32(*id)));
    }
    metadata.push(("tokenizer.ggml.tokens", WriteValue::Strings(vocabulary.gguf_tokens())));
    metadata
        .push(("tokenizer.ggml.scores", WriteValue::F32s((0..vocabulary.tokens.len()).map(|id| id as f32).collect())));
    metadata.push(("tokenizer.ggml.token_type", WriteValue::I32s(vocabulary.token_types.clone())));

    let weights_path = files
        .iter()
        .find(|(name, _)| name.ends_with(".safetensors") && !name.contains('/'))
        .map(|(_, path)| path)
        .ok_or_else(|| invalid("no .safetensors weights in the model's folder"))?;
    let mut weights = SafetensorsFile::open(weights_path)?;
    let mut tensors = Vec::new();
    for (source_name, entry) in weights.tensors.clone() {
        let Some(name) = gguf_tensor_name(&source_name) else { continue };
        if !matches!(entry.element_type, ElementType::F32 | ElementType::F16 | ElementType::BF16) {
            return Err(invalid(format!("{source_name}: {:?} weights are not supported", entry.element_type)));
        }
        let mut values = weights.read_f32(&source_name)?;
        let mut shape: Vec<u64> = entry.shape.iter().rev().copied().collect();
        if name == "position_embd.weight" && shape.len() == 2 && shape[1] > context {
            // Only the positions served: llama.cpp checks the table against the context.
            shape[1] = context;
            values.truncate((shape[0] * context) as usize);
        }
        let values = if entry.shape.len() >= 2 && !name.ends_with(".bias") && name != "token_types.weight" {
            TensorValues::F16(values.iter().map(|value| half::f16::from_f32(*value).to_bits()).collect())
        } else {
            TensorValues::F32(values)
        };
        tensors.push((name, shape, values));
    }
    for required in ["token_embd.weight", "position_embd.weight", "token_types.weight", "token_embd_norm.weight"] {
        if !tensors.iter().any(|(name, _, _)| name == required) {
            return Err(invalid(format!("the weights have no tensor for {required}")));
        }
    }
    let tensors: Vec<(&str, Vec<u64>, TensorValues)> =
        tensors.iter().map(|(name, shape, values)| (name.as_str(), shape.clone(), values.clone())).collect();
    let mut bytes = Vec::new();
    write_gguf_tensors(&mut bytes, &metadata, &tensors)?;
    Ok(bytes)
}

/// The GGUF name of a Hugging Face BERT tensor; `None` for those the encoder does not use
/// (the pooler, the masked-LM head, position ids).
pub fn gguf_tensor_name(name: &str) -> Option<String> {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    if name.starts_with("pooler.") || name.starts_with("cls.") || name.ends_with("position_ids") {
        return None;
    }
    const RENAMES: &[(&str, &str)] = &[
        ("encoder.layer.", "blk."),
        ("embeddings.word_embeddings", "token_embd"),
        ("embeddings.token_type_embeddings", "token_types"),
        ("embeddings.LayerNorm", "token_embd_norm"),
        ("embeddings.position_embeddings", "position_embd"),
        ("attention.self.query", "attn_q"),
        ("attention.self.key", "attn_k"),
        ("attention.self.value", "attn_v"),
        ("attention.output.dense", "attn_output"),
        ("attention.output.LayerNorm", "attn_output_norm"),
        ("intermediate.dense", "ffn_up"),
        ("output.dense", "ffn_down"),
        ("output.LayerNorm", "layer_output_norm"),
    ];
    let mut renamed = String::with_capacity(name.len());
    let mut rest = name;
    'outer: while !rest.is_empty() {
        for (from, to) in RENAMES {
            if let Some(after) = rest.strip_prefix(from) {
                renamed.push_str(to);
                rest = after;
                continue 'outer;
            }
        }
        let next = rest.chars().next().unwrap();
        renamed.push(next);
        rest = &rest[next.len_utf8()..];
    }
    Some(renamed)
}

/// The pooling type (GGUF numbering: 1 mean, 2 CLS, 3 last) and whether the model normalises,
/// from sentence-transformers' modules; mean without them, as sentence-transformers does for
/// a bare encoder.
fn pooling(files: &BTreeMap<String, PathBuf>, modules: &Option<Value>) -> Result<(u32, bool), ConvertError> {
    let Some(modules) = modules.as_ref().and_then(Value::as_array) else { return Ok((1, false)) };
    let module =
        |kind: &str| modules.iter().find(|module| module["type"].as_str().is_some_and(|name| name.ends_with(kind)));
    let normalize = module(".Normalize").is_some();
    let Some(pooling_module) = module(".Pooling") else { return Ok((1, normalize)) };
    let folder = pooling_module["path"].as_str().unwrap_or("1_Pooling").trim_end_matches('/');
    let Some(path) = files.get(&format!("{folder}/config.json")) else { return Ok((1, normalize)) };
    let config = read_json(path)?;
    let flag = |key: &str| config[key].as_bool().unwrap_or(false);
    let pooling = if flag("pooling_mode_mean_tokens") {
        1
    } else if flag("pooling_mode_cls_token") {
        2
    } else if flag("pooling_mode_lasttoken") {
        3
    } else {
        return Err(invalid(format!("{folder}/config.json: a pooling mode other than mean, CLS or last token")));
    };
    Ok((pooling, normalize))
}

/// The WordPiece vocabulary of `tokenizer.json`, in id order.
struct Vocabulary {
    tokens: Vec<String>,
    token_types: Vec<i32>,
    special_ids: Vec<(&'static str, u32)>,
    lowercase: bool,
}

impl Vocabulary {
    fn from_tokenizer_json(tokenizer: &Value, tokenizer_config: &Option<Value>) -> Result<Vocabulary, ConvertError> {
        let model = &tokenizer["model"];
        if model["type"].as_str() != Some("WordPiece") {
            return Err(invalid("tokenizer.json: only WordPiece vocabularies are imported for BERT"));
        }
        let vocab = model["vocab"].as_object().ok_or_else(|| invalid("tokenizer.json: no vocabulary"))?;
        let mut by_id: BTreeMap<u64, (String, i32)> = BTreeMap::new();
        for (token, id) in vocab {
            let id = id.as_u64().ok_or_else(|| invalid("tokenizer.json: a token id is not a number"))?;
            by_id.insert(id, (token.clone(), 1));
        }
        for added in tokenizer["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else { continue };
            let token_type = if added["special"].as_bool().unwrap_or(false) { 3 } else { 4 };
            by_id.insert(id, (content.to_owned(), token_type));
        }
        if by_id.keys().enumerate().any(|(index, id)| index as u64 != *id) {
            return Err(invalid("tokenizer.json: the token ids have gaps"));
        }
        let (tokens, token_types): (Vec<String>, Vec<i32>) = by_id.into_values().unzip();
        let id_of = |content: &str| tokens.iter().position(|token| token == content).map(|id| id as u32);
        let configured = |key: &str, default: &str| -> String {
            let value = tokenizer_config.as_ref().map(|config| &config[key]);
            value.and_then(|value| value.as_str().or_else(|| value["content"].as_str())).unwrap_or(default).to_owned()
        };
        let mut special_ids = Vec::new();
        for (key, config_key, default) in [
            ("tokenizer.ggml.padding_token_id", "pad_token", "[PAD]"),
            ("tokenizer.ggml.unknown_token_id", "unk_token", "[UNK]"),
            ("tokenizer.ggml.cls_token_id", "cls_token", "[CLS]"),
            ("tokenizer.ggml.seperator_token_id", "sep_token", "[SEP]"),
            ("tokenizer.ggml.mask_token_id", "mask_token", "[MASK]"),
        ] {
            if let Some(id) = id_of(&configured(config_key, default)) {
                special_ids.push((key, id));
            }
        }
        for required in
            ["tokenizer.ggml.unknown_token_id", "tokenizer.ggml.cls_token_id", "tokenizer.ggml.seperator_token_id"]
        {
            if !special_ids.iter().any(|(key, _)| *key == required) {
                return Err(invalid(format!("tokenizer.json: no token for {required}")));
            }
        }
        let lowercase = tokenizer["normalizer"]["lowercase"]
            .as_bool()
            .or_else(|| tokenizer_config.as_ref().and_then(|config| config["do_lower_case"].as_bool()))
            .unwrap_or(true);
        Ok(Vocabulary { tokens, token_types, special_ids, lowercase })
    }

    /// The tokens spelled as GGUF BERT vocabularies spell them: `[...]` as it is, a `##`
    /// continuation bare, anything else with `▁` in front.
    fn gguf_tokens(&self) -> Vec<String> {
        self.tokens
            .iter()
            .map(|token| {
                if token.starts_with('[') && token.ends_with(']') {
                    token.clone()
                } else if let Some(piece) = token.strip_prefix("##") {
                    piece.to_owned()
                } else {
                    format!("\u{2581}{token}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_follow_ollamas_layout() {
        let cases = [
            ("embeddings.word_embeddings.weight", Some("token_embd.weight")),
            ("bert.embeddings.LayerNorm.bias", Some("token_embd_norm.bias")),
            ("encoder.layer.3.attention.self.query.weight", Some("blk.3.attn_q.weight")),
            ("encoder.layer.0.attention.output.LayerNorm.weight", Some("blk.0.attn_output_norm.weight")),
            ("encoder.layer.11.attention.output.dense.bias", Some("blk.11.attn_output.bias")),
            ("encoder.layer.5.intermediate.dense.weight", Some("blk.5.ffn_up.weight")),
            ("encoder.layer.5.output.dense.weight", Some("blk.5.ffn_down.weight")),
            ("encoder.layer.5.output.LayerNorm.bias", Some("blk.5.layer_output_norm.bias")),
            ("embeddings.position_ids", None),
            ("pooler.dense.weight", None),
            ("cls.predictions.bias", None),
        ];
        for (name, expected) in cases {
            assert_eq!(gguf_tensor_name(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn the_vocabulary_is_spelled_as_gguf_spells_it() {
        let tokenizer = serde_json::json!({
            "normalizer": {"type": "BertNormalizer", "lowercase": true},
            "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "##ing": 5, "[unused0]": 6}},
            "added_tokens": [{"id": 0, "content": "[PAD]", "special": true}, {"id": 2, "content": "[CLS]", "special": true}]
        });
        let vocabulary = Vocabulary::from_tokenizer_json(&tokenizer, &None).unwrap();
        assert_eq!(vocabulary.gguf_tokens(), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u{2581}the", "ing", "[unused0]"]);
        assert_eq!(vocabulary.token_types, [3, 1, 3, 1, 1, 1, 1]);
        assert!(vocabulary.special_ids.contains(&("tokenizer.ggml.seperator_token_id", 3)));
        let gaps = serde_json::json!({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "[CLS]": 2}}});
        assert!(Vocabulary::from_tokenizer_json(&gaps, &None).is_err());
        let bpe = serde_json::json!({"model": {"type": "BPE", "vocab": {}}});
        assert!(Vocabulary::from_tokenizer_json(&bpe, &None).is_err());
    }
}
