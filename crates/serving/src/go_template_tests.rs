//! Models whose template is one of Ollama's Go templates, through the whole pipeline on the
//! scripted engine (whose tokens are characters, so the prompt reads back as text): the
//! prompts are the ones Ollama renders (`crates/go-template/tests/ollama`).

use std::sync::Arc;

use engine::scripted::ScriptedEngine;
use engine::{Scheduler, SchedulerConfig};
use model_store::gguf::{write_gguf, WriteValue};
use model_store::{media_type, Layer, Manifest, ModelName, Store};
use serde_json::Value;

use super::*;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("../../go-template/tests/ollama/", $path))
    };
}

/// A core whose store holds one model per template, with FIM tokens in its vocabulary.
fn core_with_templates(templates: &[(&str, &str)]) -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("models")).unwrap();
    let vocabulary: Vec<String> = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"].map(String::from).to_vec();
    let metadata = [
        ("general.architecture", WriteValue::String("llama".into())),
        ("tokenizer.ggml.tokens", WriteValue::Strings(vocabulary)),
    ];
    let mut gguf = Vec::new();
    write_gguf(&mut gguf, &metadata, &[("token_embd.weight", vec![4, 4], vec![0.25; 16])]).unwrap();
    let (digest, size) = store.write_blob_bytes(&gguf).unwrap();
    let (config_digest, config_size) = store.write_blob_bytes(b"{}").unwrap();
    let layer = |media_type: &str, digest, size| Layer { media_type: media_type.into(), digest, size, from: None };
    for (name, template) in templates {
        let (template_digest, template_size) = store.write_blob_bytes(template.as_bytes()).unwrap();
        let manifest = Manifest::new(
            layer(media_type::CONFIG, config_digest.clone(), config_size),
            vec![
                layer(media_type::MODEL, digest.clone(), size),
                layer(media_type::TEMPLATE, template_digest, template_size),
            ],
        );
        store.put(&ModelName::parse(name).unwrap(), &manifest).unwrap();
    }
    let scheduler = Scheduler::new(Arc::new(ScriptedEngine::new()), SchedulerConfig::default());
    (dir, Core::new(store, scheduler, CoreConfig::new(2048, None)))
}

/// Ollama's render of `template` for the conversation `case`.
fn ollama_render(template: &str, case: &str) -> String {
    fixture!("expected.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|expected| expected["template"] == template && expected["case"] == case)
        .and_then(|expected| expected["output"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no render of {template} / {case}"))
}

fn conversation(case: &str) -> Value {
    let conversations: Vec<Value> = serde_json::from_str(fixture!("conversations.json")).unwrap();
    conversations.into_iter().find(|conversation| conversation["name"] == case).unwrap()
}

/// A conversation of the fixtures as the core's chat input.
fn chat_input(model: &str, case: &str) -> ChatInput {
    let conversation = conversation(case);
    let text = |value: &Value, key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let messages = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| ChatMessage {
            role: text(message, "role"),
            content: text(message, "content"),
            thinking: message["thinking"].as_str().map(str::to_owned),
            tool_calls: message["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(index, call)| ToolCall {
                    id: call["id"].as_str().map(str::to_owned),
                    index,
                    name: text(&call["function"], "name"),
                    arguments: call["function"]["arguments"].as_object().cloned().unwrap_or_default(),
                })
                .collect(),
            tool_name: message["tool_name"].as_str().map(str::to_owned),
            tool_call_id: message["tool_call_id"].as_str().map(str::to_owned),
            ..ChatMessage::default()
        })
        .collect();
    let tools: serde_json::Map<String, Value> = serde_json::from_str(fixture!("tools.json")).unwrap();
    let tools = match conversation["tools"].as_str() {
        Some(name) => tools[name].as_array().unwrap().clone(),
        None => Vec::new(),
    };
    let think = match conversation["think"].as_bool() {
        Some(true) => Think::On { effort: None },
        Some(false) => Think::Off,
        None => Think::Default,
    };
    ChatInput { model: model.into(), messages, tools, think, truncate: true, ..ChatInput::default() }
}

/// The prompt the scripted engine was given, read back from its character tokens.
fn prompt_of(reply: &Reply) -> String {
    let tokens = &reply.finished.as_ref().expect("the generation finished").prompt_tokens;
    tokens.iter().map(|token| char::from_u32(*token).unwrap()).collect()
}

#[tokio::test]
async fn chats_are_prompted_as_ollama_prompts_them() {
    let (_dir, core) = core_with_templates(&[
        ("qwen2.5", fixture!("templates/qwen2.5.gotmpl")),
        ("qwen3", fixture!("templates/qwen3.gotmpl")),
        ("llama3.1", fixture!("templates/llama3.1.gotmpl")),
        ("mistral", fixture!("templates/mistral.gotmpl")),
        ("phi3", fixture!("templates/phi3.gotmpl")),
    ]);
    for (model, cases) in [
        ("qwen2.5", &["tools-offered", "tool-call-and-result", "two-calls-and-results"][..]),
        ("llama3.1", &["tools-offered", "two-calls-and-results", "system-system-user-user-assistant-user"]),
        ("mistral", &["tool-call-and-result", "user-assistant-user"]),
        // Not `tools-offered`: like Ollama's server, the core turns thinking on for a model that
        // can think when the request does not say (`.IsThinkSet`), which that render has off.
        ("qwen3", &["think-on", "think-off", "thinking-history"]),
        // A template without `.Messages`, run once per exchange.
        ("phi3", &["system-user-assistant-user", "assistant-prefill"]),
    ] {
        for case in cases {
            let reply = collect(core.chat(chat_input(model, case)).await.unwrap().into_events()).await.unwrap();
            assert_eq!(prompt_of(&reply), ollama_render(model, case), "{model} / {case}");
        }
    }
    let capabilities = |model: &str| {
        let core = &core;
        let model = model.to_owned();
        async move { core.resolve_spelled(&model).await.unwrap().capabilities().to_vec() }
    };
    assert_eq!(capabilities("qwen2.5").await, [Capability::Completion, Capability::Tools, Capability::Insert]);
    assert_eq!(capabilities("phi3").await, [Capability::Completion, Capability::Insert]);
    assert!(capabilities("qwen3").await.contains(&Capability::Thinking));
}

#[tokio::test]
async fn a_go_template_with_a_suffix_prompts_for_the_middle() {
    let (_dir, core) = core_with_templates(&[
        ("qwen2.5-coder", fixture!("templates/qwen2.5-coder.gotmpl")),
        ("starcoder2", fixture!("templates/starcoder2.gotmpl")),
    ]);
    let fim = conversation("suffix");
    for model in ["qwen2.5-coder", "starcoder2"] {
        let input = GenerateInput {
            model: model.into(),
            prompt: fim["prompt"].as_str().unwrap().into(),
            suffix: Some(fim["suffix"].as_str().unwrap().into()),
            truncate: true,
            ..GenerateInput::default()
        };
        let reply = collect(core.generate(input).await.unwrap().into_events()).await.unwrap();
        assert_eq!(prompt_of(&reply), ollama_render(model, "suffix"), "{model}");
    }
    // A request's own Go template is executed too; one that does not parse is an error.
    let with_template = |template: &str| GenerateInput {
        model: "starcoder2".into(),
        prompt: "hi".into(),
        template: Some(template.into()),
        system: Some("sys".into()),
        truncate: true,
        ..GenerateInput::default()
    };
    let reply = collect(core.generate(with_template("[{{ .System }}|{{ .Prompt }}]")).await.unwrap().into_events())
        .await
        .unwrap();
    assert_eq!(prompt_of(&reply), "[sys|hi]");
    let broken = core.generate(with_template("{{ .Prompt ")).await.err().unwrap();
    assert!(broken.to_string().contains("unclosed action"), "{broken}");
}
