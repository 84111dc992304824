//! In-process API tests on the scripted engine: requests go through `app(..).oneshot(..)`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use engine::scripted::{ScriptedEngine, DEFAULT_REPLY};
use engine::{Scheduler, SchedulerConfig};
use http_body_util::BodyExt;
use model_store::gguf::{write_gguf, WriteValue};
use model_store::{Digest, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn tiny_gguf() -> Vec<u8> {
    let mut bytes = Vec::new();
    write_gguf(
        &mut bytes,
        &[
            ("general.architecture", WriteValue::String("llama".into())),
            ("general.name", WriteValue::String("tiny".into())),
            ("llama.context_length", WriteValue::U32(4096)),
            ("tokenizer.chat_template", WriteValue::String(CHATML.into())),
            ("tokenizer.ggml.tokens", WriteValue::Strings((0..10).map(|n| n.to_string()).collect())),
        ],
        &[("token_embd.weight", vec![4, 4], vec![0.25; 16])],
    )
    .unwrap();
    bytes
}

async fn harness_with(engine: ScriptedEngine) -> Harness {
    harness_with_config(engine, SchedulerConfig { num_parallel: 4, ..SchedulerConfig::default() }).await
}

async fn harness_with_config(engine: ScriptedEngine, scheduler_config: SchedulerConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("models")).unwrap();
    let scheduler = Scheduler::new(Arc::new(engine), scheduler_config);
    // Ollama's 400 for tools on a model without a tool format, as the `refuse` setting keeps it
    // (the default constrains decoding, which the scripted engine cannot).
    let core_config = serving::CoreConfig {
        tools_without_template: serving::ToolsWithoutTemplate::Refuse,
        ..serving::CoreConfig::new(2048, None)
    };
    let core = serving::Core::new(store, scheduler, core_config);
    let config = ServerConfig {
        version: "0.0.0-test".into(),
        access: AccessPolicy::loopback_default(),
        max_blob_bytes: 1 << 20,
        blob_grace: Duration::from_secs(3600),
        pull_part_bytes: None,
    };
    let harness = Harness { _dir: dir, state: AppState::new(core, config) };
    let gguf = tiny_gguf();
    let digest = Digest::of_bytes(&gguf);
    let (status, _) = harness.raw(Method::POST, &format!("/api/blobs/{digest}"), Body::from(gguf)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = harness
        .call(
            Method::POST,
            "/api/create",
            json!({"model": "tiny", "files": {"tiny.gguf": digest.to_string()}, "stream": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    harness
}

async fn harness() -> Harness {
    harness_with(ScriptedEngine::new()).await
}

impl Harness {
    async fn raw(&self, method: Method, path: &str, body: Body) -> (StatusCode, bytes::Bytes) {
        let request = Request::builder().method(method).uri(path).body(body).unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        (status, response.into_body().collect().await.unwrap().to_bytes())
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, bytes) = self.raw(method, path, Body::from(body.to_string())).await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn stream(&self, path: &str, body: Value) -> Vec<Value> {
        let (status, bytes) = self.raw(Method::POST, path, Body::from(body.to_string())).await;
        assert_eq!(status, StatusCode::OK);
        std::str::from_utf8(&bytes).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

#[tokio::test]
async fn root_version_and_tags() {
    let harness = harness().await;
    let (status, body) = harness.raw(Method::GET, "/", Body::empty()).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"Ollama is running"[..]));
    let (_, version) = harness.call(Method::GET, "/api/version", Value::Null).await;
    assert_eq!(version, json!({"version": "0.0.0-test"}));
    let (_, tags) = harness.call(Method::GET, "/api/tags", Value::Null).await;
    let model = &tags["models"][0];
    assert_eq!(model["name"], "tiny:latest");
    assert_eq!(model["details"]["family"], "llama");
    assert_eq!(model["details"]["format"], "gguf");
    assert_eq!(model["details"]["quantization_level"], "F32");
    assert_eq!(model["digest"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn show_describes_the_model() {
    let harness = harness().await;
    let (status, show) = harness.call(Method::POST, "/api/show", json!({"model": "tiny"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["model_info"]["tokenizer.ggml.tokens"], json!([]), "long arrays elided");
    assert!(show["model_info"].get("general.name").is_none());
    assert_eq!(show["capabilities"], json!(["completion"]));
    assert_eq!(show["template"], CHATML);
    assert!(show["modelfile"].as_str().unwrap().contains("# FROM tiny:latest"));

    let (_, verbose) = harness.call(Method::POST, "/api/show", json!({"model": "tiny", "verbose": true})).await;
    assert_eq!(verbose["model_info"]["tokenizer.ggml.tokens"].as_array().unwrap().len(), 10);

    let (status, missing) = harness.call(Method::POST, "/api/show", json!({"model": "nope"})).await;
    assert_eq!((status, missing), (StatusCode::NOT_FOUND, json!({"error": "model 'nope:latest' not found"})));
    let (status, _) = harness.call(Method::POST, "/api/show", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn generate_whole_and_streamed() {
    let harness = harness().await;
    let (status, whole) =
        harness.call(Method::POST, "/api/generate", json!({"model": "tiny", "prompt": "Hi", "stream": false})).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["response"], DEFAULT_REPLY);
    assert_eq!(whole["done"], true);
    assert_eq!(whole["done_reason"], "stop");
    assert_eq!(whole["eval_count"], DEFAULT_REPLY.chars().count());
    let rendered = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(whole["prompt_eval_count"], rendered.chars().count());
    assert!(whole["total_duration"].as_u64().unwrap() >= whole["eval_duration"].as_u64().unwrap());
    let context: Vec<u32> = serde_json::from_value(whole["context"].clone()).unwrap();
    assert_eq!(context.len(), rendered.chars().count() + DEFAULT_REPLY.chars().count());

    let chunks = harness.stream("/api/generate", json!({"model": "tiny", "prompt": "Hi"})).await;
    let (last, pieces) = chunks.split_last().unwrap();
    assert!(pieces.iter().all(|chunk| chunk["done"] == false && chunk["created_at"].is_string()));
    let text: String = pieces.iter().map(|chunk| chunk["response"].as_str().unwrap()).collect();
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
}

#[tokio::test]
async fn num_predict_and_stop_end_generation() {
    let harness = harness().await;
    let (_, bounded) = harness
        .call(
            Method::POST,
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "stream": false, "options": {"num_predict": 5}}),
        )
        .await;
    assert_eq!(bounded["eval_count"], 5);
    assert_eq!(bounded["done_reason"], "length");
    assert_eq!(bounded["response"], "Hello");

    let (_, stopped) = harness
        .call(
            Method::POST,
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "stream": false, "options": {"stop": [" from"]}}),
        )
        .await;
    assert_eq!(stopped["response"], "Hello");
    assert_eq!(stopped["done_reason"], "stop");

    let (_, small_context) = harness
        .call(
            Method::POST,
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "raw": true, "stream": false, "options": {"num_ctx": 8}}),
        )
        .await;
    assert_eq!(small_context["done_reason"], "length");
    assert_eq!(small_context["eval_count"], 6, "8 tokens of context minus a 2-token prompt");
    assert!(small_context.get("context").is_none(), "raw mode returns no context");
}

#[tokio::test]
async fn chat_turns_and_scripted_replies() {
    let harness = harness().await;
    let first = json!([{"role": "user", "content": "say SCRIPT<<Paris.>>"}]);
    let (status, answer) =
        harness.call(Method::POST, "/api/chat", json!({"model": "tiny", "messages": first, "stream": false})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["message"], json!({"role": "assistant", "content": "Paris."}));
    let first_count = answer["prompt_eval_count"].as_u64().unwrap();

    let second = json!([
        {"role": "user", "content": "say SCRIPT<<Paris.>>"},
        {"role": "assistant", "content": "Paris.", "thinking": "not fed back"},
        {"role": "user", "content": "again"}
    ]);
    let (_, answer) =
        harness.call(Method::POST, "/api/chat", json!({"model": "tiny", "messages": second, "stream": false})).await;
    assert!(answer["prompt_eval_count"].as_u64().unwrap() > first_count + "Paris.again".len() as u64);

    let chunks = harness.stream("/api/chat", json!({"model": "tiny", "messages": first})).await;
    let text: String = chunks.iter().map(|chunk| chunk["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "Paris.");
    assert_eq!(chunks.last().unwrap()["done"], true);
}

#[tokio::test]
async fn load_and_unload_with_empty_input() {
    let harness = harness().await;
    let (_, loaded) = harness.call(Method::POST, "/api/generate", json!({"model": "tiny"})).await;
    assert_eq!(loaded["done_reason"], "load");
    let (_, ps) = harness.call(Method::GET, "/api/ps", Value::Null).await;
    assert_eq!(ps["models"][0]["name"], "tiny:latest");
    assert_eq!(ps["models"][0]["context_length"], 2048);

    let (_, unloaded) =
        harness.call(Method::POST, "/api/chat", json!({"model": "tiny", "messages": [], "keep_alive": 0})).await;
    assert_eq!(unloaded["done_reason"], "unload");
    assert_eq!(unloaded["message"], json!({"role": "assistant", "content": ""}));
    let (_, ps) = harness.call(Method::GET, "/api/ps", Value::Null).await;
    assert_eq!(ps, json!({"models": []}));

    harness
        .call(Method::POST, "/api/generate", json!({"model": "tiny", "prompt": "x", "keep_alive": 0, "stream": false}))
        .await;
    let (_, ps) = harness.call(Method::GET, "/api/ps", Value::Null).await;
    assert_eq!(ps, json!({"models": []}), "keep_alive 0 unloads after the request");
}

#[tokio::test]
async fn errors_match_ollama() {
    let harness = harness().await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/api/generate",
            json!({"model": "missing", "prompt": "x"}),
            StatusCode::NOT_FOUND,
            "model 'missing' not found",
        ),
        ("/api/generate", json!({"prompt": "x"}), StatusCode::NOT_FOUND, "model '' not found"),
        ("/api/chat", json!({"messages": []}), StatusCode::BAD_REQUEST, "model is required"),
        ("/api/chat", json!({"model": "missing", "messages": []}), StatusCode::NOT_FOUND, "model 'missing' not found"),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "raw": true, "system": "s"}),
            StatusCode::BAD_REQUEST,
            "raw mode does not support template, system, or context",
        ),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "suffix": "y"}),
            StatusCode::BAD_REQUEST,
            "registry.ollama.ai/library/tiny:latest does not support insert",
        ),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "keep_alive": "soon"}),
            StatusCode::BAD_REQUEST,
            "time: invalid duration \"soon\"",
        ),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "options": {"stop": "x"}}),
            StatusCode::INTERNAL_SERVER_ERROR,
            "option \"stop\" must be of type array",
        ),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "think": true}),
            StatusCode::BAD_REQUEST,
            "\"tiny\" does not support thinking",
        ),
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "x", "top_logprobs": 21}),
            StatusCode::BAD_REQUEST,
            "top_logprobs must be between 0 and 20",
        ),
        (
            "/api/chat",
            json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}),
            StatusCode::BAD_REQUEST,
            "registry.ollama.ai/library/tiny:latest does not support tools",
        ),
        (
            "/api/copy",
            json!({"source": "missing", "destination": "x"}),
            StatusCode::NOT_FOUND,
            "model \"missing\" not found",
        ),
        (
            "/api/copy",
            json!({"source": "tiny", "destination": "bad name"}),
            StatusCode::BAD_REQUEST,
            "destination \"bad name\" is invalid",
        ),
        ("/api/create", json!({"model": "new"}), StatusCode::BAD_REQUEST, "neither 'from' or 'files' was specified"),
        (
            "/api/create",
            json!({"model": "new", "files": {"/abs.gguf": "sha256:00"}}),
            StatusCode::BAD_REQUEST,
            "file path must be relative",
        ),
        (
            "/api/create",
            json!({"model": "new", "files": {"a.gguf": "sha256:00"}}),
            StatusCode::BAD_REQUEST,
            "invalid digest format",
        ),
    ];
    for (path, body, status, message) in cases {
        let (actual_status, actual_body) = harness.call(Method::POST, path, body.clone()).await;
        assert_eq!((actual_status, actual_body), (status, json!({"error": message})), "{path} {body}");
    }
    let (status, body) = harness.call(Method::DELETE, "/api/delete", json!({"model": "missing"})).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"error": "model 'missing' not found"})));

    let (status, body) = harness.raw(Method::POST, "/api/generate", Body::from("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    let (status, body) = harness.raw(Method::POST, "/api/chat", Body::empty()).await;
    assert_eq!((status, &body[..]), (StatusCode::BAD_REQUEST, &br#"{"error":"missing request body"}"#[..]));
}

#[tokio::test]
async fn blobs_are_verified() {
    let harness = harness().await;
    let digest = Digest::of_bytes(b"payload");
    let path = format!("/api/blobs/{digest}");
    assert_eq!(harness.raw(Method::HEAD, &path, Body::empty()).await.0, StatusCode::NOT_FOUND);
    let (status, body) = harness.raw(Method::POST, &path, Body::from("other payload")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("digest mismatch"));
    assert_eq!(harness.raw(Method::HEAD, &path, Body::empty()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(harness.raw(Method::POST, &path, Body::from("payload")).await.0, StatusCode::CREATED);
    assert_eq!(harness.raw(Method::POST, &path, Body::from("payload")).await.0, StatusCode::OK);
    assert_eq!(harness.raw(Method::HEAD, &path, Body::empty()).await.0, StatusCode::OK);
    assert_eq!(harness.raw(Method::HEAD, "/api/blobs/sha256:xyz", Body::empty()).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn create_from_copy_and_delete_round_trip() {
    let harness = harness().await;
    let (status, progress) = harness
        .stream_status(json!({"model": "custom", "from": "tiny", "system": "Be brief.", "parameters": {"temperature": 0.1, "stop": ["<|im_end|>"]}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(progress.last().unwrap(), &json!({"status": "success"}));
    let (_, show) = harness.call(Method::POST, "/api/show", json!({"model": "custom"})).await;
    assert_eq!(show["system"], "Be brief.");
    assert!(show["parameters"].as_str().unwrap().contains("temperature"));

    assert_eq!(
        harness.call(Method::POST, "/api/copy", json!({"source": "custom", "destination": "user/other:v2"})).await.0,
        StatusCode::OK
    );
    let (_, tags) = harness.call(Method::GET, "/api/tags", Value::Null).await;
    let names: Vec<&str> =
        tags["models"].as_array().unwrap().iter().map(|model| model["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"user/other:v2") && names.contains(&"custom:latest") && names.contains(&"tiny:latest"));

    for name in ["custom", "user/other:v2", "tiny"] {
        assert_eq!(harness.call(Method::DELETE, "/api/delete", json!({"model": name})).await.0, StatusCode::OK);
    }
    let (_, tags) = harness.call(Method::GET, "/api/tags", Value::Null).await;
    assert_eq!(tags, json!({"models": []}));
}

impl Harness {
    async fn stream_status(&self, body: Value) -> (StatusCode, Vec<Value>) {
        let (status, bytes) = self.raw(Method::POST, "/api/create", Body::from(body.to_string())).await;
        let lines =
            std::str::from_utf8(&bytes).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        (status, lines)
    }
}

#[tokio::test]
async fn dropped_stream_stops_generation() {
    let engine = ScriptedEngine::with_token_delay(Duration::from_millis(20));
    let n_tokens_sent = engine.n_tokens_sent();
    let harness = harness_with(engine).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/generate")
        .body(Body::from(json!({"model": "tiny", "prompt": "Hi"}).to_string()))
        .unwrap();
    let response = app(harness.state.clone()).oneshot(request).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = n_tokens_sent.load(Ordering::SeqCst);
    assert!(sent <= 3, "generation went on after the client left: {sent} tokens");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(n_tokens_sent.load(Ordering::SeqCst), sent);
}

#[tokio::test]
async fn failure_midway_ends_the_stream_with_an_error_line() {
    let harness = harness().await;
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "SCRIPT<<Par!FAIL!>>"}]});
    let chunks = harness.stream("/api/chat", body.clone()).await;
    let (last, pieces) = chunks.split_last().unwrap();
    let text: String = pieces.iter().map(|chunk| chunk["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "Par");
    assert_eq!(last, &json!({"error": "scripted failure"}));

    let mut whole = body;
    whole["stream"] = json!(false);
    let (status, error) = harness.call(Method::POST, "/api/chat", whole).await;
    assert_eq!((status, error), (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "scripted failure"})));
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let harness = harness().await;
    let (status, body) = harness.raw(Method::GET, "/api/nothing", Body::empty()).await;
    assert_eq!((status, &body[..]), (StatusCode::NOT_FOUND, &b"404 page not found"[..]));
    let (status, _) = harness.raw(Method::GET, "/api/chat", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn openai_chat_completions_whole_and_streamed() {
    let harness = harness().await;
    let messages = json!([{"role": "user", "content": [{"type": "text", "text": "say SCRIPT<<Paris.>>"}]}]);
    let (status, whole) =
        harness.call(Method::POST, "/v1/chat/completions", json!({"model": "tiny", "messages": messages})).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(whole["choices"][0]["message"], json!({"role": "assistant", "content": "Paris."}));
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    assert_eq!(whole["usage"]["completion_tokens"], 6);
    let usage = &whole["usage"];
    assert_eq!(usage["total_tokens"], usage["prompt_tokens"].as_u64().unwrap() + 6);

    let body = json!({"model": "tiny", "messages": messages, "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 3});
    let (status, bytes) = harness.raw(Method::POST, "/v1/chat/completions", Body::from(body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let text = std::str::from_utf8(&bytes).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|event| !event.is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(&event["data: ".len()..]).unwrap())
        .collect();
    let content: String = chunks.iter().filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Par");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0], json!({"index": 0, "delta": {}, "finish_reason": "length"}));
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn openai_completions_models_and_errors() {
    let harness = harness().await;
    let (status, completion) = harness
        .call(Method::POST, "/v1/completions", json!({"model": "tiny", "prompt": "SCRIPT<<ok>>", "stop": "k"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{completion}");
    assert_eq!(completion["choices"][0]["text"], "o");
    assert_eq!(completion["object"], "text_completion");

    let (_, models) = harness.call(Method::GET, "/v1/models", Value::Null).await;
    assert_eq!(models["data"][0]["id"], "tiny:latest");
    assert_eq!(models["data"][0]["owned_by"], "library");
    let (status, model) = harness.call(Method::GET, "/v1/models/tiny", Value::Null).await;
    assert_eq!((status, &model["id"]), (StatusCode::OK, &json!("tiny")));

    let cases = vec![
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": []}),
            400,
            "invalid_request_error",
            "[] is too short - 'messages'",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "model is required",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "missing", "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "model 'missing' not found",
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "x", "stop": [1]}),
            400,
            "invalid_request_error",
            "invalid type for 'stop' field: float64",
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "x", "suffix": "y"}),
            400,
            "invalid_request_error",
            "registry.ollama.ai/library/tiny:latest does not support insert",
        ),
    ];
    for (path, body, status, kind, message) in cases {
        let (actual_status, actual) = harness.call(Method::POST, path, body.clone()).await;
        assert_eq!(actual_status.as_u16(), status, "{body}");
        assert_eq!(actual, json!({"error": {"message": message, "type": kind, "param": null, "code": null}}), "{body}");
    }
    let (status, missing) = harness.call(Method::GET, "/v1/models/missing", Value::Null).await;
    assert_eq!((status, &missing["error"]["type"]), (StatusCode::NOT_FOUND, &json!("not_found_error")));
}

#[tokio::test]
async fn format_is_checked_before_decoding() {
    let harness = harness().await;
    let cases = vec![
        (json!("yaml"), "invalid format: \"yaml\"; expected \"json\" or a valid JSON Schema object"),
        (json!({"type": "thing"}), "invalid JSON schema: unknown type \"thing\""),
        (
            json!({"type": "object", "properties": {"age": {"type": "integr"}}}),
            "invalid JSON schema at properties.age: unknown type \"integr\"",
        ),
        (json!({"type": "object", "properties": []}), "invalid JSON schema: properties must be an object"),
        (
            json!({"type": "object", "required": "name"}),
            "invalid JSON schema: required must be a list of property names",
        ),
    ];
    for (format, message) in cases {
        let body = json!({"model": "tiny", "prompt": "x", "format": format, "stream": false});
        let (status, error) = harness.call(Method::POST, "/api/generate", body).await;
        assert_eq!((status, error), (StatusCode::BAD_REQUEST, json!({"error": message})), "{format}");
    }
    // A valid schema reaches the engine; the scripted one says it cannot honour it.
    let body =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "format": "json", "stream": false});
    let (status, error) = harness.call(Method::POST, "/api/chat", body).await;
    assert_eq!(
        (status, error),
        (StatusCode::BAD_REQUEST, json!({"error": "the scripted engine cannot constrain its output"}))
    );
}

#[tokio::test]
async fn a_full_queue_is_ollamas_503() {
    let config = SchedulerConfig { max_queue: 0, ..SchedulerConfig::default() };
    let harness = harness_with_config(ScriptedEngine::new(), config).await;
    let body = json!({"model": "tiny", "prompt": "Hi", "stream": false});
    let (status, error) = harness.call(Method::POST, "/api/generate", body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error, json!({"error": "server busy, please try again.  maximum pending requests exceeded"}));
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, error) = harness.call(Method::POST, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"]["type"], "api_error");
}

mod agents;
mod hardening;
