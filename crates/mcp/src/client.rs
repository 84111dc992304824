//! The MCP client: one supervised connection per configured server (started with the daemon,
//! restarted with backoff when it dies, its stderr in the log), their tools offered to the
//! serving core's tool loop, and their sampling requests answered by a local model.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, ServiceExt};
use serde_json::{Map, Value};
use serving::{Core, ProvidedTool, ToolCallFuture, ToolOutput, ToolServerStatus, ToolServers};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::{McpConfig, ServerConfig, ServerEntry, Transport};
use crate::convert;
use crate::sampling::SamplingClient;

/// The first wait before a restart; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server that ran this long has its backoff reset when it dies.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// The longest stderr line logged; the rest of the line is dropped.
const MAX_LOG_LINE: usize = 2048;

/// Every configured server, shared by the tool loop and the status route.
#[derive(Clone)]
pub struct McpClients {
    servers: Arc<BTreeMap<String, Arc<ServerSlot>>>,
    model_servers: Arc<BTreeMap<String, Option<Vec<String>>>>,
    shutdown: CancellationToken,
}

pub(crate) struct ServerSlot {
    pub(crate) name: String,
    entry: ServerEntry,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// `starting`, `running`, `restarting`, `invalid`.
    phase: &'static str,
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Tool>,
    error: Option<String>,
    restarts: u32,
}

impl ServerSlot {
    fn config(&self) -> Option<&ServerConfig> {
        match &self.entry {
            ServerEntry::Valid(config) => Some(config),
            ServerEntry::Invalid(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        crate::lock(&self.state)
    }

    /// Its tools, filtered by `allowedTools`, with the names models see.
    fn offered_tools(&self) -> Vec<(String, Tool)> {
        let Some(config) = self.config() else { return Vec::new() };
        let state = self.lock();
        if state.peer.is_none() {
            return Vec::new();
        }
        state
            .tools
            .iter()
            .filter(|tool| {
                config.allowed_tools.as_ref().is_none_or(|allowed| allowed.iter().any(|name| *name == tool.name))
            })
            .filter_map(|tool| Some((convert::function_name(&self.name, &tool.name)?, tool.clone())))
            .collect()
    }

    pub(crate) fn set_tools(&self, tools: Vec<Tool>) {
        self.lock().tools = tools;
    }

    pub(crate) fn sampling_policy(&self) -> crate::config::SamplingPolicy {
        self.config().map(|config| config.sampling.clone()).unwrap_or_default()
    }
}

impl McpClients {
    /// Starts a supervised connection to every valid server of `config`; invalid entries are
    /// logged and listed with their reason. Sampling requests are answered through `core`.
    pub fn start(config: McpConfig, core: Core) -> McpClients {
        let shutdown = CancellationToken::new();
        let mut servers = BTreeMap::new();
        for (name, entry) in config.servers {
            let phase = match &entry {
                ServerEntry::Valid(_) => "starting",
                ServerEntry::Invalid(why) => {
                    tracing::error!(server = %name, "MCP server not started: {why}");
                    "invalid"
                }
            };
            let slot = Arc::new(ServerSlot {
                name: name.clone(),
                entry,
                state: Mutex::new(SlotState { phase, ..SlotState::default() }),
            });
            if slot.config().is_some() {
                tokio::spawn(supervise(slot.clone(), core.clone(), shutdown.clone()));
            }
            servers.insert(name, slot);
        }
        McpClients { servers: Arc::new(servers), model_servers: Arc::new(config.model_servers), shutdown }
    }

    /// Stops every server (stdio servers get their stdin closed, then SIGTERM, then SIGKILL).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    fn find_tool(&self, function: &str) -> Option<(Arc<ServerSlot>, String)> {
        let (server, _) = function.split_once(convert::SEPARATOR)?;
        let slot = self.servers.get(server)?;
        let tool = slot.offered_tools().into_iter().find(|(name, _)| name == function)?.1;
        Some((slot.clone(), tool.name.to_string()))
    }
}

impl serving::ToolProvider for McpClients {
    fn tools(&self, servers: &ToolServers) -> Result<Vec<ProvidedTool>, serving::ServingError> {
        let selected: Vec<&Arc<ServerSlot>> = match servers {
            ToolServers::All => self.servers.values().collect(),
            ToolServers::Named(names) => {
                let mut selected = Vec::new();
                for name in names {
                    let slot = self.servers.get(name).ok_or_else(|| {
                        let known: Vec<&str> = self.servers.keys().map(String::as_str).collect();
                        serving::ServingError::invalid(format!(
                            "mcp_servers: no MCP server is named \"{name}\" (configured: {})",
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ))
                    })?;
                    selected.push(slot);
                }
                selected
            }
        };
        let mut tools = Vec::new();
        for slot in selected {
            let offered = slot.offered_tools();
            if offered.is_empty() {
                let state = slot.lock();
                if state.peer.is_none() {
                    tracing::warn!(server = %slot.name, phase = state.phase, "MCP server is not running; its tools are left out");
                }
            }
            let approval = slot.config().map(|config| config.approval.clone()).unwrap_or_default();
            for (function, tool) in offered {
                tools.push(ProvidedTool {
                    definition: convert::function_definition(
                        &function,
                        tool.description.as_deref(),
                        &tool.input_schema,
                    ),
                    needs_approval: approval.needed_for(&tool.name),
                });
            }
        }
        Ok(tools)
    }

    fn call(&self, name: &str, arguments: Map<String, Value>) -> ToolCallFuture {
        let found = self.find_tool(name);
        let name = name.to_owned();
        Box::pin(async move {
            let Some((slot, tool)) = found else {
                return error_output(format!("there is no tool named {name}"));
            };
            let timeout = slot.config().map_or(crate::config::DEFAULT_TOOL_TIMEOUT, |config| config.timeout);
            let peer = slot.lock().peer.clone();
            let Some(peer) = peer else {
                let state = slot.lock();
                let why = state.error.clone().unwrap_or_else(|| state.phase.to_owned());
                return error_output(format!("the MCP server {} is not running ({why})", slot.name));
            };
            let params = CallToolRequestParams::new(tool).with_arguments(arguments);
            // A timed-out or dropped call sends `notifications/cancelled` to the server.
            match tokio::time::timeout(timeout, peer.call_tool(params)).await {
                Err(_) => error_output(format!(
                    "{name} did not answer within {} s; the call was cancelled",
                    timeout.as_secs_f64()
                )),
                Ok(Err(error)) => error_output(format!("{name} failed: {error}")),
                Ok(Ok(result)) => match serde_json::to_value(&result) {
                    Ok(result) => {
                        let (content, is_error) = convert::result_text(&result);
                        ToolOutput { content, is_error }
                    }
                    Err(error) => error_output(format!("{name} gave a result that cannot be read: {error}")),
                },
            }
        })
    }

    fn model_defaults(&self) -> Vec<(String, ToolServers)> {
        self.model_servers
            .iter()
            .map(|(model, servers)| {
                let servers = match servers {
                    None => ToolServers::All,
                    Some(names) => ToolServers::Named(names.clone()),
                };
                (model.clone(), servers)
            })
            .collect()
    }

    fn servers(&self) -> Vec<ToolServerStatus> {
        self.servers
            .values()
            .map(|slot| {
                let tools = slot.offered_tools().into_iter().map(|(name, _)| name).collect();
                let state = slot.lock();
                let (transport, error) = match &slot.entry {
                    ServerEntry::Valid(config) => (describe(&config.transport), state.error.clone()),
                    ServerEntry::Invalid(why) => (String::new(), Some(why.clone())),
                };
                ToolServerStatus {
                    name: slot.name.clone(),
                    state: state.phase.to_owned(),
                    transport,
                    error,
                    tools,
                    restarts: state.restarts,
                }
            })
            .collect()
    }
}

fn error_output(content: String) -> ToolOutput {
    ToolOutput { content: format!("Error: {content}"), is_error: true }
}

fn describe(transport: &Transport) -> String {
    match transport {
        Transport::Stdio { command, args, .. } => {
            std::iter::once(command.as_str()).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
        }
        Transport::Http { url, .. } => url.clone(),
    }
}

/// Keeps one server connected: starts it, lists its tools, waits for it to end, and starts it
/// again after a backoff, until the daemon shuts down.
async fn supervise(slot: Arc<ServerSlot>, core: Core, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let start_timeout = slot.config().map_or(crate::config::DEFAULT_START_TIMEOUT, |config| config.start_timeout);
        let connected = tokio::select! {
            connected = tokio::time::timeout(start_timeout, connect(&slot, &core)) => connected
                .unwrap_or_else(|_| Err(format!("it did not start within {} s", start_timeout.as_secs_f64()))),
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(running) => {
                {
                    let mut state = slot.lock();
                    state.phase = "running";
                    state.peer = Some(running.peer().clone());
                    state.error = None;
                }
                tracing::info!(server = %slot.name, tools = slot.lock().tools.len(), "MCP server running");
                let stop = running.cancellation_token();
                let waiting = running.waiting();
                tokio::pin!(waiting);
                let quit = tokio::select! {
                    quit = &mut waiting => format!("{quit:?}"),
                    () = shutdown.cancelled() => {
                        stop.cancel();
                        let _ = waiting.await;
                        return;
                    }
                };
                let mut state = slot.lock();
                state.peer = None;
                state.phase = "restarting";
                state.error = Some(format!("the server stopped ({quit})"));
                tracing::warn!(server = %slot.name, "MCP server stopped ({quit}); restarting");
            }
            Err(error) => {
                let mut state = slot.lock();
                state.peer = None;
                state.phase = "restarting";
                tracing::error!(server = %slot.name, "MCP server failed to start: {error}");
                state.error = Some(error);
            }
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        slot.lock().restarts += 1;
    }
}

/// Starts the server and lists its tools.
async fn connect(slot: &Arc<ServerSlot>, core: &Core) -> Result<RunningService<RoleClient, SamplingClient>, String> {
    let config = slot.config().ok_or("the entry is not valid")?;
    let handler = SamplingClient::new(slot.clone(), core.clone());
    let running = match &config.transport {
        Transport::Stdio { command, args, env, cwd } => {
            let mut child = tokio::process::Command::new(command);
            child.args(args).envs(env);
            if let Some(cwd) = cwd {
                child.current_dir(cwd);
            }
            let (transport, stderr) = TokioChildProcess::builder(child)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| format!("cannot run {command:?}: {error}"))?;
            if let Some(stderr) = stderr {
                tokio::spawn(log_stderr(slot.name.clone(), stderr));
            }
            handler.serve(transport).await.map_err(|error| format!("initialize failed: {error}"))?
        }
        Transport::Http { url, headers } => {
            let mut custom = std::collections::HashMap::new();
            for (key, value) in headers {
                let key = http::HeaderName::try_from(key.as_str()).map_err(|_| format!("bad header name {key:?}"))?;
                let value =
                    http::HeaderValue::try_from(value.as_str()).map_err(|_| format!("bad value for header {key}"))?;
                custom.insert(key, value);
            }
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(custom),
            );
            handler.serve(transport).await.map_err(|error| format!("initialize failed: {error}"))?
        }
    };
    let tools = running.peer().list_all_tools().await.map_err(|error| format!("tools/list failed: {error}"))?;
    slot.set_tools(tools);
    Ok(running)
}

/// Logs a server's stderr, line by line, each line cut to [`MAX_LOG_LINE`] bytes.
async fn log_stderr(server: String, mut stderr: tokio::process::ChildStderr) {
    let mut line: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buffer[..n] {
            if byte == b'\n' {
                tracing::info!(server = %server, "{}", String::from_utf8_lossy(&line).trim_end());
                line.clear();
            } else if line.len() < MAX_LOG_LINE {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        tracing::info!(server = %server, "{}", String::from_utf8_lossy(&line).trim_end());
    }
}
