//! What both APIs' stream decoders share: splitting a body into bounded lines, the figures of
//! the final event, and tool calls made whole.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use serving::{DoneReason, Event, Finished, Metrics, ToolCall};

/// How a stream that broke in transit is described (the replica, not the request, failed).
pub const READ_FAILURE: &str = "reading the remote's stream";
/// How a stream that ended before its final event is described.
pub const EARLY_END: &str = "the remote closed the stream before it finished";

/// The longest line a remote may send (a chunk of one stream event).
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Splits streamed bytes into lines, each at most [`MAX_LINE_BYTES`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    buffer: Vec<u8>,
}

impl LineSplitter {
    /// The whole lines `bytes` completes (without their `\n` or `\r\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if self.buffer.len() > MAX_LINE_BYTES {
            return Err(format!("the remote sent a line longer than {MAX_LINE_BYTES} bytes"));
        }
        Ok(lines)
    }

    /// What is left after the body ended (a last line without `\n`).
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).trim_end_matches('\r').to_owned())
    }
}

/// One line of a remote's stream, decoded.
pub trait StreamDecoder: Send {
    /// Events of one line; an error is the remote's own error line (the stream ends with it).
    fn line(&mut self, line: &str) -> Result<Vec<Event>, String>;
    /// The body ended: the final events, or why the stream ended unfinished.
    fn end(&mut self) -> Result<Vec<Event>, String>;
    /// Whether the final event was decoded.
    fn is_done(&self) -> bool;
}

/// Timing and counts of one remote generation, measured here where the remote does not say.
#[derive(Debug, Clone)]
pub struct Timing {
    pub started: Instant,
    pub first_output: Option<Instant>,
    pub remote_host: String,
}

impl Timing {
    pub fn new(started: Instant, remote_host: &str) -> Timing {
        Timing { started, first_output: None, remote_host: remote_host.to_owned() }
    }

    /// Notes that output arrived.
    pub fn output(&mut self) {
        self.first_output.get_or_insert_with(Instant::now);
    }

    /// The final event: counts from the remote; durations from the remote when it gave
    /// them, else measured here (prompt: until the first output; generation: after it).
    pub fn finished(&self, done_reason: DoneReason, counts: RemoteCounts) -> Event {
        let now = Instant::now();
        let first_output = self.first_output.unwrap_or(now);
        let metrics = Metrics {
            total_duration: self.started.elapsed(),
            load_duration: counts.load_duration.unwrap_or_default(),
            prompt_eval_count: counts.prompt_tokens,
            prompt_eval_duration: counts.prompt_duration.unwrap_or(first_output - self.started),
            eval_count: counts.generated_tokens,
            eval_duration: counts.generation_duration.unwrap_or(now - first_output),
        };
        Event::Done(Box::new(Finished {
            done_reason,
            metrics,
            prompt_tokens: Vec::new(),
            generated_tokens: Vec::new(),
            remote_host: Some(self.remote_host.clone()),
        }))
    }
}

/// What a remote reported of a generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteCounts {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub load_duration: Option<Duration>,
    pub prompt_duration: Option<Duration>,
    pub generation_duration: Option<Duration>,
}

/// Numbers a JSON object holds under `key`, as a count.
pub fn count(object: &Value, key: &str) -> usize {
    object.get(key).and_then(Value::as_u64).unwrap_or(0) as usize
}

/// A tool call with its id (the remote's, or a new one) and its index in the reply; arguments
/// sent as a JSON string are parsed. `None` when the arguments are not a JSON object.
pub fn tool_call(id: Option<&str>, index: usize, name: &str, arguments: &Value) -> Option<ToolCall> {
    let arguments: Map<String, Value> = match arguments {
        Value::Object(map) => map.clone(),
        Value::String(text) if text.trim().is_empty() => Map::new(),
        Value::String(text) => serde_json::from_str(text).ok()?,
        Value::Null => Map::new(),
        _ => return None,
    };
    Some(ToolCall {
        id: Some(id.filter(|id| !id.is_empty()).map_or_else(serving::new_tool_call_id, str::to_owned)),
        index,
        name: name.to_owned(),
        arguments,
    })
}

/// Decodes whole lines, then the end: every event, and the error that ended the stream.
#[cfg(test)]
pub(crate) fn decode_lines(mut decoder: impl StreamDecoder, lines: &[&str]) -> (Vec<Event>, Result<(), String>) {
    let mut events = Vec::new();
    for line in lines {
        match decoder.line(line) {
            Ok(more) => events.extend(more),
            Err(error) => return (events, Err(error)),
        }
    }
    match decoder.end() {
        Ok(more) => {
            events.extend(more);
            (events, Ok(()))
        }
        Err(error) => (events, Err(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks_and_bounded() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"{\"a\":1}\r\n{\"b\"").unwrap(), ["{\"a\":1}"]);
        assert_eq!(splitter.push(b":2}\n\n").unwrap(), ["{\"b\":2}", ""]);
        assert_eq!(splitter.push(b"tail").unwrap(), Vec::<String>::new());
        assert_eq!(splitter.finish().as_deref(), Some("tail"));
        assert_eq!(splitter.finish(), None);
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(&vec![b'x'; MAX_LINE_BYTES + 1]).is_err());
    }

    #[test]
    fn tool_calls_take_objects_or_json_text() {
        let call = tool_call(Some("call_1"), 2, "f", &Value::from("{\"x\": 1}")).unwrap();
        assert_eq!((call.id.as_deref(), call.index, call.arguments["x"].as_i64()), (Some("call_1"), 2, Some(1)));
        let call = tool_call(None, 0, "f", &serde_json::json!({"y": true})).unwrap();
        assert!(call.id.unwrap().starts_with("call_"));
        assert!(tool_call(None, 0, "f", &Value::from("not json")).is_none());
        assert!(tool_call(None, 0, "f", &Value::from(3)).is_none());
    }
}
