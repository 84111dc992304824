//! A small client of the daemon's HTTP API, for the CLI commands.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::environment;

/// A non-2xx answer, with Ollama's error text.
#[derive(Debug)]
pub(crate) struct StatusError {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

/// Talks to the daemon at `OLLAMA_HOST`.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base_url: String,
}

impl Client {
    pub(crate) fn from_environment() -> Client {
        Client::new(environment::base_url())
    }

    pub(crate) fn new(base_url: String) -> Client {
        Client { http: reqwest::Client::new(), base_url }
    }

    /// A client that opens a connection per request, for servers that close idle keep-alive
    /// connections under a pooled client (llama.cpp's server does after five seconds).
    pub(crate) fn without_connection_reuse(base_url: String) -> Client {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap_or_default();
        Client { http, base_url }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                anyhow::anyhow!("could not connect to modeld at {}, is it running?", self.base_url)
            } else {
                anyhow::Error::from(error)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|value| value.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(body);
        Err(StatusError { status: status.as_u16(), message }.into())
    }

    fn json_body(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
        request.header("content-type", "application/json").body(body.to_string())
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.send(self.http.get(self.url(path))).await?;
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.send(Self::json_body(self.http.post(self.url(path)), body)).await?;
        let bytes = response.bytes().await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub(crate) async fn delete(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        self.send(Self::json_body(self.http.delete(self.url(path)), body)).await?;
        Ok(())
    }

    pub(crate) async fn head(&self, path: &str) -> anyhow::Result<u16> {
        match self.send(self.http.head(self.url(path))).await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) => match error.downcast_ref::<StatusError>() {
                Some(status_error) => Ok(status_error.status),
                None => Err(error),
            },
        }
    }

    /// Posts `body` and calls `on_line` with each object of the streamed answer, NDJSON or
    /// server-sent events; an object with `error` ends with that error.
    pub(crate) async fn stream(
        &self,
        path: &str,
        body: &Value,
        mut on_line: impl FnMut(&Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut response = self.send(Self::json_body(self.http.post(self.url(path)), body)).await?;
        let mut buffer = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            buffer.extend_from_slice(&chunk);
            while let Some(newline) = buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=newline).collect();
                let line = &line[..line.len() - 1];
                // Server-sent events (llama.cpp's server, OpenAI's shape) carry JSON after `data: `.
                let line = line.strip_prefix(b"data: ").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) || line == b"[DONE]" {
                    continue;
                }
                let value: Value = serde_json::from_slice(line).context("reading the response stream")?;
                if let Some(error) = value.get("error").and_then(Value::as_str) {
                    bail!("{error}");
                }
                on_line(&value)?;
            }
        }
        Ok(())
    }

    /// Uploads a file as a blob with plain HTTP/1.1 over TCP, streaming it from disk so large
    /// weights never sit in memory; `on_progress` receives bytes sent so far.
    pub(crate) async fn upload_blob(
        &self,
        file_path: &Path,
        digest: &str,
        mut on_progress: impl FnMut(u64, u64),
    ) -> anyhow::Result<()> {
        let mut file =
            tokio::fs::File::open(file_path).await.with_context(|| format!("opening {}", file_path.display()))?;
        let total = file.metadata().await?.len();
        let host_port = self.base_url.trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(&host_port)
            .await
            .with_context(|| format!("could not connect to modeld at {}, is it running?", self.base_url))?;
        let head = format!(
            "POST /api/blobs/{digest} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        loop {
            let n_read = file.read(&mut buffer).await?;
            if n_read == 0 {
                break;
            }
            stream.write_all(&buffer[..n_read]).await?;
            sent += n_read as u64;
            on_progress(sent, total);
        }
        stream.flush().await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response);
        let status: u16 = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        if !(200..300).contains(&status) {
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            bail!("uploading {}: {status} {body}", file_path.display());
        }
        Ok(())
    }
}

/// Whether an error is the daemon's 404.
pub(crate) fn is_not_found(error: &anyhow::Error) -> bool {
    error.downcast_ref::<StatusError>().is_some_and(|status_error| status_error.status == 404)
}
