//! The MCP server: the daemon's local models as tools for agents (chat, generate,
//! fill-in-the-middle code completion, list, show), with progress while generating,
//! cancellation that stops the engine, the installed models as resources, and
//! `notifications/tools/list_changed` when models come and go.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use serving::{ChatInput, ChatMessage, Core, EmbedInput, EmbedText, Event, GenerateInput, Priority, Started, Think};

use crate::tools::{self, ToolName};

/// How often installed models are checked for changes (to tell clients the tools changed).
const MODEL_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The least time between two progress notifications of one call.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// The server's state, shared by every connection (stdio, and each HTTP session).
#[derive(Clone)]
pub struct ModelServer {
    core: Core,
    peers: Arc<Mutex<Vec<Peer<RoleServer>>>>,
}

impl ModelServer {
    /// A server over the serving core. Call [`ModelServer::watch_models`] once to send
    /// `tools/list_changed` when models are created or deleted.
    pub fn new(core: Core) -> ModelServer {
        ModelServer { core, peers: Arc::default() }
    }

    /// Checks the installed models every two seconds and tells connected clients that the
    /// tools changed (their `model` enums list the installed models) when the set changes.
    pub fn watch_models(&self) -> tokio::task::JoinHandle<()> {
        let server = self.clone();
        tokio::spawn(async move {
            let mut known = server.model_names().await;
            loop {
                tokio::time::sleep(MODEL_POLL_INTERVAL).await;
                let now = server.model_names().await;
                if now != known {
                    known = now;
                    server.broadcast_tools_changed().await;
                }
            }
        })
    }

    async fn broadcast_tools_changed(&self) {
        let peers = {
            let mut peers = crate::lock(&self.peers);
            peers.retain(|peer| !peer.is_transport_closed());
            peers.clone()
        };
        tracing::info!(clients = peers.len(), "installed models changed; telling MCP clients the tools changed");
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    async fn model_names(&self) -> Vec<String> {
        let store = self.core.store().clone();
        let mut names: Vec<String> = tokio::task::spawn_blocking(move || {
            store.list().into_iter().map(|entry| entry.name.display_shortest()).collect()
        })
        .await
        .unwrap_or_default();
        names.sort();
        names
    }

    async fn call(&self, request: CallToolRequestParams, context: &RequestContext<RoleServer>) -> CallToolResult {
        let arguments = request.arguments.unwrap_or_default();
        let Some(tool) = ToolName::parse(&request.name) else {
            return tool_error(format!("unknown tool {:?}", request.name));
        };
        let outcome = match tool {
            ToolName::Chat => self.chat(&arguments, context).await,
            ToolName::Generate => self.generate(&arguments, context, false).await,
            ToolName::CompleteCode => self.generate(&arguments, context, true).await,
            ToolName::Embed => self.embed(&arguments).await,
            ToolName::ListModels => Ok(self.list_models().await),
            ToolName::ShowModel => self.show_model(&arguments).await,
        };
        match outcome {
            Ok(structured) => {
                let text = structured_text(tool, &structured);
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(structured);
                result
            }
            Err(message) => tool_error(message),
        }
    }

    async fn chat(&self, arguments: &JsonObject, context: &RequestContext<RoleServer>) -> Result<Value, String> {
        let model = self.model_argument(arguments).await?;
        let mut messages = Vec::new();
        if let Some(system) = optional_string(arguments, "system")? {
            messages.push(ChatMessage::new("system", system));
        }
        match arguments.get("messages") {
            Some(Value::Array(given)) => {
                for message in given {
                    let role = message.get("role").and_then(Value::as_str).ok_or("each message needs a role")?;
                    let content = message.get("content").and_then(Value::as_str).unwrap_or_default();
                    messages.push(ChatMessage::new(role, content));
                }
            }
            Some(_) => return Err("messages must be a list of {role, content} objects".into()),
            None => {}
        }
        if let Some(prompt) = optional_string(arguments, "prompt")? {
            messages.push(ChatMessage::new("user", prompt));
        }
        if !messages.iter().any(|message| message.role != "system") {
            return Err("give a prompt or messages".into());
        }
        let output_schema = serving::output_schema(arguments.get("schema")).map_err(|error| error.to_string())?;
        let input = ChatInput {
            model: model.clone(),
            messages,
            output_schema: output_schema.clone(),
            options: options(arguments)?,
            think: Think::Off,
            truncate: true,
            priority: Priority::Chat,
            ..ChatInput::default()
        };
        let started = self.core.chat(input).await.map_err(|error| error.to_string())?;
        let reply = collect_with_progress(started, context).await?;
        let mut structured = json!({
            "model": model,
            "content": reply.content,
            "done_reason": reply.done_reason,
            "eval_count": reply.eval_count,
        });
        if output_schema.is_some() {
            structured["json"] = serde_json::from_str(&reply.content).unwrap_or(Value::Null);
        }
        Ok(structured)
    }

    async fn generate(
        &self,
        arguments: &JsonObject,
        context: &RequestContext<RoleServer>,
        fill_in_the_middle: bool,
    ) -> Result<Value, String> {
        let model = self.model_argument(arguments).await?;
        let (prompt, suffix, priority) = if fill_in_the_middle {
            let prefix = optional_string(arguments, "prefix")?.ok_or("prefix is required")?;
            let suffix = optional_string(arguments, "suffix")?.unwrap_or_default();
            // An empty suffix is still a fill-in-the-middle request, as editors send at the end
            // of a file.
            (prefix, Some(if suffix.is_empty() { "\n".to_owned() } else { suffix }), Priority::Interactive)
        } else {
            let prompt = optional_string(arguments, "prompt")?.ok_or("prompt is required")?;
            (prompt, None, Priority::Chat)
        };
        let mut options = options(arguments)?;
        if fill_in_the_middle && options.num_predict.is_none() {
            options.num_predict = Some(128);
        }
        let input = GenerateInput {
            model: model.clone(),
            prompt,
            suffix,
            system: optional_string(arguments, "system")?,
            options,
            think: Think::Off,
            truncate: true,
            priority,
            ..GenerateInput::default()
        };
        let started = self.core.generate(input).await.map_err(|error| error.to_string())?;
        let reply = collect_with_progress(started, context).await?;
        let key = if fill_in_the_middle { "completion" } else { "response" };
        Ok(
            json!({"model": model, key: reply.content, "done_reason": reply.done_reason, "eval_count": reply.eval_count}),
        )
    }

    async fn embed(&self, arguments: &JsonObject) -> Result<Value, String> {
        let inputs = match arguments.get("input") {
            Some(Value::String(text)) => vec![EmbedText::Text(text.clone())],
            Some(Value::Array(texts)) => texts
                .iter()
                .map(|text| text.as_str().map(|text| EmbedText::Text(text.to_owned())))
                .collect::<Option<Vec<_>>>()
                .ok_or("input must be a string or a list of strings")?,
            _ => return Err("input must be a string or a list of strings".into()),
        };
        let dimensions = match arguments.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|dimensions| *dimensions > 0)
                    .and_then(|dimensions| usize::try_from(dimensions).ok())
                    .ok_or("dimensions must be a positive integer")?,
            ),
        };
        let truncate = match arguments.get("truncate") {
            None | Some(Value::Null) => true,
            Some(value) => value.as_bool().ok_or("truncate must be true or false")?,
        };
        let model = match optional_string(arguments, "model")? {
            Some(model) => model,
            None => self.first_embedding_model().await?,
        };
        let input = EmbedInput {
            model: model.clone(),
            inputs,
            truncate,
            dimensions,
            normalize: true,
            options: serving::Options::default(),
            keep_alive: None,
        };
        let embeddings = self.core.embed(input).await.map_err(|error| error.to_string())?;
        Ok(json!({"model": model, "embeddings": embeddings.vectors, "prompt_eval_count": embeddings.prompt_tokens}))
    }

    /// The first installed model that can embed.
    async fn first_embedding_model(&self) -> Result<String, String> {
        self.core
            .list_models()
            .await
            .into_iter()
            .filter(|(_, resolved)| resolved.as_ref().is_some_and(|model| model.can(serving::Capability::Embedding)))
            .map(|(entry, _)| entry.name.display_shortest())
            .min()
            .ok_or_else(|| "no embedding model is installed; give model".to_owned())
    }

    async fn list_models(&self) -> Value {
        let models: Vec<Value> = self
            .core
            .list_models()
            .await
            .into_iter()
            .map(|(entry, resolved)| {
                let mut model = json!({
                    "name": entry.name.display_shortest(),
                    "size": entry.manifest.total_size(),
                    "modified_at": entry.modified_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs(),
                });
                if let Some(resolved) = resolved {
                    model["capabilities"] = json!(capabilities(&resolved));
                    model["family"] = json!(family(&resolved));
                    model["parameter_size"] = json!(resolved.config.model_type);
                    model["quantization_level"] = json!(resolved.config.file_type);
                }
                model
            })
            .collect();
        json!({"models": models})
    }

    async fn show_model(&self, arguments: &JsonObject) -> Result<Value, String> {
        let name = optional_string(arguments, "model")?.ok_or("model is required")?;
        let model = self.core.resolve_spelled(&name).await.map_err(|error| error.to_string())?;
        Ok(describe_model(&model))
    }

    /// The `model` argument, else the only or first installed model.
    async fn model_argument(&self, arguments: &JsonObject) -> Result<String, String> {
        if let Some(model) = optional_string(arguments, "model")? {
            return Ok(model);
        }
        self.model_names().await.into_iter().next().ok_or_else(|| "no model is installed; give model".to_owned())
    }
}

impl ServerHandler for ModelServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("modeld", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Local language models served by modeld. `list_models` names them; `chat` and `generate` answer \
             prompts; `complete_code` fills in code between a prefix and a suffix.",
        )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        crate::lock(&self.peers).push(context.peer.clone());
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let models = self.model_names().await;
        let tools = tools::definitions(&models)
            .into_iter()
            .map(|definition| {
                Tool::new(definition.name, definition.description, Arc::new(definition.input_schema))
                    .with_raw_output_schema(Arc::new(definition.output_schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if ToolName::parse(&request.name).is_none() {
            return Err(ErrorData::invalid_params(format!("tool not found: {}", request.name), None));
        }
        Ok(self.call(request, &context).await.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = self
            .model_names()
            .await
            .into_iter()
            .map(|name| {
                Resource::new(format!("modeld://models/{name}"), name.clone())
                    .with_description(format!("What modeld knows of {name}: family, size, capabilities, template"))
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let not_found = || ErrorData::resource_not_found(format!("no resource {}", request.uri), None);
        let name = request.uri.strip_prefix("modeld://models/").ok_or_else(not_found)?;
        let model = self.core.resolve_spelled(name).await.map_err(|_| not_found())?;
        let text = serde_json::to_string_pretty(&describe_model(&model)).unwrap_or_default();
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, request.uri.clone()).with_mime_type("application/json")
        ])
        .into())
    }
}

/// What a generation gave.
struct Collected {
    content: String,
    done_reason: String,
    eval_count: usize,
}

/// Drains a generation, sending `notifications/progress` (pieces so far) when the client gave
/// a progress token, and dropping the generation (which stops the engine) when the call is
/// cancelled.
async fn collect_with_progress(started: Started, context: &RequestContext<RoleServer>) -> Result<Collected, String> {
    let mut events = started.into_events();
    let token = context.meta.get_progress_token();
    let mut collected = Collected { content: String::new(), done_reason: "stop".into(), eval_count: 0 };
    let mut pieces = 0u64;
    let mut last_progress = Instant::now() - PROGRESS_INTERVAL;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = context.ct.cancelled() => {
                tracing::info!("MCP call cancelled; generation stopped");
                return Err("cancelled".into());
            }
        };
        match event {
            Some(Event::Content(text)) => {
                collected.content.push_str(&text);
                pieces += 1;
                if let Some(token) = token.as_ref().filter(|_| last_progress.elapsed() >= PROGRESS_INTERVAL) {
                    last_progress = Instant::now();
                    let progress = rmcp::model::ProgressNotificationParam::new(token.clone(), pieces as f64)
                        .with_message(format!("{} characters generated", collected.content.chars().count()));
                    let _ = context.peer.notify_progress(progress).await;
                }
            }
            Some(Event::Done(finished)) => {
                collected.done_reason = finished.done_reason.as_str().to_owned();
                collected.eval_count = finished.metrics.eval_count;
                return Ok(collected);
            }
            Some(Event::Failed(error)) => return Err(error),
            Some(Event::Thinking(_) | Event::ToolCalls(_) | Event::ToolResult(_)) => {}
            None => return Ok(collected),
        }
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// The text block older clients read: the answer itself for generating tools, JSON for the
/// others.
fn structured_text(tool: ToolName, structured: &Value) -> String {
    let field = match tool {
        ToolName::Chat => "content",
        ToolName::Generate => "response",
        ToolName::CompleteCode => "completion",
        ToolName::Embed | ToolName::ListModels | ToolName::ShowModel => return structured.to_string(),
    };
    structured.get(field).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn optional_string(arguments: &JsonObject, key: &str) -> Result<Option<String>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// Sampling options: `temperature`, `max_tokens`, `seed`, `stop`.
fn options(arguments: &JsonObject) -> Result<serving::Options, String> {
    let mut options = serving::Options::default();
    match arguments.get("temperature") {
        None | Some(Value::Null) => {}
        Some(value) => options.temperature = Some(value.as_f64().ok_or("temperature must be a number")?),
    }
    match arguments.get("max_tokens") {
        None | Some(Value::Null) => {}
        Some(value) => options.num_predict = Some(value.as_i64().ok_or("max_tokens must be an integer")?),
    }
    match arguments.get("seed") {
        None | Some(Value::Null) => {}
        Some(value) => options.seed = Some(value.as_i64().ok_or("seed must be an integer")?),
    }
    match arguments.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) => {
            options.stop = Some(stops.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        }
        Some(_) => return Err("stop must be a list of strings".into()),
    }
    Ok(options)
}

fn capabilities(model: &serving::ResolvedModel) -> Vec<&'static str> {
    model.capabilities().iter().map(|capability| capability.as_str()).collect()
}

fn family(model: &serving::ResolvedModel) -> String {
    model.config.family_or_architecture(Some(&model.gguf))
}

fn describe_model(model: &serving::ResolvedModel) -> Value {
    let mut described = Map::new();
    described.insert("name".into(), json!(model.name.display_shortest()));
    described.insert("family".into(), json!(family(model)));
    described.insert("parameter_size".into(), json!(model.config.model_type));
    described.insert("quantization_level".into(), json!(model.config.file_type));
    described.insert("capabilities".into(), json!(capabilities(model)));
    described.insert("context_length".into(), json!(model.trained_context_length()));
    described.insert("template".into(), json!(model.shown_template()));
    described.insert("system".into(), json!(model.system));
    described.insert("parameters".into(), Value::Object(model.parameters.clone()));
    Value::Object(described)
}
