//! The server-side tool loop: a chat turn whose tool calls the daemon runs itself (through a
//! [`ToolProvider`], the MCP client) and feeds back as `tool` messages, round after round,
//! until the model answers, calls a tool it does not own, or reaches the round cap.
//!
//! The caller sees one stream: each round's content, thinking and calls as they come, an
//! [`Event::ToolResult`] for every call the daemon ran, and one `Done` at the end with the
//! figures of all rounds added up. Calls to the caller's own tools, and to tools that need a
//! person's approval, end the loop unexecuted, as Ollama returns calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::{add_to_message, Event, EventStream, Finished, Metrics};
use crate::tools::{tool_name, ProvidedTool, ToolChoice, ToolProvider, ToolServers};
use crate::{pipeline, ChatInput, ChatMessage, Core, ServingError, Started, ToolCall};

/// Rounds with tools before the last round, which has none, when the daemon's setting does
/// not say otherwise.
pub const DEFAULT_MAX_TOOL_ROUNDS: usize = 8;

/// Starts the loop. The first round starts before this returns, so a request the model cannot
/// serve fails with its own error, as a plain chat does.
pub(crate) async fn start(core: &Core, mut input: ChatInput, servers: ToolServers) -> Result<Started, ServingError> {
    let started = Instant::now();
    let provider = core
        .tool_provider()
        .ok_or_else(|| ServingError::invalid("mcp_servers: no MCP servers are configured (see MODELD_MCP_CONFIG)"))?;
    let provided = provider.tools(&servers)?;
    // The caller's own tools win a name clash: their calls go back to the caller.
    let caller_names: Vec<String> = input.tools.iter().filter_map(|tool| tool_name(tool).map(str::to_owned)).collect();
    let daemon_tools: HashMap<String, ProvidedTool> = provided
        .into_iter()
        .filter_map(|tool| Some((tool.name()?.to_owned(), tool)))
        .filter(|(name, _)| !caller_names.contains(name))
        .collect();
    let mut names: Vec<&String> = daemon_tools.keys().collect();
    names.sort();
    input.tools.extend(names.into_iter().map(|name| daemon_tools[name].definition.clone()));
    input.mcp_servers = None;

    // Calls left unanswered at the end of the conversation (returned for approval, or next to
    // the caller's own calls) run now: sending them back is the approval.
    let mut earlier_results = Vec::new();
    for call in unanswered_calls(&input.messages, &daemon_tools) {
        let message = call_tool(provider.as_ref(), &call).await;
        input.messages.push(message.clone());
        earlier_results.push(message);
    }

    let first = pipeline::chat(core, input.clone()).await?;
    let events = match first {
        Started::Running(events) => events,
        finished => return Ok(finished),
    };
    let (sender, receiver) = mpsc::channel(64);
    let state = LoopState {
        core: core.clone(),
        provider,
        daemon_tools,
        input,
        max_rounds: core.config().max_tool_rounds,
        sender,
        started,
    };
    tokio::spawn(state.drive(earlier_results, events));
    Ok(Started::Running(Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    }))))
}

struct LoopState {
    core: Core,
    provider: Arc<dyn ToolProvider>,
    daemon_tools: HashMap<String, ProvidedTool>,
    /// The request, with the conversation so far in `messages`.
    input: ChatInput,
    max_rounds: usize,
    sender: mpsc::Sender<Event>,
    started: Instant,
}

/// How a round ended.
enum RoundEnd {
    /// With figures and the assistant's message.
    Finished(Box<Finished>, ChatMessage),
    /// Failed (already sent) or the caller went away.
    Stopped,
}

impl LoopState {
    async fn drive(mut self, earlier_results: Vec<ChatMessage>, mut events: EventStream) {
        for message in earlier_results {
            if self.sender.send(Event::ToolResult(message)).await.is_err() {
                return;
            }
        }
        let mut totals = Metrics::default();
        let mut round = 1;
        loop {
            let (mut finished, assistant) = match self.forward_round(events).await {
                RoundEnd::Finished(finished, assistant) => (finished, assistant),
                RoundEnd::Stopped => return,
            };
            add_metrics(&mut totals, &finished.metrics);
            // A call the daemon may not run (the caller's own tool, or one that needs a
            // person's approval) ends the loop with every call of the round unexecuted; sent
            // back with `mcp_servers`, the conversation's unanswered calls run first.
            let runs_all = assistant
                .tool_calls
                .iter()
                .all(|call| self.daemon_tools.get(&call.name).is_some_and(|tool| !tool.needs_approval));
            if assistant.tool_calls.is_empty() || !runs_all {
                finished.metrics = Metrics { total_duration: self.started.elapsed(), ..totals };
                let _ = self.sender.send(Event::Done(finished)).await;
                return;
            }
            let calls = assistant.tool_calls.clone();
            self.input.messages.push(assistant);
            for call in calls {
                let message = tokio::select! {
                    message = call_tool(self.provider.as_ref(), &call) => message,
                    () = self.sender.closed() => return,
                };
                self.input.messages.push(message.clone());
                if self.sender.send(Event::ToolResult(message)).await.is_err() {
                    return;
                }
            }
            round += 1;
            let mut next = self.input.clone();
            next.tool_choice = ToolChoice::Auto;
            if round > self.max_rounds {
                tracing::info!(
                    rounds = self.max_rounds,
                    "tool loop reached its round cap; one last turn without tools"
                );
                next.tools.clear();
            }
            events = match pipeline::chat(&self.core, next).await {
                Ok(Started::Running(events)) => events,
                Ok(_) => return,
                Err(error) => {
                    let _ = self.sender.send(Event::Failed(error.to_string())).await;
                    return;
                }
            };
        }
    }

    /// Passes one round's events on and gathers the assistant's message.
    async fn forward_round(&self, mut events: EventStream) -> RoundEnd {
        let mut assistant = ChatMessage::new("assistant", "");
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = self.sender.closed() => return RoundEnd::Stopped,
            };
            let Some(event) = event else {
                let _ = self.sender.send(Event::Failed("the generation ended without a final response".into())).await;
                return RoundEnd::Stopped;
            };
            match &event {
                Event::Done(finished) => return RoundEnd::Finished(finished.clone(), assistant),
                Event::Failed(_) => {
                    let _ = self.sender.send(event).await;
                    return RoundEnd::Stopped;
                }
                _ => add_to_message(&mut assistant, &event),
            }
            if self.sender.send(event).await.is_err() {
                return RoundEnd::Stopped;
            }
        }
    }
}

/// Runs one call and answers it with a `tool` message.
async fn call_tool(provider: &dyn ToolProvider, call: &ToolCall) -> ChatMessage {
    let output = provider.call(&call.name, call.arguments.clone()).await;
    if output.is_error {
        tracing::info!(tool = %call.name, "tool call failed: {}", output.content);
    }
    ChatMessage {
        tool_name: Some(call.name.clone()),
        tool_call_id: call.id.clone(),
        ..ChatMessage::new("tool", output.content)
    }
}

/// The calls to daemon tools that the conversation's last assistant message made and no
/// `tool` message after it answers (by call id, else by tool name).
fn unanswered_calls(messages: &[ChatMessage], daemon_tools: &HashMap<String, ProvidedTool>) -> Vec<ToolCall> {
    let Some(at) = messages.iter().rposition(|message| message.role == "assistant") else { return Vec::new() };
    let mut unanswered: Vec<ToolCall> = messages[at].tool_calls.clone();
    for reply in messages[at + 1..].iter().filter(|message| message.role == "tool") {
        let by_id =
            reply.tool_call_id.as_ref().and_then(|id| unanswered.iter().position(|call| call.id.as_ref() == Some(id)));
        let by_name =
            || reply.tool_name.as_ref().and_then(|name| unanswered.iter().position(|call| &call.name == name));
        if let Some(index) = by_id.or_else(by_name) {
            unanswered.remove(index);
        }
    }
    unanswered.retain(|call| daemon_tools.contains_key(&call.name));
    unanswered
}

fn add_metrics(totals: &mut Metrics, round: &Metrics) {
    totals.load_duration += round.load_duration;
    totals.prompt_eval_count += round.prompt_eval_count;
    totals.prompt_eval_duration += round.prompt_eval_duration;
    totals.eval_count += round.eval_count;
    totals.eval_duration += round.eval_duration;
}

/// Parses `mcp_servers` as requests carry it: `"all"`, or a list of server names.
pub fn parse_tool_servers(value: &Value) -> Result<Option<ToolServers>, ServingError> {
    match value {
        Value::Null => Ok(None),
        Value::String(all) if all == "all" => Ok(Some(ToolServers::All)),
        Value::Array(names) if names.iter().all(Value::is_string) => {
            Ok(Some(ToolServers::Named(names.iter().filter_map(Value::as_str).map(str::to_owned).collect())))
        }
        _ => Err(ServingError::invalid("mcp_servers must be \"all\" or a list of MCP server names")),
    }
}
