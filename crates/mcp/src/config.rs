//! The MCP client's configuration: the `mcpServers` JSON that Claude Desktop, Cursor and
//! others use (VS Code's `servers` is read too), with modeld's own per-server settings.
//!
//! Parsing is pure and never fails as a whole for one bad server: a server whose entry is
//! wrong is kept with the reason, so that `modeld mcp servers` and the log say what is wrong
//! while the others run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// How long a tool call may take when the config does not say.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server may take to start when the config does not say (`npx` may download it
/// first).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Tokens a sampling request may ask for when the config does not say.
pub const DEFAULT_SAMPLING_MAX_TOKENS: u32 = 1024;

/// The largest config file read, in bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Every configured server, by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct McpConfig {
    /// Servers in name order; disabled ones are left out.
    pub servers: BTreeMap<String, ServerEntry>,
    /// Per model (as named in the config): the servers its chats use when a request does not
    /// say, `None` standing for all of them.
    pub model_servers: BTreeMap<String, Option<Vec<String>>>,
}

/// One server: its settings, or why its entry cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEntry {
    /// Usable.
    Valid(Box<ServerConfig>),
    /// Not usable, and why.
    Invalid(String),
}

/// How to reach a server and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// stdio or HTTP.
    pub transport: Transport,
    /// How long one of its tool calls may take.
    pub timeout: Duration,
    /// How long it may take to start and list its tools.
    pub start_timeout: Duration,
    /// Which of its tools go back to the caller for approval instead of running.
    pub approval: Approval,
    /// Only these of its tools are offered (all when `None`).
    pub allowed_tools: Option<Vec<String>>,
    /// How its `sampling/createMessage` requests are answered.
    pub sampling: SamplingPolicy,
}

/// How to reach a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to the daemon's environment.
        env: BTreeMap<String, String>,
        /// Its working directory, when set.
        cwd: Option<PathBuf>,
    },
    /// Streamable HTTP.
    Http {
        /// The endpoint.
        url: String,
        /// Headers sent with every request (`Authorization`, say).
        headers: BTreeMap<String, String>,
    },
}

/// Which tools need a person's approval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Approval {
    /// None.
    #[default]
    Never,
    /// Every tool of the server.
    Always,
    /// These, by the server's tool names.
    Tools(Vec<String>),
}

impl Approval {
    /// Whether a call to `tool` (the server's name for it) needs approval.
    pub fn needed_for(&self, tool: &str) -> bool {
        match self {
            Approval::Never => false,
            Approval::Always => true,
            Approval::Tools(tools) => tools.iter().any(|name| name == tool),
        }
    }
}

/// How a server's sampling requests are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingPolicy {
    /// Whether they are answered at all (refused with an error otherwise).
    pub enabled: bool,
    /// The most tokens an answer may have, whatever the request asks.
    pub max_tokens: u32,
    /// The local model that answers when the request's hints match none.
    pub model: Option<String>,
}

impl Default for SamplingPolicy {
    fn default() -> SamplingPolicy {
        SamplingPolicy { enabled: true, max_tokens: DEFAULT_SAMPLING_MAX_TOKENS, model: None }
    }
}

/// Where the config is read from: `MODELD_MCP_CONFIG`, else
/// `$XDG_CONFIG_HOME/modeld/mcp.json`, else `~/.config/modeld/mcp.json`.
pub fn config_path(explicit: Option<&str>, xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = explicit.filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    if let Some(base) = xdg_config_home.filter(|base| !base.is_empty()) {
        return Some(Path::new(base).join("modeld").join("mcp.json"));
    }
    home.filter(|home| !home.is_empty()).map(|home| Path::new(home).join(".config").join("modeld").join("mcp.json"))
}

/// Reads the config at `path`: a missing file is no servers; a file that is not a config is
/// an error naming the path.
pub fn read_config(path: &Path) -> Result<McpConfig, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(McpConfig::default()),
        Err(error) => return Err(format!("cannot read the MCP config {}: {error}", path.display())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1), &mut text)
        .map_err(|error| format!("cannot read the MCP config {}: {error}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("the MCP config {} is larger than {MAX_CONFIG_BYTES} bytes", path.display()));
    }
    parse_config(&text).map_err(|error| format!("the MCP config {} is not valid: {error}", path.display()))
}

/// Parses a config's text.
pub fn parse_config(text: &str) -> Result<McpConfig, String> {
    let root: Value = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let Value::Object(root) = root else { return Err("expected a JSON object with \"mcpServers\"".into()) };
    let default_timeout = match root.get("toolTimeout") {
        None => DEFAULT_TOOL_TIMEOUT,
        Some(value) => seconds(value).ok_or("toolTimeout must be a positive number of seconds")?,
    };
    let servers = match root.get("mcpServers").or_else(|| root.get("servers")) {
        None => return Err("expected \"mcpServers\"".into()),
        Some(Value::Object(servers)) => servers,
        Some(_) => return Err("\"mcpServers\" must be an object of servers by name".into()),
    };
    let mut config = McpConfig::default();
    match root.get("models") {
        None | Some(Value::Null) => {}
        Some(Value::Object(models)) => {
            for (model, settings) in models {
                let servers = match settings.get("mcpServers") {
                    Some(Value::String(all)) if all == "all" => None,
                    Some(list @ Value::Array(_)) => Some(strings(Some(list), &format!("models.{model}.mcpServers"))?),
                    _ => return Err(format!("models.{model}.mcpServers must be \"all\" or a list of server names")),
                };
                config.model_servers.insert(model.clone(), servers);
            }
        }
        Some(_) => return Err("\"models\" must be an object of settings by model name".into()),
    }
    for (name, entry) in servers {
        let Value::Object(entry) = entry else {
            config.servers.insert(name.clone(), ServerEntry::Invalid("the entry must be an object".into()));
            continue;
        };
        if entry.get("disabled").and_then(Value::as_bool) == Some(true)
            || entry.get("enabled").and_then(Value::as_bool) == Some(false)
        {
            continue;
        }
        let parsed = check_server_name(name).and_then(|()| server_config(entry, default_timeout));
        let parsed = match parsed {
            Ok(server) => ServerEntry::Valid(Box::new(server)),
            Err(why) => ServerEntry::Invalid(why),
        };
        config.servers.insert(name.clone(), parsed);
    }
    Ok(config)
}

/// Server names become the first part of tool names (`<server>__<tool>`), which OpenAI and
/// most templates allow only letters, digits, `_` and `-` in.
fn check_server_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        && !name.contains("__");
    if fine {
        Ok(())
    } else {
        Err("server names are 1 to 32 letters, digits, '_' or '-' (no \"__\"), since tool names start with them".into())
    }
}

fn server_config(entry: &Map<String, Value>, default_timeout: Duration) -> Result<ServerConfig, String> {
    let kind = entry.get("type").or_else(|| entry.get("transport")).and_then(Value::as_str);
    let transport = match (kind, entry.get("command"), entry.get("url")) {
        (Some("sse"), _, _) => {
            return Err("the HTTP+SSE transport is deprecated and not supported; use Streamable HTTP".into())
        }
        (_, Some(_), Some(_)) => return Err("give either \"command\" or \"url\", not both".into()),
        (_, Some(command), None) => {
            let command = command.as_str().filter(|command| !command.trim().is_empty());
            let command = command.ok_or("\"command\" must be a non-empty string")?;
            Transport::Stdio {
                command: command.to_owned(),
                args: strings(entry.get("args"), "args")?,
                env: string_map(entry.get("env"), "env")?,
                cwd: entry.get("cwd").and_then(Value::as_str).map(PathBuf::from),
            }
        }
        (_, None, Some(url)) => {
            let url = url.as_str().ok_or("\"url\" must be a string")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("\"url\" must start with http:// or https:// (got {url:?})"));
            }
            Transport::Http { url: url.to_owned(), headers: string_map(entry.get("headers"), "headers")? }
        }
        (_, None, None) => return Err("missing \"command\" (a stdio server) or \"url\" (an HTTP server)".into()),
    };
    let timeout = match entry.get("timeout") {
        None => default_timeout,
        Some(value) => seconds(value).ok_or("\"timeout\" must be a positive number of seconds")?,
    };
    let start_timeout = match entry.get("startTimeout") {
        None => DEFAULT_START_TIMEOUT,
        Some(value) => seconds(value).ok_or("\"startTimeout\" must be a positive number of seconds")?,
    };
    let approval = match entry.get("requireApproval") {
        None | Some(Value::Bool(false)) => Approval::Never,
        Some(Value::Bool(true)) => Approval::Always,
        Some(list @ Value::Array(_)) => Approval::Tools(strings(Some(list), "requireApproval")?),
        Some(_) => return Err("\"requireApproval\" must be true, false or a list of tool names".into()),
    };
    let allowed_tools = match entry.get("allowedTools") {
        None | Some(Value::Null) => None,
        Some(list) => Some(strings(Some(list), "allowedTools")?),
    };
    let sampling = match entry.get("sampling") {
        None | Some(Value::Null) => SamplingPolicy::default(),
        Some(Value::Bool(enabled)) => SamplingPolicy { enabled: *enabled, ..SamplingPolicy::default() },
        Some(Value::Object(sampling)) => SamplingPolicy {
            enabled: sampling.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            max_tokens: match sampling.get("maxTokens") {
                None => DEFAULT_SAMPLING_MAX_TOKENS,
                Some(value) => value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("\"sampling.maxTokens\" must be a positive integer")?,
            },
            model: sampling.get("model").and_then(Value::as_str).map(str::to_owned),
        },
        Some(_) => return Err("\"sampling\" must be true, false or an object".into()),
    };
    Ok(ServerConfig { transport, timeout, start_timeout, approval, allowed_tools, sampling })
}

fn seconds(value: &Value) -> Option<Duration> {
    value
        .as_f64()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 86_400.0)
        .map(Duration::from_secs_f64)
}

fn strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| format!("\"{field}\" must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("\"{field}\" must be a list of strings")),
    }
}

fn string_map(value: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>, String> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                Value::Number(number) => Ok((key.clone(), number.to_string())),
                Value::Bool(flag) => Ok((key.clone(), flag.to_string())),
                _ => Err(format!("\"{field}.{key}\" must be a string")),
            })
            .collect(),
        Some(_) => Err(format!("\"{field}\" must be an object of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_desktop_and_vs_code_shapes_parse() {
        let config = parse_config(
            r#"{"mcpServers": {
                "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"],
                               "env": {"PORT": 3001, "DEBUG": "1"}},
                "remote": {"type": "http", "url": "http://127.0.0.1:3001/mcp", "headers": {"Authorization": "Bearer t"},
                           "timeout": 5, "requireApproval": ["delete"], "allowedTools": ["get", "delete"],
                           "sampling": {"maxTokens": 64, "model": "smollm2:135m"}},
                "off": {"command": "x", "disabled": true}
            }}"#,
        )
        .unwrap();
        assert_eq!(config.servers.keys().collect::<Vec<_>>(), ["everything", "remote"]);
        let ServerEntry::Valid(everything) = &config.servers["everything"] else { panic!() };
        assert_eq!(everything.timeout, DEFAULT_TOOL_TIMEOUT);
        let Transport::Stdio { command, args, env, .. } = &everything.transport else { panic!() };
        assert_eq!((command.as_str(), args.len(), env["PORT"].as_str()), ("npx", 2, "3001"));
        let ServerEntry::Valid(remote) = &config.servers["remote"] else { panic!() };
        assert_eq!(remote.timeout, Duration::from_secs(5));
        assert!(remote.approval.needed_for("delete") && !remote.approval.needed_for("get"));
        assert_eq!(
            remote.sampling,
            SamplingPolicy { enabled: true, max_tokens: 64, model: Some("smollm2:135m".into()) }
        );
        let vs_code =
            parse_config(r#"{"servers": {"memory": {"type": "stdio", "command": "node", "args": ["m.js"]}}}"#);
        assert!(matches!(vs_code.unwrap().servers["memory"], ServerEntry::Valid(_)));
    }

    #[test]
    fn a_bad_entry_is_kept_with_its_reason_and_the_others_still_run() {
        let config = parse_config(
            r#"{"toolTimeout": 2, "mcpServers": {
                "no-command": {"args": ["x"]},
                "empty": {"command": "  "},
                "both": {"command": "a", "url": "http://b"},
                "ftp": {"url": "ftp://x"},
                "old": {"type": "sse", "url": "http://x/sse"},
                "bad__name": {"command": "a"},
                "timeout": {"command": "a", "timeout": -1},
                "good": {"command": "a"}
            }}"#,
        )
        .unwrap();
        let reason = |name: &str| match &config.servers[name] {
            ServerEntry::Invalid(why) => why.clone(),
            ServerEntry::Valid(_) => panic!("{name} should be invalid"),
        };
        assert!(reason("no-command").starts_with("missing \"command\""));
        assert!(reason("empty").contains("non-empty"));
        assert!(reason("both").contains("not both"));
        assert!(reason("ftp").contains("http://"));
        assert!(reason("old").contains("deprecated"));
        assert!(reason("bad__name").contains("server names"));
        assert!(reason("timeout").contains("positive"));
        let ServerEntry::Valid(good) = &config.servers["good"] else { panic!() };
        assert_eq!(good.timeout, Duration::from_secs(2));
    }

    #[test]
    fn models_can_use_servers_by_default() {
        let config = parse_config(
            r#"{"mcpServers": {"a": {"command": "a"}},
                "models": {"smollm2:135m": {"mcpServers": "all"}, "qwen3": {"mcpServers": ["a"]}}}"#,
        )
        .unwrap();
        assert_eq!(config.model_servers["smollm2:135m"], None);
        assert_eq!(config.model_servers["qwen3"], Some(vec!["a".to_owned()]));
        assert!(parse_config(r#"{"mcpServers": {}, "models": {"m": {"mcpServers": 1}}}"#).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_config_is_an_error() {
        assert!(parse_config("[]").is_err());
        assert!(parse_config("{").is_err());
        assert!(parse_config(r#"{"mcpServers": []}"#).is_err());
        assert!(parse_config(r#"{"other": 1}"#).is_err());
    }

    #[test]
    fn an_oversized_or_deeply_nested_file_is_refused_and_a_missing_one_is_no_servers() {
        let directory = std::env::temp_dir().join(format!("modeld-mcp-config-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let huge = directory.join("huge.json");
        std::fs::write(&huge, format!("{{\"mcpServers\": {{}}, \"pad\": \"{}\"}}", "x".repeat(2 << 20))).unwrap();
        assert!(read_config(&huge).unwrap_err().contains("larger than 1048576 bytes"));
        let nested = directory.join("nested.json");
        std::fs::write(&nested, format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))).unwrap();
        assert!(read_config(&nested).unwrap_err().contains("is not valid"));
        assert_eq!(read_config(&directory.join("missing.json")).unwrap(), McpConfig::default());
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn the_path_follows_the_environment() {
        assert_eq!(config_path(Some("/x.json"), Some("/c"), Some("/h")), Some(PathBuf::from("/x.json")));
        assert_eq!(config_path(None, Some("/c"), Some("/h")), Some(PathBuf::from("/c/modeld/mcp.json")));
        assert_eq!(config_path(Some(""), None, Some("/h")), Some(PathBuf::from("/h/.config/modeld/mcp.json")));
        assert_eq!(config_path(None, None, None), None);
    }
}
