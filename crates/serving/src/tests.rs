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
    core_with_config(engine, num_parallel, CoreConfig::new(2048, None))
}

/// Hermes-style tool calls, as Qwen's templates render them.
const TOOL_TEMPLATE: &str = "{% if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}{% endif %}{{ message['content'] + '<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn core_with_config(engine: ScriptedEngine, num_parallel: usize, config: CoreConfig) -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("models")).unwrap();
    let vocabulary: Vec<String> =
        ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"].iter().map(|token| token.to_string()).collect();
    add_model(&store, "tiny", &[("tokenizer.chat_template", WriteValue::String(CHATML.into()))], vocabulary);
    add_model(&store, "embedder", &[("bert.pooling_type", WriteValue::U32(1))], Vec::new());
    add_model(&store, "agent", &[("tokenizer.chat_template", WriteValue::String(TOOL_TEMPLATE.into()))], Vec::new());
    let scheduler = Scheduler::new(Arc::new(engine), SchedulerConfig { num_parallel, ..SchedulerConfig::default() });
    let core = Core::new(store, scheduler, config);
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
    // A template without tools: the tools go into the prompt and the answer is constrained,
    // which the scripted engine says it cannot do; refusing is a setting.
    let tools = || ChatInput { tools: vec![echo_tool("echo")], ..chat("hi", Priority::Chat) };
    assert_eq!(core.chat(tools()).await.err().unwrap().to_string(), "the scripted engine cannot constrain its output");
    let refusing = CoreConfig { tools_without_template: ToolsWithoutTemplate::Refuse, ..CoreConfig::new(2048, None) };
    let (_dir, refusing) = core_with_config(ScriptedEngine::new(), 1, refusing);
    assert_eq!(
        refusing.chat(tools()).await.err().unwrap().to_string(),
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

fn echo_tool(name: &str) -> serde_json::Value {
    serde_json::json!({"type": "function", "function": {"name": name, "description": "Echoes",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}})
}

/// Tools of one server, `srv`, whose calls answer `reply` and are recorded.
struct RecordingTools {
    reply: String,
    needs_approval: bool,
    calls: std::sync::Mutex<Vec<(String, serde_json::Map<String, serde_json::Value>)>>,
}

impl RecordingTools {
    fn new(reply: &str) -> Arc<RecordingTools> {
        Arc::new(RecordingTools { reply: reply.into(), needs_approval: false, calls: Default::default() })
    }

    fn needing_approval(reply: &str) -> Arc<RecordingTools> {
        Arc::new(RecordingTools { reply: reply.into(), needs_approval: true, calls: Default::default() })
    }

    fn calls(&self) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
        self.calls.lock().unwrap().clone()
    }
}

impl ToolProvider for RecordingTools {
    fn tools(&self, servers: &ToolServers) -> Result<Vec<ProvidedTool>, ServingError> {
        if let ToolServers::Named(names) = servers {
            if let Some(unknown) = names.iter().find(|name| *name != "srv") {
                return Err(ServingError::invalid(format!("no MCP server is named \"{unknown}\"")));
            }
        }
        Ok(vec![ProvidedTool { definition: echo_tool("srv__echo"), needs_approval: self.needs_approval }])
    }

    fn call(&self, name: &str, arguments: serde_json::Map<String, serde_json::Value>) -> ToolCallFuture {
        self.calls.lock().unwrap().push((name.to_owned(), arguments));
        let content = self.reply.clone();
        Box::pin(async move { ToolOutput { content, is_error: false } })
    }

    fn servers(&self) -> Vec<ToolServerStatus> {
        Vec::new()
    }
}

/// A user message whose scripted answer is a call to `tool`; the `>>` after a space ends
/// the script after the closing tag.
fn calling(tool: &str) -> ChatInput {
    let script =
        format!("SCRIPT<<<tool_call>{{\"name\": \"{tool}\", \"arguments\": {{\"text\": \"hi\"}}}}</tool_call> >>");
    ChatInput { model: "agent".into(), mcp_servers: Some(ToolServers::All), ..chat(&script, Priority::Chat) }
}

async fn events_of(core: &Core, input: ChatInput) -> Vec<Event> {
    core.chat(input).await.unwrap().into_events().collect().await
}

#[tokio::test]
async fn the_tool_loop_runs_calls_and_feeds_results_back_until_the_model_answers() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let tools = RecordingTools::new("SCRIPT<<It says hi>>");
    core.set_tool_provider(tools.clone());
    let events = events_of(&core, calling("srv__echo")).await;
    assert_eq!(
        tools.calls(),
        vec![("srv__echo".to_owned(), serde_json::json!({"text": "hi"}).as_object().unwrap().clone())]
    );
    let Event::ToolCalls(calls) = &events[0] else { panic!("{events:?}") };
    assert_eq!(calls[0].name, "srv__echo");
    let Event::ToolResult(result) = &events[1] else { panic!("{events:?}") };
    assert_eq!((result.role.as_str(), result.content.as_str()), ("tool", "SCRIPT<<It says hi>>"));
    assert_eq!(result.tool_call_id, calls[0].id);
    let reply = collect(futures_util::stream::iter(events)).await.unwrap();
    assert_eq!(reply.content, "It says hi");
    let exchange = reply.exchange.messages();
    let roles: Vec<&str> = exchange.iter().map(|message| message.role.as_str()).collect();
    assert_eq!(roles, ["assistant", "tool", "assistant"]);
    assert_eq!(reply.exchange.messages()[0].tool_calls.len(), 1);
    assert_eq!(reply.exchange.messages()[2].content, "It says hi");
}

#[tokio::test]
async fn a_loop_that_would_go_on_for_ever_ends_after_the_round_cap_with_a_turn_without_tools() {
    let config = CoreConfig { max_tool_rounds: 3, ..CoreConfig::new(2048, None) };
    let (_dir, core) = core_with_config(ScriptedEngine::new(), 1, config);
    let tools = RecordingTools::new("again");
    core.set_tool_provider(tools.clone());
    let reply = collect(core.chat(calling("srv__echo")).await.unwrap().into_events()).await.unwrap();
    assert_eq!(tools.calls().len(), 3);
    // The last turn had no tools: the model's call is only text now.
    assert!(reply.tool_calls.is_empty());
    assert!(reply.content.contains("srv__echo"), "{}", reply.content);
    assert_eq!(reply.exchange.messages().len(), 7);
}

#[tokio::test]
async fn calls_the_daemon_may_not_run_go_back_to_the_caller_and_run_when_sent_back() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let tools = RecordingTools::new("SCRIPT<<done>>");
    core.set_tool_provider(tools.clone());
    // The caller's own tool.
    let mine = ChatInput { tools: vec![echo_tool("mine")], ..calling("mine") };
    let reply = collect(core.chat(mine).await.unwrap().into_events()).await.unwrap();
    assert_eq!(reply.tool_calls[0].name, "mine");
    assert!(tools.calls().is_empty());
    assert!(!reply.exchange.is_loop());

    // A tool that needs approval is returned; sending the conversation back approves it.
    let approving = RecordingTools::needing_approval("SCRIPT<<done>>");
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    core.set_tool_provider(approving.clone());
    let first = collect(core.chat(calling("srv__echo")).await.unwrap().into_events()).await.unwrap();
    assert_eq!(first.tool_calls.len(), 1);
    assert!(approving.calls().is_empty());
    let mut again = calling("srv__echo");
    again.messages.push(ChatMessage { tool_calls: first.tool_calls.clone(), ..ChatMessage::new("assistant", "") });
    let events = events_of(&core, again).await;
    assert_eq!(approving.calls().len(), 1);
    assert!(matches!(&events[0], Event::ToolResult(message) if message.content == "SCRIPT<<done>>"));
    let reply = collect(futures_util::stream::iter(events)).await.unwrap();
    assert_eq!(reply.content, "done");
}

#[tokio::test]
async fn unknown_servers_and_a_missing_provider_are_client_errors() {
    let (_dir, core) = core_with(ScriptedEngine::new(), 1);
    let without = core.chat(calling("srv__echo")).await.err().unwrap();
    assert!(matches!(without, ServingError::InvalidRequest(_)), "{without}");
    core.set_tool_provider(RecordingTools::new("x"));
    let unknown = ChatInput { mcp_servers: Some(ToolServers::Named(vec!["nope".into()])), ..calling("srv__echo") };
    assert_eq!(core.chat(unknown).await.err().unwrap().to_string(), "no MCP server is named \"nope\"");
}
