//! One inline completion from start to end: the hole at the cursor, the cache, the prompt,
//! the daemon's streamed answer and its post-processing.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::cache::CompletionCache;
use crate::daemon::{Daemon, DaemonError, Endpoint, ModelInfo};
use crate::postprocess::{is_settled, postprocess, Hole};
use crate::prompt::{build, window, Prompt, PromptInput, Snippet, CHARACTERS_PER_TOKEN, CODE_FENCE};
use crate::settings::Settings;
use crate::syntax::{CompletionMode, Language};

/// Markers a model may still write that never belong in code.
const SPECIAL_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|im_start|>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<file_sep>",
    "<|file_sep|>",
    "<|file_separator|>",
    "<EOT>",
    "<CURSOR>",
];

/// A hole to fill, with the text it was cut from.
#[derive(Debug, Clone)]
pub(crate) struct HoleRequest {
    pub(crate) uri: String,
    /// The file name shown to the model.
    pub(crate) path: String,
    pub(crate) text: String,
    /// Byte offset of the cursor in `text`.
    pub(crate) offset: usize,
    pub(crate) language: Option<Language>,
    pub(crate) mode: CompletionMode,
    pub(crate) snippets: Vec<Snippet>,
}

/// What a completion came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A suggestion to show.
    Suggestion { text: String, from_cache: bool },
    /// Nothing useful (the model's answer was empty after post-processing).
    Nothing,
}

/// The shared state completions use: the daemon, what each model can do, and the cache.
#[derive(Debug)]
pub(crate) struct Completer {
    pub(crate) daemon: Daemon,
    models: Mutex<HashMap<String, ModelInfo>>,
    pub(crate) cache: Mutex<CompletionCache>,
}

impl Completer {
    pub(crate) fn new(daemon: Daemon) -> Completer {
        Completer { daemon, models: Mutex::new(HashMap::new()), cache: Mutex::new(CompletionCache::new(128)) }
    }

    /// The answer from the cache, when the user typed through a suggestion or asks again at
    /// the same place.
    pub(crate) fn cached(&self, model: &str, request: &HoleRequest) -> Option<Outcome> {
        let (prefix, suffix) = request.text.split_at(request.offset);
        let remainder = self.cache.lock().ok()?.lookup(model, &request.uri, prefix, suffix)?;
        let hole = Hole { prefix, suffix, mode: request.mode, language: request.language };
        Some(match postprocess(&remainder, &hole, &[]) {
            Some(text) => Outcome::Suggestion { text, from_cache: true },
            None => Outcome::Nothing,
        })
    }

    async fn model_info(&self, model: &str) -> Result<ModelInfo, DaemonError> {
        if let Some(info) = self.models.lock().ok().and_then(|models| models.get(model).cloned()) {
            return Ok(info);
        }
        let info = self.daemon.model_info(model).await?;
        if let Ok(mut models) = self.models.lock() {
            models.insert(model.to_owned(), info.clone());
        }
        Ok(info)
    }

    /// Forgets what it knew about models (after a settings change or a daemon restart).
    pub(crate) fn forget_models(&self) {
        if let Ok(mut models) = self.models.lock() {
            models.clear();
        }
    }

    /// Asks the model for the middle of `request`, post-processes it and caches the result.
    /// Dropping the returned future drops the stream, which stops the generation.
    pub(crate) async fn generate(&self, settings: &Settings, request: &HoleRequest) -> Result<Outcome, DaemonError> {
        let info = self.model_info(&settings.model).await?;
        let snippet_tokens: usize = request
            .snippets
            .iter()
            .map(|snippet| (snippet.text.len() + snippet.path.len()) / CHARACTERS_PER_TOKEN + 4)
            .sum();
        let window =
            window(&request.text, request.offset, settings.context_tokens.saturating_sub(snippet_tokens).max(128));
        let input = PromptInput {
            window: window.clone(),
            path: &request.path,
            language: request.language,
            mode: request.mode,
            snippets: &request.snippets,
        };
        if !request.snippets.is_empty() {
            let sources: Vec<&str> = request.snippets.iter().map(|snippet| snippet.path.as_str()).collect();
            tracing::debug!(?sources, "context snippets");
        }
        let prompt = build(&input, info.fills_in_the_middle);
        let body = request_body(settings, &prompt, request.mode);
        let hole =
            Hole { prefix: window.prefix, suffix: window.suffix, mode: request.mode, language: request.language };
        let mut generated = match prompt {
            Prompt::FillInTheMiddle { .. } => {
                self.daemon.generate(Endpoint::Generate, &body, true, |text| is_settled(text, &hole)).await?
            }
            Prompt::Chat { held_back, .. } => {
                // The answer continues the prefilled code block; its closing fence ends it.
                let settled =
                    |text: &str| text.contains(CODE_FENCE) || is_settled(without_held_back(text, &held_back), &hole);
                let mut generated = self.daemon.generate(Endpoint::Chat, &body, true, settled).await?;
                if let Some(fence) = generated.text.find(CODE_FENCE) {
                    generated.text.truncate(fence);
                }
                generated.text = without_held_back(&generated.text, &held_back).to_owned();
                generated
            }
        };
        generated.text = generated.text.replace("\r\n", "\n");
        tracing::debug!(raw = %generated.text, stopped_early = generated.stopped_early, "model answer");
        let suggestion = postprocess(&generated.text, &hole, SPECIAL_TOKENS);
        let (prefix, suffix) = request.text.split_at(request.offset);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(&settings.model, &request.uri, prefix, suffix, suggestion.as_deref().unwrap_or_default());
        }
        Ok(match suggestion {
            Some(text) => Outcome::Suggestion { text, from_cache: false },
            None => Outcome::Nothing,
        })
    }
}

/// The answer to a prefill without the whitespace held back from it (the model usually
/// writes it again, or a space of it with the next word).
fn without_held_back<'t>(text: &'t str, held_back: &str) -> &'t str {
    if let Some(rest) = text.strip_prefix(held_back) {
        return rest;
    }
    let mut rest = text;
    for character in held_back.chars() {
        match rest.strip_prefix(character) {
            Some(shorter) => rest = shorter,
            None => break,
        }
    }
    rest
}

/// The daemon request body for a prompt.
pub(crate) fn request_body(settings: &Settings, prompt: &Prompt, mode: CompletionMode) -> Value {
    let num_predict = match mode {
        CompletionMode::MultiLine => settings.max_tokens_multi_line,
        _ => settings.max_tokens_single_line,
    };
    let mut options = json!({ "temperature": 0, "num_predict": num_predict });
    match prompt {
        Prompt::FillInTheMiddle { prefix, suffix } => {
            if mode == CompletionMode::SingleLine {
                options["stop"] = json!(["\n"]);
            }
            json!({
                "model": settings.model,
                "prompt": prefix,
                // An empty suffix would make the request a plain (non-FIM) generation.
                "suffix": if suffix.is_empty() { "\n" } else { suffix.as_str() },
                "stream": true,
                "keep_alive": settings.keep_alive,
                "options": options,
            })
        }
        Prompt::Chat { system, user, prefill, .. } => {
            // Stop sequences end the generation in the daemon as a finished one (its work stays
            // in the prefix cache for the next keystroke's request).
            options["stop"] = match mode {
                CompletionMode::SingleLine => json!([CODE_FENCE, "\n"]),
                _ => json!([CODE_FENCE, "\n\n\n"]),
            };
            json!({
            "model": settings.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": user },
                { "role": "assistant", "content": prefill },
            ],
            "stream": true,
            "keep_alive": settings.keep_alive,
            "options": options,
            })
        }
    }
}
