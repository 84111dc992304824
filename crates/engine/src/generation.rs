//! The traits an engine implements, and the data that crosses them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// What to load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// The GGUF weights.
    pub model_path: PathBuf,
    /// Context window to serve, in tokens.
    pub num_ctx: usize,
}

impl LoadSpec {
    /// Whether a model loaded with `loaded` can serve this spec. Only the weights count: the
    /// context window is enforced per request (prompt fitting and the generation cap) and the
    /// engine grows its KV cache as sequences need it, so a request with another `num_ctx`
    /// never reloads the model (clients alternating `num_ctx` cost a load each otherwise).
    pub fn served_by(&self, loaded: &LoadSpec) -> bool {
        self.model_path == loaded.model_path
    }
}

/// Facts about a loaded model.
#[derive(Debug, Clone, Default)]
pub struct ModelDescription {
    /// Context length the model was trained for, when known.
    pub trained_context_length: Option<usize>,
    /// Resident memory attributed to the model, in bytes.
    pub memory_bytes: u64,
    /// Beginning-of-sequence token text, for chat templates.
    pub bos_token: Option<String>,
    /// End-of-sequence token text, for chat templates.
    pub eos_token: Option<String>,
}

/// Sampling settings of one generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    /// Temperature; 0 means greedy.
    pub temperature: f64,
    /// Top-k; 0 means off.
    pub top_k: usize,
    /// Nucleus; 1.0 means off.
    pub top_p: f64,
    /// Min-p; 0 means off.
    pub min_p: f64,
    /// Seed for reproducible sampling; `None` means random.
    pub seed: Option<u64>,
    /// Repeat penalty; 1.0 means off.
    pub repeat_penalty: f64,
    /// Window the repeat penalty looks back over.
    pub repeat_last_n: usize,
    /// Presence penalty.
    pub presence_penalty: f64,
    /// Frequency penalty.
    pub frequency_penalty: f64,
}

/// One generation: the prompt as tokens (already fitted to the context), how to sample and
/// when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Prompt tokens.
    pub prompt_tokens: Vec<u32>,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Upper bound on generated tokens; the caller computes it from `num_predict` and the
    /// context left.
    pub max_new_tokens: usize,
    /// Stop sequences; the text before the first match is kept.
    pub stop: Vec<String>,
    /// A JSON schema the output must match, enforced while decoding.
    pub json_schema: Option<serde_json::Value>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// End of sequence or a stop sequence.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

impl DoneReason {
    /// Ollama's `done_reason` text.
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
        }
    }
}

/// Measured figures of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSummary {
    /// Why it ended.
    pub done_reason: DoneReason,
    /// Prompt tokens evaluated.
    pub n_prompt_tokens: usize,
    /// Tokens generated.
    pub n_generated_tokens: usize,
    /// Time spent on the prompt.
    pub prompt_duration: Duration,
    /// Time spent generating.
    pub generation_duration: Duration,
    /// The generated tokens, for `context`.
    pub generated_tokens: Vec<u32>,
}

/// What a generation sends, in order: text pieces, then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// A piece of generated text.
    Text(String),
    /// The end, with figures.
    Done(GenerationSummary),
    /// The engine failed midway.
    Failed(String),
}

/// An engine failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Loading failed.
    #[error("failed to load model: {0}")]
    Load(String),
    /// A request was refused or failed.
    #[error("{0}")]
    Request(String),
    /// The request asks for something this engine cannot do (a client error).
    #[error("{0}")]
    Unsupported(String),
}

/// Loads models.
#[async_trait::async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Loads the weights in `spec`. Slow: seconds to minutes.
    async fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn LoadedModel>, EngineError>;
}

/// A model in memory.
///
/// Dropping the receiver returned by [`LoadedModel::generate`] cancels the generation within
/// a token or two.
#[async_trait::async_trait]
pub trait LoadedModel: Send + Sync + 'static {
    /// Facts about the model.
    fn description(&self) -> ModelDescription;

    /// Tokens of `text`; special-token text (such as `<|im_start|>`) maps to special tokens.
    /// With `add_special_tokens`, the tokenizer adds its BOS as configured.
    async fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EngineError>;

    /// Text of `tokens`.
    async fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError>;

    /// Starts generating; events arrive on the returned channel.
    async fn generate(&self, request: GenerationRequest) -> Result<mpsc::Receiver<GenerationEvent>, EngineError>;
}
