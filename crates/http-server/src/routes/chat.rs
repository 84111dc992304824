//! `POST /api/chat`: multi-turn chat, load and unload.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use engine::{LoadedModel, TemplateMessage};
use futures_util::StreamExt;
use model_formats::{OutputParser, ParserConfig, ToolCallFormat};
use model_store::ModelName;
use ollama_api::{ChatRequest, ChatResponse, Message};

use super::common;
use super::common::Start;
use crate::inference::{self, DoneInfo, Outcome};
use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, now_rfc3339, StreamItem};
use crate::{ApiError, AppState};

/// Validates a request and starts it: a load or unload answers at once, anything else
/// starts generating. Shared with the OpenAI-compatible routes.
pub(crate) async fn start_chat(state: &AppState, request: &ChatRequest, started: Instant) -> Result<Start, ApiError> {
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    crate::layers::record_model(&request.model);
    let not_found = || ApiError::not_found(format!("model '{}' not found", request.model));
    let name = ModelName::parse(&request.model).map_err(|_| not_found())?;
    common::check_top_logprobs(request.top_logprobs)?;
    let keep_alive = inference::parse_keep_alive(&request.keep_alive)?;
    let model = state.resolve(&name).map_err(|error| if error.status == 404 { not_found() } else { error })?;
    if !model.capabilities().contains(&"completion") {
        return Err(ApiError::bad_request(format!("\"{}\" does not support chat", request.model)));
    }
    let think = common::check_think(&request.think, &model, &request.model)?;
    let json_schema = common::json_schema(&request.format)?;
    for message in &request.messages {
        common::check_images(message.images.as_ref(), &model)?;
    }
    let tools = request.tools.clone().filter(|tools| !tools.is_empty());
    if tools.is_some() && !model.capabilities().contains(&"tools") {
        return Err(ApiError::bad_request(format!("{} does not support tools", model.name.display_full())));
    }

    let options = inference::merged_options(&model, &request.options)?;
    let num_ctx = inference::context_size(state, &model, &options);
    if request.messages.is_empty() {
        if keep_alive == Some(Some(Duration::ZERO)) {
            state.scheduler().unload(&model.name.display_full());
            return Ok(Start::Done("unload"));
        }
        drop(inference::acquire(state, &model, num_ctx, keep_alive).await?);
        return Ok(Start::Done("load"));
    }

    let lease = inference::acquire(state, &model, num_ctx, keep_alive).await?;
    let description = lease.model().description();

    let mut messages: Vec<TemplateMessage> = Vec::new();
    if let Some(system) = &model.system {
        if request.messages.first().is_none_or(|first| first.role != "system") {
            messages.push(TemplateMessage { role: "system".into(), content: system.clone(), ..Default::default() });
        }
    }
    messages.extend(model.messages.iter().map(common::template_message));
    messages.extend(request.messages.iter().map(common::template_message));

    let template = model.chat_template();
    let tool_call_format = ToolCallFormat::from_template(template.as_deref().unwrap_or_default());
    common::shape_tool_history(&mut messages, tool_call_format);
    let renderer = std::sync::Arc::new(common::PromptRenderer {
        template,
        tools: tools.clone(),
        bos_token: description.bos_token.clone(),
        eos_token: description.eos_token.clone(),
        think: think.clone(),
        workers: state.config().template_workers.clone(),
    });
    let truncate = request.truncate != Some(false);
    let (prompt_text, prompt_tokens) =
        fitted_prompt(lease.model().as_ref(), messages, &renderer, num_ctx, truncate).await?;
    let prompt_tokens = if truncate {
        inference::fit_prompt(prompt_tokens, num_ctx, inference::num_keep(&options))
    } else {
        prompt_tokens
    };
    let parser = OutputParser::new(ParserConfig {
        thinking: think.mode,
        starts_in_thinking: prompt_text.trim_end().ends_with(model_formats::THINK_OPEN),
        tool_calls: tools.as_ref().map(|_| tool_call_format),
        tool_names: tools.iter().flatten().filter_map(tool_name).collect(),
    });
    let outcomes = inference::run(state, lease, prompt_tokens, &options, json_schema, num_ctx, started, parser).await?;
    Ok(Start::Running(Box::pin(outcomes)))
}

/// The function name of a tool in OpenAI's schema.
fn tool_name(tool: &serde_json::Value) -> Option<String> {
    tool.get("function")?.get("name")?.as_str().map(str::to_owned)
}

pub(crate) async fn chat(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let respond_done = |done_reason: &str| ChatResponse {
        model: request.model.clone(),
        created_at: now_rfc3339(),
        message: Message { role: "assistant".into(), ..Default::default() },
        done: true,
        done_reason: Some(done_reason.to_owned()),
        ..Default::default()
    };
    let outcomes = match start_chat(&state, &request, started).await? {
        Start::Done(done_reason) => return Ok(json_response(&respond_done(done_reason))),
        Start::Running(outcomes) => outcomes,
    };
    let model_echo = request.model.clone();
    let chunk = move |message: Message, done: Option<Box<DoneInfo>>| ChatResponse {
        model: model_echo.clone(),
        created_at: now_rfc3339(),
        message,
        done: done.is_some(),
        done_reason: done.as_ref().map(|done| done.done_reason.to_owned()),
        metrics: done.map(|done| done.metrics).unwrap_or_default(),
    };
    let assistant = |content: String| Message { role: "assistant".into(), content, ..Default::default() };

    if request.stream.unwrap_or(true) {
        return Ok(ndjson_response(outcomes.map(move |outcome| match outcome {
            Outcome::Content(text) => StreamItem::Chunk(chunk(assistant(text), None)),
            Outcome::Thinking(text) => {
                StreamItem::Chunk(chunk(Message { thinking: Some(text), ..assistant(String::new()) }, None))
            }
            Outcome::ToolCalls(calls) => {
                StreamItem::Chunk(chunk(Message { tool_calls: Some(calls), ..assistant(String::new()) }, None))
            }
            Outcome::Done(done) => StreamItem::Chunk(chunk(assistant(String::new()), Some(done))),
            Outcome::Failed(error) => StreamItem::Error(error),
        })));
    }
    let collected = inference::collect(outcomes).await?;
    let done = collected.done.ok_or_else(|| ApiError::internal("generation ended without a final response"))?;
    let message = Message {
        thinking: (!collected.thinking.is_empty()).then_some(collected.thinking),
        tool_calls: (!collected.tool_calls.is_empty()).then_some(collected.tool_calls),
        ..assistant(collected.content)
    };
    Ok(json_response(&chunk(message, Some(done))))
}

/// Renders and tokenizes the conversation; when it does not fit the context, drops the oldest
/// messages (never system messages, never the last one) until it does, as Ollama does.
/// Returns the prompt's text and tokens.
async fn fitted_prompt(
    model: &dyn LoadedModel,
    mut messages: Vec<TemplateMessage>,
    renderer: &std::sync::Arc<common::PromptRenderer>,
    num_ctx: usize,
    truncate: bool,
) -> Result<(String, Vec<u32>), ApiError> {
    loop {
        let text = renderer.render(messages.clone()).await?;
        let tokens = model.tokenize(&text, false).await.map_err(|error| ApiError::internal(error.to_string()))?;
        if !truncate || tokens.len() < num_ctx {
            return Ok((text, tokens));
        }
        let last_index = messages.len().saturating_sub(1);
        let Some(oldest) = messages.iter().position(|message| message.role != "system") else {
            return Ok((text, tokens));
        };
        if oldest >= last_index {
            return Ok((text, tokens));
        }
        messages.remove(oldest);
    }
}
