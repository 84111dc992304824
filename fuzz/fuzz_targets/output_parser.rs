//! `model_formats::OutputParser` on arbitrary model output, for every tool-call format and
//! thinking mode, fed whole and in fuzzer-chosen pieces: the events do not depend on how the
//! output was split (as the parser's own tests demand), no event is empty, and text that is
//! not a well-formed call is never dropped (ARCHITECTURE.md): without tools the content is the
//! output itself; with tools but no call found, only whitespace and markup are missing.
//!
//! Input: byte 0 picks the configuration (bits 0-2 the format, 3-4 thinking, 5 starting inside
//! a thinking block, 6 known tool names), byte 1 the piece sizes, the rest is the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model_formats::{merge_events, OutputEvent, OutputParser, ParserConfig, ThinkingMode, ToolCallFormat};

const FORMATS: [Option<ToolCallFormat>; 6] = [
    None,
    Some(ToolCallFormat::Hermes),
    Some(ToolCallFormat::Mistral),
    Some(ToolCallFormat::Granite),
    Some(ToolCallFormat::DeepSeek),
    Some(ToolCallFormat::Json),
];
const THINKING: [ThinkingMode; 3] = [ThinkingMode::Off, ThinkingMode::Separate, ThinkingMode::Drop];
const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Every marker a format's stretches are made of (tool_calls.rs); a stretch that carries no
/// call ("markup that carries none") may vanish.
fn markup(format: ToolCallFormat) -> &'static [&'static str] {
    match format {
        ToolCallFormat::Hermes => &["<tool_call>", "</tool_call>"],
        ToolCallFormat::Mistral => &["[TOOL_CALLS]", "[/TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
        ToolCallFormat::Granite => &["<|tool_call|>"],
        ToolCallFormat::DeepSeek => &[
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls｜>",
            "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>",
            "<｜tool▁call▁end｜>",
            "<｜tool▁sep｜>",
        ],
        ToolCallFormat::Json => &["<|python_tag|>"],
    }
}

/// Parses `pieces` one after the other and returns the merged events, checking that no
/// single call returns an empty event.
fn parse(config: &ParserConfig, pieces: &[&str]) -> Vec<OutputEvent> {
    let mut parser = OutputParser::new(config.clone());
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(parser.push(piece));
    }
    events.extend(parser.finish());
    for event in &events {
        let empty = match event {
            OutputEvent::Content(text) | OutputEvent::Thinking(text) => text.is_empty(),
            OutputEvent::ToolCalls(calls) => calls.is_empty(),
        };
        assert!(!empty, "{config:?}: empty event in {events:?}");
    }
    merge_events(events)
}

/// Splits `text` at character boundaries into pieces of 1 to `max_chars` characters.
fn split(text: &str, seed: u8) -> Vec<&str> {
    let max_chars = usize::from(seed % 16) + 1;
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let chars = (state as usize % max_chars) + 1;
        let at = rest.char_indices().nth(chars).map_or(rest.len(), |(at, _)| at);
        pieces.push(&rest[..at]);
        rest = &rest[at..];
    }
    pieces
}

fn joined(events: &[OutputEvent], thinking: bool) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            OutputEvent::Content(text) if !thinking => Some(text.as_str()),
            OutputEvent::Thinking(text) if thinking => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// Without whitespace, without `markers` (removed until none is left: they do not overlap, so
/// the order does not matter) and without the characters of `punctuation`.
fn normalized(text: &str, markers: &[&str], punctuation: &[char]) -> String {
    let mut text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    loop {
        let before = text.len();
        for marker in markers {
            text = text.replace(marker, "");
        }
        if text.len() == before {
            return text.chars().filter(|c| !punctuation.contains(c)).collect();
        }
    }
}

/// What a tool-less parser must report as (thinking, content).
fn expected_without_tools(config: &ParserConfig, text: &str) -> (String, String) {
    let body = if config.thinking == ThinkingMode::Off {
        return (String::new(), text.to_owned());
    } else if config.starts_in_thinking {
        text
    } else if let Some(body) = text.trim_start().strip_prefix(THINK_OPEN) {
        body
    } else {
        // No thinking block: everything is content, `<think>` later on included.
        return (String::new(), text.to_owned());
    };
    let (thinking, content) = match body.find(THINK_CLOSE) {
        Some(at) => (body[..at].trim().to_owned(), body[at + THINK_CLOSE.len()..].trim_start().to_owned()),
        None => {
            // Cut off inside the block: the reasoning so far, trimmed; a closing marker cut
            // off at the very end goes with the trailing whitespace.
            let partial = (1..THINK_CLOSE.len()).rev().find(|len| body.ends_with(&THINK_CLOSE[..*len])).unwrap_or(0);
            (body[..body.len() - partial].trim().to_owned(), String::new())
        }
    };
    match config.thinking {
        ThinkingMode::Drop => (String::new(), content),
        _ => (thinking, content),
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, seed, rest @ ..] = data else { return };
    let text = String::from_utf8_lossy(rest);
    let config = ParserConfig {
        tool_calls: FORMATS[usize::from(selector & 7) % FORMATS.len()],
        thinking: THINKING[usize::from(selector >> 3 & 3) % THINKING.len()],
        starts_in_thinking: selector & 0x20 != 0,
        tool_names: if selector & 0x40 != 0 { vec!["get_weather".into(), "get_time".into()] } else { Vec::new() },
    };

    let whole = parse(&config, &[&text]);
    let pieces = split(&text, *seed);
    assert_eq!(parse(&config, &pieces), whole, "{config:?}: pieces {pieces:?} differ from the whole");

    let calls: Vec<_> = whole
        .iter()
        .filter_map(|event| match event {
            OutputEvent::ToolCalls(calls) => Some(calls),
            _ => None,
        })
        .flatten()
        .collect();
    for call in &calls {
        assert!(!call.name.is_empty() && !call.name.contains(char::is_whitespace), "{config:?}: call {call:?}");
        if config.tool_calls == Some(ToolCallFormat::Json) && !config.tool_names.is_empty() {
            assert!(config.tool_names.contains(&call.name), "{config:?}: bare JSON call to unknown {call:?}");
        }
    }

    let content = joined(&whole, false);
    let thinking = joined(&whole, true);
    match config.tool_calls {
        None => {
            assert!(calls.is_empty(), "{config:?}: calls without tools");
            let (expected_thinking, expected_content) = expected_without_tools(&config, &text);
            assert_eq!(content, expected_content, "{config:?}: content of {text:?}");
            assert_eq!(thinking, expected_thinking, "{config:?}: thinking of {text:?}");
        }
        Some(format) if calls.is_empty() && config.thinking == ThinkingMode::Off => {
            // No call was recognised, so every stretch was given back, or was markup carrying
            // no call (an empty list, Mistral's closing tag): nothing but whitespace, markers
            // and list punctuation may be missing.
            let markers = markup(format);
            // List brackets and commas of an empty list; `;` separates bare JSON calls.
            let punctuation = ['[', ']', ',', ';'];
            assert_eq!(
                normalized(&content, markers, &punctuation),
                normalized(&text, markers, &punctuation),
                "{config:?}: text dropped from {text:?}, content {content:?}"
            );
        }
        Some(_) => {}
    }
});
