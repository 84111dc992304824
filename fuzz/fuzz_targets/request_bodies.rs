//! Request (and response) bodies of `ollama_api` from arbitrary bytes, then the loosely typed
//! fields the server reads out of them (`Options::from_map`, `KeepAlive`): never a panic, and
//! whatever deserializes serializes and reads back again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ollama_api::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

fn body<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let bytes = serde_json::to_vec(&value).expect("a deserialized body serializes");
    if let Err(error) = serde_json::from_slice::<T>(&bytes) {
        panic!("{} does not read back: {error}: {}", std::any::type_name::<T>(), String::from_utf8_lossy(&bytes));
    }
    Some(value)
}

fn options(map: Option<&Map<String, Value>>) {
    let Some(map) = map else { return };
    if let Ok(options) = Options::from_map(map) {
        let merged = Options::default().merged_with(&options);
        assert_eq!(merged, options);
        let _ = options.merged_with(&Options::default());
    }
}

fn keep_alive(value: Option<&Value>) {
    let Some(value) = value else { return };
    if let Ok(keep_alive) = KeepAlive::from_json(value) {
        let _ = keep_alive.is_zero();
    }
}

fn messages(messages: &[Message]) {
    for message in messages {
        for call in message.tool_calls.iter().flatten() {
            let _ = serde_json::to_string(&call.function);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(request) = body::<GenerateRequest>(data) {
        options(request.options.as_ref());
        keep_alive(request.keep_alive.as_ref());
    }
    if let Some(request) = body::<ChatRequest>(data) {
        options(request.options.as_ref());
        keep_alive(request.keep_alive.as_ref());
        messages(&request.messages);
    }
    if let Some(request) = body::<CreateRequest>(data) {
        options(request.parameters.as_ref());
        messages(request.messages.as_deref().unwrap_or_default());
    }
    body::<ShowRequest>(data);
    body::<CopyRequest>(data);
    body::<DeleteRequest>(data);
    body::<Message>(data);
    body::<ToolCall>(data);
    // Responses, as `modeld`'s client reads them.
    body::<GenerateResponse>(data);
    body::<ChatResponse>(data);
    body::<ProgressResponse>(data);
    body::<ShowResponse>(data);
    body::<ListResponse>(data);
    body::<ProcessResponse>(data);
    body::<VersionResponse>(data);
    body::<ErrorResponse>(data);

    // Any JSON value as an options object or a keep_alive; any text as a duration.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        options(value.as_object());
        keep_alive(Some(&value));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeepAlive::parse(text);
        let _ = parse_go_duration(text);
    }
});
