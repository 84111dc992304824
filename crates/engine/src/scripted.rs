//! `ScriptedEngine`: a deterministic engine for protocol tests, with no weights.
//!
//! Tokens are Unicode scalar values, so prompt lengths are character counts. The reply is the
//! text between `SCRIPT<<` and `>>` in the prompt when present, else [`DEFAULT_REPLY`]; it is
//! sent one character per token, then the generation ends with `stop`. A reply containing
//! [`FAILURE_MARKER`] fails at that point, after sending the text before it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::{
    DoneReason, Engine, EngineError, GenerationEvent, GenerationRequest, GenerationSummary, LoadSpec, LoadedModel,
    ModelDescription, StopFilter, StopStep,
};

/// What the scripted model says when the prompt names no script.
pub const DEFAULT_REPLY: &str = "Hello from the scripted engine.";

/// Where a scripted reply fails midway.
pub const FAILURE_MARKER: &str = "!FAIL!";

/// The scripted engine.
#[derive(Debug, Default)]
pub struct ScriptedEngine {
    token_delay: Duration,
    n_loads: Arc<AtomicUsize>,
    n_tokens_sent: Arc<AtomicUsize>,
}

impl ScriptedEngine {
    /// An engine that answers as fast as it can.
    pub fn new() -> ScriptedEngine {
        ScriptedEngine::default()
    }

    /// An engine that waits `token_delay` before each token (for cancellation tests).
    pub fn with_token_delay(token_delay: Duration) -> ScriptedEngine {
        ScriptedEngine { token_delay, ..ScriptedEngine::default() }
    }

    /// How many times a model was loaded.
    pub fn n_loads(&self) -> usize {
        self.n_loads.load(Ordering::SeqCst)
    }

    /// How many tokens all generations sent, counted across models.
    pub fn n_tokens_sent(&self) -> Arc<AtomicUsize> {
        self.n_tokens_sent.clone()
    }
}

struct ScriptedModel {
    token_delay: Duration,
    memory_bytes: u64,
    n_tokens_sent: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Engine for ScriptedEngine {
    async fn load(&self, spec: &LoadSpec) -> Result<Arc<dyn LoadedModel>, EngineError> {
        let metadata = std::fs::metadata(&spec.model_path)
            .map_err(|error| EngineError::Load(format!("{}: {error}", spec.model_path.display())))?;
        self.n_loads.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(ScriptedModel {
            token_delay: self.token_delay,
            memory_bytes: metadata.len(),
            n_tokens_sent: self.n_tokens_sent.clone(),
        }))
    }
}

/// The reply the scripted engine gives to `prompt`.
pub fn scripted_reply(prompt: &str) -> String {
    let Some(start) = prompt.rfind("SCRIPT<<") else { return DEFAULT_REPLY.to_owned() };
    let rest = &prompt[start + "SCRIPT<<".len()..];
    rest.find(">>").map_or(DEFAULT_REPLY, |end| &rest[..end]).to_owned()
}

#[async_trait::async_trait]
impl LoadedModel for ScriptedModel {
    fn description(&self) -> ModelDescription {
        ModelDescription {
            trained_context_length: Some(8192),
            memory_bytes: self.memory_bytes,
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
        }
    }

    async fn tokenize(&self, text: &str, _add_special_tokens: bool) -> Result<Vec<u32>, EngineError> {
        Ok(text.chars().map(u32::from).collect())
    }

    async fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        Ok(tokens.iter().filter_map(|token| char::from_u32(*token)).collect())
    }

    async fn generate(&self, request: GenerationRequest) -> Result<mpsc::Receiver<GenerationEvent>, EngineError> {
        if request.constraint.is_some() {
            return Err(EngineError::Unsupported("the scripted engine cannot constrain its output".into()));
        }
        let (sender, receiver) = mpsc::channel(16);
        let prompt: String = request.prompt_tokens.iter().filter_map(|token| char::from_u32(*token)).collect();
        let scripted = scripted_reply(&prompt);
        let (reply, fails) = match scripted.split_once(FAILURE_MARKER) {
            Some((before, _)) => (before.to_owned(), true),
            None => (scripted, false),
        };
        let token_delay = self.token_delay;
        let n_tokens_sent = self.n_tokens_sent.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut generated_tokens = Vec::new();
            let mut done_reason = DoneReason::Stop;
            let mut stop_filter = StopFilter::new(&request.stop);
            let mut stopped = false;
            for character in reply.chars() {
                if generated_tokens.len() >= request.max_new_tokens {
                    done_reason = DoneReason::Length;
                    break;
                }
                if !token_delay.is_zero() {
                    tokio::time::sleep(token_delay).await;
                }
                generated_tokens.push(u32::from(character));
                n_tokens_sent.fetch_add(1, Ordering::SeqCst);
                let (piece, is_stop) = match stop_filter.push(&character.to_string()) {
                    StopStep::Continue(piece) => (piece, false),
                    StopStep::Stopped(piece) => (piece, true),
                };
                if !piece.is_empty() && sender.send(GenerationEvent::Text(piece)).await.is_err() {
                    return;
                }
                if is_stop {
                    stopped = true;
                    break;
                }
            }
            if fails && !stopped {
                let _ = sender.send(GenerationEvent::Failed("scripted failure".into())).await;
                return;
            }
            if !stopped {
                let rest = stop_filter.finish();
                if !rest.is_empty() {
                    let _ = sender.send(GenerationEvent::Text(rest)).await;
                }
            }
            let summary = GenerationSummary {
                done_reason,
                n_prompt_tokens: request.prompt_tokens.len(),
                n_generated_tokens: generated_tokens.len(),
                prompt_duration: Duration::from_micros(100),
                generation_duration: started.elapsed().max(Duration::from_micros(1)),
                generated_tokens,
            };
            let _ = sender.send(GenerationEvent::Done(summary)).await;
        });
        Ok(receiver)
    }
}
