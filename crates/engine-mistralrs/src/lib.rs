//! The engine on mistral.rs: the only crate that links `mistralrs`.
//!
//! Models load from a local GGUF file on the CPU with F32 activations (faster than F16 on
//! CPUs here) and never touch the network. modeld renders prompts and tokenizes itself and
//! sends token ids; sampling runs in [`sampler::TokenSampler`], a logits processor, so that a
//! per-request seed is honoured and every generated token id is known exactly (mistral.rs has
//! one shared RNG and reports no usage on streamed completions). Text is decoded here from
//! those ids, so nothing mistral.rs does to streamed text (trimming the first piece) leaks out.

pub mod quantize;
mod requantize;
mod sampler;

pub use quantize::GgufQuantizer;
pub use requantize::{remove_stale_copies, RequantizeType};

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::{
    DoneReason, Engine, EngineCounters, EngineError, GenerationEvent, GenerationRequest, GenerationSummary, LoadSpec,
    LoadedModel, ModelDescription, OutputConstraint, StopFilter, StopStep,
};
use mistralrs::core::{
    AdapterPaths, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, Loader,
    LocalModelPaths, MistralRs, MistralRsBuilder, ModelDType, ModelPaths, SchedulerConfig,
};
use mistralrs::{Constraint, Device, NormalRequest, Request, RequestMessage, Response, SamplingParams};
use tokio::sync::mpsc;

use crate::sampler::{SamplerRecord, TokenSampler};

/// GGUF architectures mistral.rs 0.8.1 loads; others make it panic, so they are refused first.
const SUPPORTED_ARCHITECTURES: &[&str] =
    &["llama", "mistral3", "phi2", "phi3", "starcoder2", "qwen2", "qwen3", "qwen3moe"];

/// Settings of the engine, read once where the daemon starts and passed in as values.
#[derive(Debug, Clone)]
pub struct MistralRsConfig {
    /// Where copies of weights without SIMD kernels (Q5_0, Q5_1) are kept, requantized;
    /// `None` loads every file as it is.
    pub requantized_weights_dir: Option<PathBuf>,
    /// The type those copies take.
    pub requantize_type: RequantizeType,
    /// Generations of one model decoded together at most.
    pub max_running_sequences: usize,
    /// The activations' type.
    pub activation_dtype: ActivationDtype,
    /// KV cache bytes kept per model for prefix reuse (a chat's next turn, completion as you
    /// type); past it the least recently used entries go. Entries other than the newest are
    /// kept in F16, so the default of 256 MiB holds what 512 MiB of F32 entries held.
    pub prefix_cache_bytes: usize,
}

impl Default for MistralRsConfig {
    fn default() -> MistralRsConfig {
        MistralRsConfig {
            requantized_weights_dir: None,
            requantize_type: RequantizeType::Q8_0,
            max_running_sequences: 1,
            activation_dtype: ActivationDtype::F32,
            prefix_cache_bytes: 256 << 20,
        }
    }
}

/// The type activations are computed in. F32 is the default: faster than F16 on CPUs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationDtype {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
    /// What mistral.rs picks for the device.
    Auto,
}

impl ActivationDtype {
    /// `f32`, `f16`, `bf16` or `auto`.
    pub fn from_name(name: &str) -> Option<ActivationDtype> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(ActivationDtype::F32),
            "f16" => Some(ActivationDtype::F16),
            "bf16" => Some(ActivationDtype::Bf16),
            "auto" => Some(ActivationDtype::Auto),
            _ => None,
        }
    }

    fn model_dtype(self) -> ModelDType {
        match self {
            ActivationDtype::F32 => ModelDType::F32,
            ActivationDtype::F16 => ModelDType::F16,
            ActivationDtype::Bf16 => ModelDType::BF16,
            ActivationDtype::Auto => ModelDType::Auto,
        }
    }
}

/// Loads GGUF models with mistral.rs on the CPU.
#[derive(Debug)]
pub struct MistralRsEngine {
    config: MistralRsConfig,
    max_running_sequences: NonZeroUsize,
}

impl MistralRsEngine {
    /// An engine with `config`.
    ///
    /// The prefix cache budget is a process-wide setting of the vendored mistral.rs (one value
    /// for every model), so it is set here, once per daemon.
    pub fn new(config: MistralRsConfig) -> MistralRsEngine {
        mistralrs::core::set_cpu_prefix_cache_budget_bytes(config.prefix_cache_bytes);
        MistralRsEngine {
            max_running_sequences: NonZeroUsize::new(config.max_running_sequences).unwrap_or(NonZeroUsize::MIN),
            config,
        }
    }
}

struct MistralRsModel {
    /// The engine loop over the loaded pipeline, with its prefix cache (bounded by
    /// [`set_prefix_cache_budget`]).
    runner: Arc<MistralRs>,
    tokenizer: Arc<tokenizers::Tokenizer>,
    eos_token_ids: Vec<u32>,
    description: ModelDescription,
    tokens_sampled: Arc<AtomicU64>,
    generations_started: AtomicU64,
}

#[async_trait::async_trait]
impl Engine for MistralRsEngine {
    fn architectures(&self) -> Option<&'static [&'static str]> {
        // What mistral.rs 0.8.1 builds from GGUF files (`pipeline::gguf`).
        Some(&["llama", "mistral3", "phi2", "phi3", "starcoder2", "qwen2", "qwen3", "qwen3moe"])
    }

    async fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn LoadedModel>, EngineError> {
        let path = spec.model_path.clone();
        let facts = tokio::task::spawn_blocking(move || read_gguf_facts(&path))
            .await
            .map_err(|error| EngineError::Load(error.to_string()))??;
        if !SUPPORTED_ARCHITECTURES.contains(&facts.architecture.as_str()) {
            return Err(EngineError::Load(format!(
                "architecture '{}' is not supported by the mistral.rs engine (supported: {})",
                facts.architecture,
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        let original_path = spec.model_path.clone();
        let cache_dir = self.config.requantized_weights_dir.clone();
        let requantize_type = self.config.requantize_type;
        let path = tokio::task::spawn_blocking(move || {
            requantize::weights_to_load(&original_path, cache_dir.as_deref(), requantize_type)
        })
        .await
        .map_err(|error| EngineError::Load(error.to_string()))?
        .map_err(EngineError::Load)?;
        let loaded_path = path.clone();
        let activation_dtype = self.config.activation_dtype.model_dtype();
        let pipeline = tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(Path::new(".")).to_string_lossy().into_owned();
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let loader: Box<dyn Loader> =
                GGUFLoaderBuilder::new(None, None, dir, vec![file], GGUFSpecificConfig::default(), false, None).build();
            let paths: Box<dyn ModelPaths> = Box::new(LocalModelPaths::<std::path::PathBuf> {
                tokenizer_filename: Default::default(),
                config_filename: Default::default(),
                template_filename: None,
                filenames: vec![path.clone()],
                adapter_paths: AdapterPaths::None,
                gen_conf: None,
                preprocessor_config: None,
                processor_config: None,
                chat_template_json_filename: None,
            });
            loader.load_model_from_path(
                &paths,
                &activation_dtype,
                &Device::Cpu,
                true,
                DeviceMapSetting::dummy(),
                None,
                None,
            )
        })
        .await
        .map_err(|error| EngineError::Load(error.to_string()))?
        .map_err(|error| EngineError::Load(format!("{error:#}")))?;

        let (tokenizer, metadata) = {
            let pipeline = pipeline.lock().await;
            (pipeline.tokenizer(), pipeline.get_metadata())
        };
        let tokenizer = tokenizer.ok_or_else(|| EngineError::Load("the GGUF file has no tokenizer".into()))?;
        let runner = MistralRsBuilder::new(
            pipeline,
            SchedulerConfig::DefaultScheduler { method: DefaultSchedulerMethod::Fixed(self.max_running_sequences) },
            false,
            None,
        )
        .with_prefix_cache_n(4)
        .build()
        .await;
        let token_text = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
        let description = ModelDescription {
            trained_context_length: Some(metadata.max_seq_len),
            memory_bytes: std::fs::metadata(&loaded_path).map(|metadata| metadata.len()).unwrap_or(facts.file_size),
            bos_token: token_text(facts.bos_token_id),
            eos_token: token_text(facts.eos_token_id.or(metadata.eos_tok.first().copied())),
        };
        tracing::info!(
            architecture = facts.architecture,
            max_seq_len = metadata.max_seq_len,
            activation = ?metadata.activation_dtype,
            "model loaded"
        );
        // Grammar-constrained decoding ends with the tokenizer's own end token, which mistral.rs
        // may not count as EOS; every end-of-text token the vocabulary has ends generation.
        let mut eos_token_ids = metadata.eos_tok.clone();
        for text in model_formats::END_OF_TURN_TOKENS {
            if let Some(id) = tokenizer.token_to_id(text) {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        Ok(Arc::new(MistralRsModel {
            runner,
            tokenizer,
            eos_token_ids,
            description,
            tokens_sampled: Arc::new(AtomicU64::new(0)),
            generations_started: AtomicU64::new(0),
        }))
    }
}

struct GgufFacts {
    architecture: String,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    file_size: u64,
}

fn read_gguf_facts(path: &Path) -> Result<GgufFacts, EngineError> {
    let load_error = |error: &dyn std::fmt::Display| EngineError::Load(format!("{}: {error}", path.display()));
    let file = std::fs::File::open(path).map_err(|error| load_error(&error))?;
    let file_size = file.metadata().map(|metadata| metadata.len()).unwrap_or_default();
    // Buffered: the metadata is hundreds of thousands of small values (a vocabulary and its
    // merges), which unbuffered would be as many system calls.
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let content = candle_core::quantized::gguf_file::Content::read(&mut reader).map_err(|error| load_error(&error))?;
    let string = |key: &str| content.metadata.get(key).and_then(|value| value.to_string().ok().cloned());
    let id = |key: &str| content.metadata.get(key).and_then(|value| value.to_u32().ok());
    Ok(GgufFacts {
        architecture: string("general.architecture").unwrap_or_default(),
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        file_size,
    })
}

#[async_trait::async_trait]
impl LoadedModel for MistralRsModel {
    fn description(&self) -> ModelDescription {
        self.description.clone()
    }

    fn counters(&self) -> EngineCounters {
        EngineCounters {
            tokens_sampled: self.tokens_sampled.load(Ordering::Relaxed),
            generations_started: self.generations_started.load(Ordering::Relaxed),
        }
    }

    async fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, EngineError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, add_special_tokens)
            .map_err(|error| EngineError::Request(format!("tokenizing: {error}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    async fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        self.tokenizer.decode(tokens, false).map_err(|error| EngineError::Request(format!("detokenizing: {error}")))
    }

    async fn generate(&self, request: GenerationRequest) -> Result<mpsc::Receiver<GenerationEvent>, EngineError> {
        let (sender, receiver) = mpsc::channel(256);
        let n_prompt_tokens = request.prompt_tokens.len();
        let started = Instant::now();
        if request.max_new_tokens == 0 || request.prompt_tokens.is_empty() {
            let summary = GenerationSummary {
                done_reason: DoneReason::Length,
                n_prompt_tokens,
                n_generated_tokens: 0,
                prompt_duration: Default::default(),
                generation_duration: Default::default(),
                generated_tokens: Vec::new(),
            };
            let _ = sender.send(GenerationEvent::Done(summary)).await;
            return Ok(receiver);
        }
        let record = Arc::new(Mutex::new(SamplerRecord::default()));
        self.generations_started.fetch_add(1, Ordering::Relaxed);
        let sampler = TokenSampler::new(request.sampling.clone(), record.clone(), self.tokens_sampled.clone());
        let (response_sender, response_receiver) = mpsc::channel::<Response>(10_000);
        let sampling = &request.sampling;
        let penalty = |value: f64, neutral: f64| ((value - neutral).abs() > f64::EPSILON).then_some(value as f32);
        let normal_request = NormalRequest {
            messages: RequestMessage::CompletionTokens(request.prompt_tokens.clone()),
            sampling_params: SamplingParams {
                // Greedy over the one token `TokenSampler` leaves standing.
                temperature: Some(0.0),
                top_k: None,
                top_p: None,
                min_p: None,
                top_n_logprobs: 0,
                frequency_penalty: penalty(sampling.frequency_penalty, 0.0),
                presence_penalty: penalty(sampling.presence_penalty, 0.0),
                repetition_penalty: penalty(sampling.repeat_penalty, 1.0),
                stop_toks: None,
                max_len: Some(request.max_new_tokens),
                logits_bias: None,
                n_choices: 1,
                dry_params: None,
            },
            response: response_sender,
            return_logprobs: false,
            is_streaming: true,
            id: self.runner.next_request_id(),
            constraint: match &request.constraint {
                Some(OutputConstraint::JsonSchema(schema)) => Constraint::JsonSchema(schema.clone()),
                Some(OutputConstraint::Lark(grammar)) => Constraint::Lark(grammar.clone()),
                None => Constraint::None,
            },
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: Some(vec![Arc::new(sampler)]),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        let engine_sender = self.runner.get_sender(None).map_err(|error| EngineError::Request(error.to_string()))?;
        engine_sender
            .send(Request::Normal(Box::new(normal_request)))
            .await
            .map_err(|error| EngineError::Request(format!("the engine is not running: {error}")))?;
        let stream = DecodeStream {
            tokenizer: self.tokenizer.clone(),
            eos_token_ids: self.eos_token_ids.clone(),
            record,
            stop_filter: StopFilter::new(&request.stop),
            incremental: IncrementalDecoder::default(),
            n_prompt_tokens,
            max_new_tokens: request.max_new_tokens,
            started,
        };
        tokio::spawn(stream.run(response_receiver, sender));
        Ok(receiver)
    }
}

/// Decodes generated ids as they come, re-decoding only a short window (the tokenizers
/// crate's stream decoding), so a long answer costs linear time. Text ending in a partial
/// character waits for the rest.
#[derive(Default)]
struct IncrementalDecoder {
    n_fed: usize,
    window: Vec<u32>,
    window_text: String,
    window_start: usize,
}

impl IncrementalDecoder {
    /// The text of `ids` (all ids so far) not returned before; at the end, also text still
    /// held back.
    fn push(&mut self, tokenizer: &tokenizers::Tokenizer, ids: &[u32], at_end: bool) -> String {
        let mut text = String::new();
        for &id in ids.get(self.n_fed..).unwrap_or_default() {
            self.n_fed += 1;
            match tokenizers::step_decode_stream(
                tokenizer,
                id,
                false,
                &mut self.window,
                &mut self.window_text,
                &mut self.window_start,
            ) {
                Ok(Some(piece)) => text.push_str(&piece),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "decoding generated tokens"),
            }
        }
        if at_end {
            if let Ok(rest) = tokenizer.decode(&self.window, false) {
                if let Some(unsent) = rest.get(self.window_text.len()..) {
                    text.push_str(unsent);
                }
            }
            self.window.clear();
            self.window_text.clear();
            self.window_start = 0;
        }
        text
    }
}

/// Turns mistral.rs progress into text events: decodes the sampled ids, applies stop
/// sequences, and reports figures at the end. Dropping the mistral.rs receiver (by returning)
/// cancels the sequence.
struct DecodeStream {
    tokenizer: Arc<tokenizers::Tokenizer>,
    eos_token_ids: Vec<u32>,
    record: Arc<Mutex<SamplerRecord>>,
    stop_filter: StopFilter,
    incremental: IncrementalDecoder,
    n_prompt_tokens: usize,
    max_new_tokens: usize,
    started: Instant,
}

impl DecodeStream {
    async fn run(mut self, mut responses: mpsc::Receiver<Response>, sender: mpsc::Sender<GenerationEvent>) {
        loop {
            let response = responses.recv().await;
            let finish_reason = match &response {
                Some(Response::CompletionChunk(chunk)) => {
                    chunk.choices.first().and_then(|choice| choice.finish_reason.clone())
                }
                Some(Response::CompletionDone(done)) => done.choices.first().map(|choice| choice.finish_reason.clone()),
                Some(Response::CompletionModelError(error, _)) => {
                    let _ = sender.send(GenerationEvent::Failed(error.clone())).await;
                    return;
                }
                Some(Response::InternalError(error)) | Some(Response::ValidationError(error)) => {
                    let _ = sender.send(GenerationEvent::Failed(error.to_string())).await;
                    return;
                }
                Some(_) => None,
                None => Some("closed".to_owned()),
            };
            // One snapshot of the sampled ids per step: the sampler keeps appending meanwhile.
            let (ids, ended) = self.generated_ids();
            let finish_reason = if ended && finish_reason.is_none() { Some("stop".to_owned()) } else { finish_reason };
            let (text, stopped) = self.new_text(&ids, finish_reason.is_some());
            if !text.is_empty() && sender.send(GenerationEvent::Text(text)).await.is_err() {
                return;
            }
            if stopped || finish_reason.is_some() {
                let summary = self.summary(ids, stopped, finish_reason.as_deref());
                let _ = sender.send(GenerationEvent::Done(summary)).await;
                return;
            }
        }
    }

    /// Sampled ids up to the first end token, and whether an end token was sampled.
    fn generated_ids(&self) -> (Vec<u32>, bool) {
        let record = self.record.lock().unwrap();
        match record.token_ids.iter().position(|id| self.eos_token_ids.contains(id)) {
            Some(end) => (record.token_ids[..end].to_vec(), true),
            None => (record.token_ids.clone(), false),
        }
    }

    /// Text decoded since the last call, held back while it ends in a partial character or
    /// could be the start of a stop sequence. Returns whether a stop sequence matched.
    fn new_text(&mut self, ids: &[u32], at_end: bool) -> (String, bool) {
        let piece = self.incremental.push(&self.tokenizer, ids, at_end);
        match self.stop_filter.push(&piece) {
            StopStep::Continue(mut text) => {
                if at_end {
                    text.push_str(&self.stop_filter.finish());
                }
                (text, false)
            }
            StopStep::Stopped(text) => (text, true),
        }
    }

    fn summary(&self, generated_tokens: Vec<u32>, stopped: bool, finish_reason: Option<&str>) -> GenerationSummary {
        let record = self.record.lock().unwrap();
        let first_token_at = record.first_token_at.unwrap_or(self.started);
        let last_token_at = record.last_token_at.unwrap_or(first_token_at);
        let hit_length = finish_reason == Some("length")
            || (!stopped && finish_reason != Some("stop") && record.token_ids.len() >= self.max_new_tokens);
        // The first sample ends the prompt; n tokens span n - 1 gaps after it. Generation is
        // counted as n gaps, so that eval_count / eval_duration is the decode rate, and the gap
        // that adds is taken from the prompt's time: the two never add up to more than the
        // request took.
        let n_sampled = record.token_ids.len() as u32;
        let gaps = last_token_at.duration_since(first_token_at);
        let one_gap = if n_sampled > 1 { gaps / (n_sampled - 1) } else { Default::default() };
        let generation_duration = gaps + one_gap;
        GenerationSummary {
            done_reason: if hit_length && !stopped { DoneReason::Length } else { DoneReason::Stop },
            n_prompt_tokens: self.n_prompt_tokens,
            n_generated_tokens: generated_tokens.len(),
            prompt_duration: first_token_at.duration_since(self.started).saturating_sub(one_gap),
            generation_duration,
            generated_tokens,
        }
    }
}
