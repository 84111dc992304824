//! `POST /api/generate`: completion from a prompt, load and unload.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use engine::TemplateMessage;
use futures_util::StreamExt;
use model_formats::{OutputParser, ParserConfig, ThinkingMode};
use model_store::ModelName;
use ollama_api::{GenerateRequest, GenerateResponse};

use super::common;
use super::common::Start;
use crate::inference::{self, DoneInfo, Outcome};
use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, now_rfc3339, StreamItem};
use crate::{is_jinja, ApiError, AppState};

/// Validates a request and starts it: a load or unload answers at once, anything else
/// starts generating. Shared with the OpenAI-compatible routes.
pub(crate) async fn start_generate(
    state: &AppState,
    request: &GenerateRequest,
    started: Instant,
) -> Result<Start, ApiError> {
    crate::layers::record_model(&request.model);
    let not_found = || ApiError::not_found(format!("model '{}' not found", request.model));
    let name = ModelName::parse(&request.model).map_err(|_| not_found())?;
    if request.raw && (request.template.is_some() || request.system.is_some() || request.context.is_some()) {
        return Err(ApiError::bad_request("raw mode does not support template, system, or context"));
    }
    common::check_top_logprobs(request.top_logprobs)?;
    let keep_alive = inference::parse_keep_alive(&request.keep_alive)?;
    let model = state.resolve(&name).map_err(|error| if error.status == 404 { not_found() } else { error })?;
    if !model.capabilities().contains(&"completion") {
        return Err(ApiError::bad_request(format!("\"{}\" does not support generate", request.model)));
    }
    let think = common::check_think(&request.think, &model, &request.model)?;
    let json_schema = common::json_schema(&request.format)?;
    common::check_images(request.images.as_ref(), &model)?;
    // As in Ollama, an empty suffix is a plain prompt.
    let fill_in_the_middle = match request.suffix.as_deref().filter(|suffix| !suffix.is_empty()) {
        None => None,
        Some(suffix) => match &model.fim {
            Some(template) => Some((template.clone(), suffix)),
            None => {
                return Err(ApiError::bad_request(format!("{} does not support insert", model.name.display_full())))
            }
        },
    };

    if request.prompt.is_empty() && keep_alive == Some(Some(Duration::ZERO)) {
        state.scheduler().unload(&model.name.display_full());
        return Ok(Start::Done("unload"));
    }
    let mut options = inference::merged_options(&model, &request.options)?;
    let num_ctx = inference::context_size(state, &model, &options);
    if request.prompt.is_empty() {
        drop(inference::acquire(state, &model, num_ctx, keep_alive).await?);
        return Ok(Start::Done("load"));
    }

    let lease = inference::acquire(state, &model, num_ctx, keep_alive).await?;
    let description = lease.model().description();

    let prompt_text = if let Some((template, suffix)) = &fill_in_the_middle {
        options.stop.get_or_insert_with(Vec::new).extend(template.stops.iter().cloned());
        template.prompt(&request.prompt, suffix)
    } else if request.raw {
        request.prompt.clone()
    } else {
        let template = match &request.template {
            Some(template) if is_jinja(template) => Some(template.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "template error: modeld runs Jinja chat templates; Go templates are not supported",
                ))
            }
            None => model.chat_template(),
        };
        let mut messages = Vec::new();
        if let Some(system) = request.system.clone().or_else(|| model.system.clone()) {
            messages.push(TemplateMessage { role: "system".into(), content: system, ..Default::default() });
        }
        if request.context.is_none() {
            messages.extend(model.messages.iter().map(common::template_message));
        }
        messages.push(TemplateMessage { role: "user".into(), content: request.prompt.clone(), ..Default::default() });
        let renderer = common::PromptRenderer {
            template,
            tools: None,
            bos_token: description.bos_token.clone(),
            eos_token: description.eos_token.clone(),
            think: think.clone(),
            workers: state.config().template_workers.clone(),
        };
        std::sync::Arc::new(renderer).render(messages).await?
    };
    let mut prompt_tokens = request.context.clone().unwrap_or_default();
    prompt_tokens.extend(
        lease
            .model()
            .tokenize(&prompt_text, request.raw || fill_in_the_middle.is_some())
            .await
            .map_err(|error| ApiError::internal(error.to_string()))?,
    );
    let prompt_tokens = if request.truncate == Some(false) {
        prompt_tokens
    } else {
        inference::fit_prompt(prompt_tokens, num_ctx, inference::num_keep(&options))
    };
    let parser = OutputParser::new(ParserConfig {
        thinking: if request.raw || fill_in_the_middle.is_some() { ThinkingMode::Off } else { think.mode },
        starts_in_thinking: prompt_text.trim_end().ends_with(model_formats::THINK_OPEN),
        ..ParserConfig::default()
    });
    let outcomes = inference::run(state, lease, prompt_tokens, &options, json_schema, num_ctx, started, parser).await?;
    Ok(Start::Running(Box::pin(outcomes)))
}

pub(crate) async fn generate(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let respond_done = |done_reason: &str| GenerateResponse {
        model: request.model.clone(),
        created_at: now_rfc3339(),
        done: true,
        done_reason: Some(done_reason.to_owned()),
        ..Default::default()
    };
    let outcomes = match start_generate(&state, &request, started).await? {
        Start::Done(done_reason) => return Ok(json_response(&respond_done(done_reason))),
        Start::Running(outcomes) => outcomes,
    };
    let model_echo = request.model.clone();
    let return_context = !request.raw;
    let chunk = move |response: String, thinking: Option<String>, done: Option<Box<DoneInfo>>| match done {
        None => GenerateResponse {
            model: model_echo.clone(),
            created_at: now_rfc3339(),
            response,
            thinking,
            ..Default::default()
        },
        Some(done) => {
            let mut context = done.prompt_tokens;
            context.extend(done.generated_tokens);
            GenerateResponse {
                model: model_echo.clone(),
                created_at: now_rfc3339(),
                response,
                thinking,
                done: true,
                done_reason: Some(done.done_reason.to_owned()),
                context: return_context.then_some(context),
                metrics: done.metrics,
            }
        }
    };

    if request.stream.unwrap_or(true) {
        return Ok(ndjson_response(outcomes.map(move |outcome| match outcome {
            Outcome::Content(text) => StreamItem::Chunk(chunk(text, None, None)),
            Outcome::Thinking(text) => StreamItem::Chunk(chunk(String::new(), Some(text), None)),
            // Generate offers no tools, so the parser makes no calls.
            Outcome::ToolCalls(_) => StreamItem::Chunk(chunk(String::new(), None, None)),
            Outcome::Done(done) => StreamItem::Chunk(chunk(String::new(), None, Some(done))),
            Outcome::Failed(error) => StreamItem::Error(error),
        })));
    }
    let collected = inference::collect(outcomes).await?;
    let done = collected.done.ok_or_else(|| ApiError::internal("generation ended without a final response"))?;
    let thinking = (!collected.thinking.is_empty()).then_some(collected.thinking);
    Ok(json_response(&chunk(collected.content, thinking, Some(done))))
}
