//! How each model family writes tool calls, and how a finished stretch of such text becomes
//! calls. The incremental side (finding where a stretch starts and ends in streamed output)
//! lives in `output`.

use serde_json::{Map, Value};

use crate::json_scan::balanced_end;

/// A tool call read from model output.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolCall {
    /// The function's name.
    pub name: String,
    /// Its arguments, key order as the model wrote them.
    pub arguments: Map<String, Value>,
}

/// A family's tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, repeated for several calls
    /// (Hermes, Qwen 2.5, Qwen 3, SmolLM3 and many fine-tunes).
    Hermes,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`, or the newer
    /// `[TOOL_CALLS]name[ARGS]{…}` (Mistral, Mixtral, Nemo, Small, Devstral).
    Mistral,
    /// `<|tool_call|>[{"name": …, "arguments": {…}}, …]` (IBM Granite 3).
    Granite,
    /// `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>name` and a fenced
    /// JSON block per call, or `name<｜tool▁sep｜>{…}` (DeepSeek V3, R1, V3.1).
    DeepSeek,
    /// A bare JSON object (or array of them) that the reply starts with, optionally after
    /// `<|python_tag|>`, with `parameters` or `arguments` (Llama 3.x, and the fallback).
    Json,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
/// Older Mistral models may close their list; the closer carries nothing.
const MISTRAL_CLOSE: &str = "[/TOOL_CALLS]";
const GRANITE_OPEN: &str = "<|tool_call|>";
const DEEPSEEK_OPEN: &str = "<｜tool▁calls▁begin｜>";
/// A misspelt opener R1 distills are known to write.
const DEEPSEEK_OPEN_MISSPELT: &str = "<｜tool▁calls｜>";
const DEEPSEEK_CLOSE: &str = "<｜tool▁calls▁end｜>";
const DEEPSEEK_CALL_OPEN: &str = "<｜tool▁call▁begin｜>";
const DEEPSEEK_CALL_CLOSE: &str = "<｜tool▁call▁end｜>";
const DEEPSEEK_SEPARATOR: &str = "<｜tool▁sep｜>";
/// Llama 3.x's marker before a call.
pub(crate) const PYTHON_TAG: &str = "<|python_tag|>";

impl ToolCallFormat {
    /// The syntax a chat template teaches, judged by the markers it renders.
    pub fn from_template(template: &str) -> ToolCallFormat {
        if template.contains("tool▁calls▁begin") || template.contains("tool▁call▁begin") {
            ToolCallFormat::DeepSeek
        } else if template.contains(HERMES_OPEN) {
            ToolCallFormat::Hermes
        } else if template.contains(GRANITE_OPEN) {
            ToolCallFormat::Granite
        } else if template.contains(MISTRAL_OPEN) {
            ToolCallFormat::Mistral
        } else {
            ToolCallFormat::Json
        }
    }

    /// Markers that open a stretch of calls anywhere in the output. Bare JSON calls without
    /// `<|python_tag|>` are recognised only at the start of a reply.
    pub(crate) fn open_tags(self) -> &'static [&'static str] {
        match self {
            ToolCallFormat::Hermes => &[HERMES_OPEN],
            ToolCallFormat::Mistral => &[MISTRAL_OPEN, MISTRAL_CLOSE],
            ToolCallFormat::Granite => &[GRANITE_OPEN],
            ToolCallFormat::DeepSeek => &[DEEPSEEK_OPEN, DEEPSEEK_OPEN_MISSPELT, DEEPSEEK_CALL_OPEN],
            ToolCallFormat::Json => &[PYTHON_TAG],
        }
    }

    /// Where the stretch opened by `tag` ends in `body` (the text after the tag), once it is
    /// complete.
    pub(crate) fn stretch_end(self, tag: &str, body: &str) -> Option<usize> {
        match self {
            ToolCallFormat::Hermes => body.find(HERMES_CLOSE).map(|at| at + HERMES_CLOSE.len()),
            ToolCallFormat::Granite | ToolCallFormat::Json => json_end(body),
            ToolCallFormat::Mistral if tag == MISTRAL_CLOSE => Some(0),
            ToolCallFormat::Mistral => {
                let start = leading_whitespace(body);
                if body[start..].starts_with('[') {
                    return json_end(body);
                }
                let arguments_at = body.find(MISTRAL_ARGS)? + MISTRAL_ARGS.len();
                json_end(&body[arguments_at..]).map(|end| arguments_at + end)
            }
            ToolCallFormat::DeepSeek if tag != DEEPSEEK_CALL_OPEN => {
                body.find(DEEPSEEK_CLOSE).map(|at| at + DEEPSEEK_CLOSE.len())
            }
            ToolCallFormat::DeepSeek => body.find(DEEPSEEK_CALL_CLOSE).map(|at| at + DEEPSEEK_CALL_CLOSE.len()),
        }
    }

    /// The calls in a stretch (`body` is the text after `tag`, complete or cut off by the end
    /// of the output); `None` when it does not hold well-formed calls, and no calls for
    /// markup that carries none. `known_names` limits
    /// bare-JSON calls, which are otherwise hard to tell from a JSON answer.
    pub(crate) fn parse_stretch(self, tag: &str, body: &str, known_names: &[String]) -> Option<Vec<ParsedToolCall>> {
        let calls = match self {
            ToolCallFormat::Hermes => {
                let inner = body.strip_suffix(HERMES_CLOSE).unwrap_or(body);
                vec![call_from_value(serde_json::from_str(inner.trim()).ok()?)?]
            }
            ToolCallFormat::Granite => calls_from_json(body.trim())?,
            ToolCallFormat::Json => {
                let calls = calls_from_json(body.trim())?;
                if !known_names.is_empty() && calls.iter().any(|call| !known_names.contains(&call.name)) {
                    return None;
                }
                calls
            }
            ToolCallFormat::Mistral if tag == MISTRAL_CLOSE => Vec::new(),
            ToolCallFormat::Mistral => {
                let body = body.trim();
                if body.starts_with('[') {
                    calls_from_json(body)?
                } else {
                    let (name, arguments) = body.split_once(MISTRAL_ARGS)?;
                    let name = name.split(MISTRAL_CALL_ID).next().unwrap_or(name).trim();
                    vec![ParsedToolCall { name: checked_name(name)?, arguments: arguments_object(arguments.trim())? }]
                }
            }
            ToolCallFormat::DeepSeek => {
                let body = body.strip_suffix(DEEPSEEK_CLOSE).unwrap_or(body);
                let body = match tag {
                    DEEPSEEK_CALL_OPEN => format!("{DEEPSEEK_CALL_OPEN}{body}"),
                    // The misspelt opener is followed straight by the first call.
                    DEEPSEEK_OPEN_MISSPELT if !body.trim_start().starts_with(DEEPSEEK_CALL_OPEN) => {
                        format!("{DEEPSEEK_CALL_OPEN}{body}")
                    }
                    _ => body.into(),
                };
                let mut pieces = body.split(DEEPSEEK_CALL_OPEN);
                // Text before the first call is not a call: the stretch is not well formed.
                if !pieces.next().unwrap_or_default().trim().is_empty() {
                    return None;
                }
                let mut calls = Vec::new();
                for piece in pieces {
                    let piece = piece.trim_end();
                    let piece = piece.strip_suffix(DEEPSEEK_CALL_CLOSE).unwrap_or(piece);
                    calls.push(deepseek_call(piece)?);
                }
                calls
            }
        };
        // A stretch that names no call (`[]`, an opener with nothing after it) is text; only
        // Mistral's closing marker is a stretch of its own without calls.
        if calls.is_empty() && !(self == ToolCallFormat::Mistral && tag == MISTRAL_CLOSE) {
            return None;
        }
        Some(calls)
    }
}

/// One DeepSeek call: `function<｜tool▁sep｜>name\n```json\n{…}\n```` (V3, R1) or
/// `name<｜tool▁sep｜>{…}` (V3.1).
fn deepseek_call(piece: &str) -> Option<ParsedToolCall> {
    let (head, rest) = piece.split_once(DEEPSEEK_SEPARATOR)?;
    if head.trim() == "function" {
        let (name, rest) = rest.split_once('\n')?;
        let json = rest.trim().strip_prefix("```json").unwrap_or(rest).trim();
        let json = json.strip_suffix("```").unwrap_or(json).trim();
        Some(ParsedToolCall { name: checked_name(name.trim())?, arguments: arguments_object(json)? })
    } else {
        Some(ParsedToolCall { name: checked_name(head.trim())?, arguments: arguments_object(rest.trim())? })
    }
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

/// The end of the JSON value after leading whitespace.
fn json_end(body: &str) -> Option<usize> {
    let start = leading_whitespace(body);
    balanced_end(&body[start..]).map(|end| start + end)
}

fn checked_name(name: &str) -> Option<String> {
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_owned())
}

/// Arguments written as an object, or as a string holding one.
fn arguments_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text).ok()? {
        Value::Object(arguments) => Some(arguments),
        _ => None,
    }
}

/// A JSON object or an array of objects, each a call.
fn calls_from_json(text: &str) -> Option<Vec<ParsedToolCall>> {
    match serde_json::from_str(text).ok()? {
        Value::Array(items) => items.into_iter().map(call_from_value).collect(),
        value => Some(vec![call_from_value(value)?]),
    }
}

/// `{"name", "arguments"|"parameters"}`, also nested as OpenAI's `{"function": {…}}`.
fn call_from_value(value: Value) -> Option<ParsedToolCall> {
    let Value::Object(mut object) = value else { return None };
    if let Some(Value::Object(function)) = object.remove("function") {
        return call_from_value(Value::Object(function));
    }
    let name = match object.remove("name") {
        Some(Value::String(name)) => checked_name(&name)?,
        _ => return None,
    };
    let arguments = match object.remove("arguments").or_else(|| object.remove("parameters")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(arguments)) => arguments,
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => arguments_object(&text)?,
        Some(_) => return None,
    };
    Some(ParsedToolCall { name, arguments })
}
