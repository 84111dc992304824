//! Runtime `options` (also Modelfile `PARAMETER`s), checked field by field as Ollama checks them.

use serde_json::{Map, Value};

/// Calls `$each!` with every field of [`Options`], so that what goes over all of them names
/// each once.
macro_rules! every_option {
    ($each:ident) => {
        $each!(
            num_ctx,
            num_batch,
            num_thread,
            num_keep,
            seed,
            num_predict,
            top_k,
            top_p,
            min_p,
            typical_p,
            repeat_last_n,
            temperature,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            stop
        )
    };
}

/// Options a request or model sets; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Context window in tokens.
    pub num_ctx: Option<i64>,
    /// Batch size (accepted, not used).
    pub num_batch: Option<i64>,
    /// Threads (accepted, not used).
    pub num_thread: Option<i64>,
    /// Tokens kept from the start when truncating.
    pub num_keep: Option<i64>,
    /// Random seed; negative means random.
    pub seed: Option<i64>,
    /// Maximum tokens to generate; negative means unbounded.
    pub num_predict: Option<i64>,
    /// Top-k sampling.
    pub top_k: Option<i64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Min-p sampling.
    pub min_p: Option<f64>,
    /// Typical sampling (accepted, not used).
    pub typical_p: Option<f64>,
    /// Window of the repeat penalty.
    pub repeat_last_n: Option<i64>,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Repeat penalty.
    pub repeat_penalty: Option<f64>,
    /// Presence penalty.
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f64>,
    /// Stop sequences.
    pub stop: Option<Vec<String>>,
}

/// An option of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option \"{key}\" must be of {expected}")]
pub struct OptionsError {
    /// The offending key.
    pub key: String,
    /// `type integer`, `type float32`, `type boolean`, `type array` or `an array of strings`.
    pub expected: &'static str,
}

/// Keys Ollama removed or never uses at run time; clients still send them.
const IGNORED_KEYS: &[&str] = &[
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "numa",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "use_mmap",
    "tfs_z",
    "embedding_only",
    "num_gpu",
    "main_gpu",
    "draft_num_predict",
];

impl Options {
    /// Checks the types of a JSON options object. Unknown and removed keys are ignored, as
    /// Ollama ignores them.
    pub fn from_map(map: &Map<String, Value>) -> Result<Options, OptionsError> {
        let mut options = Options::default();
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let integer = || {
                value
                    .as_f64()
                    .map(|float| float as i64)
                    .ok_or(OptionsError { key: key.clone(), expected: "type integer" })
            };
            let float = || value.as_f64().ok_or(OptionsError { key: key.clone(), expected: "type float32" });
            match key.as_str() {
                "num_ctx" => options.num_ctx = Some(integer()?),
                "num_batch" => options.num_batch = Some(integer()?),
                "num_thread" => options.num_thread = Some(integer()?),
                "num_keep" => options.num_keep = Some(integer()?),
                "seed" => options.seed = Some(integer()?),
                "num_predict" => options.num_predict = Some(integer()?),
                "top_k" => options.top_k = Some(integer()?),
                "repeat_last_n" => options.repeat_last_n = Some(integer()?),
                "top_p" => options.top_p = Some(float()?),
                "min_p" => options.min_p = Some(float()?),
                "typical_p" => options.typical_p = Some(float()?),
                "temperature" => options.temperature = Some(float()?),
                "repeat_penalty" => options.repeat_penalty = Some(float()?),
                "presence_penalty" => options.presence_penalty = Some(float()?),
                "frequency_penalty" => options.frequency_penalty = Some(float()?),
                "stop" => {
                    let Value::Array(items) = value else {
                        return Err(OptionsError { key: key.clone(), expected: "type array" });
                    };
                    let stop = items
                        .iter()
                        .map(|item| item.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(OptionsError { key: key.clone(), expected: "an array of strings" })?;
                    options.stop = Some(stop);
                }
                key if IGNORED_KEYS.contains(&key) => {}
                _ => {}
            }
        }
        Ok(options)
    }

    /// Fields set in `over` replace those in `self` (defaults < model params < request).
    pub fn merged_with(&self, over: &Options) -> Options {
        macro_rules! pick {
            ($($field:ident),*) => { Options { $($field: over.$field.clone().or_else(|| self.$field.clone())),* } };
        }
        every_option!(pick)
    }

    /// The options that are set, as a request's `options` object sends them.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        macro_rules! put {
            ($($field:ident),*) => { $(if let Some(value) = &self.$field { map.insert(stringify!($field).into(), Value::from(value.clone())); })* };
        }
        every_option!(put);
        map
    }

    /// Whether `key` is a run-time option name (for Modelfile `PARAMETER` checks).
    pub fn is_known_key(key: &str) -> bool {
        const KNOWN: &[&str] = &[
            "num_ctx",
            "num_batch",
            "num_thread",
            "num_keep",
            "seed",
            "num_predict",
            "top_k",
            "top_p",
            "min_p",
            "typical_p",
            "repeat_last_n",
            "temperature",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "stop",
        ];
        KNOWN.contains(&key) || IGNORED_KEYS.contains(&key)
    }

    /// The JSON type a key takes: `int`, `float` or `list` (for Modelfile parameter parsing).
    pub fn key_kind(key: &str) -> &'static str {
        match key {
            "top_p" | "min_p" | "typical_p" | "temperature" | "repeat_penalty" | "presence_penalty"
            | "frequency_penalty" | "mirostat_tau" | "mirostat_eta" | "tfs_z" => "float",
            "stop" => "list",
            "penalize_newline" | "numa" | "low_vram" | "f16_kv" | "logits_all" | "vocab_only" | "use_mlock"
            | "use_mmap" | "embedding_only" => "bool",
            _ => "int",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_option_set_goes_to_the_map_and_back() {
        let map = json!({
            "num_ctx": 1, "num_batch": 2, "num_thread": 3, "num_keep": 4, "seed": 5, "num_predict": 6,
            "top_k": 7, "top_p": 0.5, "min_p": 0.25, "typical_p": 0.75, "repeat_last_n": 8,
            "temperature": 0.125, "repeat_penalty": 1.5, "presence_penalty": 0.375, "frequency_penalty": 0.625,
            "stop": ["a", "b"]
        });
        let options = Options::from_map(map.as_object().unwrap()).unwrap();
        assert_eq!(Value::Object(options.to_map()), map);
        assert_eq!(Options::from_map(&options.to_map()).unwrap(), options);
        assert!(Options::default().to_map().is_empty());
    }

    fn parse(value: Value) -> Result<Options, String> {
        Options::from_map(value.as_object().unwrap()).map_err(|error| error.to_string())
    }

    #[test]
    fn types_are_checked_like_ollama() {
        let options =
            parse(json!({"temperature": 0, "num_predict": 8, "stop": ["\n"], "mirostat": 1, "whatever": 2})).unwrap();
        assert_eq!(options.temperature, Some(0.0));
        assert_eq!(options.num_predict, Some(8));
        assert_eq!(options.stop, Some(vec!["\n".to_owned()]));

        assert_eq!(parse(json!({"stop": "x"})).unwrap_err(), "option \"stop\" must be of type array");
        assert_eq!(parse(json!({"stop": [1]})).unwrap_err(), "option \"stop\" must be of an array of strings");
        assert_eq!(parse(json!({"num_ctx": "big"})).unwrap_err(), "option \"num_ctx\" must be of type integer");
        assert_eq!(parse(json!({"top_p": true})).unwrap_err(), "option \"top_p\" must be of type float32");
    }

    #[test]
    fn request_options_override_model_options() {
        let model = parse(json!({"temperature": 0.2, "stop": ["a"]})).unwrap();
        let request = parse(json!({"temperature": 0.9})).unwrap();
        let merged = model.merged_with(&request);
        assert_eq!(merged.temperature, Some(0.9));
        assert_eq!(merged.stop, Some(vec!["a".to_owned()]));
    }
}
