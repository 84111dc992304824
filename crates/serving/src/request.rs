//! What a front end asks the core for, in the core's own types: the wire formats (Ollama,
//! OpenAI, LSP, MCP) are parsed into these at the edge.

use engine::{KeepAlive, Priority};
use model_store::Options;
use serde_json::{Map, Value};

/// A tool call: made by the model (then `id` is always set) or sent back in a conversation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
    /// The call's id, which the tool's reply names.
    pub id: Option<String>,
    /// Its position among the calls of one reply.
    pub index: usize,
    /// The function called.
    pub name: String,
    /// Its arguments.
    pub arguments: Map<String, Value>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool` (any case; the core lowercases it).
    pub role: String,
    /// The text.
    pub content: String,
    /// Reasoning an assistant message came with; never fed back to the model.
    pub thinking: Option<String>,
    /// Images attached (base64); only vision models take them.
    pub n_images: usize,
    /// Calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The tool a `tool` message answers for.
    pub tool_name: Option<String>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with `role` and `content` only.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into(), ..ChatMessage::default() }
    }
}

/// What a request's `think` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Think {
    /// Not said: a model that can think thinks, as in Ollama.
    #[default]
    Default,
    /// No thinking.
    Off,
    /// Thinking, at an effort level (`low`, `medium`, `high`) when given.
    On {
        /// `reasoning_effort` for the template.
        effort: Option<String>,
    },
}

impl Think {
    /// Parses `think` as Ollama accepts it: a boolean, or `high`, `medium`, `low` or `max`.
    pub fn from_json(think: Option<&Value>) -> Result<Think, crate::ServingError> {
        match think {
            None | Some(Value::Null) => Ok(Think::Default),
            Some(Value::Bool(false)) => Ok(Think::Off),
            Some(Value::Bool(true)) => Ok(Think::On { effort: Some("medium".into()) }),
            Some(Value::String(level)) => match level.as_str() {
                "high" | "medium" | "low" => Ok(Think::On { effort: Some(level.clone()) }),
                "max" => Ok(Think::On { effort: Some("high".into()) }),
                other => Err(crate::ServingError::invalid(format!(
                    "invalid think value: \"{other}\" (must be \"high\", \"medium\", \"low\", \"max\", true, or false)"
                ))),
            },
            Some(other) => {
                Err(crate::ServingError::invalid(format!("think must be a boolean or string (got {other})")))
            }
        }
    }
}

/// A completion from a prompt (`/api/generate`, `/v1/completions`, the language server's
/// fill-in-the-middle).
#[derive(Debug, Clone, Default)]
pub struct GenerateInput {
    /// The model, as the client spelled it.
    pub model: String,
    /// The prompt; empty loads (or, with a zero keep-alive, unloads) the model.
    pub prompt: String,
    /// Text after the cursor: the prompt is filled in the middle. Empty is a plain prompt.
    pub suffix: Option<String>,
    /// Replaces the model's system prompt.
    pub system: Option<String>,
    /// Replaces the model's template (Jinja only).
    pub template: Option<String>,
    /// Tokens of an earlier exchange to continue.
    pub context: Option<Vec<u32>>,
    /// The prompt is sent as it is, without a template.
    pub raw: bool,
    /// Thinking.
    pub think: Think,
    /// A JSON schema the answer must match ([`crate::output_schema`] parses `format`).
    pub output_schema: Option<Value>,
    /// The request's options, overlaid on the model's parameters.
    pub options: Options,
    /// How long the model stays loaded; `None` keeps its setting.
    pub keep_alive: Option<KeepAlive>,
    /// Whether an over-long prompt is cut to fit (the default) or sent whole.
    pub truncate: bool,
    /// Images attached.
    pub n_images: usize,
    /// How urgent the request is.
    pub priority: Priority,
}

/// A turn of a conversation (`/api/chat`, `/v1/chat/completions`, the server-side tool loop).
#[derive(Debug, Clone, Default)]
pub struct ChatInput {
    /// The model, as the client spelled it.
    pub model: String,
    /// The conversation; empty loads (or, with a zero keep-alive, unloads) the model.
    pub messages: Vec<ChatMessage>,
    /// Tools offered, in OpenAI's function schema.
    pub tools: Vec<Value>,
    /// Which tools the model may or must call; in a tool loop, for the first round.
    pub tool_choice: crate::ToolChoice,
    /// Run the tool loop with these MCP servers' tools added to `tools`.
    pub mcp_servers: Option<crate::ToolServers>,
    /// Thinking.
    pub think: Think,
    /// A JSON schema the answer must match.
    pub output_schema: Option<Value>,
    /// The request's options, overlaid on the model's parameters.
    pub options: Options,
    /// How long the model stays loaded; `None` keeps its setting.
    pub keep_alive: Option<KeepAlive>,
    /// Whether an over-long conversation loses its oldest messages (the default) or is sent
    /// whole.
    pub truncate: bool,
    /// How urgent the request is.
    pub priority: Priority,
}
