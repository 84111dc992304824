//! Between Ollama's wire format and the serving core's types: request fields parsed into core
//! values (with Ollama's error texts), and core values rendered as wire types.

use model_store::gguf::GgufHeader;
use model_store::{ConfigV2, Options};
use ollama_api::{KeepAlive, Message, ModelDetails, ToolCallFunction};
use serde_json::Value;
use serving::{ChatMessage, ResolvedModel, Think, ToolCall};

use crate::ApiError;

/// `keep_alive` of a request; `None` when absent (the model keeps its setting).
pub(crate) fn keep_alive(value: &Option<Value>) -> Result<Option<serving::KeepAlive>, ApiError> {
    let Some(value) = value.as_ref().filter(|value| !value.is_null()) else { return Ok(None) };
    match KeepAlive::from_json(value) {
        Ok(KeepAlive::Forever) => Ok(Some(serving::KeepAlive::Forever)),
        Ok(KeepAlive::For(duration)) => Ok(Some(serving::KeepAlive::For(duration))),
        Err(error) => Err(ApiError::bad_request(error.to_string())),
    }
}

/// A request's `options`. Type errors are 500s, as in Ollama.
pub(crate) fn options(options: &Option<serde_json::Map<String, Value>>) -> Result<Options, ApiError> {
    match options {
        Some(map) => Options::from_map(map).map_err(|error| ApiError::internal(error.to_string())),
        None => Ok(Options::default()),
    }
}

/// A request's `think`.
pub(crate) fn think(think: &Option<Value>) -> Result<Think, ApiError> {
    Ok(Think::from_json(think.as_ref())?)
}

/// A request's `format` as the JSON schema the answer must match.
pub(crate) fn output_schema(format: &Option<Value>) -> Result<Option<Value>, ApiError> {
    Ok(serving::output_schema(format.as_ref())?)
}

/// `top_logprobs` must lie in 0..=20.
pub(crate) fn check_top_logprobs(top_logprobs: Option<i64>) -> Result<(), ApiError> {
    match top_logprobs {
        Some(n) if !(0..=20).contains(&n) => Err(ApiError::bad_request("top_logprobs must be between 0 and 20")),
        _ => Ok(()),
    }
}

/// The model a request names: `model`, else the older `name` that some clients still send.
pub(crate) fn requested_model<'a>(model: &'a str, name: &'a Option<String>) -> &'a str {
    if model.is_empty() {
        name.as_deref().unwrap_or_default()
    } else {
        model
    }
}

/// A wire message as the core reads it.
pub(crate) fn chat_message(message: &Message) -> ChatMessage {
    ChatMessage {
        role: message.role.clone(),
        content: message.content.clone(),
        thinking: message.thinking.clone(),
        n_images: message.images.as_ref().map_or(0, Vec::len),
        tool_calls: message
            .tool_calls
            .iter()
            .flatten()
            .map(|call| ToolCall {
                id: call.id.clone(),
                index: call.function.index,
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
            })
            .collect(),
        tool_name: message.tool_name.clone(),
        tool_call_id: message.tool_call_id.clone(),
    }
}

/// A core message (from a messages layer, or a tool loop's exchange) on the wire.
pub(crate) fn wire_message(message: &ChatMessage) -> Message {
    Message {
        role: message.role.clone(),
        content: message.content.clone(),
        thinking: message.thinking.clone(),
        tool_calls: (!message.tool_calls.is_empty()).then(|| wire_tool_calls(&message.tool_calls)),
        tool_name: message.tool_name.clone(),
        tool_call_id: message.tool_call_id.clone(),
        ..Message::default()
    }
}

/// Core tool calls on the wire.
pub(crate) fn wire_tool_calls(calls: &[ToolCall]) -> Vec<ollama_api::ToolCall> {
    calls
        .iter()
        .map(|call| ollama_api::ToolCall {
            id: call.id.clone(),
            function: ToolCallFunction {
                index: call.index,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            },
        })
        .collect()
}

/// Measured figures as Ollama's nanosecond counts.
pub(crate) fn metrics(metrics: &serving::Metrics) -> ollama_api::Metrics {
    let nanos = |duration: std::time::Duration| duration.as_nanos().min(u64::MAX as u128) as u64;
    ollama_api::Metrics {
        total_duration: nanos(metrics.total_duration),
        load_duration: nanos(metrics.load_duration),
        prompt_eval_count: metrics.prompt_eval_count as u64,
        prompt_eval_duration: nanos(metrics.prompt_eval_duration),
        eval_count: metrics.eval_count as u64,
        eval_duration: nanos(metrics.eval_duration),
    }
}

/// `details` for tags, show and ps.
pub(crate) fn details(model: &ResolvedModel) -> ModelDetails {
    details_from(&model.config, Some(&model.gguf))
}

/// `details` from a config blob, filled from the GGUF header where the config is silent.
pub(crate) fn details_from(config: &ConfigV2, gguf: Option<&GgufHeader>) -> ModelDetails {
    let family = config.family_or_architecture(gguf);
    ModelDetails {
        parent_model: String::new(),
        format: if config.model_format.is_empty() { "gguf".into() } else { config.model_format.clone() },
        families: config.model_families.clone().or_else(|| (!family.is_empty()).then(|| vec![family.clone()])),
        family,
        parameter_size: if config.model_type.is_empty() {
            gguf.map(GgufHeader::parameter_size).unwrap_or_default()
        } else {
            config.model_type.clone()
        },
        quantization_level: if config.file_type.is_empty() {
            gguf.map(GgufHeader::quantization_level).unwrap_or_default()
        } else {
            config.file_type.clone()
        },
    }
}
