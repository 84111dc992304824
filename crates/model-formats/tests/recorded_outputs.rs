//! Tool-call and thinking output recorded from real models, as collected in the test suites
//! of llama.cpp (`tests/test-chat.cpp`), Ollama (`tools/tools_test.go`,
//! `model/parsers/qwen3_test.go`) and mistral.rs (`tools/parsers`), parsed per family.

use model_formats::{
    merge_events, OutputEvent, OutputParser, ParsedToolCall, ParserConfig, ThinkingMode, ToolCallFormat,
};
use serde_json::json;

fn parse(format: ToolCallFormat, thinking: ThinkingMode, names: &[&str], output: &str) -> Vec<OutputEvent> {
    let config = ParserConfig {
        thinking,
        tool_calls: Some(format),
        tool_names: names.iter().map(|name| name.to_string()).collect(),
        ..ParserConfig::default()
    };
    // Streamed a character at a time, as a model emits it, and merged as a client sees it.
    let mut parser = OutputParser::new(config);
    let mut events = Vec::new();
    for character in output.chars() {
        events.extend(parser.push(&character.to_string()));
    }
    events.extend(parser.finish());
    merge_events(events)
}

fn calls(calls: &[(&str, serde_json::Value)]) -> OutputEvent {
    OutputEvent::ToolCalls(
        calls
            .iter()
            .map(|(name, arguments)| ParsedToolCall {
                name: name.to_string(),
                arguments: arguments.as_object().unwrap().clone(),
            })
            .collect(),
    )
}

#[test]
fn qwen25_two_calls_with_newlines() {
    let output = "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\":\"print('test')\"}}\n</tool_call>";
    assert_eq!(
        parse(ToolCallFormat::Hermes, ThinkingMode::Off, &[], output),
        [calls(&[("special_function", json!({"arg1": 1})), ("python", json!({"code": "print('test')"}))])]
    );
}

#[test]
fn qwen25_text_then_a_call() {
    let output = "Hello, world!\nWhat's up?<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>";
    assert_eq!(
        parse(ToolCallFormat::Hermes, ThinkingMode::Off, &[], output),
        [OutputEvent::Content("Hello, world!\nWhat's up?".into()), calls(&[("special_function", json!({"arg1": 1}))])]
    );
}

#[test]
fn qwen_two_calls_without_newlines() {
    let output = "Okay, let's call both tools! <tool_call>{\"name\": \"get_temperature\", \"arguments\": {\"city\": \"London\", \"format\": \"fahrenheit\"}}</tool_call><tool_call>{\"name\": \"get_conditions\", \"arguments\": {\"location\": \"Tokyo\"}}</tool_call>";
    assert_eq!(
        parse(ToolCallFormat::Hermes, ThinkingMode::Off, &[], output),
        [
            OutputEvent::Content("Okay, let's call both tools! ".into()),
            calls(&[
                ("get_temperature", json!({"city": "London", "format": "fahrenheit"})),
                ("get_conditions", json!({"location": "Tokyo"}))
            ])
        ]
    );
}

#[test]
fn qwen3_three_calls() {
    let output = "<tool_call>{\"name\":\"first\",\"arguments\":{\"a\":\"1\"}}</tool_call>\n<tool_call>{\"name\":\"second\",\"arguments\":{\"b\":\"2\"}}</tool_call>\n<tool_call>{\"name\":\"third\",\"arguments\":{\"c\":\"3\"}}</tool_call>";
    assert_eq!(
        parse(ToolCallFormat::Hermes, ThinkingMode::Separate, &[], output),
        [calls(&[("first", json!({"a": "1"})), ("second", json!({"b": "2"})), ("third", json!({"c": "3"}))])]
    );
}

#[test]
fn qwen3_calls_before_closing_its_thinking() {
    let output = "<think>Let me think<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"location\":\"San Francisco\",\"unit\":\"celsius\"}}</tool_call>";
    assert_eq!(
        parse(ToolCallFormat::Hermes, ThinkingMode::Separate, &[], output),
        [
            OutputEvent::Thinking("Let me think".into()),
            calls(&[("get_weather", json!({"location": "San Francisco", "unit": "celsius"}))])
        ]
    );
}

#[test]
fn llama3_bare_json_and_python_tag() {
    let output = "{\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}";
    assert_eq!(
        parse(ToolCallFormat::Json, ThinkingMode::Off, &["special_function"], output),
        [calls(&[("special_function", json!({"arg1": 1}))])]
    );
    let tagged = "I'll check.<|python_tag|>{\"name\":\"search\",\"parameters\":{\"query\":\"rust\"}}";
    assert_eq!(
        parse(ToolCallFormat::Json, ThinkingMode::Off, &["search"], tagged),
        [OutputEvent::Content("I'll check.".into()), calls(&[("search", json!({"query": "rust"}))])]
    );
}

#[test]
fn mistral_nemo_lists() {
    let with_id = "[TOOL_CALLS][{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}, \"id\": \"123456789\"}]";
    assert_eq!(
        parse(ToolCallFormat::Mistral, ThinkingMode::Off, &[], with_id),
        [calls(&[("special_function", json!({"arg1": 1}))])]
    );
    let after_text = "I'll check.[TOOL_CALLS][{\"name\":\"search\",\"arguments\":{\"query\":\"rust\"}}]";
    assert_eq!(
        parse(ToolCallFormat::Mistral, ThinkingMode::Off, &[], after_text),
        [OutputEvent::Content("I'll check.".into()), calls(&[("search", json!({"query": "rust"}))])]
    );
    let closed = "[TOOL_CALLS] [{\"name\": \"get_temperature\", \"arguments\": {\"city\": \"London\", \"format\": \"fahrenheit\"}}, {\"name\": \"get_conditions\", \"arguments\": {\"location\": \"Tokyo\"}}][/TOOL_CALLS]";
    assert_eq!(
        parse(ToolCallFormat::Mistral, ThinkingMode::Off, &[], closed),
        [calls(&[
            ("get_temperature", json!({"city": "London", "format": "fahrenheit"})),
            ("get_conditions", json!({"location": "Tokyo"}))
        ])]
    );
}

#[test]
fn deepseek_r1_thinks_then_calls() {
    let output = "<think>I'm\nthinking</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>special_function\n```json\n{\"arg1\": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    assert_eq!(
        parse(ToolCallFormat::DeepSeek, ThinkingMode::Separate, &[], output),
        [OutputEvent::Thinking("I'm\nthinking".into()), calls(&[("special_function", json!({"arg1": 1}))])]
    );
    let misspelt = "<｜tool▁calls｜>function<｜tool▁sep｜>special_function\n```json\n{\"arg1\": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    assert_eq!(
        parse(ToolCallFormat::DeepSeek, ThinkingMode::Off, &[], misspelt),
        [calls(&[("special_function", json!({"arg1": 1}))])]
    );
}
