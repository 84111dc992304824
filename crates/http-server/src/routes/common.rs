//! Checks shared by generate and chat: request validation with Ollama's error texts, and the
//! load-only and unload-only paths.

use engine::TemplateMessage;
use model_formats::{ThinkingMode, ToolCallFormat};
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

impl Start {
    /// The outcomes to render: none for a load or unload, which the OpenAI routes answer as an
    /// empty completion.
    pub(crate) fn into_outcomes(self) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Outcome> + Send>> {
        match self {
            Start::Done(_) => Box::pin(futures_util::stream::empty()),
            Start::Running(outcomes) => outcomes,
        }
    }
}

/// What a request's `think` asks of the template and of the output parser.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThinkSettings {
    /// What to do with `<think>` blocks in the output.
    pub(crate) mode: ThinkingMode,
    /// `enable_thinking` for the template; `None` leaves the template's default.
    pub(crate) enable_thinking: Option<bool>,
    /// `reasoning_effort` for the template.
    pub(crate) reasoning_effort: Option<String>,
}

/// Validates `think`; a truthy value needs a model that can think. A model that can think
/// thinks unless told not to, as in Ollama.
pub(crate) fn check_think(
    think: &Option<Value>,
    model: &ResolvedModel,
    requested_name: &str,
) -> Result<ThinkSettings, ApiError> {
    let wanted: Option<(bool, Option<&str>)> = match think {
        None | Some(Value::Null) => None,
        Some(Value::Bool(enabled)) => Some((*enabled, enabled.then_some("medium"))),
        Some(Value::String(level)) => match level.as_str() {
            "high" | "medium" | "low" => Some((true, Some(level.as_str()))),
            "max" => Some((true, Some("high"))),
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
    let can_think = model.capabilities().contains(&"thinking");
    match wanted {
        Some((true, _)) if !can_think => {
            Err(ApiError::bad_request(format!("\"{requested_name}\" does not support thinking")))
        }
        _ if !can_think => Ok(ThinkSettings::default()),
        None => Ok(ThinkSettings { mode: ThinkingMode::Separate, ..ThinkSettings::default() }),
        Some((false, _)) => {
            Ok(ThinkSettings { mode: ThinkingMode::Drop, enable_thinking: Some(false), reasoning_effort: None })
        }
        Some((true, level)) => Ok(ThinkSettings {
            mode: ThinkingMode::Separate,
            enable_thinking: Some(true),
            reasoning_effort: level.map(str::to_owned),
        }),
    }
}

/// The JSON schema a `format` asks for: `"json"` is any JSON object; an object is a schema,
/// checked for the mistakes that would otherwise surface midway through decoding.
pub(crate) fn json_schema(format: &Option<Value>) -> Result<Option<Value>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) if text == "json" => Ok(Some(serde_json::json!({"type": "object"}))),
        Some(Value::Object(schema)) => {
            check_schema(schema, "")?;
            Ok(Some(Value::Object(schema.clone())))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid format: {other}; expected \"json\" or a valid JSON Schema object"
        ))),
    }
}

fn check_schema(schema: &serde_json::Map<String, Value>, path: &str) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::bad_request(format!("invalid JSON schema{path}: {why}"));
    const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean", "null"];
    match schema.get("type") {
        None => {}
        Some(Value::String(kind)) if TYPES.contains(&kind.as_str()) => {}
        Some(Value::Array(kinds))
            if kinds.iter().all(|kind| kind.as_str().is_some_and(|kind| TYPES.contains(&kind))) => {}
        Some(other) => return Err(invalid(format!("unknown type {other}"))),
    }
    match schema.get("properties") {
        None => {}
        Some(Value::Object(properties)) => {
            for (name, property) in properties {
                let Value::Object(property) = property else {
                    return Err(invalid(format!("property \"{name}\" is not a schema")));
                };
                check_schema(property, &format!("{path} at properties.{name}"))?;
            }
        }
        Some(_) => return Err(invalid("properties must be an object".into())),
    }
    match schema.get("required") {
        None => Ok(()),
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(invalid("required must be a list of property names".into())),
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

/// Converts a wire message to what chat templates read. Earlier thinking is not fed back: the
/// `thinking` field is dropped, and so are `<think>` blocks in assistant content.
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
    let role = message.role.to_lowercase();
    let content =
        if role == "assistant" { model_formats::strip_thinking(&message.content) } else { message.content.clone() };
    TemplateMessage {
        role,
        content,
        tool_calls,
        name: message.tool_name.clone(),
        tool_call_id: message.tool_call_id.clone(),
        content_is_none: false,
    }
}

/// Adapts tool-call history to what a family's template insists on: DeepSeek templates join
/// `arguments` as text, so they get a JSON string, and find calls on messages whose content is
/// `none`; Mistral templates accept only 9-character
/// alphanumeric call ids, so ids are mapped onto that form (the same way on calls and replies)
/// and replies without an id take the id of the call they answer, in order.
pub(crate) fn shape_tool_history(messages: &mut [TemplateMessage], format: ToolCallFormat) {
    match format {
        ToolCallFormat::DeepSeek => {
            for message in messages.iter_mut() {
                message.content_is_none = message.content.is_empty() && message.tool_calls.is_some();
            }
            for call in messages.iter_mut().flat_map(|message| message.tool_calls.iter_mut().flatten()) {
                if let Some(arguments) = call.pointer_mut("/function/arguments") {
                    if !arguments.is_string() {
                        *arguments = Value::String(arguments.to_string());
                    }
                }
            }
        }
        ToolCallFormat::Mistral => {
            let mut unanswered = std::collections::VecDeque::new();
            let mut n_calls = 0usize;
            for message in messages.iter_mut() {
                for call in message.tool_calls.iter_mut().flatten() {
                    n_calls += 1;
                    let id = match call.get("id").and_then(Value::as_str) {
                        Some(id) => mistral_call_id(id),
                        None => format!("{n_calls:09}"),
                    };
                    call["id"] = Value::String(id.clone());
                    unanswered.push_back(id);
                }
                if message.role == "tool" {
                    let id = match &message.tool_call_id {
                        Some(id) => {
                            let id = mistral_call_id(id);
                            unanswered.retain(|waiting| *waiting != id);
                            id
                        }
                        None => unanswered.pop_front().unwrap_or_else(|| format!("{:09}", 0)),
                    };
                    message.tool_call_id = Some(id);
                }
            }
        }
        ToolCallFormat::Hermes | ToolCallFormat::Granite | ToolCallFormat::Json => {}
    }
}

/// A call id in Mistral's form: its last 9 letters and digits, padded with zeros.
fn mistral_call_id(id: &str) -> String {
    let alphanumeric: Vec<char> =
        id.strip_prefix("call_").unwrap_or(id).chars().filter(char::is_ascii_alphanumeric).collect();
    let tail: String = alphanumeric[alphanumeric.len().saturating_sub(9)..].iter().collect();
    format!("{tail:0>9}")
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

/// Everything a chat template reads besides the messages, owned so that rendering (CPU-bound,
/// bounded by the engine's fuel and output cap) runs on a blocking thread, never on the async
/// threads that serve every other request.
pub(crate) struct PromptRenderer {
    /// The Jinja template; `None` renders as Ollama's default `{{ .Prompt }}`.
    pub(crate) template: Option<String>,
    pub(crate) tools: Option<Vec<Value>>,
    pub(crate) bos_token: Option<String>,
    pub(crate) eos_token: Option<String>,
    pub(crate) think: ThinkSettings,
    /// Where to render: worker processes with a memory limit, or here when `None`.
    pub(crate) workers: Option<std::sync::Arc<engine::TemplateWorkers>>,
}

impl PromptRenderer {
    /// Renders `messages` with the generation prompt appended, off the async threads. A
    /// template error, a runaway template and a panic while rendering all become a 500.
    pub(crate) async fn render(
        self: &std::sync::Arc<Self>,
        messages: Vec<TemplateMessage>,
    ) -> Result<String, ApiError> {
        let renderer = self.clone();
        tokio::task::spawn_blocking(move || renderer.render_now(&messages))
            .await
            .map_err(|error| ApiError::internal(format!("template error: rendering failed ({error})")))?
    }

    fn render_now(&self, messages: &[TemplateMessage]) -> Result<String, ApiError> {
        let Some(template) = &self.template else { return Ok(render_without_template(messages)) };
        let input = engine::ChatTemplateInput {
            messages,
            tools: self.tools.as_deref(),
            add_generation_prompt: true,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
            enable_thinking: self.think.enable_thinking,
            reasoning_effort: self.think.reasoning_effort.as_deref(),
        };
        let rendered = match &self.workers {
            Some(workers) => workers.render(&engine::OwnedRender::new(template, &input)),
            None => engine::render_chat(template, &input),
        };
        rendered.map_err(|error| ApiError::internal(error.to_string()))
    }
}
