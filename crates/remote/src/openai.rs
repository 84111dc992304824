//! OpenAI-compatible remotes (vLLM, SGLang, TGI, llama.cpp's `llama-server`): the core's
//! requests as `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` bodies (and
//! llama-server's `/infill` for fill-in-the-middle), their SSE streams as events.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use serving::{ChatInput, ChatMessage, DoneReason, Event, GenerateInput, Think, ToolChoice};

use crate::decode::{count, tool_call, RemoteCounts, StreamDecoder, Timing};

/// Sampling options under OpenAI's names (and the common extensions vLLM, SGLang and
/// llama-server take).
fn sampling(object: &mut Map<String, Value>, options: &serving::Options) {
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            object.insert(key.into(), value);
        }
    };
    put("temperature", options.temperature.map(Value::from));
    put("top_p", options.top_p.map(Value::from));
    put("top_k", options.top_k.map(Value::from));
    put("min_p", options.min_p.map(Value::from));
    put("seed", options.seed.filter(|seed| *seed >= 0).map(Value::from));
    put("max_tokens", options.num_predict.filter(|n| *n >= 0).map(Value::from));
    put("presence_penalty", options.presence_penalty.map(Value::from));
    put("frequency_penalty", options.frequency_penalty.map(Value::from));
    put("repetition_penalty", options.repeat_penalty.map(Value::from));
    put("repeat_penalty", options.repeat_penalty.map(Value::from));
    put("stop", options.stop.clone().filter(|stop| !stop.is_empty()).map(Value::from));
}

fn message(message: &ChatMessage) -> Value {
    let role = message.role.to_ascii_lowercase();
    let mut object = Map::new();
    object.insert("role".into(), Value::from(role.clone()));
    object.insert("content".into(), Value::from(message.content.clone()));
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id.clone().unwrap_or_else(|| format!("call_{}", call.index)),
                    "type": "function",
                    "function": {"name": call.name, "arguments": Value::Object(call.arguments.clone()).to_string()},
                })
            })
            .collect();
        object.insert("tool_calls".into(), Value::Array(calls));
    }
    if role == "tool" {
        if let Some(id) = &message.tool_call_id {
            object.insert("tool_call_id".into(), Value::from(id.clone()));
        }
        if let Some(name) = &message.tool_name {
            object.insert("name".into(), Value::from(name.clone()));
        }
    }
    Value::Object(object)
}

fn stream_fields(object: &mut Map<String, Value>) {
    object.insert("stream".into(), Value::Bool(true));
    object.insert("stream_options".into(), json!({"include_usage": true}));
}

/// The `/v1/chat/completions` body of a chat turn.
pub fn chat_body(remote_name: &str, input: &ChatInput) -> Value {
    let mut object = Map::new();
    object.insert("model".into(), Value::from(remote_name));
    object.insert("messages".into(), input.messages.iter().map(message).collect());
    if !input.tools.is_empty() {
        object.insert("tools".into(), Value::Array(input.tools.clone()));
        let choice = match &input.tool_choice {
            ToolChoice::Auto => None,
            ToolChoice::None => Some(Value::from("none")),
            ToolChoice::Required => Some(Value::from("required")),
            ToolChoice::Function(name) => Some(json!({"type": "function", "function": {"name": name}})),
        };
        if let Some(choice) = choice {
            object.insert("tool_choice".into(), choice);
        }
    }
    if let Some(schema) = &input.output_schema {
        object.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
        );
    }
    // Thinking is a chat template switch on vLLM, SGLang and llama-server.
    match &input.think {
        Think::Default => {}
        Think::Off => {
            object.insert("chat_template_kwargs".into(), json!({"enable_thinking": false}));
        }
        Think::On { effort } => {
            object.insert("chat_template_kwargs".into(), json!({"enable_thinking": true}));
            if let Some(effort) = effort {
                object.insert("reasoning_effort".into(), Value::from(effort.clone()));
            }
        }
    }
    sampling(&mut object, &input.options);
    stream_fields(&mut object);
    Value::Object(object)
}

/// How a completion goes to an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionRoute {
    /// `/v1/chat/completions`: the server's template around the prompt (and system).
    Chat(Value),
    /// `/v1/completions`: a raw prompt.
    Raw(Value),
    /// llama-server's `/infill`: fill in the middle.
    Infill(Value),
}

/// The route and body of a completion: fill-in-the-middle through `/infill`, a raw prompt
/// through `/v1/completions`, else a one-turn chat (the server's template, as Ollama's
/// `/api/generate` applies the model's).
pub fn completion(remote_name: &str, input: &GenerateInput) -> CompletionRoute {
    if let Some(suffix) = input.suffix.as_ref().filter(|suffix| !suffix.is_empty()) {
        let mut object = Map::new();
        object.insert("model".into(), Value::from(remote_name));
        object.insert("input_prefix".into(), Value::from(input.prompt.clone()));
        object.insert("input_suffix".into(), Value::from(suffix.clone()));
        sampling(&mut object, &input.options);
        if let Some(max_tokens) = object.remove("max_tokens") {
            object.insert("n_predict".into(), max_tokens);
        }
        object.insert("stream".into(), Value::Bool(true));
        return CompletionRoute::Infill(Value::Object(object));
    }
    if input.raw {
        let mut object = Map::new();
        object.insert("model".into(), Value::from(remote_name));
        object.insert("prompt".into(), Value::from(input.prompt.clone()));
        sampling(&mut object, &input.options);
        stream_fields(&mut object);
        return CompletionRoute::Raw(Value::Object(object));
    }
    let mut messages = Vec::new();
    if let Some(system) = &input.system {
        messages.push(ChatMessage::new("system", system.clone()));
    }
    messages.push(ChatMessage::new("user", input.prompt.clone()));
    let chat = ChatInput {
        model: input.model.clone(),
        messages,
        think: input.think.clone(),
        output_schema: input.output_schema.clone(),
        options: input.options.clone(),
        truncate: input.truncate,
        ..Default::default()
    };
    CompletionRoute::Chat(chat_body(remote_name, &chat))
}

/// A tool call being streamed in pieces.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Decodes the SSE stream of `/v1/chat/completions` and `/v1/completions`, and the stream of
/// llama-server's `/infill` (`data:` lines without a `[DONE]`, ending with `"stop": true`).
pub struct OpenAiDecoder {
    timing: Timing,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    counts: RemoteCounts,
    saw_done: bool,
    done: bool,
}

impl OpenAiDecoder {
    pub fn new(timing: Timing) -> OpenAiDecoder {
        OpenAiDecoder {
            timing,
            calls: BTreeMap::new(),
            finish_reason: None,
            counts: RemoteCounts::default(),
            saw_done: false,
            done: false,
        }
    }

    /// The calls gathered, then the final event.
    fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut made = Vec::new();
        for (index, call) in std::mem::take(&mut self.calls) {
            match tool_call(call.id.as_deref(), made.len(), &call.name, &Value::from(call.arguments.clone())) {
                Some(made_call) => made.push(made_call),
                None => {
                    tracing::warn!(index, name = %call.name, "a remote's tool call had arguments that are not a JSON object");
                    events
                        .push(Event::Content(format!("{{\"name\":{:?},\"arguments\":{}}}", call.name, call.arguments)));
                }
            }
        }
        if !made.is_empty() {
            events.push(Event::ToolCalls(made));
        }
        let done_reason = match self.finish_reason.as_deref() {
            Some("length") => DoneReason::Length,
            _ => DoneReason::Stop,
        };
        events.push(self.timing.finished(done_reason, self.counts));
        self.done = true;
        events
    }

    fn usage(&mut self, chunk: &Value) {
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.counts.prompt_tokens = count(usage, "prompt_tokens");
            self.counts.generated_tokens = count(usage, "completion_tokens");
        }
        // llama-server's own figures.
        if let Some(timings) = chunk.get("timings").filter(|timings| timings.is_object()) {
            let millis = |key: &str| {
                timings
                    .get(key)
                    .and_then(Value::as_f64)
                    .map(|ms| std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            };
            self.counts.prompt_duration = millis("prompt_ms");
            self.counts.generation_duration = millis("predicted_ms");
            if self.counts.prompt_tokens == 0 {
                self.counts.prompt_tokens = count(timings, "prompt_n");
                self.counts.generated_tokens = count(timings, "predicted_n");
            }
        }
    }
}

impl StreamDecoder for OpenAiDecoder {
    fn line(&mut self, line: &str) -> Result<Vec<Event>, String> {
        let Some(data) = line.strip_prefix("data:") else {
            // `event:`, `id:`, comments and blank lines carry nothing we use; an error body
            // sent without SSE framing is JSON.
            if line.trim_start().starts_with('{') {
                return Err(error_text(&serde_json::from_str(line).unwrap_or_default()));
            }
            return Ok(Vec::new());
        };
        let data = data.trim();
        if self.done {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.saw_done = true;
            return Ok(self.finish());
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|error| format!("the remote sent an event that is not JSON: {error}"))?;
        if chunk.get("error").is_some() {
            return Err(error_text(&chunk));
        }
        self.usage(&chunk);
        let mut events = Vec::new();
        // llama-server's `/infill` stream.
        if chunk.get("choices").is_none() && chunk.get("content").is_some() {
            if let Some(text) = chunk.get("content").and_then(Value::as_str).filter(|text| !text.is_empty()) {
                self.timing.output();
                events.push(Event::Content(text.to_owned()));
            }
            if chunk.get("stop").and_then(Value::as_bool) == Some(true) {
                self.counts.prompt_tokens = self.counts.prompt_tokens.max(count(&chunk, "tokens_evaluated"));
                self.counts.generated_tokens = self.counts.generated_tokens.max(count(&chunk, "tokens_predicted"));
                if chunk.get("stop_type").and_then(Value::as_str) == Some("limit") {
                    self.finish_reason = Some("length".into());
                }
                events.extend(self.finish());
            }
            return Ok(events);
        }
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let delta = choice.get("delta").unwrap_or(choice);
            for key in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()) {
                    self.timing.output();
                    events.push(Event::Thinking(text.to_owned()));
                }
            }
            // Chat deltas hold `content`, completions `text`.
            let text = delta.get("content").or_else(|| choice.get("text")).and_then(Value::as_str);
            if let Some(text) = text.filter(|text| !text.is_empty()) {
                self.timing.output();
                events.push(Event::Content(text.to_owned()));
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.timing.output();
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(self.calls.len() as u64);
                let partial = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    partial.id = Some(id.to_owned());
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    partial.name.push_str(name);
                }
                if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    if partial.arguments.len() + arguments.len() > crate::decode::MAX_LINE_BYTES {
                        return Err("the remote sent tool call arguments over 8 MiB".into());
                    }
                    partial.arguments.push_str(arguments);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_owned());
            }
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<Event>, String> {
        match (self.done, self.finish_reason.is_some()) {
            (true, _) => Ok(Vec::new()),
            // Some servers close without `[DONE]` once they said why they stopped.
            (false, true) => Ok(self.finish()),
            (false, false) => Err(crate::decode::EARLY_END.into()),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// The text of an OpenAI-style error body (`{"error": {"message": ...}}` or `{"error": "..."}`).
pub fn error_text(body: &Value) -> String {
    match body.get("error") {
        Some(Value::String(text)) => text.clone(),
        Some(error) => error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned),
        None => body.get("message").and_then(Value::as_str).map_or_else(|| body.to_string(), str::to_owned),
    }
}

/// The `/v1/embeddings` body: texts, or token ids.
pub fn embed_body(remote_name: &str, inputs: &[serving::EmbedText]) -> Value {
    let input: Vec<Value> = inputs
        .iter()
        .map(|input| match input {
            serving::EmbedText::Text(text) => Value::from(text.clone()),
            serving::EmbedText::Tokens(tokens) => Value::from(tokens.clone()),
        })
        .collect();
    json!({"model": remote_name, "input": input, "encoding_format": "float"})
}

/// Vectors of a `/v1/embeddings` answer, in input order, and the prompt tokens counted.
pub fn embeddings(body: &Value, n_inputs: usize) -> Result<(Vec<Vec<f32>>, usize), String> {
    let data = body.get("data").and_then(Value::as_array).ok_or("the remote's embeddings have no data")?;
    let mut vectors = vec![None; n_inputs];
    for (position, item) in data.iter().enumerate() {
        let index = item.get("index").and_then(Value::as_u64).map_or(position, |index| index as usize);
        let vector: Vec<f32> = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or("the remote sent an embedding that is not a list of numbers")?
            .iter()
            .map(|value| value.as_f64().map(|value| value as f32))
            .collect::<Option<_>>()
            .ok_or("the remote sent an embedding that is not a list of numbers")?;
        *vectors.get_mut(index).ok_or("the remote sent more embeddings than inputs")? = Some(vector);
    }
    let vectors =
        vectors.into_iter().collect::<Option<Vec<_>>>().ok_or("the remote sent fewer embeddings than inputs")?;
    Ok((vectors, body.get("usage").map_or(0, |usage| count(usage, "prompt_tokens"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(lines: &[&str]) -> (Vec<Event>, Result<(), String>) {
        crate::decode::decode_lines(
            OpenAiDecoder::new(Timing::new(std::time::Instant::now(), "http://gpu:8000")),
            lines,
        )
    }

    #[test]
    fn chat_deltas_become_events_and_tool_calls_are_joined() {
        let (events, end) = decode(&[
            r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"think"}}]}"#,
            "",
            r#"data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"data: {"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":9}}"#,
            "data: [DONE]",
        ]);
        assert_eq!(end, Ok(()));
        assert_eq!(events[0], Event::Thinking("think".into()));
        assert_eq!(events[1..3], [Event::Content("Hel".into()), Event::Content("lo".into())]);
        let Event::ToolCalls(calls) = &events[3] else { panic!("{:?}", events[3]) };
        assert_eq!(calls[0].id.as_deref(), Some("call_abc"));
        assert_eq!(calls[0].arguments["city"], "Paris");
        let Event::Done(finished) = &events[4] else { panic!("{:?}", events[4]) };
        assert_eq!((finished.metrics.prompt_eval_count, finished.metrics.eval_count), (30, 9));
        assert_eq!(finished.done_reason, DoneReason::Stop);
    }

    #[test]
    fn completions_infill_and_errors() {
        let (events, end) = decode(&[
            r#"data: {"choices":[{"text":"fn main","index":0,"finish_reason":null}]}"#,
            r#"data: {"choices":[{"text":"()","index":0,"finish_reason":"length"}]}"#,
        ]);
        assert_eq!(end, Ok(()), "a finish reason without [DONE] still ends the stream");
        assert_eq!(events[..2], [Event::Content("fn main".into()), Event::Content("()".into())]);
        assert!(matches!(&events[2], Event::Done(finished) if finished.done_reason == DoneReason::Length));

        let (events, end) = decode(&[
            r#"data: {"content":"x + y","stop":false}"#,
            r#"data: {"content":"","stop":true,"stop_type":"eos","tokens_evaluated":40,"tokens_predicted":3,"timings":{"prompt_n":40,"prompt_ms":12.5,"predicted_n":3,"predicted_ms":30.0}}"#,
        ]);
        assert_eq!(end, Ok(()));
        let Event::Done(finished) = &events[1] else { panic!("{events:?}") };
        assert_eq!((finished.metrics.prompt_eval_count, finished.metrics.eval_count), (40, 3));
        assert_eq!(finished.metrics.eval_duration, std::time::Duration::from_millis(30));

        let (_, end) = decode(&[r#"data: {"error":{"message":"context length exceeded","type":"BadRequestError"}}"#]);
        assert_eq!(end, Err("context length exceeded".into()));
        let (_, end) = decode(&[r#"data: {"choices":[{"delta":{"content":"a"}}]}"#]);
        assert_eq!(end, Err(crate::decode::EARLY_END.into()));
    }

    #[test]
    fn completions_pick_their_route() {
        let input = GenerateInput {
            prompt: "def add(a, b):\n    return ".into(),
            suffix: Some("\n".into()),
            options: serving::Options { num_predict: Some(16), ..Default::default() },
            ..Default::default()
        };
        let CompletionRoute::Infill(body) = completion("coder", &input) else { panic!() };
        assert_eq!((body["input_suffix"].as_str(), body["n_predict"].as_i64()), (Some("\n"), Some(16)));
        let raw = GenerateInput { prompt: "x".into(), raw: true, ..Default::default() };
        assert!(matches!(completion("m", &raw), CompletionRoute::Raw(body) if body["prompt"] == "x"));
        let templated = GenerateInput { prompt: "Why?".into(), system: Some("Be brief.".into()), ..Default::default() };
        let CompletionRoute::Chat(body) = completion("m", &templated) else { panic!() };
        assert_eq!(
            body["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}])
        );
    }

    #[test]
    fn chat_bodies_speak_openai() {
        let input = ChatInput {
            messages: vec![
                ChatMessage {
                    tool_calls: vec![serving::ToolCall {
                        id: Some("call_1".into()),
                        index: 0,
                        name: "f".into(),
                        arguments: json!({"x": 1}).as_object().unwrap().clone(),
                    }],
                    ..ChatMessage::new("assistant", "")
                },
                ChatMessage { tool_call_id: Some("call_1".into()), ..ChatMessage::new("tool", "2") },
            ],
            tools: vec![json!({"type": "function", "function": {"name": "f", "parameters": {}}})],
            tool_choice: ToolChoice::Required,
            output_schema: Some(json!({"type": "object"})),
            think: Think::Off,
            options: serving::Options { num_predict: Some(5), seed: Some(1), ..Default::default() },
            ..Default::default()
        };
        let body = chat_body("llama-3.3-70b", &input);
        assert_eq!(body["messages"][0]["tool_calls"][0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(body["messages"][1]["tool_call_id"], "call_1");
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
        assert_eq!(body["chat_template_kwargs"], json!({"enable_thinking": false}));
        assert_eq!((body["max_tokens"].as_i64(), body["seed"].as_i64()), (Some(5), Some(1)));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn embeddings_come_back_in_input_order() {
        let body = json!({"data": [{"index": 1, "embedding": [0.5, 0.5]}, {"index": 0, "embedding": [1, 0]}], "usage": {"prompt_tokens": 7}});
        let (vectors, tokens) = embeddings(&body, 2).unwrap();
        assert_eq!(vectors, [vec![1.0, 0.0], vec![0.5, 0.5]]);
        assert_eq!(tokens, 7);
        assert!(embeddings(&json!({"data": [{"embedding": [1]}]}), 2).is_err());
        assert!(embeddings(&json!({"data": [{"embedding": ["a"]}]}), 1).is_err());
    }
}
