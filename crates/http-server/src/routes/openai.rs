//! The OpenAI-compatible API under `/v1`: chat completions, completions and models, mapped
//! onto the native generate and chat pipeline, with OpenAI's error shape and SSE framing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use ollama_api::{ChatRequest, GenerateRequest, Message, ToolCall, ToolCallFunction};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serving::{Event, Reply};
use std::sync::atomic::{AtomicU64, Ordering};

use super::chat::chat_input;
use super::generate::generate_input;
use crate::json::{json_response, OllamaJson};
use crate::{ApiError, AppState};

/// An `ApiError` in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> OpenAiError {
        OpenAiError(error)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = match self.0.status.as_u16() {
            400 => "invalid_request_error",
            404 => "not_found_error",
            _ => "api_error",
        };
        let body = json!({"error": {"message": self.0.message, "type": kind, "param": null, "code": null}});
        (self.0.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

fn next_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed) % 999
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Fields shared by both completion endpoints.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Sampling {
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
}

impl Sampling {
    /// Native options; OpenAI's defaults (temperature and top_p 1.0) replace the model's.
    fn options(&self) -> Result<Map<String, Value>, ApiError> {
        let mut options = Map::new();
        options.insert("temperature".into(), json!(self.temperature.unwrap_or(1.0)));
        options.insert("top_p".into(), json!(self.top_p.filter(|top_p| *top_p > 0.0).unwrap_or(1.0)));
        if let Some(limit) = self.max_completion_tokens.or(self.max_tokens) {
            options.insert("num_predict".into(), json!(limit));
        }
        if let Some(seed) = self.seed {
            options.insert("seed".into(), json!(seed));
        }
        options.insert("frequency_penalty".into(), json!(self.frequency_penalty.unwrap_or(0.0)));
        options.insert("presence_penalty".into(), json!(self.presence_penalty.unwrap_or(0.0)));
        match &self.stop {
            None | Some(Value::Null) => {}
            Some(Value::String(stop)) => {
                options.insert("stop".into(), json!([stop]));
            }
            Some(Value::Array(items)) => {
                if let Some(bad) = items.iter().find(|item| !item.is_string()) {
                    return Err(ApiError::bad_request(format!("invalid type for 'stop' field: {}", type_name(bad))));
                }
                options.insert("stop".into(), Value::Array(items.clone()));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!("invalid type for 'stop' field: {}", type_name(other))))
            }
        }
        Ok(options)
    }

    fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|options| options.get("include_usage")).and_then(Value::as_bool)
            == Some(true)
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletionRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    /// modeld: run the tool loop with these MCP servers' tools.
    #[serde(default)]
    mcp_servers: Option<Value>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// `tool_choice` as OpenAI spells it: `"none"`, `"auto"`, `"required"`, or
/// `{"type": "function", "function": {"name": …}}`.
fn tool_choice(choice: Option<&Value>) -> Result<serving::ToolChoice, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(serving::ToolChoice::Auto),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Ok(serving::ToolChoice::Auto),
            "none" => Ok(serving::ToolChoice::None),
            "required" => Ok(serving::ToolChoice::Required),
            other => Err(ApiError::bad_request(format!(
                "invalid tool_choice: \"{other}\" (expected \"none\", \"auto\", \"required\" or a function)"
            ))),
        },
        Some(object) => match object.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(serving::ToolChoice::Function(name.to_owned())),
            None => Err(ApiError::bad_request("invalid tool_choice: a named choice needs function.name")),
        },
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// OpenAI messages as native ones. Each content part becomes a message of its own, as in
/// Ollama; images must be base64 data URIs; a tool reply without `name` takes the name of the
/// call it answers.
fn messages_from_openai(messages: &[Value]) -> Result<Vec<Message>, ApiError> {
    let mut converted = Vec::new();
    let mut call_names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user").to_owned();
        let tool_calls = tool_calls_from_openai(message)?;
        for call in tool_calls.iter().flatten() {
            if let Some(id) = &call.id {
                call_names.insert(id.clone(), call.function.name.clone());
            }
        }
        let mut parts: Vec<(String, Option<Vec<String>>)> = Vec::new();
        match message.get("content") {
            None | Some(Value::Null) => {
                if tool_calls.is_none() {
                    return Err(ApiError::bad_request("invalid message content type: <nil>"));
                }
                parts.push((String::new(), None));
            }
            Some(Value::String(text)) => parts.push((text.clone(), None)),
            Some(Value::Array(items)) => {
                for part in items {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            parts.push((part.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(), None))
                        }
                        Some("image_url") => {
                            let url = match &part["image_url"] {
                                Value::String(url) => url.as_str(),
                                object => object.get("url").and_then(Value::as_str).unwrap_or_default(),
                            };
                            parts.push((String::new(), Some(vec![image_from_url(url)?])));
                        }
                        _ => return Err(ApiError::bad_request("invalid message format")),
                    }
                }
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!("invalid message content type: {}", type_name(other))))
            }
        }
        let tool_call_id = message.get("tool_call_id").and_then(Value::as_str).map(str::to_owned);
        let tool_name = message
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| tool_call_id.as_ref().and_then(|id| call_names.get(id).cloned()));
        let thinking = message.get("reasoning").and_then(Value::as_str).map(str::to_owned);
        for (index, (content, images)) in parts.into_iter().enumerate() {
            converted.push(Message {
                role: role.clone(),
                content,
                thinking: if index == 0 { thinking.clone() } else { None },
                images,
                tool_calls: if index == 0 { tool_calls.clone() } else { None },
                tool_name: tool_name.clone(),
                tool_call_id: tool_call_id.clone(),
            });
        }
    }
    Ok(converted)
}

/// The base64 payload of a `data:` URI; web URLs are refused as Ollama refuses them.
fn image_from_url(url: &str) -> Result<String, ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::bad_request(
            "image URLs are not currently supported, please use base64 encoded data instead",
        ));
    }
    const PREFIXES: &[&str] = &[
        "data:image/jpeg;base64,",
        "data:image/jpg;base64,",
        "data:image/png;base64,",
        "data:image/webp;base64,",
        "data:;base64,",
    ];
    PREFIXES
        .iter()
        .find_map(|prefix| url.strip_prefix(prefix))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("invalid image input"))
}

/// An assistant message's calls, with arguments given as a JSON string or an object.
fn tool_calls_from_openai(message: &Value) -> Result<Option<Vec<ToolCall>>, ApiError> {
    let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else { return Ok(None) };
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let function = call.get("function").cloned().unwrap_or_default();
            let arguments = match function.get("arguments") {
                Some(Value::String(text)) => serde_json::from_str::<Map<String, Value>>(text)
                    .map_err(|_| ApiError::bad_request("invalid tool call arguments"))?,
                Some(Value::Object(object)) => object.clone(),
                _ => Map::new(),
            };
            Ok(ToolCall {
                id: call.get("id").and_then(Value::as_str).map(str::to_owned),
                function: ToolCallFunction {
                    index,
                    name: function.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    arguments,
                },
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Some)
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<ChatCompletionRequest>,
) -> Result<Response, OpenAiError> {
    crate::layers::record_model(&request.model);
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required").into());
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("[] is too short - 'messages'").into());
    }
    let messages = messages_from_openai(&request.messages)?;
    let format = match request.response_format.as_ref().and_then(|format| format.get("type")).and_then(Value::as_str) {
        Some("json_object") => Some(json!("json")),
        Some("json_schema") => {
            request.response_format.as_ref().and_then(|format| format["json_schema"].get("schema")).cloned()
        }
        _ => None,
    };
    let effort = request
        .reasoning_effort
        .as_deref()
        .or_else(|| request.reasoning.as_ref().and_then(|reasoning| reasoning.get("effort")).and_then(Value::as_str));
    let think = match effort {
        None => None,
        Some("none") => Some(json!(false)),
        Some("minimal" | "low") => Some(json!("low")),
        Some(level @ ("medium" | "high" | "max")) => Some(json!(level)),
        Some("xhigh" | "ultra") => Some(json!("max")),
        Some(_) => return Err(ApiError::bad_request("invalid reasoning value").into()),
    };
    let native = ChatRequest {
        model: request.model.clone(),
        messages,
        tools: request.tools.clone(),
        format,
        options: Some(request.sampling.options()?),
        stream: Some(request.sampling.stream),
        think,
        mcp_servers: request.mcp_servers.clone(),
        ..Default::default()
    };
    let mut input = chat_input(&native, false)?;
    input.tool_choice = tool_choice(request.tool_choice.as_ref())?;
    let events = state.core().chat(input).await.map_err(ApiError::from)?.into_events();
    let id = format!("chatcmpl-{}", next_id());
    let created = unix_now();
    let model = request.model.clone();
    if !request.sampling.stream {
        let reply = serving::collect(events).await.map_err(ApiError::from)?;
        let (finish_reason, prompt_tokens, completion_tokens) = figures(&reply);
        let mut message = json!({"role": "assistant", "content": reply.content});
        if !reply.thinking.is_empty() {
            message["reasoning"] = json!(reply.thinking);
        }
        if !reply.tool_calls.is_empty() {
            message["tool_calls"] = openai_tool_calls(&reply.tool_calls);
        }
        let finish_reason = if reply.tool_calls.is_empty() { finish_reason } else { "tool_calls" };
        let mut body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens),
        });
        if reply.exchange.is_loop() {
            body["messages"] = openai_messages(&reply.exchange.messages());
        }
        return Ok(json_response(&body));
    }
    let chunk = move |delta: Value, finish_reason: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "system_fingerprint": "fp_ollama",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    };
    let events = stream_events(events, request.sampling.include_usage(), move |event, finish_reason| match event {
        Event::Content(text) => Some(chunk(json!({"role": "assistant", "content": text}), Value::Null)),
        Event::Thinking(text) => {
            Some(chunk(json!({"role": "assistant", "content": "", "reasoning": text}), Value::Null))
        }
        Event::ToolCalls(calls) => Some(chunk(
            json!({"role": "assistant", "content": "", "tool_calls": openai_tool_calls(calls)}),
            Value::Null,
        )),
        Event::ToolResult(message) => Some(chunk(openai_message(message), Value::Null)),
        Event::Done(_) => Some(chunk(json!({}), json!(finish_reason))),
        Event::Failed(_) => None,
    })
    .filter_map(|event| async move { event });
    Ok(sse_response(events))
}

/// A message in OpenAI's shape: a tool reply names its call and function.
fn openai_message(message: &serving::ChatMessage) -> Value {
    let mut object = json!({"role": message.role, "content": message.content});
    if let Some(thinking) = &message.thinking {
        object["reasoning"] = json!(thinking);
    }
    if !message.tool_calls.is_empty() {
        object["tool_calls"] = openai_tool_calls(&message.tool_calls);
    }
    if let Some(id) = &message.tool_call_id {
        object["tool_call_id"] = json!(id);
    }
    if let Some(name) = &message.tool_name {
        object["name"] = json!(name);
    }
    object
}

fn openai_messages(messages: &[serving::ChatMessage]) -> Value {
    messages.iter().map(openai_message).collect()
}

/// Calls in OpenAI's shape: arguments as a JSON string.
fn openai_tool_calls(calls: &[serving::ToolCall]) -> Value {
    calls
        .iter()
        .map(|call| {
            json!({"id": call.id, "index": call.index, "type": "function",
                   "function": {"name": call.name,
                                "arguments": Value::Object(call.arguments.clone()).to_string()}})
        })
        .collect()
}

pub(crate) async fn completions(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<CompletionRequest>,
) -> Result<Response, OpenAiError> {
    crate::layers::record_model(&request.model);
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required").into());
    }
    let Value::String(prompt) = &request.prompt else {
        return Err(ApiError::bad_request("invalid prompt: only a string prompt is supported").into());
    };
    let native = GenerateRequest {
        model: request.model.clone(),
        prompt: prompt.clone(),
        suffix: request.suffix.clone(),
        raw: false,
        options: Some(request.sampling.options()?),
        stream: Some(request.sampling.stream),
        ..Default::default()
    };
    let events = state.core().generate(generate_input(&native, false)?).await.map_err(ApiError::from)?.into_events();
    let id = format!("cmpl-{}", next_id());
    let created = unix_now();
    let model = request.model.clone();
    if !request.sampling.stream {
        let reply = serving::collect(events).await.map_err(ApiError::from)?;
        let (finish_reason, prompt_tokens, completion_tokens) = figures(&reply);
        return Ok(json_response(&json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"text": reply.content, "index": 0, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens),
        })));
    }
    let chunk = move |text: String, finish_reason: Value| {
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
               "system_fingerprint": "fp_ollama",
               "choices": [{"text": text, "index": 0, "finish_reason": finish_reason}]})
    };
    let events = stream_events(events, request.sampling.include_usage(), move |event, finish_reason| match event {
        Event::Content(text) => Some(chunk(text.clone(), Value::Null)),
        Event::Done(_) => Some(chunk(String::new(), json!(finish_reason))),
        Event::Thinking(_) | Event::ToolCalls(_) | Event::ToolResult(_) | Event::Failed(_) => None,
    })
    .filter_map(|event| async move { event });
    Ok(sse_response(events))
}

/// The core's events as SSE chunks, each endpoint rendering an event in its own shape (or
/// leaving it out): the `Done` chunk carries the finish reason (`tool_calls` when calls were
/// made), then (when asked) comes a chunk with no choices and the usage. A failure is an
/// `error` chunk.
fn stream_events(
    events: serving::EventStream,
    include_usage: bool,
    render: impl Fn(&Event, &str) -> Option<Value> + Send + 'static,
) -> impl futures_util::Stream<Item = Option<Value>> + Send + 'static {
    let mut made_tool_calls = false;
    events.flat_map(move |event| {
        let chunks: Vec<Option<Value>> = match &event {
            Event::ToolCalls(_) => {
                made_tool_calls = true;
                vec![render(&event, "")]
            }
            // The daemon ran the calls; the next round decides how the answer finishes.
            Event::ToolResult(_) => {
                made_tool_calls = false;
                vec![render(&event, "")]
            }
            Event::Done(finished) => {
                let reason = if made_tool_calls { "tool_calls" } else { finished.done_reason.as_str() };
                let finish = render(&event, reason);
                let usage_chunk = finish.clone().filter(|_| include_usage).map(|mut usage_chunk| {
                    usage_chunk["choices"] = json!([]);
                    usage_chunk["usage"] =
                        usage(finished.metrics.prompt_eval_count as u64, finished.metrics.eval_count as u64);
                    usage_chunk
                });
                vec![finish, usage_chunk]
            }
            Event::Failed(error) => vec![Some(json!({"error": {"message": error, "type": "api_error"}}))],
            Event::Content(_) | Event::Thinking(_) => vec![render(&event, "")],
        };
        futures_util::stream::iter(chunks)
    })
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens})
}

/// (finish_reason, prompt tokens, completion tokens) of a whole answer.
fn figures(reply: &Reply) -> (&'static str, u64, u64) {
    reply.finished.as_ref().map_or(("stop", 0, 0), |finished| {
        (finished.done_reason.as_str(), finished.metrics.prompt_eval_count as u64, finished.metrics.eval_count as u64)
    })
}

/// `data: <json>\n\n` events, then `data: [DONE]`. A failure midway is an event with an
/// `error` key, which the OpenAI clients raise.
fn sse_response(events: impl futures_util::Stream<Item = Value> + Send + 'static) -> Response {
    let lines = events
        .map(|event| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(format!("data: {event}\n\n"))))
        .chain(futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n")) }));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(lines))
        .into_response()
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Response {
    let data: Vec<Value> = state.core().list_models().await.iter().map(|(entry, _)| model_object(entry)).collect();
    json_response(&json!({"object": "list", "data": data}))
}

pub(crate) async fn retrieve_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, OpenAiError> {
    let not_found = || ApiError::not_found(format!("model '{model}' not found"));
    let resolved = state.core().resolve_spelled(&model).await.map_err(|_| not_found())?;
    let mut object = model_object(&resolved.entry);
    object["id"] = json!(model);
    Ok(json_response(&object))
}

fn model_object(entry: &model_store::ModelEntry) -> Value {
    let created = entry.modified_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    json!({"id": entry.name.display_shortest(), "object": "model", "created": created, "owned_by": entry.name.namespace})
}
