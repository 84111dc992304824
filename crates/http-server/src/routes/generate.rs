//! `POST /api/generate`: completion from a prompt, load and unload.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use ollama_api::{GenerateRequest, GenerateResponse, PRIORITY_HEADER, PRIORITY_INTERACTIVE};
use serving::{Event, Finished, GenerateInput, Priority, Started};

use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, now_rfc3339, StreamItem};
use crate::{wire, ApiError, AppState};

/// Whether the request's headers ask for interactive priority ([`PRIORITY_HEADER`], which
/// modeld's language server sends when the request itself does not show it: a chat model
/// asked to fill a hole).
pub(crate) fn asks_for_interactive_priority(headers: &HeaderMap) -> bool {
    headers
        .get(PRIORITY_HEADER)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(PRIORITY_INTERACTIVE.as_bytes()))
}

/// The core's input for a request. A request with a suffix is fill-in-the-middle, which
/// editors send while the user types: it runs at interactive priority, as does one whose
/// sender says so with [`PRIORITY_HEADER`].
pub(crate) fn generate_input(request: &GenerateRequest, interactive: bool) -> Result<GenerateInput, ApiError> {
    wire::check_top_logprobs(request.top_logprobs)?;
    let fills_in_the_middle = request.suffix.as_deref().is_some_and(|suffix| !suffix.is_empty());
    Ok(GenerateInput {
        model: request.model.clone(),
        prompt: request.prompt.clone(),
        suffix: request.suffix.clone(),
        system: request.system.clone(),
        template: request.template.clone(),
        context: request.context.clone(),
        raw: request.raw,
        keep_alive: wire::keep_alive(&request.keep_alive)?,
        think: wire::think(&request.think)?,
        output_schema: wire::output_schema(&request.format)?,
        options: wire::options(&request.options)?,
        truncate: request.truncate != Some(false),
        n_images: request.images.as_ref().map_or(0, Vec::len),
        priority: if fills_in_the_middle || interactive { Priority::Interactive } else { Priority::Chat },
    })
}

pub(crate) async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    OllamaJson(request): OllamaJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    crate::layers::record_model(&request.model);
    let respond_done = |done_reason: &str| GenerateResponse {
        model: request.model.clone(),
        created_at: now_rfc3339(),
        done: true,
        done_reason: Some(done_reason.to_owned()),
        ..Default::default()
    };
    let events = match state.core().generate(generate_input(&request, asks_for_interactive_priority(&headers))?).await?
    {
        Started::Loaded => return Ok(json_response(&respond_done("load"))),
        Started::Unloaded => return Ok(json_response(&respond_done("unload"))),
        Started::Running(events) => events,
    };
    let model_echo = request.model.clone();
    let return_context = !request.raw;
    let chunk = move |response: String, thinking: Option<String>, finished: Option<Box<Finished>>| match finished {
        None => GenerateResponse {
            model: model_echo.clone(),
            created_at: now_rfc3339(),
            response,
            thinking,
            ..Default::default()
        },
        Some(finished) => {
            let Finished { done_reason, metrics, prompt_tokens, generated_tokens, remote_host } = *finished;
            let mut context = prompt_tokens;
            context.extend(generated_tokens);
            GenerateResponse {
                model: model_echo.clone(),
                created_at: now_rfc3339(),
                response,
                thinking,
                done: true,
                done_reason: Some(done_reason.as_str().to_owned()),
                // A remote model gives no tokens: no context, as from Ollama's cloud models.
                context: (return_context && remote_host.is_none()).then_some(context),
                remote_host,
                metrics: wire::metrics(&metrics),
            }
        }
    };

    if request.stream.unwrap_or(true) {
        return Ok(ndjson_response(events.map(move |event| match event {
            Event::Content(text) => StreamItem::Chunk(chunk(text, None, None)),
            Event::Thinking(text) => StreamItem::Chunk(chunk(String::new(), Some(text), None)),
            // Generate offers no tools, so the parser makes no calls and no tool loop runs.
            Event::ToolCalls(_) | Event::ToolResult(_) => StreamItem::Chunk(chunk(String::new(), None, None)),
            Event::Done(finished) => StreamItem::Chunk(chunk(String::new(), None, Some(finished))),
            Event::Failed(error) => StreamItem::Error(error),
        })));
    }
    let reply = serving::collect(events).await?;
    let finished = reply.finished.ok_or_else(|| ApiError::internal("generation ended without a final response"))?;
    let thinking = (!reply.thinking.is_empty()).then_some(reply.thinking);
    Ok(json_response(&chunk(reply.content, thinking, Some(finished))))
}
