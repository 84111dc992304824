//! `POST /api/chat`: multi-turn chat, load and unload.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use ollama_api::{ChatRequest, ChatResponse, Message};
use serving::{ChatInput, Event, Finished, Priority, Started};

use super::generate::asks_for_interactive_priority;
use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, now_rfc3339, StreamItem};
use crate::{wire, ApiError, AppState};

/// The core's input for a request; `interactive` when the sender asked for interactive
/// priority (modeld's language server filling a hole with a chat model).
pub(crate) fn chat_input(request: &ChatRequest, interactive: bool) -> Result<ChatInput, ApiError> {
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    wire::check_top_logprobs(request.top_logprobs)?;
    Ok(ChatInput {
        model: request.model.clone(),
        messages: request.messages.iter().map(wire::chat_message).collect(),
        tools: request.tools.clone().unwrap_or_default(),
        tool_choice: serving::ToolChoice::Auto,
        mcp_servers: request.mcp_servers.as_ref().map(serving::parse_tool_servers).transpose()?.flatten(),
        keep_alive: wire::keep_alive(&request.keep_alive)?,
        think: wire::think(&request.think)?,
        output_schema: wire::output_schema(&request.format)?,
        options: wire::options(&request.options)?,
        truncate: request.truncate != Some(false),
        priority: if interactive { Priority::Interactive } else { Priority::Chat },
    })
}

pub(crate) async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    OllamaJson(request): OllamaJson<ChatRequest>,
) -> Result<Response, ApiError> {
    crate::layers::record_model(&request.model);
    let respond_done = |done_reason: &str| ChatResponse {
        model: request.model.clone(),
        created_at: now_rfc3339(),
        message: Message { role: "assistant".into(), ..Default::default() },
        done: true,
        done_reason: Some(done_reason.to_owned()),
        ..Default::default()
    };
    let exchange_messages = |exchange: &serving::Exchange| {
        exchange.is_loop().then(|| exchange.messages().iter().map(wire::wire_message).collect())
    };
    let events = match state.core().chat(chat_input(&request, asks_for_interactive_priority(&headers))?).await? {
        Started::Loaded => return Ok(json_response(&respond_done("load"))),
        Started::Unloaded => return Ok(json_response(&respond_done("unload"))),
        Started::Running(events) => events,
    };
    let model_echo = request.model.clone();
    let chunk = move |message: Message, finished: Option<Box<Finished>>| ChatResponse {
        model: model_echo.clone(),
        created_at: now_rfc3339(),
        message,
        done: finished.is_some(),
        done_reason: finished.as_ref().map(|finished| finished.done_reason.as_str().to_owned()),
        remote_host: finished.as_ref().and_then(|finished| finished.remote_host.clone()),
        metrics: finished.map(|finished| wire::metrics(&finished.metrics)).unwrap_or_default(),
        messages: None,
    };
    let assistant = |content: String| Message { role: "assistant".into(), content, ..Default::default() };

    if request.stream.unwrap_or(true) {
        let mut exchange = serving::Exchange::default();
        return Ok(ndjson_response(events.map(move |event| {
            exchange.observe(&event);
            match event {
                Event::Content(text) => StreamItem::Chunk(chunk(assistant(text), None)),
                Event::Thinking(text) => {
                    StreamItem::Chunk(chunk(Message { thinking: Some(text), ..assistant(String::new()) }, None))
                }
                Event::ToolCalls(calls) => StreamItem::Chunk(chunk(
                    Message { tool_calls: Some(wire::wire_tool_calls(&calls)), ..assistant(String::new()) },
                    None,
                )),
                Event::ToolResult(message) => StreamItem::Chunk(chunk(wire::wire_message(&message), None)),
                Event::Done(finished) => StreamItem::Chunk(ChatResponse {
                    messages: exchange_messages(&exchange),
                    ..chunk(assistant(String::new()), Some(finished))
                }),
                Event::Failed(error) => StreamItem::Error(error),
            }
        })));
    }
    let reply = serving::collect(events).await?;
    let finished = reply.finished.ok_or_else(|| ApiError::internal("generation ended without a final response"))?;
    let message = Message {
        thinking: (!reply.thinking.is_empty()).then_some(reply.thinking),
        tool_calls: (!reply.tool_calls.is_empty()).then(|| wire::wire_tool_calls(&reply.tool_calls)),
        ..assistant(reply.content)
    };
    Ok(json_response(&ChatResponse { messages: exchange_messages(&reply.exchange), ..chunk(message, Some(finished)) }))
}
