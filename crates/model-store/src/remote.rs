//! Remote models: where a model served by another server lives (a Modelfile's `ENDPOINT`
//! lines), parsed once and checked, as the config blob stores them.
//!
//! An endpoint holds a URL, the API it speaks and, at most, the *name* of the environment
//! variable that holds its API key: a key itself is never stored.

use serde::{Deserialize, Serialize};

/// The longest endpoint URL accepted.
const MAX_URL_BYTES: usize = 2048;
/// The longest environment variable name accepted for a key.
const MAX_KEY_ENV_BYTES: usize = 128;

/// The API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteApi {
    /// OpenAI-compatible: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` (vLLM,
    /// SGLang, TGI, llama.cpp's `llama-server`).
    #[serde(rename = "openai")]
    OpenAi,
    /// Ollama-compatible: `/api/chat`, `/api/generate`, `/api/embed` (Ollama, modeld).
    Ollama,
}

impl RemoteApi {
    /// The name a Modelfile and `/api/create` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteApi::OpenAi => "openai",
            RemoteApi::Ollama => "ollama",
        }
    }

    /// Parses `openai` or `ollama`, in any case.
    pub fn parse(text: &str) -> Result<RemoteApi, RemoteEndpointError> {
        match text.to_ascii_lowercase().as_str() {
            "openai" => Ok(RemoteApi::OpenAi),
            "ollama" => Ok(RemoteApi::Ollama),
            _ => Err(RemoteEndpointError::UnknownApi(text.chars().take(64).collect())),
        }
    }
}

/// One replica of a remote model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RemoteEndpoint {
    /// `http://` or `https://`, host, optional port and path prefix, no trailing slash, no
    /// credentials.
    pub url: String,
    /// The API it speaks.
    pub api: RemoteApi,
    /// The environment variable whose value is sent as a Bearer token, read per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// Requests the replica serves at once at most (`parallel=N`); more wait, as for a
    /// local model's `OLLAMA_NUM_PARALLEL`. `None`: as many as are sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
}

/// The most requests at once an endpoint may be given.
const MAX_ENDPOINT_PARALLEL: u32 = 4096;

/// What is wrong with an endpoint; the texts are what `create` answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteEndpointError {
    #[error("endpoint must be an http:// or https:// URL with a host (got \"{0}\")")]
    InvalidUrl(String),
    #[error("endpoint URLs may not hold credentials: name an environment variable with key-env=NAME")]
    CredentialsInUrl,
    #[error("endpoint API must be \"openai\" or \"ollama\" (got \"{0}\")")]
    UnknownApi(String),
    #[error(
        "key-env must name an environment variable (letters, digits and _, not starting with a digit; got \"{0}\")"
    )]
    InvalidKeyEnv(String),
    #[error("unknown endpoint option \"{0}\" (expected key-env=NAME or parallel=N)")]
    UnknownOption(String),
    #[error("parallel must be a whole number from 1 to 4096 (got \"{0}\")")]
    InvalidParallel(String),
    #[error("ENDPOINT needs a URL and an API: ENDPOINT http://host:port openai|ollama [key-env=NAME] [parallel=N]")]
    MissingFields,
}

impl RemoteEndpoint {
    /// An endpoint, checked: the URL's scheme, host and length, the key variable's name.
    pub fn new(url: &str, api: RemoteApi, key_env: Option<&str>) -> Result<RemoteEndpoint, RemoteEndpointError> {
        let url = check_url(url)?;
        let key_env = key_env.map(check_key_env).transpose()?;
        Ok(RemoteEndpoint { url, api, key_env, parallel: None })
    }

    /// The endpoint serving at most `parallel` requests at once.
    pub fn with_parallel(mut self, parallel: Option<u32>) -> Result<RemoteEndpoint, RemoteEndpointError> {
        if let Some(n) = parallel.filter(|n| !(1..=MAX_ENDPOINT_PARALLEL).contains(n)) {
            return Err(RemoteEndpointError::InvalidParallel(n.to_string()));
        }
        self.parallel = parallel;
        Ok(self)
    }

    /// Parses what follows `ENDPOINT` in a Modelfile: `URL API [key-env=NAME] [parallel=N]`.
    pub fn parse_line(line: &str) -> Result<RemoteEndpoint, RemoteEndpointError> {
        let mut words = line.split_whitespace();
        let (Some(url), Some(api)) = (words.next(), words.next()) else {
            return Err(RemoteEndpointError::MissingFields);
        };
        let api = RemoteApi::parse(api)?;
        let (mut key_env, mut parallel) = (None, None);
        for option in words {
            match option.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("key-env") => key_env = Some(value),
                Some((key, value)) if key.eq_ignore_ascii_case("parallel") => {
                    let invalid = || RemoteEndpointError::InvalidParallel(value.chars().take(64).collect());
                    parallel = Some(value.parse::<u32>().map_err(|_| invalid())?);
                }
                _ => return Err(RemoteEndpointError::UnknownOption(option.chars().take(64).collect())),
            }
        }
        RemoteEndpoint::new(url, api, key_env)?.with_parallel(parallel)
    }

    /// The Modelfile line that gives this endpoint back (without `ENDPOINT`).
    pub fn to_line(&self) -> String {
        let mut line = format!("{} {}", self.url, self.api.as_str());
        if let Some(key_env) = &self.key_env {
            line.push_str(&format!(" key-env={key_env}"));
        }
        if let Some(parallel) = self.parallel {
            line.push_str(&format!(" parallel={parallel}"));
        }
        line
    }

    /// `host:port` of the URL, as Ollama's `remote_host` names a server.
    pub fn authority(&self) -> &str {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// How the config blob stores an endpoint; checked again when read, so a crafted config
/// cannot smuggle in what `create` would refuse.
#[derive(Deserialize)]
struct StoredEndpoint {
    url: String,
    api: RemoteApi,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default)]
    parallel: Option<u32>,
}

impl<'de> Deserialize<'de> for RemoteEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RemoteEndpoint, D::Error> {
        let stored = StoredEndpoint::deserialize(deserializer)?;
        RemoteEndpoint::new(&stored.url, stored.api, stored.key_env.as_deref())
            .and_then(|endpoint| endpoint.with_parallel(stored.parallel))
            .map_err(serde::de::Error::custom)
    }
}

fn check_url(url: &str) -> Result<String, RemoteEndpointError> {
    let invalid = || RemoteEndpointError::InvalidUrl(url.chars().take(128).collect());
    if url.len() > MAX_URL_BYTES || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(RemoteEndpointError::CredentialsInUrl);
    }
    if rest.contains(['?', '#']) {
        return Err(invalid());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            match after {
                "" => (host, None),
                after => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
        return Err(invalid());
    }
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(invalid());
    }
    Ok(format!("{}://{}", scheme.to_ascii_lowercase(), rest.trim_end_matches('/')))
}

fn check_key_env(name: &str) -> Result<String, RemoteEndpointError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_KEY_ENV_BYTES
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(RemoteEndpointError::InvalidKeyEnv(name.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lines_parse_and_print_back() {
        let endpoint = RemoteEndpoint::parse_line("http://10.0.0.5:8000/ openai key-env=VLLM_API_KEY").unwrap();
        assert_eq!(endpoint.url, "http://10.0.0.5:8000");
        assert_eq!(endpoint.api, RemoteApi::OpenAi);
        assert_eq!(endpoint.key_env.as_deref(), Some("VLLM_API_KEY"));
        assert_eq!(endpoint.to_line(), "http://10.0.0.5:8000 openai key-env=VLLM_API_KEY");
        assert_eq!(endpoint.authority(), "10.0.0.5:8000");
        let endpoint = RemoteEndpoint::parse_line("HTTPS://gpu.example/vllm OLLAMA").unwrap();
        assert_eq!(endpoint.to_line(), "https://gpu.example/vllm ollama");
        assert_eq!(endpoint.authority(), "gpu.example");
        assert_eq!(RemoteEndpoint::parse_line("http://[::1]:11434 ollama").unwrap().authority(), "[::1]:11434");
        let limited = RemoteEndpoint::parse_line("http://h:1 openai parallel=4 key-env=K").unwrap();
        assert_eq!(limited.parallel, Some(4));
        assert_eq!(limited.to_line(), "http://h:1 openai key-env=K parallel=4");
        assert_eq!(RemoteEndpoint::parse_line(&limited.to_line()).unwrap(), limited);
    }

    #[test]
    fn bad_endpoints_are_refused_with_a_reason() {
        let cases = [
            ("http://10.0.0.5:8000", RemoteEndpointError::MissingFields),
            ("ftp://host openai", RemoteEndpointError::InvalidUrl("ftp://host".into())),
            ("http:// openai", RemoteEndpointError::InvalidUrl("http://".into())),
            ("http://host:99999 openai", RemoteEndpointError::InvalidUrl("http://host:99999".into())),
            ("http://host/?a=1 openai", RemoteEndpointError::InvalidUrl("http://host/?a=1".into())),
            ("http://user:secret@host openai", RemoteEndpointError::CredentialsInUrl),
            ("http://host grpc", RemoteEndpointError::UnknownApi("grpc".into())),
            ("http://host openai key-env=1KEY", RemoteEndpointError::InvalidKeyEnv("1KEY".into())),
            ("http://host openai key-env=A-B", RemoteEndpointError::InvalidKeyEnv("A-B".into())),
            ("http://host openai key=sk-123", RemoteEndpointError::UnknownOption("key=sk-123".into())),
            ("http://host openai parallel=0", RemoteEndpointError::InvalidParallel("0".into())),
            ("http://host openai parallel=many", RemoteEndpointError::InvalidParallel("many".into())),
            ("http://host openai parallel=5000", RemoteEndpointError::InvalidParallel("5000".into())),
        ];
        for (line, expected) in cases {
            assert_eq!(RemoteEndpoint::parse_line(line), Err(expected), "{line}");
        }
    }

    #[test]
    fn a_stored_endpoint_is_checked_when_read() {
        let good: RemoteEndpoint =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:8080","api":"openai","key_env":"K"}"#).unwrap();
        assert_eq!(good.key_env.as_deref(), Some("K"));
        assert_eq!(
            serde_json::to_string(&good).unwrap(),
            r#"{"url":"http://127.0.0.1:8080","api":"openai","key_env":"K"}"#
        );
        assert!(serde_json::from_str::<RemoteEndpoint>(r#"{"url":"file:///etc/passwd","api":"openai"}"#).is_err());
        assert!(serde_json::from_str::<RemoteEndpoint>(r#"{"url":"http://h","api":"grpc"}"#).is_err());
        assert!(serde_json::from_str::<RemoteEndpoint>(r#"{"url":"http://h","api":"openai","parallel":0}"#).is_err());
    }
}
