//! The language server's client of the daemon's Ollama API: whether it answers, starting it
//! when it does not, what a model can do, and streamed generation that stops (and makes the
//! daemon stop) as soon as the answer is settled or the request is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ollama_api::{PRIORITY_HEADER, PRIORITY_INTERACTIVE};
use serde_json::{json, Value};

/// How long to wait for a daemon started on demand.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response body read from the daemon, so a misbehaving server cannot exhaust memory.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why the daemon did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonError {
    /// Nothing listens at the address, and it could not be started.
    Unreachable(String),
    /// The model does not exist on the server.
    ModelNotFound(String),
    /// An error status or an error in the stream, with the server's text.
    Failed { status: u16, message: String },
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Unreachable(detail) => write!(formatter, "the model daemon is unreachable: {detail}"),
            DaemonError::ModelNotFound(model) => {
                write!(formatter, "model '{model}' not found; import or pull it first (modeld create / modeld pull)")
            }
            DaemonError::Failed { status, message } => {
                write!(formatter, "the model daemon answered {status}: {message}")
            }
        }
    }
}

impl std::error::Error for DaemonError {}

/// How to start the daemon when none answers.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The program and arguments (`modeld serve`).
    pub command: PathBuf,
    pub arguments: Vec<String>,
    /// Where its output goes.
    pub log_path: PathBuf,
}

/// What the language server needs to know about a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The model fills in the middle (`insert` capability): send `suffix`.
    pub fills_in_the_middle: bool,
}

/// A finished (or settled) generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    /// Stopped by us because the answer was settled, before the model finished.
    pub stopped_early: bool,
}

/// The daemon at one address.
#[derive(Debug, Clone)]
pub struct Daemon {
    http: reqwest::Client,
    base_url: String,
}

impl Daemon {
    pub fn new(base_url: String) -> Daemon {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap_or_default();
        Daemon { http, base_url }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether a server answers `/api/version`.
    pub async fn answers(&self) -> bool {
        let request = self.http.get(format!("{}/api/version", self.base_url)).timeout(Duration::from_secs(2));
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }

    /// Makes sure a daemon answers, starting one with `launcher` (in its own process group,
    /// so it outlives this language server and the editor) when none does.
    pub async fn ensure_running(&self, launcher: Option<&Launcher>) -> Result<(), DaemonError> {
        if self.answers().await {
            return Ok(());
        }
        let Some(launcher) = launcher else {
            return Err(DaemonError::Unreachable(format!("nothing answers at {}", self.base_url)));
        };
        if let Some(directory) = launcher.log_path.parent() {
            let _ = std::fs::create_dir_all(directory);
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&launcher.log_path).map_err(|error| {
                DaemonError::Unreachable(format!("opening {}: {error}", launcher.log_path.display()))
            })?;
        let log_for_stderr =
            log.try_clone().map_err(|error| DaemonError::Unreachable(format!("opening the daemon log: {error}")))?;
        let mut command = std::process::Command::new(&launcher.command);
        command.args(&launcher.arguments).stdin(Stdio::null()).stdout(log).stderr(log_for_stderr);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let mut child = command
            .spawn()
            .map_err(|error| DaemonError::Unreachable(format!("starting {}: {error}", launcher.command.display())))?;
        tracing::info!(log = %launcher.log_path.display(), "started the model daemon");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.answers().await {
                // The child is reaped by whoever inherits it; we only watch it start.
                std::mem::drop(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another daemon may have won the race for the port.
                if self.answers().await {
                    return Ok(());
                }
                return Err(DaemonError::Unreachable(format!(
                    "the daemon exited with {status}; see {}",
                    launcher.log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DaemonError::Unreachable(format!(
            "the daemon did not answer within {} s; see {}",
            START_TIMEOUT.as_secs(),
            launcher.log_path.display()
        )))
    }

    async fn post(&self, path: &str, body: &Value, interactive: bool) -> Result<reqwest::Response, DaemonError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if interactive {
            request = request.header(PRIORITY_HEADER, PRIORITY_INTERACTIVE);
        }
        let response = request.send().await.map_err(|error| DaemonError::Unreachable(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_body(response).await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|value| value.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        if status.as_u16() == 404 {
            if let Some(model) = body_model(&message) {
                return Err(DaemonError::ModelNotFound(model));
            }
        }
        Err(DaemonError::Failed { status: status.as_u16(), message })
    }

    /// Loads `model` (an empty `/api/generate`), keeping it for `keep_alive`, so the first
    /// completion does not wait for the load.
    pub async fn load(&self, model: &str, keep_alive: &str) -> Result<(), DaemonError> {
        let body = json!({ "model": model, "keep_alive": keep_alive });
        let response = match self.post("/api/generate", &body, false).await {
            Err(DaemonError::Failed { status: 404, .. }) => return Err(DaemonError::ModelNotFound(model.to_owned())),
            other => other?,
        };
        read_body(response).await.map(drop)
    }

    /// What `model` can do, from `/api/show`.
    pub async fn model_info(&self, model: &str) -> Result<ModelInfo, DaemonError> {
        let response = match self.post("/api/show", &json!({ "model": model }), false).await {
            Err(DaemonError::Failed { status: 404, .. }) => return Err(DaemonError::ModelNotFound(model.to_owned())),
            other => other?,
        };
        let body = read_body(response).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|error| DaemonError::Failed {
            status: 200,
            message: format!("unreadable /api/show answer: {error}"),
        })?;
        let capabilities = value.get("capabilities").and_then(Value::as_array);
        let by_capability = capabilities.map(|list| list.iter().any(|item| item.as_str() == Some("insert")));
        // Older Ollama versions list no capabilities; their templates name `.Suffix`.
        let by_template =
            value.get("template").and_then(Value::as_str).is_some_and(|template| template.contains(".Suffix"));
        Ok(ModelInfo { fills_in_the_middle: by_capability.unwrap_or(by_template) })
    }

    /// Streams `/api/generate` (or `/api/chat`, by `endpoint`) with `body`, which must not set
    /// `stream: false`. After each piece, `settled` sees the text so far; when it says the
    /// answer is complete the stream is dropped, which closes the connection and makes the
    /// daemon stop generating.
    pub async fn generate(
        &self,
        endpoint: Endpoint,
        body: &Value,
        interactive: bool,
        mut settled: impl FnMut(&str) -> bool,
    ) -> Result<Generated, DaemonError> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        let path = match endpoint {
            Endpoint::Generate => "/api/generate",
            Endpoint::Chat => "/api/chat",
        };
        let mut response = match self.post(path, body, interactive).await {
            Err(DaemonError::Failed { status: 404, .. }) => return Err(DaemonError::ModelNotFound(model)),
            other => other?,
        };
        let mut text = String::new();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|error| DaemonError::Unreachable(error.to_string()))?;
            let Some(chunk) = chunk else {
                return Err(DaemonError::Failed {
                    status: 200,
                    message: "the stream ended before its last line".into(),
                });
            };
            pending.extend_from_slice(&chunk);
            if pending.len() > MAX_RESPONSE_BYTES {
                return Err(DaemonError::Failed { status: 200, message: "the stream's line is too long".into() });
            }
            while let Some(newline) = pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: Value = serde_json::from_slice(&line).map_err(|error| DaemonError::Failed {
                    status: 200,
                    message: format!("unreadable stream line: {error}"),
                })?;
                if let Some(error) = value.get("error").and_then(Value::as_str) {
                    return Err(DaemonError::Failed { status: 200, message: error.to_owned() });
                }
                let piece = match endpoint {
                    Endpoint::Generate => value.get("response"),
                    Endpoint::Chat => value.get("message").and_then(|message| message.get("content")),
                };
                if let Some(piece) = piece.and_then(Value::as_str) {
                    text.push_str(piece);
                }
                if value.get("done").and_then(Value::as_bool) == Some(true) {
                    return Ok(Generated { text, stopped_early: false });
                }
                if text.len() > MAX_RESPONSE_BYTES {
                    return Err(DaemonError::Failed { status: 200, message: "the answer is too long".into() });
                }
                if settled(&text) {
                    return Ok(Generated { text, stopped_early: true });
                }
            }
        }
    }
}

/// Which streaming endpoint a generation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Generate,
    Chat,
}

/// The model named in Ollama's "model 'x' not found" text.
fn body_model(message: &str) -> Option<String> {
    let start = message.find("model '")? + "model '".len();
    let end = message[start..].find('\'')? + start;
    Some(message[start..end].to_owned())
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, DaemonError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| DaemonError::Unreachable(error.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(DaemonError::Failed { status: 200, message: "the answer is too long".into() });
        }
    }
    Ok(body)
}
