//! Remote models: the core's requests for models served by other servers, sent to one of
//! their replicas and streamed back as the core's events.
//!
//! [`RemoteClient`] implements [`serving::RemoteModels`]. For each request it picks a replica
//! ([`routing`]: the one whose prefix cache likely holds the prompt, else the least loaded
//! healthy one), speaks its API ([`ollama`] or [`openai`]), and translates the stream as it
//! arrives ([`decode`]). A replica that fails before the first token (refused connection, a
//! server error, a stream that ends early) is marked down with a growing backoff and the
//! request goes once to another; a failure after the first token ends the stream with an
//! error event. Dropping the stream closes the upstream request. API keys are read, by the
//! lookup the daemon gives, when each request is sent, and never stored.

pub mod decode;
pub mod ollama;
pub mod openai;
pub mod routing;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model_store::{RemoteApi, RemoteEndpoint};
use serde_json::Value;
use serving::{
    Capability, ChatInput, EmbedInput, EmbedText, Embeddings, Event, EventStream, GenerateInput, RemoteFuture,
    RemoteModel, ServingError,
};

use crate::decode::{LineSplitter, StreamDecoder, Timing};
use crate::routing::{PrefixMemory, ReplicaView};

/// Reads an API key from where the daemon keeps them (the environment), by variable name.
pub type KeyLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How long a connection to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `create` waits for a replica to say what a model can do.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an embedding request may take.
const EMBED_TIMEOUT: Duration = Duration::from_secs(600);
/// The first and the longest time a failed replica is left alone.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// The largest error or non-streamed body read from a remote.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Remote models' replicas and the HTTP client that reaches them.
#[derive(Clone)]
pub struct RemoteClient {
    http: reqwest::Client,
    keys: KeyLookup,
    /// Routing state per model (its local name), rebuilt when its endpoints change.
    models: Arc<Mutex<HashMap<String, Arc<ReplicaSet>>>>,
    rotation: Arc<AtomicUsize>,
}

/// The replicas of one model.
struct ReplicaSet {
    endpoints: Vec<RemoteEndpoint>,
    states: Mutex<Vec<ReplicaState>>,
}

#[derive(Default)]
struct ReplicaState {
    outstanding: usize,
    down_until: Option<Instant>,
    backoff: Duration,
    prefixes: PrefixMemory,
    /// Requests sent, for the log and tests.
    sent: u64,
}

/// A request's hold on a replica: counted as outstanding until dropped.
struct ReplicaHold {
    set: Arc<ReplicaSet>,
    index: usize,
}

impl Drop for ReplicaHold {
    fn drop(&mut self) {
        if let Some(state) = self.set.states.lock().unwrap().get_mut(self.index) {
            state.outstanding = state.outstanding.saturating_sub(1);
        }
    }
}

impl ReplicaSet {
    fn new(endpoints: Vec<RemoteEndpoint>) -> ReplicaSet {
        let states = endpoints.iter().map(|_| ReplicaState::default()).collect();
        ReplicaSet { endpoints, states: Mutex::new(states) }
    }

    /// Picks a replica for a prompt with these blocks and holds it.
    fn take(self: &Arc<Self>, blocks: &[u64], tried: &[usize], rotation: usize) -> Option<ReplicaHold> {
        let now = Instant::now();
        let mut states = self.states.lock().unwrap();
        let views: Vec<ReplicaView> = states
            .iter()
            .enumerate()
            .map(|(index, state)| ReplicaView {
                healthy: state.down_until.is_none_or(|until| until <= now),
                outstanding: state.outstanding,
                matched_blocks: state.prefixes.matched(blocks),
                tried: tried.contains(&index),
            })
            .collect();
        let index = routing::choose_replica(&views, rotation)?;
        let state = &mut states[index];
        state.outstanding += 1;
        state.sent += 1;
        state.prefixes.remember(blocks);
        Some(ReplicaHold { set: self.clone(), index })
    }

    fn mark_down(&self, index: usize, reason: &str) {
        let mut states = self.states.lock().unwrap();
        let state = &mut states[index];
        state.backoff = (state.backoff * 2).clamp(FIRST_BACKOFF, LONGEST_BACKOFF);
        state.down_until = Some(Instant::now() + state.backoff);
        // Whatever it cached may be gone with it.
        state.prefixes.clear();
        tracing::warn!(endpoint = %self.endpoints[index].url, backoff = ?state.backoff, %reason, "remote replica marked down");
    }

    fn mark_up(&self, index: usize) {
        let mut states = self.states.lock().unwrap();
        let state = &mut states[index];
        if state.down_until.is_some() {
            tracing::info!(endpoint = %self.endpoints[index].url, "remote replica is back");
        }
        state.down_until = None;
        state.backoff = Duration::ZERO;
    }
}

/// What one attempt on one replica came to.
enum AttemptError {
    /// The replica failed (unreachable, a server error, a stream that broke before its first
    /// event): another replica may serve the request.
    ReplicaFailed(String),
    /// The replica answered that the request is wrong: the same on any replica.
    Refused(ServingError),
}

/// One request to send: the path, per API, and its body.
struct Outgoing {
    path: &'static str,
    body: Value,
}

impl RemoteClient {
    /// A client; `keys` reads an API key by its environment variable's name.
    pub fn new(keys: KeyLookup) -> RemoteClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A key goes to the endpoint that names it and nowhere else: no redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        RemoteClient { http, keys, models: Arc::default(), rotation: Arc::default() }
    }

    fn replica_set(&self, model: &RemoteModel) -> Arc<ReplicaSet> {
        let mut models = self.models.lock().unwrap();
        let current = models.get(&model.local_name).filter(|set| set.endpoints == model.endpoints);
        match current {
            Some(set) => set.clone(),
            None => {
                let set = Arc::new(ReplicaSet::new(model.endpoints.clone()));
                models.insert(model.local_name.clone(), set.clone());
                set
            }
        }
    }

    /// Requests each replica of `model` was sent, in endpoint order.
    pub fn requests_sent(&self, local_name: &str) -> Vec<u64> {
        let models = self.models.lock().unwrap();
        models
            .get(local_name)
            .map(|set| set.states.lock().unwrap().iter().map(|state| state.sent).collect())
            .unwrap_or_default()
    }

    fn request(
        &self,
        endpoint: &RemoteEndpoint,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ServingError> {
        let mut builder = self.http.request(method, format!("{}{path}", endpoint.url));
        if let Some(variable) = &endpoint.key_env {
            let key = (self.keys)(variable).ok_or_else(|| {
                ServingError::internal(format!(
                    "the API key of {} is read from the environment variable {variable}, which is not set",
                    endpoint.url
                ))
            })?;
            builder = builder.bearer_auth(key);
        }
        Ok(builder)
    }

    /// Sends a streaming request to a replica (retried once on another when the first fails
    /// before its first event) and returns the events.
    async fn stream(
        &self,
        model: RemoteModel,
        affinity_text: String,
        outgoing: impl Fn(RemoteApi) -> Outgoing + Send,
    ) -> Result<EventStream, ServingError> {
        let started = Instant::now();
        let set = self.replica_set(&model);
        let blocks = routing::prefix_blocks(&affinity_text);
        let mut tried = Vec::new();
        let mut last_failure = String::new();
        // One try, and one more on another replica.
        for _ in 0..2.min(set.endpoints.len()) {
            let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
            let Some(hold) = set.take(&blocks, &tried, rotation) else { break };
            tried.push(hold.index);
            let endpoint = set.endpoints[hold.index].clone();
            match self.attempt(&endpoint, outgoing(endpoint.api), started).await {
                Ok((first, rest)) => {
                    set.mark_up(hold.index);
                    return Ok(into_event_stream(first, rest, hold));
                }
                Err(AttemptError::Refused(error)) => return Err(error),
                Err(AttemptError::ReplicaFailed(reason)) => {
                    set.mark_down(hold.index, &reason);
                    last_failure = format!("{}: {reason}", endpoint.url);
                }
            }
        }
        Err(ServingError::Remote {
            status: 502,
            message: format!("no replica of {} answered ({last_failure})", model.local_name),
        })
    }

    /// One try on one replica: the events up to and including the first, and the rest.
    async fn attempt(
        &self,
        endpoint: &RemoteEndpoint,
        outgoing: Outgoing,
        started: Instant,
    ) -> Result<(VecDeque<Event>, Upstream), AttemptError> {
        let request = self.request(endpoint, reqwest::Method::POST, outgoing.path).map_err(AttemptError::Refused)?;
        let response = with_json(request, &outgoing.body)
            .send()
            .await
            .map_err(|error| AttemptError::ReplicaFailed(describe(&error)))?;
        let status = response.status();
        if !status.is_success() {
            let message = error_body(response).await;
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                AttemptError::ReplicaFailed(format!("{status}: {message}"))
            } else {
                AttemptError::Refused(refused(status.as_u16(), message, outgoing.path))
            });
        }
        let timing = Timing::new(started, &endpoint.url);
        let decoder: Box<dyn StreamDecoder> = match endpoint.api {
            RemoteApi::Ollama => Box::new(ollama::OllamaDecoder::new(timing)),
            RemoteApi::OpenAi => Box::new(openai::OpenAiDecoder::new(timing)),
        };
        let mut upstream = Upstream { response: Some(response), lines: LineSplitter::default(), decoder };
        let first = upstream.next_events().await.map_err(AttemptError::ReplicaFailed)?;
        Ok((first, upstream))
    }

    /// A JSON request to one replica (retried once on another when it fails), as embeddings
    /// and capabilities ask: `describe` says, per replica, what to send.
    async fn call_json(
        &self,
        model: &RemoteModel,
        timeout: Duration,
        describe_call: impl Fn(&RemoteEndpoint) -> Result<JsonCall, ServingError>,
    ) -> Result<(Value, RemoteEndpoint), ServingError> {
        let set = self.replica_set(model);
        let mut tried = Vec::new();
        let mut last_failure = String::new();
        for _ in 0..2.min(set.endpoints.len()) {
            let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
            let Some(hold) = set.take(&[], &tried, rotation) else { break };
            tried.push(hold.index);
            let endpoint = set.endpoints[hold.index].clone();
            let call = describe_call(&endpoint)?;
            let mut request = self.request(&endpoint, call.method, call.path)?;
            if let Some(body) = &call.body {
                request = with_json(request, body);
            }
            let attempt = async {
                let response = request.send().await.map_err(|error| AttemptError::ReplicaFailed(describe(&error)))?;
                read_json(response, call.path).await
            };
            let outcome = tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or_else(|_| Err(AttemptError::ReplicaFailed("no answer in time".into())));
            match outcome {
                Ok(value) => {
                    set.mark_up(hold.index);
                    return Ok((value, endpoint));
                }
                Err(AttemptError::Refused(error)) => return Err(error),
                Err(AttemptError::ReplicaFailed(reason)) => {
                    set.mark_down(hold.index, &reason);
                    last_failure = format!("{}: {reason}", endpoint.url);
                }
            }
        }
        Err(ServingError::Remote {
            status: 502,
            message: format!("no replica of {} answered ({last_failure})", model.local_name),
        })
    }
}

/// A JSON request: method, path and body.
struct JsonCall {
    method: reqwest::Method,
    path: &'static str,
    body: Option<Value>,
}

fn with_json(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    request.header(reqwest::header::CONTENT_TYPE, "application/json").body(serde_json::to_vec(body).unwrap_or_default())
}

/// A response body being read as events.
struct Upstream {
    /// Dropped, closing the connection, when the stream is.
    response: Option<reqwest::Response>,
    lines: LineSplitter,
    decoder: Box<dyn StreamDecoder>,
}

impl Upstream {
    /// The next events: at least one, or an error (the remote's error line, a broken body, an
    /// early end). Empty only once the stream finished.
    async fn next_events(&mut self) -> Result<VecDeque<Event>, String> {
        let mut events = VecDeque::new();
        while events.is_empty() {
            let Some(response) = self.response.as_mut() else { return Ok(events) };
            let chunk = response.chunk().await.map_err(|error| format!("{READ_FAILURE}: {}", describe(&error)))?;
            match chunk {
                Some(bytes) => {
                    for line in self.lines.push(&bytes)? {
                        events.extend(self.decoder.line(&line)?);
                    }
                }
                None => {
                    self.response = None;
                    if let Some(line) = self.lines.finish() {
                        events.extend(self.decoder.line(&line)?);
                    }
                    events.extend(self.decoder.end()?);
                    return Ok(events);
                }
            }
            if self.decoder.is_done() {
                // Nothing after the final event matters; close the connection.
                self.response = None;
            }
        }
        Ok(events)
    }
}

/// The events of a started request; a failure after the first event ends the stream with an
/// error event (and marks the replica down).
fn into_event_stream(first: VecDeque<Event>, upstream: Upstream, hold: ReplicaHold) -> EventStream {
    struct State {
        pending: VecDeque<Event>,
        upstream: Upstream,
        hold: Option<ReplicaHold>,
        ended: bool,
    }
    let state = State { pending: first, upstream, hold: Some(hold), ended: false };
    Box::pin(futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                if matches!(event, Event::Done(_) | Event::Failed(_)) {
                    state.ended = true;
                    state.hold = None;
                }
                return Some((event, state));
            }
            if state.ended {
                return None;
            }
            match state.upstream.next_events().await {
                Ok(events) if events.is_empty() => return None,
                Ok(events) => state.pending = events,
                Err(reason) => {
                    // A broken connection is the replica's fault; an error line is the
                    // remote's answer about this request.
                    if let Some(hold) = state.hold.as_ref().filter(|_| is_transport_failure(&reason)) {
                        hold.set.mark_down(hold.index, &reason);
                    }
                    state.pending.push_back(Event::Failed(reason));
                }
            }
        }
    }))
}

/// What [`Upstream::next_events`] says when the connection, not the remote, failed.
const READ_FAILURE: &str = "reading the remote's stream";
const EARLY_END: &str = "the remote closed the stream before it finished";

fn is_transport_failure(reason: &str) -> bool {
    reason.starts_with(READ_FAILURE) || reason == EARLY_END
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The error text of a failed response, bounded.
async fn error_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > 64 << 10 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match serde_json::from_str::<Value>(&text) {
        Ok(body) => openai::error_text(&body),
        Err(_) => text.trim().chars().take(1024).collect(),
    }
}

/// A remote's refusal as the client sees it: its status and its words.
fn refused(status: u16, message: String, path: &str) -> ServingError {
    if status == 404 && path == "/infill" {
        return ServingError::invalid("the remote model does not support insert (no /infill endpoint)");
    }
    ServingError::Remote { status, message }
}

/// A JSON body of a successful response, bounded; failures as [`AttemptError`]s.
async fn read_json(mut response: reqwest::Response, path: &str) -> Result<Value, AttemptError> {
    let status = response.status();
    if !status.is_success() {
        let message = error_body(response).await;
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            AttemptError::ReplicaFailed(format!("{status}: {message}"))
        } else {
            AttemptError::Refused(refused(status.as_u16(), message, path))
        });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| AttemptError::ReplicaFailed(describe(&error)))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_BODY_BYTES {
            return Err(AttemptError::ReplicaFailed(format!("the remote's answer is over {MAX_BODY_BYTES} bytes")));
        }
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| AttemptError::ReplicaFailed(format!("the remote's answer is not JSON: {error}")))
}

/// The text a chat's prompt starts with, for routing: tools, then each message.
fn chat_affinity_text(input: &ChatInput) -> String {
    let mut text = String::new();
    for tool in &input.tools {
        text.push_str(&tool.to_string());
    }
    for message in &input.messages {
        text.push_str(&message.role);
        text.push('\n');
        text.push_str(&message.content);
        for call in &message.tool_calls {
            text.push_str(&call.name);
            text.push_str(&Value::Object(call.arguments.clone()).to_string());
        }
        text.push('\u{1e}');
    }
    text
}

impl serving::RemoteModels for RemoteClient {
    fn chat(&self, model: RemoteModel, input: ChatInput) -> RemoteFuture<EventStream> {
        let client = self.clone();
        Box::pin(async move {
            let affinity = chat_affinity_text(&input);
            let remote_name = model.remote_name.clone();
            client
                .stream(model, affinity, move |api| match api {
                    RemoteApi::Ollama => Outgoing { path: "/api/chat", body: ollama::chat_body(&remote_name, &input) },
                    RemoteApi::OpenAi => {
                        Outgoing { path: "/v1/chat/completions", body: openai::chat_body(&remote_name, &input) }
                    }
                })
                .await
        })
    }

    fn generate(&self, model: RemoteModel, input: GenerateInput) -> RemoteFuture<EventStream> {
        let client = self.clone();
        Box::pin(async move {
            let affinity = format!("{}\u{1e}{}", input.system.as_deref().unwrap_or_default(), input.prompt);
            let remote_name = model.remote_name.clone();
            client
                .stream(model, affinity, move |api| match api {
                    RemoteApi::Ollama => {
                        Outgoing { path: "/api/generate", body: ollama::generate_body(&remote_name, &input) }
                    }
                    RemoteApi::OpenAi => match openai::completion(&remote_name, &input) {
                        openai::CompletionRoute::Chat(body) => Outgoing { path: "/v1/chat/completions", body },
                        openai::CompletionRoute::Raw(body) => Outgoing { path: "/v1/completions", body },
                        openai::CompletionRoute::Infill(body) => Outgoing { path: "/infill", body },
                    },
                })
                .await
        })
    }

    fn embed(&self, model: RemoteModel, input: EmbedInput) -> RemoteFuture<Embeddings> {
        let client = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let n_inputs = input.inputs.len();
            let texts: Option<Vec<String>> = input
                .inputs
                .iter()
                .map(|text| match text {
                    EmbedText::Text(text) => Some(text.clone()),
                    EmbedText::Tokens(_) => None,
                })
                .collect();
            let remote_name = model.remote_name.clone();
            let call = |endpoint: &RemoteEndpoint| match endpoint.api {
                RemoteApi::OpenAi => Ok(JsonCall {
                    method: reqwest::Method::POST,
                    path: "/v1/embeddings",
                    body: Some(openai::embed_body(&remote_name, &input.inputs)),
                }),
                RemoteApi::Ollama => {
                    let texts = texts
                        .as_deref()
                        .ok_or_else(|| ServingError::invalid("an Ollama remote embeds text, not token ids"))?;
                    Ok(JsonCall {
                        method: reqwest::Method::POST,
                        path: "/api/embed",
                        body: Some(ollama::embed_body(&remote_name, texts, &input)),
                    })
                }
            };
            let (body, endpoint) = client.call_json(&model, EMBED_TIMEOUT, call).await?;
            let (vectors, prompt_tokens) = match endpoint.api {
                RemoteApi::OpenAi => openai::embeddings(&body, n_inputs),
                RemoteApi::Ollama => ollama_embeddings(&body, n_inputs),
            }
            .map_err(|message| ServingError::Remote { status: 502, message })?;
            Ok(Embeddings { vectors, prompt_tokens, load_duration: Duration::ZERO, total_duration: started.elapsed() })
        })
    }

    fn capabilities(&self, model: RemoteModel) -> RemoteFuture<Vec<Capability>> {
        let client = self.clone();
        Box::pin(async move {
            let remote_name = model.remote_name.clone();
            let call = |endpoint: &RemoteEndpoint| {
                Ok(match endpoint.api {
                    RemoteApi::Ollama => JsonCall {
                        method: reqwest::Method::POST,
                        path: "/api/show",
                        body: Some(serde_json::json!({"model": remote_name})),
                    },
                    RemoteApi::OpenAi => JsonCall { method: reqwest::Method::GET, path: "/v1/models", body: None },
                })
            };
            let (body, endpoint) = client.call_json(&model, PROBE_TIMEOUT, call).await?;
            Ok(match endpoint.api {
                RemoteApi::Ollama => body
                    .get("capabilities")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| name.as_str().and_then(Capability::parse))
                    .collect(),
                // An OpenAI-compatible server lists its models but not what they do: chat and
                // tools are what they serve (the remote refuses what its launch did not enable).
                RemoteApi::OpenAi => {
                    let listed = body.get("data").and_then(Value::as_array).is_some_and(|models| {
                        models.iter().any(|item| item.get("id").and_then(Value::as_str) == Some(remote_name.as_str()))
                    });
                    if !listed {
                        tracing::info!(model = %remote_name, endpoint = %endpoint.url, "the remote does not list the model by this name; it may serve it under another");
                    }
                    vec![Capability::Completion, Capability::Tools]
                }
            })
        })
    }
}

/// Vectors of an `/api/embed` answer.
fn ollama_embeddings(body: &Value, n_inputs: usize) -> Result<(Vec<Vec<f32>>, usize), String> {
    let vectors: Vec<Vec<f32>> = body
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or("the remote's answer has no embeddings")?
        .iter()
        .map(|vector| {
            vector.as_array().and_then(|values| values.iter().map(|value| value.as_f64().map(|v| v as f32)).collect())
        })
        .collect::<Option<_>>()
        .ok_or("the remote sent an embedding that is not a list of numbers")?;
    if vectors.len() != n_inputs {
        return Err(format!("the remote sent {} embeddings for {n_inputs} inputs", vectors.len()));
    }
    Ok((vectors, decode::count(body, "prompt_eval_count")))
}
