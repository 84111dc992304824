//! `go_template` with arbitrary template text, run as Ollama runs chat templates over a fixed
//! conversation with tools and as a fill-in-the-middle: a template may fail, but never panics,
//! hangs, overflows the stack or exhausts memory (`Limits`).
#![no_main]

use go_template::ollama::{self, Message, ToolCall, ToolCallFunction};
use go_template::{Limits, Template};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(template) = Template::parse(text) else { return };
    let arguments = json!({"city": "Paris", "days": 2}).as_object().cloned();
    let messages = [
        Message { role: "system".into(), content: "Be terse.".into(), ..Message::default() },
        Message { role: "user".into(), content: "Weather in <Paris>?".into(), ..Message::default() },
        Message {
            role: "assistant".into(),
            thinking: "Call the tool.".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                function: ToolCallFunction { index: 0, name: "get_weather".into(), arguments },
            }],
            ..Message::default()
        },
        Message { role: "tool".into(), content: "18 C".into(), tool_name: "get_weather".into(), ..Message::default() },
    ];
    let tools = [json!({
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": ["string", "null"], "enum": ["Paris", 1]}}}}
    })];
    let limits = Limits { steps: 200_000, output_bytes: 1 << 20, allocated_bytes: 4 << 20, template_depth: 16 };
    let chat = ollama::Values { messages: &messages, tools: &tools, think: data.len() % 2 == 0, ..Default::default() };
    let _ = ollama::execute(&template, &chat, &limits);
    let fill = ollama::Values { prompt: "def f(", suffix: "):\n", ..Default::default() };
    let _ = ollama::execute(&template, &fill, &limits);
});
