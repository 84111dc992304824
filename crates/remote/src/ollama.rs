//! Ollama-compatible remotes (Ollama, another modeld): the core's requests as `/api/chat`,
//! `/api/generate` and `/api/embed` bodies, and their NDJSON streams as events.

use serde_json::{json, Map, Value};
use serving::{ChatInput, ChatMessage, DoneReason, Event, GenerateInput, KeepAlive, Think};

use crate::decode::{count, tool_call, RemoteCounts, StreamDecoder, Timing};

/// `think` as Ollama's API takes it.
pub fn think_value(think: &Think) -> Option<Value> {
    match think {
        Think::Default => None,
        Think::Off => Some(Value::Bool(false)),
        Think::On { effort: Some(effort) } => Some(Value::from(effort.clone())),
        Think::On { effort: None } => Some(Value::Bool(true)),
    }
}

/// `keep_alive` in seconds (negative: forever).
pub fn keep_alive_value(keep_alive: Option<KeepAlive>) -> Option<Value> {
    keep_alive.map(|keep_alive| match keep_alive.duration() {
        Some(duration) => Value::from(duration.as_secs_f64()),
        None => Value::from(-1),
    })
}

fn message(message: &ChatMessage) -> Value {
    let mut object = Map::new();
    object.insert("role".into(), Value::from(message.role.to_ascii_lowercase()));
    object.insert("content".into(), Value::from(message.content.clone()));
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|call| {
                let mut call_object =
                    json!({"function": {"index": call.index, "name": call.name, "arguments": call.arguments}});
                if let Some(id) = &call.id {
                    call_object["id"] = Value::from(id.clone());
                }
                call_object
            })
            .collect();
        object.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(name) = &message.tool_name {
        object.insert("tool_name".into(), Value::from(name.clone()));
    }
    if let Some(id) = &message.tool_call_id {
        object.insert("tool_call_id".into(), Value::from(id.clone()));
    }
    Value::Object(object)
}

fn common(object: &mut Map<String, Value>, options: &serving::Options, keep_alive: Option<KeepAlive>, think: &Think) {
    object.insert("stream".into(), Value::Bool(true));
    let options = options.to_map();
    if !options.is_empty() {
        object.insert("options".into(), Value::Object(options));
    }
    if let Some(keep_alive) = keep_alive_value(keep_alive) {
        object.insert("keep_alive".into(), keep_alive);
    }
    if let Some(think) = think_value(think) {
        object.insert("think".into(), think);
    }
}

/// The `/api/chat` body of a chat turn.
pub fn chat_body(remote_name: &str, input: &ChatInput) -> Value {
    let mut object = Map::new();
    object.insert("model".into(), Value::from(remote_name));
    object.insert("messages".into(), input.messages.iter().map(message).collect());
    if !input.tools.is_empty() && input.tool_choice != serving::ToolChoice::None {
        object.insert("tools".into(), Value::Array(input.tools.clone()));
    }
    if let Some(schema) = &input.output_schema {
        object.insert("format".into(), schema.clone());
    }
    if !input.truncate {
        object.insert("truncate".into(), Value::Bool(false));
    }
    common(&mut object, &input.options, input.keep_alive, &input.think);
    Value::Object(object)
}

/// The `/api/generate` body of a completion.
pub fn generate_body(remote_name: &str, input: &GenerateInput) -> Value {
    let mut object = Map::new();
    object.insert("model".into(), Value::from(remote_name));
    object.insert("prompt".into(), Value::from(input.prompt.clone()));
    if let Some(suffix) = input.suffix.as_ref().filter(|suffix| !suffix.is_empty()) {
        object.insert("suffix".into(), Value::from(suffix.clone()));
    }
    if let Some(system) = &input.system {
        object.insert("system".into(), Value::from(system.clone()));
    }
    if let Some(template) = &input.template {
        object.insert("template".into(), Value::from(template.clone()));
    }
    if input.raw {
        object.insert("raw".into(), Value::Bool(true));
    }
    if let Some(schema) = &input.output_schema {
        object.insert("format".into(), schema.clone());
    }
    if !input.truncate {
        object.insert("truncate".into(), Value::Bool(false));
    }
    common(&mut object, &input.options, input.keep_alive, &input.think);
    Value::Object(object)
}

/// Decodes `/api/chat` and `/api/generate` NDJSON lines.
pub struct OllamaDecoder {
    timing: Timing,
    n_tool_calls: usize,
    done: bool,
}

impl OllamaDecoder {
    pub fn new(timing: Timing) -> OllamaDecoder {
        OllamaDecoder { timing, n_tool_calls: 0, done: false }
    }
}

impl StreamDecoder for OllamaDecoder {
    fn line(&mut self, line: &str) -> Result<Vec<Event>, String> {
        if line.trim().is_empty() || self.done {
            return Ok(Vec::new());
        }
        let chunk: Value =
            serde_json::from_str(line).map_err(|error| format!("the remote sent a line that is not JSON: {error}"))?;
        if let Some(error) = chunk.get("error") {
            return Err(error.as_str().map_or_else(|| error.to_string(), str::to_owned));
        }
        let mut events = Vec::new();
        // `/api/chat` sends `message`, `/api/generate` sends `response` and `thinking`.
        let (content, thinking) = match chunk.get("message") {
            Some(message) => (message.get("content"), message.get("thinking")),
            None => (chunk.get("response"), chunk.get("thinking")),
        };
        if let Some(thinking) = thinking.and_then(Value::as_str).filter(|text| !text.is_empty()) {
            self.timing.output();
            events.push(Event::Thinking(thinking.to_owned()));
        }
        if let Some(content) = content.and_then(Value::as_str).filter(|text| !text.is_empty()) {
            self.timing.output();
            events.push(Event::Content(content.to_owned()));
        }
        if let Some(calls) = chunk.pointer("/message/tool_calls").and_then(Value::as_array) {
            let mut made = Vec::new();
            for call in calls {
                let function = call.get("function").cloned().unwrap_or_default();
                let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
                let arguments = function.get("arguments").cloned().unwrap_or_default();
                match tool_call(call.get("id").and_then(Value::as_str), self.n_tool_calls, name, &arguments) {
                    Some(made_call) => {
                        self.n_tool_calls += 1;
                        made.push(made_call);
                    }
                    // A call that is not well formed is given back as text, never dropped.
                    None => events.push(Event::Content(call.to_string())),
                }
            }
            if !made.is_empty() {
                self.timing.output();
                events.push(Event::ToolCalls(made));
            }
        }
        if chunk.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            let nanos = |key: &str| chunk.get(key).and_then(Value::as_u64).map(std::time::Duration::from_nanos);
            let counts = RemoteCounts {
                prompt_tokens: count(&chunk, "prompt_eval_count"),
                generated_tokens: count(&chunk, "eval_count"),
                load_duration: nanos("load_duration"),
                prompt_duration: nanos("prompt_eval_duration"),
                generation_duration: nanos("eval_duration"),
            };
            let done_reason = match chunk.get("done_reason").and_then(Value::as_str) {
                Some("length") => DoneReason::Length,
                _ => DoneReason::Stop,
            };
            events.push(self.timing.finished(done_reason, counts));
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<Event>, String> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(crate::decode::EARLY_END.into())
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// The `/api/embed` body.
pub fn embed_body(remote_name: &str, texts: &[String], input: &serving::EmbedInput) -> Value {
    let mut object = Map::new();
    object.insert("model".into(), Value::from(remote_name));
    object.insert("input".into(), Value::from(texts.to_vec()));
    if !input.truncate {
        object.insert("truncate".into(), Value::Bool(false));
    }
    let options = input.options.to_map();
    if !options.is_empty() {
        object.insert("options".into(), Value::Object(options));
    }
    if let Some(keep_alive) = keep_alive_value(input.keep_alive) {
        object.insert("keep_alive".into(), keep_alive);
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serving::ToolCall;

    fn decode(lines: &[&str]) -> (Vec<Event>, Result<(), String>) {
        crate::decode::decode_lines(
            OllamaDecoder::new(Timing::new(std::time::Instant::now(), "http://r1:11434")),
            lines,
        )
    }

    #[test]
    fn chat_chunks_become_events_with_the_remotes_figures() {
        let (events, end) = decode(&[
            r#"{"model":"m","message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}"#,
            r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#,
            r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":12,"prompt_eval_duration":3000,"eval_count":4,"eval_duration":5000,"load_duration":7}"#,
        ]);
        assert_eq!(end, Ok(()));
        assert_eq!(events[0], Event::Thinking("hmm".into()));
        assert_eq!(events[1], Event::Content("Hi".into()));
        let Event::ToolCalls(calls) = &events[2] else { panic!("{:?}", events[2]) };
        assert_eq!(
            (calls[0].name.as_str(), calls[0].index, &calls[0].arguments["city"]),
            ("get_weather", 0, &json!("Paris"))
        );
        let Event::Done(finished) = &events[3] else { panic!("{:?}", events[3]) };
        assert_eq!(finished.done_reason, DoneReason::Length);
        assert_eq!((finished.metrics.prompt_eval_count, finished.metrics.eval_count), (12, 4));
        assert_eq!(finished.metrics.eval_duration, std::time::Duration::from_nanos(5000));
        assert_eq!(finished.remote_host.as_deref(), Some("http://r1:11434"));
    }

    #[test]
    fn error_lines_and_early_ends_fail_the_stream() {
        let (events, end) = decode(&[r#"{"response":"a","done":false}"#, r#"{"error":"model crashed"}"#]);
        assert_eq!(events, [Event::Content("a".into())]);
        assert_eq!(end, Err("model crashed".into()));
        let (_, end) = decode(&[r#"{"response":"a","done":false}"#]);
        assert_eq!(end, Err(crate::decode::EARLY_END.into()));
        let (_, end) = decode(&["<html>"]);
        assert!(end.unwrap_err().starts_with("the remote sent a line that is not JSON"));
    }

    #[test]
    fn requests_carry_what_the_core_decided() {
        let input = ChatInput {
            messages: vec![
                ChatMessage::new("System", "be brief"),
                ChatMessage {
                    tool_calls: vec![ToolCall {
                        id: Some("call_1".into()),
                        index: 0,
                        name: "f".into(),
                        arguments: Map::new(),
                    }],
                    ..ChatMessage::new("assistant", "")
                },
                ChatMessage { tool_name: Some("f".into()), ..ChatMessage::new("tool", "42") },
            ],
            tools: vec![json!({"type": "function", "function": {"name": "f"}})],
            think: Think::Off,
            options: serving::Options { temperature: Some(0.0), ..Default::default() },
            truncate: true,
            ..Default::default()
        };
        let body = chat_body("llama3.3:70b", &input);
        assert_eq!(body["model"], "llama3.3:70b");
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(body["messages"][2]["tool_name"], "f");
        assert_eq!(body["think"], false);
        assert_eq!(body["options"], json!({"temperature": 0.0}));
        assert_eq!(body["stream"], true);
        assert!(body.get("truncate").is_none());
        let generate = GenerateInput {
            prompt: "def f(".into(),
            suffix: Some(")".into()),
            raw: true,
            truncate: true,
            ..Default::default()
        };
        let body = generate_body("coder", &generate);
        assert_eq!(
            (body["prompt"].as_str(), body["suffix"].as_str(), body["raw"].as_bool()),
            (Some("def f("), Some(")"), Some(true))
        );
    }
}
