//! The HTTP side of remote models: replicas' state, requests, retries and health probes.

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

use crate::decode::{LineSplitter, StreamDecoder, Timing, EARLY_END, READ_FAILURE};
use crate::routing::{PrefixMemory, ReplicaView};
use crate::{decode, ollama, openai, routing, schema};

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

/// Settings of the remote client, read once where the daemon starts.
#[derive(Clone)]
pub struct RemoteSettings {
    /// Reads an API key by its environment variable's name.
    pub keys: KeyLookup,
    /// Requests that may wait, per model, while every replica serves its `parallel` requests
    /// (`OLLAMA_MAX_QUEUE`); more are refused as busy.
    pub max_queue: usize,
    /// Send a prompt to the replica that has its prefix cached (`MODELD_REMOTE_AFFINITY`, on
    /// by default); off: the least loaded replica only.
    pub prefix_affinity: bool,
}

/// Remote models' replicas and the HTTP client that reaches them.
#[derive(Clone)]
pub struct RemoteClient {
    shared: Arc<Shared>,
    settings: RemoteSettings,
    /// Routing state per model (its local name), rebuilt when its endpoints change.
    models: Arc<Mutex<HashMap<String, Arc<ReplicaSet>>>>,
    rotation: Arc<AtomicUsize>,
}

/// What requests and health probes share.
struct Shared {
    http: reqwest::Client,
    keys: KeyLookup,
}

impl Shared {
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

    /// Whether the replica answers its API's cheapest request.
    async fn is_up(&self, endpoint: &RemoteEndpoint) -> bool {
        let path = match endpoint.api {
            RemoteApi::Ollama => "/api/version",
            RemoteApi::OpenAi => "/v1/models",
        };
        let Ok(request) = self.request(endpoint, reqwest::Method::GET, path) else { return false };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, request.send()).await,
            Ok(Ok(response)) if response.status().is_success()
        )
    }
}

/// The replicas of one model.
struct ReplicaSet {
    endpoints: Vec<RemoteEndpoint>,
    state: Mutex<SetState>,
    /// Signalled when a replica finishes a request or comes back.
    freed: tokio::sync::Notify,
    shared: Arc<Shared>,
}

struct SetState {
    replicas: Vec<ReplicaState>,
    /// Requests waiting for a replica with room.
    waiting: usize,
}

#[derive(Default)]
struct ReplicaState {
    outstanding: usize,
    /// Failed; a probe brings it back.
    down: bool,
    backoff: Duration,
    probing: bool,
    prefixes: PrefixMemory,
}

/// A request's hold on a replica: counted as outstanding until dropped.
struct ReplicaHold {
    set: Arc<ReplicaSet>,
    index: usize,
}

impl Drop for ReplicaHold {
    fn drop(&mut self) {
        if let Some(replica) = self.set.state.lock().unwrap().replicas.get_mut(self.index) {
            replica.outstanding = replica.outstanding.saturating_sub(1);
        }
        self.set.freed.notify_waiters();
    }
}

/// A request counted as waiting until dropped.
struct WaitSlot {
    set: Arc<ReplicaSet>,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut state = self.set.state.lock().unwrap();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// What a pick among the replicas came to.
enum Pick {
    Taken(ReplicaHold),
    /// Every replica left to try serves as many requests as it may.
    AllFull,
    /// Every replica was tried.
    NoneLeft,
}

impl ReplicaSet {
    fn new(endpoints: Vec<RemoteEndpoint>, shared: Arc<Shared>) -> ReplicaSet {
        let replicas = endpoints.iter().map(|_| ReplicaState::default()).collect();
        ReplicaSet {
            endpoints,
            state: Mutex::new(SetState { replicas, waiting: 0 }),
            freed: tokio::sync::Notify::new(),
            shared,
        }
    }

    fn pick(self: &Arc<Self>, state: &mut SetState, blocks: &[u64], tried: &[usize], rotation: usize) -> Pick {
        let views: Vec<ReplicaView> = state
            .replicas
            .iter()
            .zip(&self.endpoints)
            .enumerate()
            .map(|(index, (replica, endpoint))| ReplicaView {
                healthy: !replica.down,
                outstanding: replica.outstanding,
                matched_blocks: replica.prefixes.matched(blocks),
                tried: tried.contains(&index),
                full: endpoint.parallel.is_some_and(|parallel| replica.outstanding >= parallel as usize),
            })
            .collect();
        match routing::choose_replica(&views, rotation) {
            Some(index) => {
                let replica = &mut state.replicas[index];
                replica.outstanding += 1;
                replica.prefixes.remember(blocks);
                tracing::debug!(endpoint = %self.endpoints[index].url, matched_blocks = views[index].matched_blocks,
                    outstanding = replica.outstanding, "remote replica chosen");
                Pick::Taken(ReplicaHold { set: self.clone(), index })
            }
            None if views.iter().any(|view| !view.tried) => Pick::AllFull,
            None => Pick::NoneLeft,
        }
    }

    /// Holds a replica for a prompt with these blocks, waiting while every replica left is
    /// full (at most `max_queue` requests wait; more are busy). `None` when every replica was
    /// tried.
    async fn acquire(
        self: &Arc<Self>,
        blocks: &[u64],
        tried: &[usize],
        rotation: usize,
        max_queue: usize,
    ) -> Result<Option<ReplicaHold>, ServingError> {
        let mut slot: Option<WaitSlot> = None;
        loop {
            let mut freed = std::pin::pin!(self.freed.notified());
            freed.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap();
                match self.pick(&mut state, blocks, tried, rotation) {
                    Pick::Taken(hold) => return Ok(Some(hold)),
                    Pick::NoneLeft => return Ok(None),
                    Pick::AllFull if slot.is_none() => {
                        if state.waiting >= max_queue {
                            return Err(ServingError::Busy(
                                "server busy, please try again.  maximum pending requests exceeded".into(),
                            ));
                        }
                        state.waiting += 1;
                        slot = Some(WaitSlot { set: self.clone() });
                    }
                    Pick::AllFull => {}
                }
            }
            freed.await;
        }
    }

    /// Marks a replica down: it gets no requests until a probe (after a backoff that doubles,
    /// from 1 s to 60 s) finds it answering, or until every replica is down.
    fn mark_down(self: &Arc<Self>, index: usize, reason: &str) {
        let mut state = self.state.lock().unwrap();
        let replica = &mut state.replicas[index];
        replica.down = true;
        replica.backoff = (replica.backoff * 2).clamp(FIRST_BACKOFF, LONGEST_BACKOFF);
        // Whatever it cached may be gone with it.
        replica.prefixes.clear();
        tracing::warn!(endpoint = %self.endpoints[index].url, backoff = ?replica.backoff, %reason, "remote replica marked down");
        if replica.probing {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        replica.probing = true;
        let set = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(backoff) = set.upgrade().map(|set| set.state.lock().unwrap().replicas[index].backoff) else {
                    return;
                };
                tokio::time::sleep(backoff).await;
                // A model re-created with other endpoints drops its old set: stop probing.
                let Some(alive) = set.upgrade() else { return };
                {
                    // A request that reached it in the meantime brought it back.
                    let mut state = alive.state.lock().unwrap();
                    if !state.replicas[index].down {
                        state.replicas[index].probing = false;
                        return;
                    }
                }
                if alive.shared.is_up(&alive.endpoints[index]).await {
                    alive.mark_up(index);
                    return;
                }
                let mut state = alive.state.lock().unwrap();
                let replica = &mut state.replicas[index];
                replica.backoff = (replica.backoff * 2).clamp(FIRST_BACKOFF, LONGEST_BACKOFF);
            }
        });
    }

    fn mark_up(&self, index: usize) {
        {
            let mut state = self.state.lock().unwrap();
            let replica = &mut state.replicas[index];
            if replica.down {
                tracing::info!(endpoint = %self.endpoints[index].url, "remote replica is back");
            }
            replica.down = false;
            replica.probing = false;
            replica.backoff = Duration::ZERO;
        }
        self.freed.notify_waiters();
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
    /// A client with these settings.
    pub fn new(settings: RemoteSettings) -> RemoteClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A key goes to the endpoint that names it and nowhere else: no redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let shared = Arc::new(Shared { http, keys: settings.keys.clone() });
        RemoteClient { shared, settings, models: Arc::default(), rotation: Arc::default() }
    }

    fn replica_set(&self, model: &RemoteModel) -> Arc<ReplicaSet> {
        let mut models = self.models.lock().unwrap();
        let current = models.get(&model.local_name).filter(|set| set.endpoints == model.endpoints);
        match current {
            Some(set) => set.clone(),
            None => {
                let set = Arc::new(ReplicaSet::new(model.endpoints.clone(), self.shared.clone()));
                models.insert(model.local_name.clone(), set.clone());
                set
            }
        }
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
        let blocks = if self.settings.prefix_affinity { routing::prefix_blocks(&affinity_text) } else { Vec::new() };
        let mut tried = Vec::new();
        let mut last_failure = String::new();
        // One try, and one more on another replica.
        for _ in 0..2.min(set.endpoints.len()) {
            let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
            let Some(hold) = set.acquire(&blocks, &tried, rotation, self.settings.max_queue).await? else { break };
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
        let request =
            self.shared.request(endpoint, reqwest::Method::POST, outgoing.path).map_err(AttemptError::Refused)?;
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
            let Some(hold) = set.acquire(&[], &tried, rotation, self.settings.max_queue).await? else { break };
            tried.push(hold.index);
            let endpoint = set.endpoints[hold.index].clone();
            let call = describe_call(&endpoint)?;
            let mut request = self.shared.request(&endpoint, call.method, call.path)?;
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

/// Whether [`Upstream::next_events`] failed because the connection, not the remote, did.
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

impl RemoteClient {
    async fn chat_events(&self, model: RemoteModel, input: ChatInput) -> Result<EventStream, ServingError> {
        let affinity = chat_affinity_text(&input);
        let remote_name = model.remote_name.clone();
        self.stream(model, affinity, move |api| match api {
            RemoteApi::Ollama => Outgoing { path: "/api/chat", body: ollama::chat_body(&remote_name, &input) },
            RemoteApi::OpenAi => {
                Outgoing { path: "/v1/chat/completions", body: openai::chat_body(&remote_name, &input) }
            }
        })
        .await
    }

    async fn generate_events(&self, model: RemoteModel, input: GenerateInput) -> Result<EventStream, ServingError> {
        let affinity = format!("{}\u{1e}{}", input.system.as_deref().unwrap_or_default(), input.prompt);
        let remote_name = model.remote_name.clone();
        self.stream(model, affinity, move |api| match api {
            RemoteApi::Ollama => Outgoing { path: "/api/generate", body: ollama::generate_body(&remote_name, &input) },
            RemoteApi::OpenAi => match openai::completion(&remote_name, &input) {
                openai::CompletionRoute::Chat(body) => Outgoing { path: "/v1/chat/completions", body },
                openai::CompletionRoute::Raw(body) => Outgoing { path: "/v1/completions", body },
                openai::CompletionRoute::Infill(body) => Outgoing { path: "/infill", body },
            },
        })
        .await
    }
}

/// The most text gathered from a structured answer before it is checked.
const MAX_STRUCTURED_BYTES: usize = 16 << 20;

/// What a gathered structured answer came to.
enum Verdict {
    /// Matches the schema, or is something to pass on as it is (calls, a failure, an answer
    /// cut at the length limit, as Ollama passes those on).
    PassOn,
    /// Text outside the schema: why.
    Mismatch(String),
}

/// Gathers a whole answer (bounded).
async fn gather(mut events: EventStream) -> Vec<Event> {
    use futures_util::StreamExt;
    let (mut gathered, mut bytes) = (Vec::new(), 0);
    while let Some(event) = events.next().await {
        if let Event::Content(text) | Event::Thinking(text) = &event {
            bytes += text.len();
        }
        let last = matches!(event, Event::Done(_) | Event::Failed(_));
        gathered.push(event);
        if bytes > MAX_STRUCTURED_BYTES {
            gathered
                .push(Event::Failed(format!("the remote's structured answer is over {MAX_STRUCTURED_BYTES} bytes")));
            break;
        }
        if last {
            break;
        }
    }
    gathered
}

fn verdict(events: &[Event], schema: &Value) -> Verdict {
    let passes_on = events.iter().any(|event| match event {
        Event::ToolCalls(_) | Event::Failed(_) => true,
        Event::Done(finished) => finished.done_reason == serving::DoneReason::Length,
        _ => false,
    });
    if passes_on {
        return Verdict::PassOn;
    }
    let text: String = events
        .iter()
        .filter_map(|event| if let Event::Content(text) = event { Some(text.as_str()) } else { None })
        .collect();
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(value) => match schema::check(&value, schema) {
            Ok(()) => Verdict::PassOn,
            Err(reason) => Verdict::Mismatch(reason),
        },
        Err(error) => Verdict::Mismatch(format!("not JSON ({error})")),
    }
}

/// The instruction a remote that does not enforce a schema gets instead.
fn schema_instruction(schema: &Value) -> String {
    format!("Answer with JSON only, no other text, matching this JSON schema: {schema}")
}

/// Structured output from a remote that may not enforce it: the answer is gathered whole and
/// checked against the schema. A remote that refused the constraint (400 or 422), or answered
/// outside the schema, is asked once more without the constraint and with the schema in the
/// prompt; an answer still outside it is an error.
async fn checked<F>(
    schema: Value,
    first: Result<EventStream, ServingError>,
    again: F,
) -> Result<EventStream, ServingError>
where
    F: std::future::Future<Output = Result<EventStream, ServingError>>,
{
    let why = match first {
        Ok(events) => {
            let events = gather(events).await;
            match verdict(&events, &schema) {
                Verdict::PassOn => return Ok(Box::pin(futures_util::stream::iter(events))),
                Verdict::Mismatch(reason) => reason,
            }
        }
        Err(ServingError::Remote { status: 400 | 422, message }) => {
            format!("the remote refused the format ({message})")
        }
        Err(error) => return Err(error),
    };
    tracing::info!(%why, "asking the remote again for an answer in the requested format");
    let events = gather(again.await?).await;
    match verdict(&events, &schema) {
        Verdict::PassOn => Ok(Box::pin(futures_util::stream::iter(events))),
        Verdict::Mismatch(reason) => Err(ServingError::Remote {
            status: 502,
            message: format!("the remote's answer does not match the requested format: {reason}"),
        }),
    }
}

/// A chat asked again without the constraint, the schema in its system prompt.
fn chat_with_instruction(mut input: ChatInput, schema: &Value) -> ChatInput {
    input.output_schema = None;
    let instruction = schema_instruction(schema);
    match input.messages.first_mut().filter(|first| first.role.eq_ignore_ascii_case("system")) {
        Some(system) => system.content = format!("{}\n\n{instruction}", system.content),
        None => input.messages.insert(0, serving::ChatMessage::new("system", instruction)),
    }
    input
}

/// A completion asked again without the constraint, the schema in its system prompt (a raw
/// prompt is sent as it is).
fn generate_with_instruction(mut input: GenerateInput, schema: &Value) -> GenerateInput {
    input.output_schema = None;
    if !input.raw {
        let instruction = schema_instruction(schema);
        input.system = Some(match input.system.take() {
            Some(system) => format!("{system}\n\n{instruction}"),
            None => instruction,
        });
    }
    input
}

impl serving::RemoteModels for RemoteClient {
    fn chat(&self, model: RemoteModel, input: ChatInput) -> RemoteFuture<EventStream> {
        let client = self.clone();
        Box::pin(async move {
            let Some(schema) = input.output_schema.clone() else { return client.chat_events(model, input).await };
            let first = client.chat_events(model.clone(), input.clone()).await;
            let again = client.chat_events(model, chat_with_instruction(input, &schema));
            checked(schema, first, again).await
        })
    }

    fn generate(&self, model: RemoteModel, input: GenerateInput) -> RemoteFuture<EventStream> {
        let client = self.clone();
        Box::pin(async move {
            let Some(schema) = input.output_schema.clone() else { return client.generate_events(model, input).await };
            let first = client.generate_events(model.clone(), input.clone()).await;
            let again = client.generate_events(model, generate_with_instruction(input, &schema));
            checked(schema, first, again).await
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
