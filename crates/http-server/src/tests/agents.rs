//! Tools, thinking and fill-in-the-middle through the API on the scripted engine, with Qwen 3's
//! real chat template: streamed and whole, native and OpenAI-shaped, and a full call, tool
//! reply, answer loop.

use super::*;

const QWEN3: &str = include_str!("../../../../tests/fixtures/chat_templates/qwen3.jinja");

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_time", "description": "Local time of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    ])
}

/// What a Qwen 3 model says when it thinks and then calls two tools (the scripted engine
/// replies with the text between `SCRIPT<<` and `>>`).
const THINK_AND_CALL: &str = "<think>\nThe user wants weather and time.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call> ";

async fn agent_harness() -> Harness {
    let harness = harness().await;
    let body = json!({"model": "agent", "from": "tiny", "template": QWEN3, "stream": false});
    let (status, body) = harness.call(Method::POST, "/api/create", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    harness
}

fn is_ollama_call_id(id: &Value) -> bool {
    let id = id.as_str().unwrap_or_default();
    id.len() == 13
        && id.starts_with("call_")
        && id[5..].bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

#[tokio::test]
async fn a_qwen3_template_offers_tools_and_thinking() {
    let harness = agent_harness().await;
    let (_, show) = harness.call(Method::POST, "/api/show", json!({"model": "agent"})).await;
    assert_eq!(show["capabilities"], json!(["completion", "tools", "thinking"]));
}

#[tokio::test]
async fn thinking_and_several_calls_in_one_whole_answer() {
    let harness = agent_harness().await;
    let messages = json!([{"role": "user", "content": format!("Weather? SCRIPT<<{THINK_AND_CALL}>>")}]);
    let body = json!({"model": "agent", "messages": messages, "tools": weather_tools(), "stream": false});
    let (status, answer) = harness.call(Method::POST, "/api/chat", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let message = &answer["message"];
    assert_eq!(message["content"], "");
    assert_eq!(message["thinking"], "The user wants weather and time.");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0]["function"],
        json!({"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}})
    );
    assert_eq!(calls[1]["function"], json!({"index": 1, "name": "get_time", "arguments": {"city": "Paris"}}));
    assert!(calls.iter().all(|call| is_ollama_call_id(&call["id"])), "{calls:?}");
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    // Key order as the model wrote it.
    let arguments = calls[0]["function"]["arguments"].as_object().unwrap();
    assert_eq!(arguments.keys().collect::<Vec<_>>(), ["city", "unit"]);
    assert_eq!(answer["done_reason"], "stop");
}

#[tokio::test]
async fn streamed_calls_arrive_whole_while_text_streams() {
    let harness = agent_harness().await;
    let reply = "Checking. <tool_call>{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call> Done.";
    let messages = json!([{"role": "user", "content": format!("SCRIPT<<{reply}>>")}]);
    let chunks = harness
        .stream("/api/chat", json!({"model": "agent", "messages": messages, "tools": weather_tools(), "think": false}))
        .await;
    let content: String = chunks.iter().map(|chunk| chunk["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(content, "Checking. Done.");
    assert!(chunks.iter().filter(|chunk| chunk["message"]["content"] != "").count() > 3, "text streams: {chunks:?}");
    let call_chunks: Vec<&Value> = chunks.iter().filter(|chunk| chunk["message"].get("tool_calls").is_some()).collect();
    assert_eq!(call_chunks.len(), 1);
    assert_eq!(call_chunks[0]["done"], false);
    assert_eq!(call_chunks[0]["message"]["content"], "");
    assert_eq!(
        call_chunks[0]["message"]["tool_calls"][0]["function"],
        json!({"index": 0, "name": "get_time", "arguments": {"city": "Oslo"}})
    );
    // Text before the call comes before it, text after it after.
    let call_position = chunks.iter().position(|chunk| chunk["message"].get("tool_calls").is_some()).unwrap();
    let before: String =
        chunks[..call_position].iter().map(|chunk| chunk["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(before, "Checking. ");
    assert_eq!(chunks.last().unwrap()["done"], true);
}

#[tokio::test]
async fn thinking_streams_apart_from_the_answer() {
    let harness = agent_harness().await;
    let reply = "<think>Six times seven.</think>\n\n42";
    let messages = json!([{"role": "user", "content": format!("SCRIPT<<{reply}>>")}]);
    let chunks = harness.stream("/api/chat", json!({"model": "agent", "messages": messages, "think": true})).await;
    let thinking: String = chunks.iter().filter_map(|chunk| chunk["message"]["thinking"].as_str()).collect();
    let content: String = chunks.iter().map(|chunk| chunk["message"]["content"].as_str().unwrap()).collect();
    assert_eq!((thinking.as_str(), content.as_str()), ("Six times seven.", "42"));
    assert!(
        chunks.iter().filter(|chunk| chunk["message"].get("thinking").is_some()).count() > 1,
        "streamed as it comes"
    );

    // think: false keeps reasoning out of the answer.
    let body = json!({"model": "agent", "messages": messages, "think": false, "stream": false});
    let (_, answer) = harness.call(Method::POST, "/api/chat", body).await;
    assert_eq!(answer["message"], json!({"role": "assistant", "content": "42"}));

    // Generate reports `thinking` too.
    let body = json!({"model": "agent", "prompt": format!("SCRIPT<<{reply}>>"), "stream": false});
    let (_, answer) = harness.call(Method::POST, "/api/generate", body).await;
    assert_eq!((answer["thinking"].as_str(), answer["response"].as_str()), (Some("Six times seven."), Some("42")));
}

#[tokio::test]
async fn malformed_call_text_stays_content() {
    let harness = agent_harness().await;
    let reply = "<tool_call>{\"name\": \"get_time\", \"arguments\": {\"city\": </tool_call> ";
    let messages = json!([{"role": "user", "content": format!("SCRIPT<<{reply}>>")}]);
    let body =
        json!({"model": "agent", "messages": messages, "tools": weather_tools(), "stream": false, "think": false});
    let (status, answer) = harness.call(Method::POST, "/api/chat", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["message"]["content"], reply);
    assert!(answer["message"].get("tool_calls").is_none());
}

#[tokio::test]
async fn call_then_tool_reply_then_answer() {
    let harness = agent_harness().await;
    let tools = weather_tools();
    let mut messages =
        vec![json!({"role": "user", "content": format!("Weather in Paris? SCRIPT<<{THINK_AND_CALL}>>")})];
    let body = json!({"model": "agent", "messages": messages, "tools": tools, "stream": false});
    let (_, first) = harness.call(Method::POST, "/api/chat", body).await;
    let calls = first["message"]["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2);
    messages.push(first["message"].clone());
    // The caller runs the tools and replies, each under its call's name and id; the scripted
    // model answers with what the last tool reply tells it to, so the answer proves the reply
    // reached the prompt.
    messages.push(
        json!({"role": "tool", "tool_name": "get_weather", "tool_call_id": calls[0]["id"], "content": "18C and sunny"}),
    );
    messages.push(json!({"role": "tool", "tool_name": "get_time", "tool_call_id": calls[1]["id"],
                         "content": "14:05 SCRIPT<<It is 18C and sunny, and 14:05.>>"}));
    let body = json!({"model": "agent", "messages": messages, "tools": tools, "stream": false});
    let (status, second) = harness.call(Method::POST, "/api/chat", body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["message"]["content"], "It is 18C and sunny, and 14:05.");
    assert!(second["message"].get("tool_calls").is_none());
    let rendered_growth = second["prompt_eval_count"].as_u64().unwrap() - first["prompt_eval_count"].as_u64().unwrap();
    // Both replies inside <tool_response> blocks, and the earlier calls, are in the prompt.
    assert!(
        rendered_growth > ("<tool_response>\n18C and sunny\n</tool_response>".len() * 2) as u64,
        "{rendered_growth}"
    );
}

#[tokio::test]
async fn openai_tool_calls_and_reasoning() {
    let harness = agent_harness().await;
    let messages = json!([{"role": "user", "content": format!("SCRIPT<<{THINK_AND_CALL}>>")}]);
    let body = json!({"model": "agent", "messages": messages, "tools": weather_tools()});
    let (status, whole) = harness.call(Method::POST, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["reasoning"], "The user wants weather and time.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["index"], 0);
    assert!(is_ollama_call_id(&call["id"]));
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris", "unit": "celsius"}));

    let body = json!({"model": "agent", "messages": messages, "tools": weather_tools(), "stream": true});
    let (_, bytes) = harness.raw(Method::POST, "/v1/chat/completions", Body::from(body.to_string())).await;
    let chunks: Vec<Value> = std::str::from_utf8(&bytes)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let reasoning: String =
        chunks.iter().filter_map(|chunk| chunk["choices"][0]["delta"]["reasoning"].as_str()).collect();
    assert_eq!(reasoning, "The user wants weather and time.");
    let streamed_calls: Vec<&Value> =
        chunks.iter().filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].as_array()).flatten().collect();
    assert_eq!(streamed_calls.len(), 2);
    assert_eq!(streamed_calls[1]["index"], 1);
    assert_eq!(streamed_calls[1]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    // Sending the turn back in OpenAI's shape (arguments as a string, content null).
    let follow_up = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "18C SCRIPT<<Mild.>>"}
    ]);
    let body = json!({"model": "agent", "messages": follow_up, "tools": weather_tools()});
    let (status, answer) = harness.call(Method::POST, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Mild.");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn fill_in_the_middle_uses_the_family_prompt() {
    let harness = harness().await;
    let mut gguf = Vec::new();
    let tokens = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"];
    write_gguf(
        &mut gguf,
        &[
            ("general.architecture", WriteValue::String("starcoder2".into())),
            ("tokenizer.ggml.tokens", WriteValue::Strings(tokens.iter().map(|token| token.to_string()).collect())),
        ],
        &[("token_embd.weight", vec![4, 4], vec![0.25; 16])],
    )
    .unwrap();
    let digest = Digest::of_bytes(&gguf);
    harness.raw(Method::POST, &format!("/api/blobs/{digest}"), Body::from(gguf)).await;
    let body = json!({"model": "coder", "files": {"coder.gguf": digest.to_string()}, "stream": false});
    let (status, _) = harness.call(Method::POST, "/api/create", body).await;
    assert_eq!(status, StatusCode::OK);
    let (_, show) = harness.call(Method::POST, "/api/show", json!({"model": "coder"})).await;
    assert_eq!(show["capabilities"], json!(["completion", "insert"]));

    // Scripted tokens are characters, so the prompt's length shows the FIM prompt was built.
    let body = json!({"model": "coder", "prompt": "def f(", "suffix": "):", "stream": false});
    let (status, answer) = harness.call(Method::POST, "/api/generate", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let expected_prompt = "<fim_prefix>def f(<fim_suffix>):<fim_middle>";
    assert_eq!(answer["prompt_eval_count"], expected_prompt.chars().count());

    // OpenAI's completions with a suffix take the same path.
    let body = json!({"model": "coder", "prompt": "def f(", "suffix": "):"});
    let (status, answer) = harness.call(Method::POST, "/v1/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["usage"]["prompt_tokens"], expected_prompt.chars().count());
}

#[tokio::test]
async fn openai_images_are_refused_as_ollama_refuses_them() {
    let harness = agent_harness().await;
    let with_image = |url: &str| {
        json!({"model": "agent", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]})
    };
    let cases = [
        (
            "https://example.com/cat.png",
            "image URLs are not currently supported, please use base64 encoded data instead",
        ),
        ("ftp://cat", "invalid image input"),
        ("data:image/png;base64,iVBORw0KGgo=", "registry.ollama.ai/library/agent:latest does not support vision"),
    ];
    for (url, message) in cases {
        let (status, error) = harness.call(Method::POST, "/v1/chat/completions", with_image(url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(error["error"]["message"], message);
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
}
