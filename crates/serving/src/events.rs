//! The one event type a running generation sends to front ends, the stream that produces it
//! from the engine's output, and [`collect`] for front ends that answer whole.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, Instant};

use engine::{DoneReason, GenerationEvent, GenerationRequest, Lease, OutputConstraint, Sampling};
use futures_util::{Stream, StreamExt};
use model_formats::{OutputEvent, OutputParser};
use model_store::Options;

use crate::{ChatMessage, ServingError, ToolCall};

/// One step of a running generation: the model's output already split into content, thinking
/// and tool calls; then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Answer text.
    Content(String),
    /// Reasoning text.
    Thinking(String),
    /// Complete tool calls, each with an id and its index within the reply.
    ToolCalls(Vec<ToolCall>),
    /// In a tool loop: the `tool` message that answers a call the daemon ran. The model's
    /// next round follows.
    ToolResult(ChatMessage),
    /// The end, with figures.
    Done(Box<Finished>),
    /// A failure after the stream started.
    Failed(String),
}

/// A running generation. Dropping it cancels the generation and releases the model.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Figures of a finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Why it ended.
    pub done_reason: DoneReason,
    /// Measured figures.
    pub metrics: Metrics,
    /// The prompt's tokens, for `context`.
    pub prompt_tokens: Vec<u32>,
    /// The generated tokens, for `context`.
    pub generated_tokens: Vec<u32>,
    /// For a remote model, the replica that answered (its URL).
    pub remote_host: Option<String>,
}

/// Ollama's timing figures, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// From the request's arrival to the end.
    pub total_duration: Duration,
    /// Waiting for the model (loading it, or a turn on it).
    pub load_duration: Duration,
    /// Prompt tokens.
    pub prompt_eval_count: usize,
    /// Time spent on the prompt.
    pub prompt_eval_duration: Duration,
    /// Generated tokens.
    pub eval_count: usize,
    /// Time spent generating.
    pub eval_duration: Duration,
}

/// How a request began.
pub enum Started {
    /// The model was loaded, with nothing to generate (an empty prompt or conversation).
    Loaded,
    /// The model was unloaded (an empty prompt with a zero keep-alive).
    Unloaded,
    /// Generating.
    Running(EventStream),
}

impl Started {
    /// The events: none for a load or unload.
    pub fn into_events(self) -> EventStream {
        match self {
            Started::Loaded | Started::Unloaded => Box::pin(futures_util::stream::empty()),
            Started::Running(events) => events,
        }
    }
}

/// Default `num_keep`: tokens kept from the start of an over-long prompt.
const DEFAULT_NUM_KEEP: usize = 4;

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

/// A generation ready to start: the prompt fitted, the options merged, the parser chosen.
pub(crate) struct Prepared {
    pub(crate) lease: Lease,
    pub(crate) prompt_tokens: Vec<u32>,
    pub(crate) options: Options,
    pub(crate) constraint: Option<OutputConstraint>,
    pub(crate) num_ctx: usize,
    pub(crate) started: Instant,
    pub(crate) parser: OutputParser,
}

/// Starts generating and returns the events. The stream owns the lease, so the model stays
/// loaded until the stream ends or is dropped; dropping it cancels generation. When
/// `shutdown` completes, the stream ends with [`ServingError::ShuttingDown`]'s text and the
/// generation is cancelled.
pub(crate) async fn run(
    prepared: Prepared,
    shutdown: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> Result<EventStream, ServingError> {
    let Prepared { lease, prompt_tokens, options, constraint, num_ctx, started, parser } = prepared;
    let request = GenerationRequest {
        constraint,
        max_new_tokens: max_new_tokens(options.num_predict, num_ctx, prompt_tokens.len()),
        prompt_tokens: prompt_tokens.clone(),
        sampling: sampling(&options),
        stop: options.stop.clone().unwrap_or_default(),
    };
    let receiver = lease.model().generate(request).await?;
    let load_duration = lease.load_duration();
    let run_state = RunState {
        receiver,
        lease: Some(lease),
        prompt_tokens,
        parser,
        pending: VecDeque::new(),
        n_tool_calls: 0,
        shutdown,
    };
    Ok(Box::pin(futures_util::stream::unfold(run_state, move |mut run_state| async move {
        loop {
            if let Some(event) = run_state.pending.pop_front() {
                return Some((event, run_state));
            }
            run_state.lease.as_ref()?;
            let engine_event = tokio::select! {
                event = run_state.receiver.recv() => event,
                () = &mut run_state.shutdown => {
                    run_state.lease = None;
                    run_state.receiver.close();
                    let text = ServingError::ShuttingDown.to_string();
                    tracing::warn!("ending a running generation: {text}");
                    run_state.pending.push_back(Event::Failed(text));
                    continue;
                }
            };
            match engine_event {
                Some(GenerationEvent::Text(text)) => {
                    let parsed = run_state.parser.push(&text);
                    run_state.queue(parsed);
                }
                Some(GenerationEvent::Done(summary)) => {
                    run_state.lease = None;
                    let parsed = run_state.parser.finish();
                    run_state.queue(parsed);
                    let finished = Finished {
                        done_reason: summary.done_reason,
                        metrics: Metrics {
                            total_duration: started.elapsed(),
                            load_duration,
                            prompt_eval_count: summary.n_prompt_tokens,
                            prompt_eval_duration: summary.prompt_duration,
                            eval_count: summary.n_generated_tokens,
                            eval_duration: summary.generation_duration,
                        },
                        prompt_tokens: std::mem::take(&mut run_state.prompt_tokens),
                        generated_tokens: summary.generated_tokens,
                        remote_host: None,
                    };
                    run_state.pending.push_back(Event::Done(Box::new(finished)));
                }
                Some(GenerationEvent::Failed(error)) => {
                    tracing::error!(%error, "generation failed mid-stream");
                    run_state.lease = None;
                    run_state.pending.push_back(Event::Failed(error));
                }
                None => {
                    tracing::error!("the engine stopped without finishing the response");
                    run_state.lease = None;
                    run_state
                        .pending
                        .push_back(Event::Failed("the engine stopped without finishing the response".into()));
                }
            }
        }
    })))
}

struct RunState {
    receiver: tokio::sync::mpsc::Receiver<GenerationEvent>,
    /// Held until the generation ends.
    lease: Option<Lease>,
    prompt_tokens: Vec<u32>,
    parser: OutputParser,
    pending: VecDeque<Event>,
    n_tool_calls: usize,
    shutdown: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl RunState {
    fn queue(&mut self, parsed: Vec<OutputEvent>) {
        for piece in parsed {
            let event = match piece {
                OutputEvent::Content(text) => Event::Content(text),
                OutputEvent::Thinking(text) => Event::Thinking(text),
                OutputEvent::ToolCalls(calls) => Event::ToolCalls(
                    calls
                        .into_iter()
                        .map(|call| {
                            let index = self.n_tool_calls;
                            self.n_tool_calls += 1;
                            ToolCall { id: Some(new_tool_call_id()), index, name: call.name, arguments: call.arguments }
                        })
                        .collect(),
                ),
            };
            self.pending.push_back(event);
        }
    }
}

/// `call_` and 8 random lowercase letters and digits, as Ollama names tool calls.
/// A new `call_xxxxxxxx` id for a tool call the model made.
pub fn new_tool_call_id() -> String {
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

/// A whole reply.
#[derive(Debug, Default)]
pub struct Reply {
    /// Answer text (of the last round, in a tool loop).
    pub content: String,
    /// Reasoning text (of the last round).
    pub thinking: String,
    /// Calls made (in the last round).
    pub tool_calls: Vec<ToolCall>,
    /// In a tool loop, the messages it added to the conversation; empty otherwise.
    pub exchange: Exchange,
    /// The final figures; `None` when there were no events (a load or unload).
    pub finished: Option<Box<Finished>>,
}

/// Adds the model's output in `event` (content, thinking, calls) to the assistant `message`
/// it makes up; other events add nothing.
pub(crate) fn add_to_message(message: &mut ChatMessage, event: &Event) {
    match event {
        Event::Content(text) => message.content.push_str(text),
        Event::Thinking(text) => message.thinking.get_or_insert_with(String::new).push_str(text),
        Event::ToolCalls(calls) => message.tool_calls.extend(calls.iter().cloned()),
        Event::ToolResult(_) | Event::Done(_) | Event::Failed(_) => {}
    }
}

/// The messages a tool loop added to a conversation, gathered from its events: what a caller
/// appends to its history.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exchange {
    messages: Vec<ChatMessage>,
    /// The assistant's message of the running round, while events come.
    round: ChatMessage,
}

impl Exchange {
    /// Takes in one event of the stream.
    pub fn observe(&mut self, event: &Event) {
        if let Event::ToolResult(message) = event {
            let assistant = std::mem::take(&mut self.round);
            self.observe_tool_result(assistant, message.clone());
        } else {
            add_to_message(&mut self.round, event);
        }
    }

    /// Whether a tool loop ran (a tool result was seen).
    pub fn is_loop(&self) -> bool {
        !self.messages.is_empty()
    }

    /// The messages so far, the running round's assistant message last; empty when no tool
    /// result came (a plain chat).
    pub fn messages(&self) -> Vec<ChatMessage> {
        if self.messages.is_empty() {
            return Vec::new();
        }
        let mut messages = self.messages.clone();
        messages.push(ChatMessage { role: "assistant".into(), ..self.round.clone() });
        messages
    }

    fn observe_tool_result(&mut self, assistant: ChatMessage, result: ChatMessage) {
        // Several results answer one assistant message: it is added once, before the first.
        // Results of calls made before the stream (a conversation sent back) have none.
        let empty = assistant.content.is_empty() && assistant.thinking.is_none() && assistant.tool_calls.is_empty();
        if !empty {
            self.messages.push(ChatMessage { role: "assistant".into(), ..assistant });
        }
        self.messages.push(result);
    }
}

/// Drains a generation into a whole reply; a failure midway is an internal error.
pub async fn collect(events: impl Stream<Item = Event>) -> Result<Reply, ServingError> {
    let mut events = std::pin::pin!(events);
    let mut reply = Reply::default();
    while let Some(event) = events.next().await {
        reply.exchange.observe(&event);
        match event {
            Event::Content(piece) => reply.content.push_str(&piece),
            Event::Thinking(piece) => reply.thinking.push_str(&piece),
            Event::ToolCalls(calls) => reply.tool_calls.extend(calls),
            Event::ToolResult(_) => {
                reply.content.clear();
                reply.thinking.clear();
                reply.tool_calls.clear();
            }
            Event::Done(finished) => {
                reply.finished = Some(finished);
                break;
            }
            Event::Failed(error) => return Err(ServingError::Internal(error)),
        }
    }
    Ok(reply)
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
