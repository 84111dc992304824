//! The traits an engine implements, and the data that crosses them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// What a model does, which decides the engine that loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModelKind {
    /// Generates text: completion, chat, fill-in-the-middle.
    #[default]
    Generation,
    /// Turns text into vectors.
    Embedding,
}

impl ModelKind {
    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Generation => "generation",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// What to load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// The GGUF weights.
    pub model_path: PathBuf,
    /// Context window to serve, in tokens.
    pub num_ctx: usize,
    /// What the model does; [`Engines`] picks the engine by it.
    pub kind: ModelKind,
}

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until it is unloaded explicitly or room is needed.
    Forever,
    /// For this long; zero unloads it as soon as it is idle.
    For(Duration),
}

impl KeepAlive {
    /// The duration; `None` is forever.
    pub fn duration(self) -> Option<Duration> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(duration) => Some(duration),
        }
    }

    /// Whether this unloads the model as soon as it is idle.
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }
}

/// The engines of a daemon, one per kind of model. Adding an engine (embeddings, a remote
/// server) is one [`Engines::register`] line where the daemon starts.
#[derive(Clone, Default)]
pub struct Engines {
    by_kind: std::collections::HashMap<ModelKind, Arc<dyn Engine>>,
}

impl Engines {
    /// No engines.
    pub fn new() -> Engines {
        Engines::default()
    }

    /// Loads models of `kind` with `engine` from now on.
    pub fn register(mut self, kind: ModelKind, engine: Arc<dyn Engine>) -> Engines {
        self.by_kind.insert(kind, engine);
        self
    }

    /// The engine for `kind`; a client error when none is registered.
    pub fn for_kind(&self, kind: ModelKind) -> Result<&Arc<dyn Engine>, EngineError> {
        self.by_kind
            .get(&kind)
            .ok_or_else(|| EngineError::Unsupported(format!("no engine loads {} models", kind.as_str())))
    }
}

impl<E: Engine> From<Arc<E>> for Engines {
    /// One engine for generation models.
    fn from(engine: Arc<E>) -> Engines {
        Engines::new().register(ModelKind::Generation, engine)
    }
}

impl From<Arc<dyn Engine>> for Engines {
    /// One engine for generation models.
    fn from(engine: Arc<dyn Engine>) -> Engines {
        Engines::new().register(ModelKind::Generation, engine)
    }
}

impl LoadSpec {
    /// Whether a model loaded with `loaded` can serve this spec. Only the weights count: the
    /// context window is enforced per request (prompt fitting and the generation cap) and the
    /// engine grows its KV cache as sequences need it, so a request with another `num_ctx`
    /// never reloads the model (clients alternating `num_ctx` cost a load each otherwise).
    pub fn served_by(&self, loaded: &LoadSpec) -> bool {
        self.model_path == loaded.model_path && self.kind == loaded.kind
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
    /// What the output must match, enforced while decoding.
    pub constraint: Option<OutputConstraint>,
}

/// A constraint on generated text, enforced token by token while decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// A JSON value matching this JSON schema.
    JsonSchema(serde_json::Value),
    /// Text of a grammar in llguidance's Lark dialect (which embeds JSON schemas with
    /// `%json`): how a model without a tool format answers either text or a tool call.
    Lark(String),
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

/// Running totals an engine keeps for one loaded model: what it did, counted where it did it,
/// so tests and diagnostics see the engine's own account (a cancelled generation stops
/// sampling; a cached prompt is not evaluated again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Tokens sampled, over every generation.
    pub tokens_sampled: u64,
    /// Generations started.
    pub generations_started: u64,
}

/// Loads models.
#[async_trait::async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Loads the weights in `spec`. Slow: seconds to minutes.
    async fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn LoadedModel>, EngineError>;

    /// The GGUF architectures (`general.architecture`) it loads, so that `create` refuses
    /// others at once; `None` when it does not say (test engines).
    fn architectures(&self) -> Option<&'static [&'static str]> {
        None
    }
}

/// A model in memory.
///
/// Dropping the receiver returned by [`LoadedModel::generate`] cancels the generation within
/// a token or two.
#[async_trait::async_trait]
pub trait LoadedModel: Send + Sync + 'static {
    /// Facts about the model.
    fn description(&self) -> ModelDescription;

    /// The engine's running totals for this model; engines that keep none report zeros.
    fn counters(&self) -> EngineCounters {
        EngineCounters::default()
    }

    /// Tokens of `text`; special-token text (such as `<|im_start|>`) maps to special tokens.
    /// With `add_special_tokens`, the tokenizer adds its BOS as configured.
    async fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EngineError>;

    /// Text of `tokens`.
    async fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError>;

    /// Starts generating; events arrive on the returned channel. Models that cannot generate
    /// (embedding models) keep the default, which refuses.
    async fn generate(&self, request: GenerationRequest) -> Result<mpsc::Receiver<GenerationEvent>, EngineError> {
        let _ = request;
        Err(EngineError::Unsupported("this model does not generate text".into()))
    }

    /// `tokens` (from [`LoadedModel::tokenize`] with special tokens) cut to at most `limit`,
    /// the way the model's inputs are truncated: by default the end is cut off; an encoder
    /// whose inputs end in a separator keeps it.
    fn fit_to_context(&self, mut tokens: Vec<u32>, limit: usize) -> Vec<u32> {
        tokens.truncate(limit);
        tokens
    }

    /// One vector per input (token ids, already fitted to the context), as the model pools
    /// them, not normalised. Models that cannot embed keep the default, which refuses.
    async fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EngineError> {
        let _ = inputs;
        Err(EngineError::Unsupported("this model does not support embeddings".into()))
    }
}
