//! `engine::render_chat` with arbitrary template text over a fixed conversation with tools:
//! a template may fail, but never panics, hangs or exhausts memory (fuel and output cap).
#![no_main]

use engine::{render_chat, ChatTemplateInput, TemplateMessage};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else { return };
    let messages = [
        TemplateMessage { role: "system".into(), content: "Be terse.".into(), ..TemplateMessage::default() },
        TemplateMessage { role: "user".into(), content: "Weather in Paris?".into(), ..TemplateMessage::default() },
        TemplateMessage {
            role: "assistant".into(),
            content_is_none: true,
            tool_calls: Some(vec![json!({
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}}
            })]),
            ..TemplateMessage::default()
        },
        TemplateMessage {
            role: "tool".into(),
            content: "18 C".into(),
            name: Some("get_weather".into()),
            tool_call_id: Some("call_1".into()),
            ..TemplateMessage::default()
        },
    ];
    let tools = [json!({
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    })];
    let input = ChatTemplateInput {
        messages: &messages,
        tools: Some(&tools),
        add_generation_prompt: true,
        bos_token: Some("<s>"),
        eos_token: Some("</s>"),
        enable_thinking: Some(data.len().is_multiple_of(2)),
        reasoning_effort: None,
    };
    let _ = render_chat(template, &input);
});
