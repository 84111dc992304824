//! From a request to prompt text: thinking settings, conversation history shaped for the
//! family's template, the output schema check, and template rendering off the async threads.

use std::sync::Arc;

use engine::TemplateMessage;
use model_formats::{ThinkingMode, ToolCallFormat};
use serde_json::Value;

use crate::{ChatMessage, PromptTemplate, ResolvedModel, ServingError, Think};

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

impl ThinkSettings {
    /// `.Think` for an Ollama template: on unless turned off, for a model that can think.
    pub(crate) fn template_think(&self) -> bool {
        self.enable_thinking.unwrap_or(self.mode == ThinkingMode::Separate)
    }

    /// `.IsThinkSet`: Ollama sets `think` for a model that can think when the request did not.
    pub(crate) fn template_think_is_set(&self) -> bool {
        self.enable_thinking.is_some() || self.mode == ThinkingMode::Separate
    }
}

/// Checks `think` against the model; thinking asked of a model that cannot think is an error
/// naming the model as the client spelled it. A model that can think thinks unless told not
/// to, as in Ollama.
pub(crate) fn think_settings(
    think: &Think,
    model: &ResolvedModel,
    spelled: &str,
) -> Result<ThinkSettings, ServingError> {
    let can_think = model.can(crate::Capability::Thinking);
    match think {
        Think::On { .. } if !can_think => {
            Err(ServingError::invalid(format!("\"{spelled}\" does not support thinking")))
        }
        _ if !can_think => Ok(ThinkSettings::default()),
        Think::Default => Ok(ThinkSettings { mode: ThinkingMode::Separate, ..ThinkSettings::default() }),
        Think::Off => {
            Ok(ThinkSettings { mode: ThinkingMode::Drop, enable_thinking: Some(false), reasoning_effort: None })
        }
        Think::On { effort } => Ok(ThinkSettings {
            mode: ThinkingMode::Separate,
            enable_thinking: Some(true),
            reasoning_effort: effort.clone(),
        }),
    }
}

/// The JSON schema a `format` asks for: `"json"` is any JSON object; an object is a schema,
/// checked for the mistakes that would otherwise surface midway through decoding.
pub fn output_schema(format: Option<&Value>) -> Result<Option<Value>, ServingError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) if text == "json" => Ok(Some(serde_json::json!({"type": "object"}))),
        Some(Value::Object(schema)) => {
            check_schema(schema, "")?;
            Ok(Some(Value::Object(schema.clone())))
        }
        Some(other) => Err(ServingError::invalid(format!(
            "invalid format: {other}; expected \"json\" or a valid JSON Schema object"
        ))),
    }
}

fn check_schema(schema: &serde_json::Map<String, Value>, path: &str) -> Result<(), ServingError> {
    let invalid = |why: String| ServingError::invalid(format!("invalid JSON schema{path}: {why}"));
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

/// Images need a vision model; modeld has none yet.
pub(crate) fn check_images(n_images: usize, model: &ResolvedModel) -> Result<(), ServingError> {
    if n_images > 0 && !model.can(crate::Capability::Vision) {
        return Err(ServingError::invalid(format!("{} does not support vision", model.name.display_full())));
    }
    Ok(())
}

/// Converts a message to what chat templates read. Earlier thinking is not fed back: `<think>`
/// blocks in assistant content are dropped.
pub(crate) fn template_message(message: &ChatMessage) -> TemplateMessage {
    let tool_calls = (!message.tool_calls.is_empty()).then(|| {
        message
            .tool_calls
            .iter()
            .map(|call| {
                let mut function = serde_json::Map::new();
                function.insert("name".into(), Value::String(call.name.clone()));
                function.insert("arguments".into(), Value::Object(call.arguments.clone()));
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
        thinking: message.thinking.clone().filter(|thinking| !thinking.is_empty()),
    }
}

/// Renders a fill-in-the-middle prompt with a Go template that names `.Suffix`, as Ollama
/// does, off the async threads.
pub(crate) async fn render_go_fill_in_the_middle(
    template: Arc<go_template::Template>,
    prompt: String,
    suffix: String,
    think: &ThinkSettings,
) -> Result<String, ServingError> {
    let (think, is_think_set) = (think.template_think(), think.template_think_is_set());
    render_off_the_async_threads(move || {
        let values =
            go_template::ollama::Values { prompt: &prompt, suffix: &suffix, think, is_think_set, ..Default::default() };
        execute_go(&template, &values)
    })
    .await
}

/// Runs a render (CPU-bound, bounded) on a blocking thread; a panic there is an internal error.
async fn render_off_the_async_threads(
    render: impl FnOnce() -> Result<String, ServingError> + Send + 'static,
) -> Result<String, ServingError> {
    tokio::task::spawn_blocking(render)
        .await
        .map_err(|error| ServingError::internal(format!("template error: rendering failed ({error})")))?
}

/// Executes an Ollama Go template within the default limits.
fn execute_go(
    template: &go_template::Template,
    values: &go_template::ollama::Values<'_>,
) -> Result<String, ServingError> {
    go_template::ollama::execute(template, values, &go_template::Limits::default())
        .map_err(|error| ServingError::internal(format!("template error: {error}")))
}

/// A message as Ollama's Go templates get it.
fn ollama_message(message: &TemplateMessage) -> go_template::ollama::Message {
    let tool_calls = message
        .tool_calls
        .iter()
        .flatten()
        .enumerate()
        .map(|(position, call)| go_template::ollama::ToolCall {
            id: call.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            function: go_template::ollama::ToolCallFunction {
                index: call.pointer("/function/index").and_then(Value::as_i64).unwrap_or(position as i64),
                name: call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                arguments: match call.pointer("/function/arguments") {
                    Some(Value::Object(arguments)) => Some(arguments.clone()),
                    Some(Value::String(text)) => serde_json::from_str(text).ok(),
                    _ => None,
                },
            },
        })
        .collect();
    go_template::ollama::Message {
        role: message.role.clone(),
        content: message.content.clone(),
        thinking: message.thinking.clone().unwrap_or_default(),
        tool_calls,
        tool_name: message.name.clone().unwrap_or_default(),
        tool_call_id: message.tool_call_id.clone().unwrap_or_default(),
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
fn render_without_template(messages: &[TemplateMessage]) -> String {
    messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| message.content.clone())
        .unwrap_or_default()
}

/// The content of a final assistant message to continue (a prefill), if the conversation
/// ends with one that has text and no tool calls.
fn final_assistant_prefill(messages: &[TemplateMessage]) -> Option<&str> {
    let last = messages.last()?;
    (messages.len() > 1 && last.role == "assistant" && !last.content.is_empty() && last.tool_calls.is_none())
        .then_some(last.content.as_str())
}

/// Everything a chat template reads besides the messages, owned so that rendering (CPU-bound,
/// bounded by the engine's fuel and output cap) runs on a blocking thread, never on the async
/// threads that serve every other request.
pub(crate) struct PromptRenderer {
    /// The template; `None` renders as Ollama's default `{{ .Prompt }}`.
    pub(crate) template: Option<PromptTemplate>,
    pub(crate) tools: Option<Vec<Value>>,
    pub(crate) bos_token: Option<String>,
    pub(crate) eos_token: Option<String>,
    pub(crate) think: ThinkSettings,
    /// Where to render: worker processes with a memory limit, or here when `None`.
    pub(crate) workers: Option<Arc<engine::TemplateWorkers>>,
}

impl PromptRenderer {
    /// Renders `messages` with the generation prompt appended, off the async threads. A
    /// template error, a runaway template and a panic while rendering all become an internal
    /// error.
    pub(crate) async fn render(self: &Arc<Self>, messages: Vec<TemplateMessage>) -> Result<String, ServingError> {
        let renderer = self.clone();
        render_off_the_async_threads(move || renderer.render_now(&messages)).await
    }

    pub(crate) fn render_now(&self, messages: &[TemplateMessage]) -> Result<String, ServingError> {
        let template = match &self.template {
            None => return Ok(render_without_template(messages)),
            Some(PromptTemplate::Go(template)) => return self.render_go(template, messages),
            Some(PromptTemplate::Broken { error, .. }) => {
                return Err(ServingError::internal(format!("template error: {error}")))
            }
            Some(PromptTemplate::Jinja(template)) => template,
        };
        if let Some(prefill) = final_assistant_prefill(messages) {
            // As Ollama does: a conversation ending with an assistant message is continued.
            // The template renders it closed; the prompt ends right after its content.
            let closed = self.render_with(template, messages, false)?;
            if let Some(at) = closed.rfind(prefill) {
                return Ok(closed[..at + prefill.len()].to_owned());
            }
            // The template changed the text (trimmed it, say): answer a new turn instead.
        }
        self.render_with(template, messages, true)
    }

    /// Renders with an Ollama Go template, as Ollama does: the template itself decides how
    /// a final assistant message continues.
    fn render_go(
        &self,
        template: &go_template::Template,
        messages: &[TemplateMessage],
    ) -> Result<String, ServingError> {
        let messages: Vec<go_template::ollama::Message> = messages.iter().map(ollama_message).collect();
        let values = go_template::ollama::Values {
            messages: &messages,
            tools: self.tools.as_deref().unwrap_or_default(),
            think: self.think.template_think(),
            think_level: self.think.reasoning_effort.as_deref().unwrap_or_default(),
            is_think_set: self.think.template_think_is_set(),
            ..Default::default()
        };
        execute_go(template, &values)
    }

    fn render_with(
        &self,
        template: &str,
        messages: &[TemplateMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ServingError> {
        let input = engine::ChatTemplateInput {
            messages,
            tools: self.tools.as_deref(),
            add_generation_prompt,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
            enable_thinking: self.think.enable_thinking,
            reasoning_effort: self.think.reasoning_effort.as_deref(),
        };
        let rendered = match &self.workers {
            Some(workers) => workers.render(&engine::OwnedRender::new(template, &input)),
            None => engine::render_chat(template, &input),
        };
        rendered.map_err(|error| ServingError::internal(error.to_string()))
    }
}
