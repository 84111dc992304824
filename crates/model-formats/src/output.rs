//! Splits streamed model output into content, thinking and tool calls as it arrives. Text
//! that might be the start of a marker is held back until it is known; text that turns out not
//! to be a well-formed call is given back as content, never lost and never an error.

use crate::tool_calls::{ParsedToolCall, ToolCallFormat, PYTHON_TAG};
use crate::{THINK_CLOSE, THINK_OPEN};

/// What to do with `<think>` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThinkingMode {
    /// The model does not think: `<think>` is ordinary text.
    #[default]
    Off,
    /// Reasoning is reported apart from the content.
    Separate,
    /// Reasoning is dropped (the caller switched thinking off but the model thought anyway).
    Drop,
}

/// How to read one reply.
#[derive(Debug, Clone, Default)]
pub struct ParserConfig {
    /// Thinking blocks.
    pub thinking: ThinkingMode,
    /// The prompt already opened a thinking block, so the reply starts inside it.
    pub starts_in_thinking: bool,
    /// The tool-call syntax to recognise; `None` when the request offers no tools.
    pub tool_calls: Option<ToolCallFormat>,
    /// Names of the offered tools.
    pub tool_names: Vec<String>,
}

/// A piece of parsed output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputEvent {
    /// Answer text.
    Content(String),
    /// Reasoning text.
    Thinking(String),
    /// Complete calls.
    ToolCalls(Vec<ParsedToolCall>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Content,
    Thinking,
    /// Inside a stretch of tool calls opened by the tag.
    Calls(&'static str),
}

/// The incremental parser; feed it with [`OutputParser::push`], end with
/// [`OutputParser::finish`].
#[derive(Debug)]
pub struct OutputParser {
    config: ParserConfig,
    state: State,
    buffer: String,
    /// Something other than whitespace was produced.
    reply_started: bool,
    /// Whitespace at the buffer's start is dropped (after a thinking block or a call).
    skip_whitespace: bool,
    /// A bare-JSON call may follow (after another one).
    json_call_may_follow: bool,
}

impl OutputParser {
    /// A parser for one reply.
    pub fn new(config: ParserConfig) -> OutputParser {
        let starts_in_thinking = config.starts_in_thinking && config.thinking != ThinkingMode::Off;
        OutputParser {
            state: if starts_in_thinking { State::Thinking } else { State::Content },
            skip_whitespace: starts_in_thinking,
            config,
            buffer: String::new(),
            reply_started: false,
            json_call_may_follow: false,
        }
    }

    /// Parses `text`, the next piece of output; returns what is now certain.
    pub fn push(&mut self, text: &str) -> Vec<OutputEvent> {
        self.buffer.push_str(text);
        self.drain(false)
    }

    /// The output ended: returns everything still held back.
    pub fn finish(&mut self) -> Vec<OutputEvent> {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> Vec<OutputEvent> {
        let mut events: Vec<OutputEvent> = Vec::new();
        while self.step(at_end, &mut events) {}
        merge_events(events)
    }

    /// One step; returns whether to go on.
    fn step(&mut self, at_end: bool, events: &mut Vec<OutputEvent>) -> bool {
        if self.skip_whitespace {
            let start = self.buffer.len() - self.buffer.trim_start().len();
            self.buffer.drain(..start);
            if self.buffer.is_empty() {
                return false;
            }
            self.skip_whitespace = false;
        }
        match self.state {
            State::Content => self.step_content(at_end, events),
            State::Thinking => self.step_thinking(at_end, events),
            State::Calls(tag) => self.step_calls(tag, at_end, events),
        }
    }

    fn step_content(&mut self, at_end: bool, events: &mut Vec<OutputEvent>) -> bool {
        let trimmed = self.buffer.trim_start();
        // A thinking block opens only at the very start of the reply.
        if self.config.thinking != ThinkingMode::Off && !self.reply_started {
            if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                self.buffer = rest.to_owned();
                self.state = State::Thinking;
                self.skip_whitespace = true;
                return true;
            }
            if !at_end && THINK_OPEN.starts_with(trimmed) {
                return false;
            }
        }
        let format = self.config.tool_calls;
        // Bare JSON calls: only where the reply starts (or right after another such call).
        if format == Some(ToolCallFormat::Json) && (!self.reply_started || self.json_call_may_follow) {
            let candidate =
                if self.json_call_may_follow { trimmed.trim_start_matches(';').trim_start() } else { trimmed };
            let candidate = candidate.strip_prefix(PYTHON_TAG).map_or(candidate, str::trim_start);
            if candidate.starts_with('{') || candidate.starts_with('[') {
                self.buffer = candidate.to_owned();
                self.state = State::Calls("");
                return true;
            }
            if !at_end && (candidate.is_empty() || PYTHON_TAG.starts_with(candidate)) {
                return false;
            }
            self.json_call_may_follow = false;
        }
        if let Some((at, tag)) = self.earliest_open_tag() {
            let before: String = self.buffer[..at].to_owned();
            self.emit_content(before, events);
            self.buffer.drain(..at + tag.len());
            self.state = State::Calls(tag);
            return true;
        }
        let held = if at_end { 0 } else { partial_marker_len(&self.buffer, self.open_tags()) };
        let ready: String = self.buffer[..self.buffer.len() - held].to_owned();
        self.buffer.drain(..ready.len());
        self.emit_content(ready, events);
        false
    }

    fn step_thinking(&mut self, at_end: bool, events: &mut Vec<OutputEvent>) -> bool {
        // Some models call a tool before closing their thinking; the call ends it.
        let close_at = self.buffer.find(THINK_CLOSE);
        let call_at = self.earliest_open_tag().filter(|(at, _)| close_at.is_none_or(|close_at| *at < close_at));
        if let Some((at, tag)) = call_at {
            let thinking = self.buffer[..at].trim_end().to_owned();
            self.buffer.drain(..at + tag.len());
            self.emit_thinking(thinking, events);
            self.state = State::Calls(tag);
            self.reply_started = true;
            return true;
        }
        if let Some(at) = close_at {
            let thinking = self.buffer[..at].trim_end().to_owned();
            self.buffer.drain(..at + THINK_CLOSE.len());
            self.emit_thinking(thinking, events);
            self.state = State::Content;
            self.skip_whitespace = true;
            self.reply_started = true;
            return true;
        }
        // Trailing whitespace waits: it is dropped if the block closes after it.
        let held = if at_end {
            self.buffer.len()
        } else {
            let partial = partial_marker_len(&self.buffer, &[THINK_CLOSE])
                .max(partial_marker_len(&self.buffer, self.open_tags()));
            let rest = &self.buffer[..self.buffer.len() - partial];
            self.buffer.len() - rest.trim_end().len()
        };
        let ready: String = self.buffer[..self.buffer.len() - held].to_owned();
        self.buffer.drain(..ready.len());
        self.emit_thinking(ready, events);
        if at_end {
            self.buffer.clear();
        }
        false
    }

    fn step_calls(&mut self, tag: &'static str, at_end: bool, events: &mut Vec<OutputEvent>) -> bool {
        let Some(format) = self.config.tool_calls else { return false };
        let end = match format.stretch_end(tag, &self.buffer) {
            Some(end) => end,
            None if at_end => self.buffer.len(),
            None => return false,
        };
        let body: String = self.buffer.drain(..end).collect();
        match format.parse_stretch(tag, &body, &self.config.tool_names) {
            Some(calls) => {
                if !calls.is_empty() {
                    events.push(OutputEvent::ToolCalls(calls));
                }
                self.reply_started = true;
                self.skip_whitespace = true;
                self.json_call_may_follow = format == ToolCallFormat::Json;
            }
            None => self.emit_content(format!("{tag}{body}"), events),
        }
        self.state = State::Content;
        true
    }

    /// The markers that open a stretch of tool calls; none without tools.
    fn open_tags(&self) -> &'static [&'static str] {
        self.config.tool_calls.map_or(&[], ToolCallFormat::open_tags)
    }

    /// The first opening marker in the buffer, and where it is.
    fn earliest_open_tag(&self) -> Option<(usize, &'static str)> {
        self.open_tags().iter().filter_map(|tag| self.buffer.find(tag).map(|at| (at, *tag))).min_by_key(|(at, _)| *at)
    }

    fn emit_content(&mut self, text: String, events: &mut Vec<OutputEvent>) {
        if text.is_empty() {
            return;
        }
        if !text.trim().is_empty() {
            self.reply_started = true;
            self.json_call_may_follow = false;
        }
        events.push(OutputEvent::Content(text));
    }

    fn emit_thinking(&mut self, text: String, events: &mut Vec<OutputEvent>) {
        if !text.is_empty() && self.config.thinking == ThinkingMode::Separate {
            events.push(OutputEvent::Thinking(text));
        }
    }
}

/// Joins neighbouring events of one kind, as a client that concatenates chunks sees them.
pub fn merge_events(events: impl IntoIterator<Item = OutputEvent>) -> Vec<OutputEvent> {
    let mut merged: Vec<OutputEvent> = Vec::new();
    for event in events {
        match (merged.last_mut(), event) {
            (Some(OutputEvent::Content(text)), OutputEvent::Content(more)) => text.push_str(&more),
            (Some(OutputEvent::Thinking(text)), OutputEvent::Thinking(more)) => text.push_str(&more),
            (Some(OutputEvent::ToolCalls(calls)), OutputEvent::ToolCalls(more)) => calls.extend(more),
            (_, event) => merged.push(event),
        }
    }
    merged
}

/// The length of the longest end of `text` that begins one of `markers` without completing it.
fn partial_marker_len(text: &str, markers: &[&str]) -> usize {
    markers
        .iter()
        .flat_map(|marker| {
            marker
                .char_indices()
                .skip(1)
                .map(|(at, _)| &marker[..at])
                .filter(|start| text.ends_with(start))
                .map(str::len)
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
