//! The LSP face: initialize and settings, document sync, inline completion (the standard
//! request and modeld's own for clients without LSP 3.18), cancellation, and the commands
//! that record what the user did with a suggestion.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::{
    CodeAction, CodeActionKind, CodeActionOptions, CodeActionOrCommand, CodeActionParams, CodeActionProviderCapability,
    CodeActionResponse, Command, DidChangeConfigurationParams, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, ExecuteCommandOptions, ExecuteCommandParams, InitializeParams, InitializeResult,
    InitializedParams, MessageType, OneOf, Position, PositionEncodingKind, Range, ServerCapabilities, ServerInfo,
    TextDocumentIdentifier, TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions, TextEdit, Uri,
    WorkspaceEdit,
};
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::chat::{edit_for, first_code_block, messages, target_span, CodeContext, CodeTask, Replacement};
use crate::completion::{Completer, HoleRequest, Outcome};
use crate::daemon::{Daemon, DaemonError, Endpoint, Launcher};
use crate::documents::{Document, Documents};
use crate::index::{snippets_for, WorkspaceIndex};
use crate::prompt::{Snippet, CHARACTERS_PER_TOKEN};
use crate::settings::Settings;
use crate::stats::{self, Stats};
use crate::syntax::{completion_mode, CompletionMode, Language};
use crate::text::{offset_of, position_of, LinePosition, PositionEncoding, TextChange};

/// Commands the server executes (`workspace/executeCommand`).
pub const ACCEPT_COMMAND: &str = "modeld.acceptCompletion";
pub const PARTIAL_ACCEPT_COMMAND: &str = "modeld.partialAcceptCompletion";
pub const DISMISS_COMMAND: &str = "modeld.dismissCompletion";
pub const STATS_COMMAND: &str = "modeld.stats";
pub const EXPLAIN_COMMAND: &str = "modeld.explain";

/// modeld's streaming chat request for chat panels: partial answers arrive as `$/progress`
/// notifications on the request's `partialResultToken`.
pub const CHAT_METHOD: &str = "modeld/chat";

/// Most tokens of a chat answer or code action.
const CHAT_MAX_TOKENS: u32 = 1024;

/// Bytes of related definitions shown with the code of a chat or code action.
const CHAT_RELATED_BYTES: usize = 2000;

/// modeld's inline completion request for clients without LSP 3.18: same params and result.
pub const CUSTOM_COMPLETION_METHOD: &str = "modeld/inlineCompletion";

/// Suggestions remembered for accept and dismiss bookkeeping.
const REMEMBERED_SUGGESTIONS: usize = 512;

/// How the language server is started.
#[derive(Debug, Clone)]
pub struct LanguageServerConfig {
    /// The daemon's base URL (`OLLAMA_HOST`).
    pub base_url: String,
    /// How to start the daemon when none answers; `None` only reports it.
    pub launcher: Option<Launcher>,
    /// Where statistics are kept.
    pub cache_dir: PathBuf,
    pub version: String,
}

/// `textDocument/inlineCompletion` params (LSP 3.18), parsed by us so that the types crate's
/// churn does not reach them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InlineCompletionParams {
    pub(crate) text_document: TextDocumentIdentifier,
    pub(crate) position: Position,
    #[serde(default)]
    pub(crate) context: Option<InlineCompletionContext>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InlineCompletionContext {
    #[serde(default)]
    pub(crate) trigger_kind: Option<u8>,
    #[serde(default)]
    pub(crate) selected_completion_info: Option<SelectedCompletionInfo>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SelectedCompletionInfo {
    pub(crate) range: Range,
    pub(crate) text: String,
}

#[derive(Debug, Serialize, Default)]
pub(crate) struct InlineCompletionList {
    pub(crate) items: Vec<InlineCompletionItem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InlineCompletionItem {
    pub(crate) insert_text: String,
    pub(crate) range: Range,
    pub(crate) command: Command,
}

/// `modeld/chat` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatParams {
    pub(crate) text_document: TextDocumentIdentifier,
    /// The selection, or the cursor as an empty range; the enclosing function is used then.
    pub(crate) range: Range,
    /// The user's question.
    pub(crate) prompt: String,
    /// Diagnostic messages to mention.
    #[serde(default)]
    pub(crate) diagnostics: Vec<String>,
    #[serde(default)]
    pub(crate) partial_result_token: Option<Value>,
    /// Most tokens of the answer.
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
}

/// `modeld/chat` result: the whole answer, and an edit replacing the code asked about with
/// the answer's first code block, when it has one.
#[derive(Debug, Serialize)]
pub(crate) struct ChatResult {
    pub(crate) content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) edit: Option<WorkspaceEdit>,
}

/// What a code action (or the explain command) carries to its resolution: the code it is about.
#[derive(Debug, Serialize, Deserialize)]
struct ActionData {
    uri: String,
    range: Range,
    /// [`CodeTask::name`]; the explain command does not need it.
    #[serde(default)]
    task: String,
    #[serde(default)]
    diagnostics: Vec<String>,
}

/// Partial results of a request, on its `partialResultToken`.
enum PartialResult {}

impl Notification for PartialResult {
    type Params = Value;
    const METHOD: &'static str = "$/progress";
}

#[derive(Debug, Clone)]
struct ShownSuggestion {
    characters: usize,
}

struct Shared {
    config: LanguageServerConfig,
    completer: Completer,
    documents: Mutex<Documents>,
    encoding: Mutex<PositionEncoding>,
    settings: Mutex<Settings>,
    stats: Mutex<Stats>,
    /// The newest completion request per document; replacing the sender cancels the older.
    latest: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
    shown: Mutex<Vec<(u64, ShownSuggestion)>>,
    daemon_ready: tokio::sync::Mutex<bool>,
    workspace_root: Mutex<Option<String>>,
    reported_errors: Mutex<Vec<String>>,
    /// Definitions across the workspace; absent until initialized with a folder.
    index: Mutex<Option<Arc<WorkspaceIndex>>>,
    /// Keeps the index current while it lives.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Documents by most recent edit, newest first.
    recently_edited: Mutex<Vec<String>>,
}

/// Documents remembered as recently edited.
const RECENTLY_EDITED: usize = 8;

/// Whether a changed path is outside what the index covers: hidden, or ignored by the
/// workspace's `.gitignore`.
fn ignored_path(root: &std::path::Path, gitignore: &ignore::gitignore::Gitignore, path: &std::path::Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else { return true };
    if relative.components().any(|component| component.as_os_str().to_string_lossy().starts_with('.')) {
        return true;
    }
    gitignore.matched_path_or_any_parents(path, false).is_ignore()
}

/// Watches the workspace and re-indexes what changes.
fn watch_workspace(index: Arc<WorkspaceIndex>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let root = index.root().to_owned();
    let (gitignore, _) = ignore::gitignore::Gitignore::new(root.join(".gitignore"));
    let watched_root = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        for path in &event.paths {
            if ignored_path(&watched_root, &gitignore, path) {
                continue;
            }
            match event.kind {
                EventKind::Remove(_) => index.remove_file(path),
                EventKind::Create(_) | EventKind::Modify(_) => index.index_file(path),
                _ => {}
            }
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// The lines near `offset` that stay the same while the user types on its line: up to 20
/// lines above it and 5 below.
fn text_near_cursor(text: &str, offset: usize) -> String {
    let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |index| offset + index);
    let above: Vec<&str> = text[..line_start].lines().rev().take(20).collect();
    let below: Vec<&str> = text[line_end..].lines().skip(1).take(5).collect();
    let mut near: Vec<&str> = above.into_iter().rev().collect();
    near.extend(below);
    near.join("\n")
}

/// About a dozen lines around a document's latest edit.
fn around_edit(text: &str, offset: usize) -> String {
    let offset = text.floor_char_boundary(offset);
    let before: Vec<&str> = text[..offset].lines().rev().take(8).collect();
    let after: Vec<&str> = text[offset..].lines().take(4).collect();
    let mut lines: Vec<&str> = before.into_iter().rev().collect();
    lines.extend(after.into_iter().skip(1));
    lines.join("\n")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The language server.
pub(crate) struct Backend {
    client: Client,
    shared: Arc<Shared>,
}

/// Counts a request as cancelled if it is dropped before it finishes.
struct CancellationWatch {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for CancellationWatch {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.shared.stats).cancelled += 1;
            tracing::debug!("inline completion cancelled");
        }
    }
}

/// A hole prepared from a request, with where the suggestion goes.
struct Prepared {
    request: HoleRequest,
    range: Range,
    /// Text of the selected completion-menu item, which the suggestion extends.
    selected_text: String,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                decoded.push(byte);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The path shown to the model: relative to the workspace root when inside it.
fn display_path(uri: &str, root: Option<&str>) -> String {
    let path = percent_decode(uri.strip_prefix("file://").unwrap_or(uri));
    if let Some(root) = root {
        let root = percent_decode(root.strip_prefix("file://").unwrap_or(root));
        if let Some(relative) = path.strip_prefix(root.trim_end_matches('/')).and_then(|rest| rest.strip_prefix('/')) {
            return relative.to_owned();
        }
    }
    path.rsplit('/').next().unwrap_or(&path).to_owned()
}

/// Whether the user asked for a suggestion (trigger kind 1) rather than typing (2).
fn invoked(params: &InlineCompletionParams) -> bool {
    params.context.as_ref().and_then(|context| context.trigger_kind) == Some(1)
}

fn line_position(position: Position) -> LinePosition {
    LinePosition { line: position.line, column: position.character }
}

/// The byte offset of a client's position, or the invalid-params error that names what is
/// wrong with it.
fn offset_in(text: &str, position: Position, encoding: PositionEncoding) -> jsonrpc::Result<usize> {
    offset_of(text, line_position(position), encoding)
        .map_err(|error| jsonrpc::Error::invalid_params(error.to_string()))
}

fn lsp_position(position: LinePosition) -> Position {
    Position { line: position.line, character: position.column }
}

impl Backend {
    fn new(client: Client, config: LanguageServerConfig) -> Backend {
        let completer = Completer::new(Daemon::new(config.base_url.clone()));
        let shared = Arc::new(Shared {
            config,
            completer,
            documents: Mutex::new(Documents::default()),
            encoding: Mutex::new(PositionEncoding::Utf16),
            settings: Mutex::new(Settings::default()),
            stats: Mutex::new(Stats::default()),
            latest: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shown: Mutex::new(Vec::new()),
            daemon_ready: tokio::sync::Mutex::new(false),
            workspace_root: Mutex::new(None),
            reported_errors: Mutex::new(Vec::new()),
            index: Mutex::new(None),
            watcher: Mutex::new(None),
            recently_edited: Mutex::new(Vec::new()),
        });
        Backend { client, shared }
    }

    /// Indexes the workspace folder in the background, then watches it.
    fn start_indexing(&self) {
        let root = lock(&self.shared.workspace_root).clone();
        let Some(root) = root.as_deref().and_then(|root| root.strip_prefix("file://")).map(percent_decode) else {
            return;
        };
        let root = PathBuf::from(root);
        if !root.is_dir() {
            return;
        }
        let index = Arc::new(WorkspaceIndex::new(root));
        *lock(&self.shared.index) = Some(index.clone());
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let files = index.index_all();
            let size = index.size();
            tracing::info!(
                files,
                definitions = size.definitions,
                index_kib = size.estimated_bytes / 1024,
                seconds = started.elapsed().as_secs_f32(),
                "workspace indexed"
            );
            match watch_workspace(index) {
                Ok(watcher) => *lock(&shared.watcher) = Some(watcher),
                Err(error) => tracing::warn!(%error, "not watching the workspace; the index will not follow changes"),
            }
        });
    }

    fn settings(&self) -> Settings {
        lock(&self.shared.settings).clone()
    }

    fn apply_settings(&self, value: &Value) {
        let mut settings = lock(&self.shared.settings);
        let (updated, ignored) = settings.updated(value);
        if !ignored.is_empty() {
            tracing::warn!(?ignored, "settings ignored (unknown key or invalid value)");
        }
        if updated.model != settings.model {
            self.shared.completer.forget_models();
        }
        *settings = updated;
    }

    /// Writes the statistics file on a blocking thread, off the threads that serve requests.
    async fn save_stats(&self) {
        let stats = lock(&self.shared.stats).clone();
        let cache_dir = self.shared.config.cache_dir.clone();
        let saved = tokio::task::spawn_blocking(move || stats::save(&cache_dir, &stats)).await;
        if let Ok(Err(error)) = saved {
            tracing::debug!(%error, "could not save statistics");
        }
    }

    async fn log(&self, level: MessageType, message: String) {
        match level {
            MessageType::ERROR => tracing::error!("{message}"),
            MessageType::WARNING => tracing::warn!("{message}"),
            _ => tracing::info!("{message}"),
        }
        self.client.log_message(level, message).await;
    }

    /// Tells the user about an error once per distinct text (a missing model, a dead daemon),
    /// and logs it every time.
    async fn report(&self, error: &DaemonError) {
        let text = error.to_string();
        self.log(MessageType::ERROR, format!("inline completion: {text}")).await;
        let first_time = {
            let mut reported = lock(&self.shared.reported_errors);
            let first = !reported.contains(&text);
            if first {
                reported.push(text.clone());
            }
            first
        };
        if first_time {
            self.client.show_message(MessageType::ERROR, format!("modeld: {text}")).await;
        }
    }

    async fn ensure_daemon(&self) -> Result<(), DaemonError> {
        let mut ready = self.shared.daemon_ready.lock().await;
        if *ready {
            return Ok(());
        }
        self.shared.completer.daemon.ensure_running(self.shared.config.launcher.as_ref()).await?;
        *ready = true;
        Ok(())
    }

    fn prepare(&self, params: &InlineCompletionParams, settings: &Settings) -> jsonrpc::Result<Option<Prepared>> {
        let encoding = *lock(&self.shared.encoding);
        let uri = params.text_document.uri.as_str().to_owned();
        let root = lock(&self.shared.workspace_root).clone();
        let index = lock(&self.shared.index).clone();
        let recently_edited = lock(&self.shared.recently_edited).clone();
        let mut documents = lock(&self.shared.documents);
        // Snippets from other recently edited documents, taken before borrowing this one.
        let snippet_budget = settings.context_tokens * CHARACTERS_PER_TOKEN / 4;
        let mut recent_snippets = Vec::new();
        for other in recently_edited.iter().filter(|other| **other != uri).take(2) {
            if let Some(document) = documents.get(other) {
                let text = around_edit(&document.text, document.last_edit.unwrap_or(0));
                if !text.trim().is_empty() {
                    recent_snippets.push(Snippet { path: display_path(other, root.as_deref()), text });
                }
            }
        }
        let Some(document) = documents.get_mut(&uri) else {
            return Err(jsonrpc::Error::invalid_params(format!("unknown document {uri}: it was not opened")));
        };
        if !settings.language_enabled(&document.language_id) {
            return Ok(None);
        }
        let cursor = offset_in(&document.text, params.position, encoding)?;
        let language = document.language;
        let selected = params.context.as_ref().and_then(|context| context.selected_completion_info.as_ref());
        let (text, offset, range, selected_text, mode) = match selected {
            Some(selected) => {
                let start = offset_in(&document.text, selected.range.start, encoding)?;
                let end = offset_in(&document.text, selected.range.end, encoding)?.max(start);
                let text = format!("{}{}{}", &document.text[..start], selected.text, &document.text[end..]);
                let offset = start + selected.text.len();
                let tree = language.and_then(|language| language.parse(&text, None));
                let mode = completion_mode(&text, offset, tree.as_ref(), language);
                (text, offset, selected.range, selected.text.clone(), mode)
            }
            None => {
                let tree = document.tree().cloned();
                let mode = completion_mode(&document.text, cursor, tree.as_ref(), language);
                let at = lsp_position(position_of(&document.text, cursor, encoding));
                (document.text.clone(), cursor, Range { start: at, end: at }, String::new(), mode)
            }
        };
        let mode = match mode {
            CompletionMode::MultiLine if !settings.multiline => CompletionMode::SingleLine,
            // The user asked explicitly: finish the line even mid-line.
            CompletionMode::Nothing if invoked(params) => CompletionMode::SingleLine,
            CompletionMode::Nothing => return Ok(None),
            mode => mode,
        };
        let path = display_path(&uri, root.as_deref());
        // Definitions of names near the cursor first, then recent edits, within a quarter of
        // the budget; both stay put while the user types on one line.
        let mut snippets = match &index {
            Some(index) => snippets_for(index, &text_near_cursor(&text, offset), &path, snippet_budget),
            None => Vec::new(),
        };
        let mut used: usize = snippets.iter().map(|snippet| snippet.text.len() + snippet.path.len()).sum();
        for snippet in recent_snippets {
            let cost = snippet.text.len() + snippet.path.len();
            if used + cost <= snippet_budget {
                used += cost;
                snippets.push(snippet);
            }
        }
        let request = HoleRequest { uri, path, text, offset, language, mode, snippets };
        Ok(Some(Prepared { request, range, selected_text }))
    }

    fn item(&self, prepared: &Prepared, suggestion: String) -> InlineCompletionItem {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let insert_text = format!("{}{suggestion}", prepared.selected_text);
        {
            let mut shown = lock(&self.shared.shown);
            if shown.len() == REMEMBERED_SUGGESTIONS {
                shown.remove(0);
            }
            shown.push((id, ShownSuggestion { characters: suggestion.chars().count() }));
        }
        InlineCompletionItem {
            insert_text,
            range: prepared.range,
            command: Command {
                title: "Accept".into(),
                command: ACCEPT_COMMAND.into(),
                arguments: Some(vec![json!(id)]),
            },
        }
    }

    /// `textDocument/inlineCompletion` and `modeld/inlineCompletion`.
    pub(crate) async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> jsonrpc::Result<InlineCompletionList> {
        let started = Instant::now();
        lock(&self.shared.stats).requests += 1;
        let settings = self.settings();
        let prepared = match self.prepare(&params, &settings) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return Ok(InlineCompletionList::default()),
            Err(error) => {
                lock(&self.shared.stats).failed += 1;
                self.log(MessageType::WARNING, format!("inline completion: {}", error.message)).await;
                return Err(error);
            }
        };
        let uri = prepared.request.uri.clone();
        if let Some(outcome) = self.shared.completer.cached(&settings.model, &prepared.request) {
            // A newer request for the document supersedes any generation still running.
            lock(&self.shared.latest).remove(&uri);
            let mut stats = lock(&self.shared.stats);
            stats.cache_hits += 1;
            stats.record_latency(started.elapsed());
            return Ok(match outcome {
                Outcome::Suggestion { text, .. } => {
                    stats.suggestions += 1;
                    drop(stats);
                    InlineCompletionList { items: vec![self.item(&prepared, text)] }
                }
                Outcome::Nothing => InlineCompletionList::default(),
            });
        }

        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, superseded) = oneshot::channel();
        // Replacing the entry drops the older request's sender, which cancels it.
        lock(&self.shared.latest).insert(uri.clone(), (id, sender));
        let mut watch = CancellationWatch { shared: self.shared.clone(), finished: false };
        let work = async {
            if !settings.debounce.is_zero() && !invoked(&params) {
                tokio::time::sleep(settings.debounce).await;
            }
            self.ensure_daemon().await?;
            lock(&self.shared.stats).generations += 1;
            self.shared.completer.generate(&settings, &prepared.request).await
        };
        let result = tokio::select! {
            biased;
            _ = superseded => None,
            result = work => Some(result),
        };
        {
            let mut latest = lock(&self.shared.latest);
            if latest.get(&uri).is_some_and(|(current, _)| *current == id) {
                latest.remove(&uri);
            }
        }
        let Some(result) = result else {
            // Dropped by the watch: counted as cancelled.
            return Ok(InlineCompletionList::default());
        };
        watch.finished = true;
        let list = match result {
            Ok(Outcome::Suggestion { text, .. }) => {
                let mut stats = lock(&self.shared.stats);
                stats.suggestions += 1;
                stats.record_latency(started.elapsed());
                drop(stats);
                InlineCompletionList { items: vec![self.item(&prepared, text)] }
            }
            Ok(Outcome::Nothing) => {
                lock(&self.shared.stats).record_latency(started.elapsed());
                InlineCompletionList::default()
            }
            Err(error) => {
                lock(&self.shared.stats).failed += 1;
                if matches!(error, DaemonError::Unreachable(_)) {
                    *self.shared.daemon_ready.lock().await = false;
                }
                self.report(&error).await;
                InlineCompletionList::default()
            }
        };
        let requests = lock(&self.shared.stats).requests;
        if requests.is_multiple_of(20) {
            self.save_stats().await;
        }
        Ok(list)
    }

    /// The code a task or question is about, from the document as it is now.
    fn code_context(&self, uri: &str, range: Range, diagnostics: Vec<String>) -> jsonrpc::Result<(CodeContext, usize)> {
        let encoding = *lock(&self.shared.encoding);
        let root = lock(&self.shared.workspace_root).clone();
        let mut documents = lock(&self.shared.documents);
        let Some(document) = documents.get_mut(uri) else {
            return Err(jsonrpc::Error::invalid_params(format!("unknown document {uri}: it was not opened")));
        };
        let start = offset_in(&document.text, range.start, encoding)?;
        let end = offset_in(&document.text, range.end, encoding)?.max(start);
        let language = document.language;
        let tree = document.tree().cloned();
        let (start, end) = target_span(&document.text, tree.as_ref(), start, end);
        let path = display_path(uri, root.as_deref());
        let code = document.text[start..end].to_owned();
        // Definitions the code uses, from elsewhere in the workspace.
        let index = lock(&self.shared.index).clone();
        let related = match index {
            Some(index) => snippets_for(&index, &code, &path, CHAT_RELATED_BYTES),
            None => Vec::new(),
        };
        let context = CodeContext { path, language, start, end, code, diagnostics, related };
        Ok((context, document.text.len()))
    }

    /// A `WorkspaceEdit` for a replacement in `uri`, in the negotiated encoding.
    fn workspace_edit(&self, uri: &str, replacement: &Replacement) -> Option<WorkspaceEdit> {
        let encoding = *lock(&self.shared.encoding);
        let documents = lock(&self.shared.documents);
        let text = &documents.get(uri)?.text;
        let start = lsp_position(position_of(text, replacement.start, encoding));
        let end = lsp_position(position_of(text, replacement.end, encoding));
        let uri: Uri = uri.parse().ok()?;
        let edit = TextEdit { range: Range { start, end }, new_text: replacement.text.clone() };
        Some(WorkspaceEdit { changes: Some(HashMap::from([(uri, vec![edit])])), ..WorkspaceEdit::default() })
    }

    /// Asks the model, streaming each new piece of the answer to `token` as a partial result
    /// when there is one. Runs at chat priority: completions go first.
    async fn ask(
        &self,
        conversation: Vec<(String, String)>,
        token: Option<Value>,
        max_tokens: u32,
    ) -> Result<String, DaemonError> {
        self.ensure_daemon().await?;
        let settings = self.settings();
        let messages: Vec<Value> =
            conversation.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect();
        let body = json!({
            "model": settings.model,
            "messages": messages,
            "stream": true,
            "keep_alive": settings.keep_alive,
            "options": { "temperature": 0, "num_predict": max_tokens },
        });
        let (pieces, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
        let client = self.client.clone();
        let forward = async move {
            while let Some(piece) = received.recv().await {
                if let Some(token) = &token {
                    client
                        .send_notification::<PartialResult>(json!({ "token": token, "value": { "content": piece } }))
                        .await;
                }
            }
        };
        let mut sent = 0;
        let generate = self.shared.completer.daemon.generate(Endpoint::Chat, &body, false, move |text| {
            if text.len() > sent {
                let _ = pieces.send(text[sent..].to_owned());
                sent = text.len();
            }
            false
        });
        let (answer, ()) = tokio::join!(generate, forward);
        answer.map(|generated| generated.text)
    }

    /// [`Backend::ask`], with a failure reported to the user and turned into the request's
    /// error.
    async fn ask_or_report(
        &self,
        conversation: Vec<(String, String)>,
        token: Option<Value>,
        max_tokens: u32,
    ) -> jsonrpc::Result<String> {
        match self.ask(conversation, token, max_tokens).await {
            Ok(answer) => Ok(answer),
            Err(error) => {
                self.report(&error).await;
                Err(jsonrpc::Error { message: error.to_string().into(), ..jsonrpc::Error::internal_error() })
            }
        }
    }

    /// `modeld/chat`: a question about the code at a range, answered in a stream.
    pub(crate) async fn chat(&self, params: ChatParams) -> jsonrpc::Result<ChatResult> {
        let uri = params.text_document.uri.as_str().to_owned();
        let (context, _) = self.code_context(&uri, params.range, params.diagnostics)?;
        let conversation = messages(None, Some(&params.prompt), &context);
        let max_tokens = params.max_tokens.unwrap_or(CHAT_MAX_TOKENS).clamp(1, 8192);
        let content = self.ask_or_report(conversation, params.partial_result_token, max_tokens).await?;
        let edit = first_code_block(&content)
            .map(|code| Replacement { start: context.start, end: context.end, text: code })
            .and_then(|replacement| self.workspace_edit(&uri, &replacement));
        Ok(ChatResult { content, edit })
    }

    async fn record_outcome(&self, command: &str, arguments: &[Value]) -> jsonrpc::Result<Option<Value>> {
        let id = arguments.first().and_then(Value::as_u64);
        let suggestion = id.and_then(|id| {
            lock(&self.shared.shown).iter().find(|(shown, _)| *shown == id).map(|(_, suggestion)| suggestion.clone())
        });
        let Some(suggestion) = suggestion else {
            return Err(jsonrpc::Error::invalid_params(format!(
                "{command}: unknown suggestion id {:?}",
                arguments.first()
            )));
        };
        {
            let mut stats = lock(&self.shared.stats);
            match command {
                ACCEPT_COMMAND => {
                    stats.accepted += 1;
                    stats.accepted_characters += suggestion.characters as u64;
                }
                PARTIAL_ACCEPT_COMMAND => {
                    let accepted = arguments.get(1).and_then(Value::as_u64).unwrap_or(0);
                    stats.partially_accepted += 1;
                    stats.accepted_characters += accepted.min(suggestion.characters as u64);
                }
                _ => stats.dismissed += 1,
            }
        }
        self.save_stats().await;
        Ok(None)
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> jsonrpc::Result<InitializeResult> {
        let offers_utf8 = params
            .capabilities
            .general
            .as_ref()
            .and_then(|general| general.position_encodings.as_ref())
            .is_some_and(|encodings| encodings.contains(&PositionEncodingKind::UTF8));
        let encoding = if offers_utf8 { PositionEncoding::Utf8 } else { PositionEncoding::Utf16 };
        *lock(&self.shared.encoding) = encoding;
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|folders| folders.first())
            .map(|folder| folder.uri.as_str().to_owned())
            .or_else(|| params.root_uri.as_ref().map(|uri| uri.as_str().to_owned()));
        *lock(&self.shared.workspace_root) = root;
        if let Some(options) = &params.initialization_options {
            self.apply_settings(options);
        }
        let capabilities = ServerCapabilities {
            position_encoding: Some(match encoding {
                PositionEncoding::Utf8 => PositionEncodingKind::UTF8,
                PositionEncoding::Utf16 => PositionEncodingKind::UTF16,
            }),
            text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                ..TextDocumentSyncOptions::default()
            })),
            inline_completion_provider: Some(OneOf::Left(true)),
            code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                code_action_kinds: Some(vec![
                    CodeActionKind::QUICKFIX,
                    CodeActionKind::REFACTOR_REWRITE,
                    CodeActionKind::SOURCE,
                    CodeActionKind::EMPTY,
                ]),
                resolve_provider: Some(true),
                ..CodeActionOptions::default()
            })),
            execute_command_provider: Some(ExecuteCommandOptions {
                commands: [ACCEPT_COMMAND, PARTIAL_ACCEPT_COMMAND, DISMISS_COMMAND, STATS_COMMAND, EXPLAIN_COMMAND]
                    .iter()
                    .map(|command| (*command).to_owned())
                    .collect(),
                ..ExecuteCommandOptions::default()
            }),
            ..ServerCapabilities::default()
        };
        Ok(InitializeResult {
            capabilities,
            server_info: Some(ServerInfo { name: "modeld".into(), version: Some(self.shared.config.version.clone()) }),
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let settings = self.settings();
        tracing::info!(model = %settings.model, daemon = %self.shared.completer.daemon.base_url(), "language server ready");
        self.start_indexing();
        // Start (or find) the daemon and load the model now, so the first completion waits
        // for neither. A failed load is only logged: the first completion reports it.
        let backend_shared = self.shared.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let backend = Backend { client, shared: backend_shared };
            if let Err(error) = backend.ensure_daemon().await {
                backend.report(&error).await;
                return;
            }
            match backend.shared.completer.daemon.load(&settings.model, &settings.keep_alive).await {
                Ok(()) => tracing::info!(model = %settings.model, "model loaded"),
                Err(error) => tracing::info!(%error, "could not load the model ahead of the first completion"),
            }
        });
    }

    async fn shutdown(&self) -> jsonrpc::Result<()> {
        self.save_stats().await;
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let item = params.text_document;
        let document = Document::new(item.uri.as_str().to_owned(), item.text, item.version, item.language_id);
        let result = lock(&self.shared.documents).open(document);
        if let Err(error) = result {
            self.log(MessageType::WARNING, format!("didOpen: {error}")).await;
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let encoding = *lock(&self.shared.encoding);
        let changes: Vec<TextChange> = params
            .content_changes
            .into_iter()
            .map(|change| TextChange {
                range: change.range.map(|range| (line_position(range.start), line_position(range.end))),
                text: change.text,
            })
            .collect();
        let uri = params.text_document.uri.as_str().to_owned();
        let result = lock(&self.shared.documents).change(&uri, params.text_document.version, &changes, encoding);
        {
            let mut recent = lock(&self.shared.recently_edited);
            recent.retain(|other| *other != uri);
            recent.insert(0, uri.clone());
            recent.truncate(RECENTLY_EDITED);
        }
        if let Err(error) = result {
            self.log(MessageType::WARNING, format!("didChange: {error}")).await;
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri.as_str().to_owned();
        lock(&self.shared.documents).close(&uri);
        lock(&self.shared.latest).remove(&uri);
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        self.apply_settings(&params.settings);
    }

    async fn code_action(&self, params: CodeActionParams) -> jsonrpc::Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri.as_str().to_owned();
        if lock(&self.shared.documents).get(&uri).is_none() {
            return Ok(None);
        }
        let diagnostics: Vec<String> =
            params.context.diagnostics.iter().map(|diagnostic| diagnostic.message.clone()).collect();
        let selected = params.range.start != params.range.end;
        let mut actions = Vec::new();
        for &task in CodeTask::ALL {
            if task == CodeTask::Fix && diagnostics.is_empty() && !selected {
                continue;
            }
            let data = ActionData {
                uri: uri.clone(),
                range: params.range,
                task: task.name().to_owned(),
                diagnostics: diagnostics.clone(),
            };
            let data = serde_json::to_value(data).unwrap_or(Value::Null);
            let action = if task == CodeTask::Explain {
                CodeAction {
                    title: task.title().into(),
                    kind: Some(CodeActionKind::EMPTY),
                    command: Some(Command {
                        title: task.title().into(),
                        command: EXPLAIN_COMMAND.into(),
                        arguments: Some(vec![data]),
                    }),
                    ..CodeAction::default()
                }
            } else {
                CodeAction {
                    title: task.title().into(),
                    kind: Some(match task {
                        CodeTask::Fix => CodeActionKind::QUICKFIX,
                        CodeTask::Document => CodeActionKind::REFACTOR_REWRITE,
                        _ => CodeActionKind::SOURCE,
                    }),
                    diagnostics: (task == CodeTask::Fix && !params.context.diagnostics.is_empty())
                        .then(|| params.context.diagnostics.clone()),
                    data: Some(data),
                    ..CodeAction::default()
                }
            };
            actions.push(CodeActionOrCommand::CodeAction(action));
        }
        Ok(Some(actions))
    }

    async fn code_action_resolve(&self, mut action: CodeAction) -> jsonrpc::Result<CodeAction> {
        let Some(data) = action.data.clone() else { return Ok(action) };
        let data = serde_json::from_value::<ActionData>(data).ok();
        let Some((task, data)) = data.and_then(|data| Some((CodeTask::from_name(&data.task)?, data))) else {
            return Err(jsonrpc::Error::invalid_params("code action data is not modeld's"));
        };
        let uri = data.uri;
        let (context, document_length) = self.code_context(&uri, data.range, data.diagnostics)?;
        let answer = self.ask_or_report(messages(Some(task), None, &context), None, CHAT_MAX_TOKENS).await?;
        match edit_for(task, &context, &answer, document_length).and_then(|edit| self.workspace_edit(&uri, &edit)) {
            Some(edit) => action.edit = Some(edit),
            None => {
                let message = format!("{}: the model's answer had no code to apply", task.title());
                self.log(MessageType::WARNING, message.clone()).await;
                self.client.show_message(MessageType::WARNING, message).await;
            }
        }
        Ok(action)
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> jsonrpc::Result<Option<Value>> {
        match params.command.as_str() {
            EXPLAIN_COMMAND => {
                let data = params.arguments.first().cloned().unwrap_or(Value::Null);
                let Ok(data) = serde_json::from_value::<ActionData>(data) else {
                    return Err(jsonrpc::Error::invalid_params("modeld.explain takes {uri, range}"));
                };
                let (context, _) = self.code_context(&data.uri, data.range, Vec::new())?;
                let answer = self
                    .ask_or_report(messages(Some(CodeTask::Explain), None, &context), None, CHAT_MAX_TOKENS)
                    .await?;
                self.client.show_message(MessageType::INFO, answer.clone()).await;
                Ok(Some(json!({ "content": answer })))
            }
            ACCEPT_COMMAND | PARTIAL_ACCEPT_COMMAND | DISMISS_COMMAND => {
                self.record_outcome(&params.command, &params.arguments).await
            }
            STATS_COMMAND => {
                let stats = lock(&self.shared.stats).clone();
                let percentiles = stats.percentiles();
                let mut value = serde_json::to_value(&stats).unwrap_or(Value::Null);
                if let Some(object) = value.as_object_mut() {
                    object.remove("latenciesMs");
                    object.insert("latencyP50Ms".into(), json!(percentiles.map(|p| p.p50_ms)));
                    object.insert("latencyP95Ms".into(), json!(percentiles.map(|p| p.p95_ms)));
                }
                Ok(Some(value))
            }
            other => Err(jsonrpc::Error::invalid_params(format!("unknown command {other}"))),
        }
    }
}

/// Serves the language server on stdin and stdout until the client exits.
pub async fn serve_stdio(config: LanguageServerConfig) {
    let (service, socket) = LspService::build(|client| Backend::new(client, config))
        .custom_method("textDocument/inlineCompletion", Backend::inline_completion)
        .custom_method(CUSTOM_COMPLETION_METHOD, Backend::inline_completion)
        .custom_method(CHAT_METHOD, Backend::chat)
        .finish();
    // Completions wait on the model; a low limit would hold document changes (and the newer
    // requests that cancel them) behind them.
    Server::new(tokio::io::stdin(), tokio::io::stdout(), socket).concurrency_level(64).serve(service).await;
}

/// Languages with a grammar, for `--help` texts and docs.
pub fn supported_languages() -> Vec<&'static str> {
    Language::ALL.iter().map(|language| language.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_shown_to_the_model_are_relative_to_the_workspace() {
        assert_eq!(display_path("file:///home/u/proj/src/main.rs", Some("file:///home/u/proj")), "src/main.rs");
        assert_eq!(display_path("file:///home/u/proj/a%20b.py", Some("file:///home/u/proj/")), "a b.py");
        assert_eq!(display_path("file:///elsewhere/x.go", Some("file:///home/u/proj")), "x.go");
        assert_eq!(display_path("untitled:Untitled-1", None), "untitled:Untitled-1");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
