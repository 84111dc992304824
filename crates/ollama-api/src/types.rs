//! Request and response bodies of `/api/*`, field for field as Ollama sends them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /api/generate`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GenerateRequest {
    /// Model name as the client wrote it.
    #[serde(default)]
    pub model: String,
    /// Prompt; empty means "load only".
    #[serde(default)]
    pub prompt: String,
    /// Text after the cursor for fill-in-the-middle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Overrides the model's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Overrides the model's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Tokens returned by an earlier response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<u32>>,
    /// Stream NDJSON (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Send the prompt without templating.
    #[serde(default)]
    pub raw: bool,
    /// `"json"` or a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Duration string or seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Base64 images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Runtime options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Thinking switch or level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// Trim the prompt to the context (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Context shift (accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<bool>,
    /// Return log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
}

/// `POST /api/chat`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Conversation so far; empty means "load only".
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Function tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"json"` or a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Runtime options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Stream NDJSON (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Duration string or seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Thinking switch or level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// Drop old messages to fit the context (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Context shift (accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<bool>,
    /// Return log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// modeld: run the tool loop with these MCP servers' tools (`"all"` or a list of names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Value>,
}

/// One chat message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text; always serialized.
    #[serde(default)]
    pub content: String,
    /// Reasoning trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Base64 images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Calls the assistant made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// On `tool` messages: the function that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// On `tool` messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A tool call in a message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolCall {
    /// `call_xxxxxxxx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function and its arguments.
    pub function: ToolCallFunction,
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolCallFunction {
    /// Position among the calls of one response.
    #[serde(default)]
    pub index: usize,
    /// Function name.
    pub name: String,
    /// Arguments as a JSON object, key order kept.
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

/// Measured figures on a final chunk; zero values are left out, as Ollama leaves them out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Metrics {
    /// Request start to done, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_duration: u64,
    /// Time spent loading the model, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load_duration: u64,
    /// Prompt tokens evaluated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_eval_count: u64,
    /// Time spent on the prompt, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prompt_eval_duration: u64,
    /// Tokens generated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eval_count: u64,
    /// Time spent generating, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eval_duration: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A `/api/generate` response or stream chunk.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct GenerateResponse {
    /// The model as requested.
    pub model: String,
    /// RFC 3339 UTC time.
    pub created_at: String,
    /// Text of this chunk; always present.
    pub response: String,
    /// Reasoning text of this chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Whether this is the last chunk.
    pub done: bool,
    /// `stop`, `length`, `load` or `unload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// Tokens of prompt and answer, for the next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<u32>>,
    /// For a remote model, the server that answered (on the final chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Figures on the final chunk.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// A `/api/chat` response or stream chunk.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ChatResponse {
    /// The model as requested.
    pub model: String,
    /// RFC 3339 UTC time.
    pub created_at: String,
    /// Always present.
    pub message: Message,
    /// Whether this is the last chunk.
    pub done: bool,
    /// `stop`, `length`, `load` or `unload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// For a remote model, the server that answered (on the final chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Figures on the final chunk.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// modeld, on the final response of a tool loop: every message the loop added to the
    /// conversation (calls, tool results, the answer), to append to the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
}

/// Progress line of create, pull and push.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProgressResponse {
    /// What is happening.
    pub status: String,
    /// Which blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Bytes in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

/// `POST /api/pull` and `POST /api/push`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RegistryRequest {
    /// The model, whose host names the registry.
    #[serde(default)]
    pub model: String,
    /// Alias of `model` (the Go CLI and the JS client send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Talk to the registry over plain http.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Stream progress (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Deprecated, ignored (as by Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Deprecated, ignored (as by Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `POST /api/create`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CreateRequest {
    /// New model's name.
    #[serde(default)]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Base model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// File name to blob digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Map<String, Value>>,
    /// LoRA adapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<Map<String, Value>>,
    /// Template text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// String or list of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<Value>,
    /// Default options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Few-shot messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// Requested quantization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<String>,
    /// The least Ollama version the model needs (semver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    /// A built-in prompt renderer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
    /// A built-in output parser's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    /// Deprecated alias of `quantize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// A remote model on an Ollama server (Ollama's field): `http://host:port`; `from` names
    /// the model there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// A remote model's replicas (modeld's field, a Modelfile's `ENDPOINT` lines):
    /// `[{"url": "http://10.0.0.5:8000", "api": "openai" | "ollama", "key_env": "VLLM_API_KEY"}]`;
    /// `from` names the model on the remote side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Value>>,
    /// Stream progress (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// `POST /api/show`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ShowRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Deprecated alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Include long arrays in `model_info`.
    #[serde(default)]
    pub verbose: bool,
    /// Overrides the shown system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// `details` of tags, show and ps.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ModelDetails {
    /// Base model, if any.
    pub parent_model: String,
    /// `gguf`.
    pub format: String,
    /// Architecture family.
    pub family: String,
    /// All families (null when unknown).
    pub families: Option<Vec<String>>,
    /// e.g. `134.52M`.
    pub parameter_size: String,
    /// e.g. `Q4_1`.
    pub quantization_level: String,
}

/// `POST /api/show` response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ShowResponse {
    /// License text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// A Modelfile that recreates the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modelfile: Option<String>,
    /// The least Ollama version the model needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    /// Parameters, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    /// Template text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Details.
    pub details: ModelDetails,
    /// Few-shot messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// A remote model's name on the remote side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A remote model's server (its first endpoint's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// GGUF metadata; always present.
    pub model_info: Map<String, Value>,
    /// `completion`, `tools`, `insert`, `vision`, `embedding`, `thinking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Manifest modification time.
    pub modified_at: String,
}

/// One entry of `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ListModel {
    /// Display name.
    pub name: String,
    /// Display name.
    pub model: String,
    /// A remote model's name on the remote side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A remote model's server (its first endpoint's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Manifest modification time.
    pub modified_at: String,
    /// Bytes of all layers.
    pub size: u64,
    /// Hex sha256 of the manifest.
    pub digest: String,
    /// Details.
    pub details: ModelDetails,
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ListResponse {
    /// Models, newest first.
    pub models: Vec<ListModel>,
}

/// One entry of `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RunningModel {
    /// Display name.
    pub name: String,
    /// Display name.
    pub model: String,
    /// Memory in bytes.
    pub size: u64,
    /// Bytes on an accelerator.
    pub size_vram: u64,
    /// Hex sha256 of the manifest.
    pub digest: String,
    /// Details.
    pub details: ModelDetails,
    /// When it unloads.
    pub expires_at: String,
    /// Context window in tokens.
    pub context_length: u64,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProcessResponse {
    /// Loaded models.
    pub models: Vec<RunningModel>,
}

/// `POST /api/copy`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CopyRequest {
    /// Existing model.
    #[serde(default)]
    pub source: String,
    /// New name.
    #[serde(default)]
    pub destination: String,
}

/// `DELETE /api/delete`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeleteRequest {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Deprecated alias sent by the JS client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /api/version`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct VersionResponse {
    /// Semantic version.
    pub version: String,
}

/// `{"error": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ErrorResponse {
    /// The message.
    pub error: String,
}
