//! The core on the scripted engine: what every front end gets, without a protocol in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::scripted::ScriptedEngine;
use engine::{Scheduler, SchedulerConfig};
use futures_util::StreamExt;
use model_store::gguf::{write_gguf, WriteValue};
use model_store::{media_type, Layer, Manifest, ModelName, Store};

use super::*;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A core whose store holds `tiny` (ChatML template, FIM tokens) and `embedder` (a pooling
/// type: an embedding model).
fn core_with(engine: ScriptedEngine, num_parallel: usize) -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("models")).unwrap();
    let vocabulary: Vec<String> =
        ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"].iter().map(|token| token.to_string()).collect();
    add_model(&store, "tiny", &[("tokenizer.chat_template", WriteValue::String(CHATML.into()))], vocabulary);
    add_model(&store, "embedder", &[("bert.pooling_type", WriteValue::U32(1))], Vec::new());
    let scheduler = Scheduler::new(Arc::new(engine), SchedulerConfig { num_parallel, ..SchedulerConfig::default() });
    let core = Core::new(store, scheduler, CoreConfig::new(2048, None));
    (dir, core)
}

fn add_model(store: &Store, name: &str, extra: &[(&str, WriteValue)], vocabulary: Vec<String>) {
    let architecture = if extra.iter().any(|(key, _)| key.starts_with("bert.")) { "bert" } else { "llama" };
    let mut metadata = vec![
        ("general.architecture", WriteValue::String(architecture.into())),
        ("tokenizer.ggml.tokens", WriteValue::Strings(vocabulary)),
    ];
    metadata.extend(extra.iter().map(|(key, value)| (*key, value.clone())));
    let mut gguf = Vec::new();
    write_gguf(&mut gguf, &metadata, &[("token_embd.weight", vec![4, 4], vec![0.25; 16])]).unwrap();
    let (digest, size) = store.write_blob_bytes(&gguf).unwrap();
    let (config_digest, config_size) = store.write_blob_bytes(b"{}").unwrap();
    let layer = |media_type: &str, digest, size| Layer { media_type: media_type.into(), digest, size, from: None };
    let manifest = Manifest::new(
        layer(media_type::CONFIG, config_digest, config_size),
        vec![layer(media_type::MODEL, digest, size)],
    );
    store.put(&ModelName::parse(name).unwrap(), &manifest).unwrap();
}

fn chat(text: &str, priority: Priority) -> ChatInput {
    ChatInput {
        model: "tiny".into(),
        messages: vec![ChatMessage::new("user", text)],
        truncate: true,
        priority,
        ..ChatInput::default()
    }
}

#[tokio::test]
async fn a_completion_does_not_wait_behind_a_long_chat_with_one_slot() {
    let (_dir, core) = core_with(ScriptedEngine::with_token_delay(Duration::from_millis(20)), 1);
    let long_reply = "long ".repeat(60);
    let chat_started = Instant::now();
    let mut long_chat =
        core.chat(chat(&format!("SCRIPT<<{long_reply}>>"), Priority::Chat)).await.unwrap().into_events();
    assert!(matches!(long_chat.next().await, Some(Event::Content(_))), "the chat is generating");

    let completion = GenerateInput {
        model: "tiny".into(),
        prompt: "SCRIPT<<done>>let x = ".into(),
        suffix: Some(";".into()),
        truncate: true,
        priority: Priority::Interactive,
        ..GenerateInput::default()
    };
    let reply = collect(core.generate(completion).await.unwrap().into_events()).await.unwrap();
    let completion_took = chat_started.elapsed();
    assert_eq!(reply.content, "done");

    let chat_reply = collect(long_chat).await.unwrap();
    let chat_took = chat_started.elapsed();
    assert!(chat_reply.finished.is_some());
    assert!(
        completion_took < chat_took,
        "the completion ({completion_took:?}) finished after the chat it should not wait for ({chat_took:?})"
    );

    // A second chat does wait: the reserved slot is for interactive requests.
    let mut first = core.chat(chat(&format!("SCRIPT<<{long_reply}>>"), Priority::Chat)).await.unwrap().into_events();
    assert!(first.next().await.is_some());
    let second =
        tokio::time::timeout(Duration::from_millis(200), core.chat(chat("SCRIPT<<hi>>", Priority::Chat))).await;
    assert!(second.is_err(), "a second chat ran beside the first with one slot");
}

#[tokio::test]
async fn errors_name_the_model_as_spelled_and_say_what_it_cannot_do() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let missing = core.chat(ChatInput { model: "Missing:Tag".into(), ..chat("hi", Priority::Chat) }).await;
    assert!(matches!(missing.err().unwrap(), ServingError::ModelNotFound(name) if name == "Missing:Tag"));
    let unparsable = core.generate(GenerateInput { model: "bad name!".into(), ..GenerateInput::default() }).await;
    assert_eq!(unparsable.err().unwrap().to_string(), "model 'bad name!' not found");

    let embedder = core.chat(ChatInput { model: "embedder".into(), ..chat("hi", Priority::Chat) }).await;
    assert_eq!(embedder.err().unwrap().to_string(), "\"embedder\" does not support chat");
    let tools = ChatInput { tools: vec![serde_json::json!({"type": "function"})], ..chat("hi", Priority::Chat) };
    assert_eq!(
        core.chat(tools).await.err().unwrap().to_string(),
        "registry.ollama.ai/library/tiny:latest does not support tools"
    );
    let thinking = ChatInput { think: Think::On { effort: None }, ..chat("hi", Priority::Chat) };
    assert_eq!(core.chat(thinking).await.err().unwrap().to_string(), "\"tiny\" does not support thinking");
}

#[tokio::test]
async fn models_have_kinds_and_typed_capabilities() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let tiny = core.resolve_spelled("tiny").await.unwrap();
    assert_eq!(tiny.kind(), engine::ModelKind::Generation);
    assert_eq!(tiny.capabilities(), [Capability::Completion, Capability::Insert]);
    let embedder = core.resolve_spelled("embedder").await.unwrap();
    assert_eq!(embedder.kind(), engine::ModelKind::Embedding);
    assert_eq!(embedder.capabilities(), [Capability::Embedding]);
}

#[tokio::test]
async fn load_and_unload_are_typed_outcomes() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let load = ChatInput { messages: Vec::new(), ..chat("", Priority::Chat) };
    assert!(matches!(core.chat(load).await.unwrap(), Started::Loaded));
    assert_eq!(core.running_models().await.len(), 1);
    let unload = GenerateInput {
        model: "tiny".into(),
        keep_alive: Some(KeepAlive::For(Duration::ZERO)),
        ..GenerateInput::default()
    };
    assert!(matches!(core.generate(unload).await.unwrap(), Started::Unloaded));
    assert!(core.running_models().await.is_empty());
}

#[tokio::test]
async fn a_tool_call_arrives_as_a_core_type_with_an_id() {
    let (dir, core) = core_with(ScriptedEngine::new(), 1);
    let hermes =
        "{% for message in messages %}{{ message['content'] }}{% endfor %}{% if tools %}<tool_call>{% endif %}";
    add_model(core.store(), "caller", &[("tokenizer.chat_template", WriteValue::String(hermes.into()))], Vec::new());
    let script = r#"SCRIPT<<<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
>>"#;
    let input = ChatInput {
        model: "caller".into(),
        tools: vec![serde_json::json!({"type": "function", "function": {"name": "get_weather"}})],
        ..chat(script, Priority::Chat)
    };
    let reply = collect(core.chat(input).await.unwrap().into_events()).await.unwrap();
    assert_eq!(reply.tool_calls.len(), 1, "{reply:?}");
    let call = &reply.tool_calls[0];
    assert_eq!((call.index, call.name.as_str()), (0, "get_weather"));
    assert_eq!(call.arguments["city"], "Paris");
    assert!(call.id.as_deref().is_some_and(|id| id.starts_with("call_")));
    assert_eq!(reply.finished.unwrap().done_reason, DoneReason::Stop);
    drop(dir);
}
