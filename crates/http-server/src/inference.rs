//! The pipeline shared by generate and chat: options and keep-alive parsing, context sizing,
//! prompt fitting, and the stream of generation outcomes with measured figures.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use engine::{GenerationEvent, GenerationRequest, Lease, LoadSpec, Sampling};
use futures_util::{Stream, StreamExt};
use model_formats::{OutputEvent, OutputParser};
use ollama_api::{KeepAlive, Metrics, Options, ToolCall, ToolCallFunction};
use serde_json::Value;

use crate::{ApiError, AppState, ResolvedModel};

/// Default `num_keep`: tokens kept from the start of an over-long prompt.
const DEFAULT_NUM_KEEP: usize = 4;

/// One step of a running generation, as the route modules see it: the model's output already
/// split into content, thinking and tool calls.
pub(crate) enum Outcome {
    /// Answer text.
    Content(String),
    /// Reasoning text.
    Thinking(String),
    /// Complete tool calls, with ids and their indexes within the response.
    ToolCalls(Vec<ToolCall>),
    /// The end.
    Done(Box<DoneInfo>),
    /// A failure after the stream started.
    Failed(String),
}

/// Figures of a finished generation.
pub(crate) struct DoneInfo {
    pub(crate) done_reason: &'static str,
    pub(crate) metrics: Metrics,
    pub(crate) prompt_tokens: Vec<u32>,
    pub(crate) generated_tokens: Vec<u32>,
}

/// `keep_alive` of a request: `None` when absent, else `Some(None)` for forever or
/// `Some(Some(duration))`.
pub(crate) fn parse_keep_alive(value: &Option<Value>) -> Result<Option<Option<Duration>>, ApiError> {
    let Some(value) = value.as_ref().filter(|value| !value.is_null()) else { return Ok(None) };
    match KeepAlive::from_json(value) {
        Ok(KeepAlive::Forever) => Ok(Some(None)),
        Ok(KeepAlive::For(duration)) => Ok(Some(Some(duration))),
        Err(error) => Err(ApiError::bad_request(error.to_string())),
    }
}

/// Model parameters overlaid with the request's options. Type errors are 500s, as in Ollama.
pub(crate) fn merged_options(
    model: &ResolvedModel,
    request_options: &Option<serde_json::Map<String, Value>>,
) -> Result<Options, ApiError> {
    let request_options = match request_options {
        Some(map) => Options::from_map(map).map_err(|error| ApiError::internal(error.to_string()))?,
        None => Options::default(),
    };
    Ok(model.options.merged_with(&request_options))
}

/// The context window to serve: the option, else the server default, capped at what the model
/// was trained for, and at least 4 tokens.
pub(crate) fn context_size(state: &AppState, model: &ResolvedModel, options: &Options) -> usize {
    let wanted = options.num_ctx.filter(|n| *n > 0).map(|n| n as usize).unwrap_or(state.config().default_num_ctx);
    let trained = model.trained_context_length().map(|n| n as usize).unwrap_or(usize::MAX);
    wanted.min(trained).max(4)
}

/// Takes the model from the scheduler, loading it if needed.
pub(crate) async fn acquire(
    state: &AppState,
    model: &ResolvedModel,
    num_ctx: usize,
    keep_alive: Option<Option<Duration>>,
) -> Result<Lease, ApiError> {
    let spec = LoadSpec { model_path: model.model_path.clone(), num_ctx };
    let key = model.name.display_full();
    let acquired = tokio::select! {
        biased;
        () = state.shutdown_started() => return Err(ApiError::busy(SHUTTING_DOWN)),
        acquired = state.scheduler().acquire(&key, &spec, keep_alive) => acquired,
    };
    acquired.map_err(|error| match error {
        engine::SchedulerError::Busy => ApiError::busy(error.to_string()),
        engine::SchedulerError::Engine(_) | engine::SchedulerError::InsufficientMemory { .. } => {
            ApiError::internal(error.to_string())
        }
    })
}

/// Sampling settings with Ollama's defaults for unset options.
pub(crate) fn sampling(options: &Options) -> Sampling {
    Sampling {
        temperature: options.temperature.unwrap_or(0.8),
        top_k: options.top_k.unwrap_or(40).max(0) as usize,
        top_p: options.top_p.unwrap_or(0.9),
        min_p: options.min_p.unwrap_or(0.0),
        seed: options.seed.filter(|seed| *seed >= 0).map(|seed| seed as u64),
        repeat_penalty: options.repeat_penalty.unwrap_or(1.0),
        repeat_last_n: options.repeat_last_n.unwrap_or(64).max(0) as usize,
        presence_penalty: options.presence_penalty.unwrap_or(0.0),
        frequency_penalty: options.frequency_penalty.unwrap_or(0.0),
    }
}

/// Fits a prompt into `num_ctx`: a prompt that leaves no room to generate keeps its first
/// `num_keep` tokens and its most recent tokens, half a context in all, so the answer has
/// room too.
pub(crate) fn fit_prompt(tokens: Vec<u32>, num_ctx: usize, num_keep: usize) -> Vec<u32> {
    if tokens.len() < num_ctx {
        return tokens;
    }
    let target = (num_ctx / 2).max(1);
    let keep = num_keep.min(target / 2);
    let tail = target - keep;
    let mut fitted = tokens[..keep].to_vec();
    fitted.extend_from_slice(&tokens[tokens.len() - tail..]);
    fitted
}

/// How many tokens may be generated: `num_predict` (negative is unbounded) within the room
/// the context has left.
pub(crate) fn max_new_tokens(num_predict: Option<i64>, num_ctx: usize, n_prompt_tokens: usize) -> usize {
    let room = num_ctx.saturating_sub(n_prompt_tokens);
    match num_predict {
        Some(limit) if limit >= 0 => (limit as usize).min(room),
        _ => room,
    }
}

/// `num_keep` from options.
pub(crate) fn num_keep(options: &Options) -> usize {
    options.num_keep.filter(|n| *n >= 0).map(|n| n as usize).unwrap_or(DEFAULT_NUM_KEEP)
}

/// The error line a stream ends with when the server shuts down under it.
pub(crate) const SHUTTING_DOWN: &str = "server shutting down";

/// Starts generating and returns the stream of outcomes, the output read by `parser`. The
/// stream owns the lease, so the model stays loaded until the stream ends or is dropped;
/// dropping it cancels generation. When the server shuts down, the stream ends with
/// [`SHUTTING_DOWN`] and the generation is cancelled.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    state: &AppState,
    lease: Lease,
    prompt_tokens: Vec<u32>,
    options: &Options,
    json_schema: Option<Value>,
    num_ctx: usize,
    started: Instant,
    parser: OutputParser,
) -> Result<impl Stream<Item = Outcome> + Send + 'static, ApiError> {
    let request = GenerationRequest {
        json_schema,
        max_new_tokens: max_new_tokens(options.num_predict, num_ctx, prompt_tokens.len()),
        prompt_tokens: prompt_tokens.clone(),
        sampling: sampling(options),
        stop: options.stop.clone().unwrap_or_default(),
    };
    let receiver = lease.model().generate(request).await.map_err(|error| match error {
        engine::EngineError::Unsupported(message) => ApiError::bad_request(message),
        other => ApiError::internal(other.to_string()),
    })?;
    let load_duration = lease.load_duration();
    struct RunState {
        receiver: tokio::sync::mpsc::Receiver<GenerationEvent>,
        /// Held until the generation ends.
        lease: Option<Lease>,
        prompt_tokens: Vec<u32>,
        parser: OutputParser,
        pending: VecDeque<Outcome>,
        n_tool_calls: usize,
        shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    }
    impl RunState {
        fn queue(&mut self, events: Vec<OutputEvent>) {
            for event in events {
                let outcome = match event {
                    OutputEvent::Content(text) => Outcome::Content(text),
                    OutputEvent::Thinking(text) => Outcome::Thinking(text),
                    OutputEvent::ToolCalls(calls) => Outcome::ToolCalls(
                        calls
                            .into_iter()
                            .map(|call| {
                                let index = self.n_tool_calls;
                                self.n_tool_calls += 1;
                                ToolCall {
                                    id: Some(new_tool_call_id()),
                                    function: ToolCallFunction { index, name: call.name, arguments: call.arguments },
                                }
                            })
                            .collect(),
                    ),
                };
                self.pending.push_back(outcome);
            }
        }
    }
    let run_state = RunState {
        receiver,
        lease: Some(lease),
        prompt_tokens,
        parser,
        pending: VecDeque::new(),
        n_tool_calls: 0,
        shutdown: Box::pin(state.shutdown_started()),
    };
    Ok(futures_util::stream::unfold(run_state, move |mut run_state| async move {
        loop {
            if let Some(outcome) = run_state.pending.pop_front() {
                return Some((outcome, run_state));
            }
            run_state.lease.as_ref()?;
            let event = tokio::select! {
                event = run_state.receiver.recv() => event,
                () = &mut run_state.shutdown => {
                    run_state.lease = None;
                    run_state.receiver.close();
                    tracing::warn!("ending a running generation: {SHUTTING_DOWN}");
                    run_state.pending.push_back(Outcome::Failed(SHUTTING_DOWN.into()));
                    continue;
                }
            };
            match event {
                Some(GenerationEvent::Text(text)) => {
                    let events = run_state.parser.push(&text);
                    run_state.queue(events);
                }
                Some(GenerationEvent::Done(summary)) => {
                    run_state.lease = None;
                    let events = run_state.parser.finish();
                    run_state.queue(events);
                    let done = DoneInfo {
                        done_reason: summary.done_reason.as_str(),
                        metrics: Metrics {
                            total_duration: nanos(started.elapsed()),
                            load_duration: nanos(load_duration),
                            prompt_eval_count: summary.n_prompt_tokens as u64,
                            prompt_eval_duration: nanos(summary.prompt_duration),
                            eval_count: summary.n_generated_tokens as u64,
                            eval_duration: nanos(summary.generation_duration),
                        },
                        prompt_tokens: std::mem::take(&mut run_state.prompt_tokens),
                        generated_tokens: summary.generated_tokens,
                    };
                    run_state.pending.push_back(Outcome::Done(Box::new(done)));
                }
                Some(GenerationEvent::Failed(error)) => {
                    tracing::error!(%error, "generation failed mid-stream");
                    run_state.lease = None;
                    run_state.pending.push_back(Outcome::Failed(error));
                }
                None => {
                    tracing::error!("the engine stopped without finishing the response");
                    run_state.lease = None;
                    run_state
                        .pending
                        .push_back(Outcome::Failed("the engine stopped without finishing the response".into()));
                }
            }
        }
    }))
}

/// `call_` and 8 random lowercase letters and digits, as Ollama names tool calls.
pub(crate) fn new_tool_call_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let mut bits = hasher.finish();
    let mut id = String::from("call_");
    for _ in 0..8 {
        id.push(char::from(ALPHABET[(bits % ALPHABET.len() as u64) as usize]));
        bits /= ALPHABET.len() as u64;
    }
    id
}

/// A whole response.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) content: String,
    pub(crate) thinking: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    /// The final figures; `None` when the stream ended without them, as a load-only start does.
    pub(crate) done: Option<Box<DoneInfo>>,
}

/// Drains a generation into a whole response; a failure midway is a 500.
pub(crate) async fn collect(outcomes: impl Stream<Item = Outcome>) -> Result<Collected, ApiError> {
    let mut outcomes = std::pin::pin!(outcomes);
    let mut collected = Collected::default();
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Outcome::Content(piece) => collected.content.push_str(&piece),
            Outcome::Thinking(piece) => collected.thinking.push_str(&piece),
            Outcome::ToolCalls(calls) => collected.tool_calls.extend(calls),
            Outcome::Done(done) => {
                collected.done = Some(done);
                break;
            }
            Outcome::Failed(error) => return Err(ApiError::internal(error)),
        }
    }
    Ok(collected)
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_fitting_keeps_start_and_end() {
        let tokens: Vec<u32> = (0..10).collect();
        assert_eq!(fit_prompt(tokens.clone(), 11, 4), tokens);
        assert_eq!(fit_prompt(tokens.clone(), 10, 4), vec![0, 1, 7, 8, 9]);
        assert_eq!(fit_prompt(tokens, 8, 0), vec![6, 7, 8, 9]);
    }

    #[test]
    fn tool_call_ids_look_like_ollamas() {
        let id = new_tool_call_id();
        assert_eq!(id.len(), 13, "{id}");
        assert!(id.starts_with("call_"));
        assert!(id[5..].bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit()), "{id}");
        assert_ne!(new_tool_call_id(), new_tool_call_id());
    }

    #[test]
    fn generation_is_bounded_by_num_predict_and_context() {
        assert_eq!(max_new_tokens(None, 100, 40), 60);
        assert_eq!(max_new_tokens(Some(-1), 100, 40), 60);
        assert_eq!(max_new_tokens(Some(10), 100, 40), 10);
        assert_eq!(max_new_tokens(Some(500), 100, 40), 60);
        assert_eq!(max_new_tokens(Some(0), 100, 40), 0);
    }
}
