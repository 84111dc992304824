//! Checks shared by generate and chat: request validation with Ollama's error texts, and the
//! load-only and unload-only paths.

use engine::TemplateMessage;
use ollama_api::Message;
use serde_json::Value;

use crate::inference::Outcome;
use crate::{ApiError, ResolvedModel};

/// How a generate or chat request began.
pub(crate) enum Start {
    /// Loaded or unloaded with no generation: `load` or `unload`.
    Done(&'static str),
    /// Generating.
    Running(std::pin::Pin<Box<dyn futures_util::Stream<Item = Outcome> + Send>>),
}

/// Validates `think`; a truthy value needs a model that can think.
pub(crate) fn check_think(think: &Option<Value>, model: &ResolvedModel, requested_name: &str) -> Result<(), ApiError> {
    let wants_thinking = match think {
        None | Some(Value::Null) => false,
        Some(Value::Bool(enabled)) => *enabled,
        Some(Value::String(level)) => match level.as_str() {
            "high" | "medium" | "low" | "max" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid think value: \"{other}\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"
                )))
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!("think must be a boolean or string (got {other})")));
        }
    };
    if wants_thinking && !model.capabilities().contains(&"thinking") {
        return Err(ApiError::bad_request(format!("\"{requested_name}\" does not support thinking")));
    }
    Ok(())
}

/// Structured output is not built yet: refuse it clearly rather than ignore it.
pub(crate) fn check_format(format: &Option<Value>) -> Result<(), ApiError> {
    match format {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) if text.is_empty() => Ok(()),
        Some(Value::String(text)) if text == "json" => {
            Err(ApiError::not_implemented("structured output (format) is not supported by modeld yet"))
        }
        Some(Value::Object(_)) => {
            Err(ApiError::not_implemented("structured output (format) is not supported by modeld yet"))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid format: {other}; expected \"json\" or a valid JSON Schema object"
        ))),
    }
}

/// `top_logprobs` must lie in 0..=20.
pub(crate) fn check_top_logprobs(top_logprobs: Option<i64>) -> Result<(), ApiError> {
    match top_logprobs {
        Some(n) if !(0..=20).contains(&n) => Err(ApiError::bad_request("top_logprobs must be between 0 and 20")),
        _ => Ok(()),
    }
}

/// Images need a vision model; modeld has none yet.
pub(crate) fn check_images(images: Option<&Vec<String>>, model: &ResolvedModel) -> Result<(), ApiError> {
    match images {
        Some(images) if !images.is_empty() => {
            Err(ApiError::bad_request(format!("{} does not support vision", model.name.display_full())))
        }
        _ => Ok(()),
    }
}

/// Converts a wire message to what chat templates read. Earlier thinking is not fed back.
pub(crate) fn template_message(message: &Message) -> TemplateMessage {
    let tool_calls = message.tool_calls.as_ref().filter(|calls| !calls.is_empty()).map(|calls| {
        calls
            .iter()
            .map(|call| {
                let mut function = serde_json::Map::new();
                function.insert("name".into(), Value::String(call.function.name.clone()));
                function.insert("arguments".into(), Value::Object(call.function.arguments.clone()));
                let mut object = serde_json::Map::new();
                if let Some(id) = &call.id {
                    object.insert("id".into(), Value::String(id.clone()));
                }
                object.insert("type".into(), Value::String("function".into()));
                object.insert("function".into(), Value::Object(function));
                Value::Object(object)
            })
            .collect()
    });
    TemplateMessage {
        role: message.role.to_lowercase(),
        content: message.content.clone(),
        tool_calls,
        name: message.tool_name.clone(),
        tool_call_id: message.tool_call_id.clone(),
    }
}

/// The prompt when a model has no chat template: Ollama's default `{{ .Prompt }}` shows the
/// last user message only.
pub(crate) fn render_without_template(messages: &[TemplateMessage]) -> String {
    messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| message.content.clone())
        .unwrap_or_default()
}
