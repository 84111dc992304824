//! Parser tests from model outputs per family, each fed whole and one character at a time.

use serde_json::json;

use super::*;

fn call(name: &str, arguments: serde_json::Value) -> ParsedToolCall {
    ParsedToolCall { name: name.into(), arguments: arguments.as_object().unwrap().clone() }
}

fn content(text: &str) -> OutputEvent {
    OutputEvent::Content(text.into())
}

fn thinking(text: &str) -> OutputEvent {
    OutputEvent::Thinking(text.into())
}

fn tools(format: ToolCallFormat) -> ParserConfig {
    ParserConfig {
        tool_calls: Some(format),
        tool_names: vec!["get_weather".into(), "get_time".into()],
        ..ParserConfig::default()
    }
}

/// Parses `output` fed in pieces of `piece_chars` characters, and merges the events the way a
/// client that concatenates chunks sees them.
fn parse_in_pieces(config: &ParserConfig, output: &str, piece_chars: usize) -> Vec<OutputEvent> {
    let mut parser = OutputParser::new(config.clone());
    let characters: Vec<char> = output.chars().collect();
    let mut events = Vec::new();
    for piece in characters.chunks(piece_chars) {
        events.extend(parser.push(&piece.iter().collect::<String>()));
    }
    events.extend(parser.finish());
    merge_events(events)
}

/// The same events whatever the piece size.
fn parse(config: &ParserConfig, output: &str) -> Vec<OutputEvent> {
    let whole = parse_in_pieces(config, output, usize::MAX);
    for piece_chars in [1, 2, 3, 7] {
        assert_eq!(parse_in_pieces(config, output, piece_chars), whole, "pieces of {piece_chars}: {output:?}");
    }
    whole
}

#[test]
fn plain_text_passes_through() {
    let config = ParserConfig::default();
    assert_eq!(parse(&config, "Hello <think> world"), [content("Hello <think> world")]);
    assert_eq!(parse(&tools(ToolCallFormat::Hermes), "a < b and <tool"), [content("a < b and <tool")]);
}

#[test]
fn hermes_calls_several_in_one_turn() {
    // Qwen 2.5 / Qwen 3 output with two calls.
    let output = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert_eq!(
        parse(&tools(ToolCallFormat::Hermes), output),
        [OutputEvent::ToolCalls(vec![
            call("get_weather", json!({"city": "Paris", "unit": "celsius"})),
            call("get_time", json!({"city": "Paris"})),
        ])]
    );
}

#[test]
fn hermes_content_before_a_call_streams_as_content() {
    let output = "Let me check.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    assert_eq!(
        parse(&tools(ToolCallFormat::Hermes), output),
        [content("Let me check.\n"), OutputEvent::ToolCalls(vec![call("get_time", json!({}))])]
    );
}

#[test]
fn argument_key_order_is_kept() {
    let output = r#"<tool_call>{"name": "get_weather", "arguments": {"zeta": 1, "alpha": 2, "mid": 3}}</tool_call>"#;
    let events = parse(&tools(ToolCallFormat::Hermes), output);
    let OutputEvent::ToolCalls(calls) = &events[0] else { panic!("{events:?}") };
    assert_eq!(calls[0].arguments.keys().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
}

#[test]
fn malformed_calls_stay_content() {
    let broken = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \n</tool_call> sorry";
    assert_eq!(parse(&tools(ToolCallFormat::Hermes), broken), [content(broken)]);
    let unclosed = "<tool_call>{\"name\": \"get_weather\"";
    assert_eq!(parse(&tools(ToolCallFormat::Hermes), unclosed), [content(unclosed)]);
    let not_a_call = "<tool_call>[1, 2]</tool_call>";
    assert_eq!(parse(&tools(ToolCallFormat::Hermes), not_a_call), [content(not_a_call)]);
}

#[test]
fn hermes_call_cut_off_before_its_closing_tag_is_still_a_call() {
    let output = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n";
    assert_eq!(
        parse(&tools(ToolCallFormat::Hermes), output),
        [OutputEvent::ToolCalls(vec![call("get_time", json!({"city": "Oslo"}))])]
    );
}

#[test]
fn stringified_arguments_and_parameters_are_accepted() {
    let output = r#"<tool_call>{"name": "get_time", "arguments": "{\"city\": \"Rome\"}"}</tool_call><tool_call>{"name": "get_weather", "parameters": {"city": "Rome"}}</tool_call>"#;
    assert_eq!(
        parse(&tools(ToolCallFormat::Hermes), output),
        [OutputEvent::ToolCalls(vec![
            call("get_time", json!({"city": "Rome"})),
            call("get_weather", json!({"city": "Rome"}))
        ])]
    );
}

#[test]
fn llama3_json_calls() {
    // Llama 3.1 / 3.2 write the call as bare JSON with "parameters".
    let config = tools(ToolCallFormat::Json);
    let output = r#"{"name": "get_weather", "parameters": {"city": "San Francisco"}}"#;
    assert_eq!(
        parse(&config, output),
        [OutputEvent::ToolCalls(vec![call("get_weather", json!({"city": "San Francisco"}))])]
    );
    let tagged = r#"<|python_tag|>{"name": "get_time", "parameters": {"city": "Tokyo"}}; {"name": "get_weather", "parameters": {"city": "Tokyo"}}"#;
    assert_eq!(
        parse(&config, tagged),
        [OutputEvent::ToolCalls(vec![
            call("get_time", json!({"city": "Tokyo"})),
            call("get_weather", json!({"city": "Tokyo"}))
        ])]
    );
}

#[test]
fn json_answers_are_not_mistaken_for_calls() {
    let config = tools(ToolCallFormat::Json);
    let answer = r#"{"name": "Alice", "age": 30}"#;
    assert_eq!(parse(&config, answer), [content(answer)]);
    let unknown_tool = r#"{"name": "launch_rockets", "parameters": {}}"#;
    assert_eq!(parse(&config, unknown_tool), [content(unknown_tool)]);
    let later = r#"Here: {"name": "get_time", "parameters": {}}"#;
    assert_eq!(parse(&config, later), [content(later)]);
}

#[test]
fn mistral_array_and_args_forms() {
    let config = tools(ToolCallFormat::Mistral);
    let array = r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lyon"}}, {"name": "get_time", "arguments": {"city": "Lyon"}}]"#;
    assert_eq!(
        parse(&config, array),
        [OutputEvent::ToolCalls(vec![
            call("get_weather", json!({"city": "Lyon"})),
            call("get_time", json!({"city": "Lyon"}))
        ])]
    );
    let args_form = r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Nice"}[TOOL_CALLS]get_time[ARGS]{"city": "Nice"}"#;
    assert_eq!(
        parse(&config, args_form),
        [OutputEvent::ToolCalls(vec![
            call("get_weather", json!({"city": "Nice"})),
            call("get_time", json!({"city": "Nice"}))
        ])]
    );
}

#[test]
fn granite_calls() {
    let output = r#"<|tool_call|>[{"arguments": {"city": "Bern"}, "name": "get_weather"}]"#;
    assert_eq!(
        parse(&tools(ToolCallFormat::Granite), output),
        [OutputEvent::ToolCalls(vec![call("get_weather", json!({"city": "Bern"}))])]
    );
}

#[test]
fn deepseek_calls() {
    let v3 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Seoul\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"city\": \"Seoul\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    assert_eq!(
        parse(&tools(ToolCallFormat::DeepSeek), v3),
        [OutputEvent::ToolCalls(vec![
            call("get_weather", json!({"city": "Seoul"})),
            call("get_time", json!({"city": "Seoul"}))
        ])]
    );
    let v31 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"city\": \"Busan\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    assert_eq!(
        parse(&tools(ToolCallFormat::DeepSeek), v31),
        [OutputEvent::ToolCalls(vec![call("get_time", json!({"city": "Busan"}))])]
    );
}

#[test]
fn thinking_is_separated_and_trimmed() {
    let config = ParserConfig { thinking: ThinkingMode::Separate, ..ParserConfig::default() };
    assert_eq!(
        parse(&config, "<think>\nFirst, 2 + 2.\n</think>\n\nIt is 4."),
        [thinking("First, 2 + 2."), content("It is 4.")]
    );
    // A `<think>` later in the answer is text.
    assert_eq!(parse(&config, "Use <think> tags."), [content("Use <think> tags.")]);
    let dropped = ParserConfig { thinking: ThinkingMode::Drop, ..ParserConfig::default() };
    assert_eq!(parse(&dropped, "<think>secret</think>Shown"), [content("Shown")]);
}

#[test]
fn a_prompt_that_opens_the_thinking_block_starts_inside_it() {
    // DeepSeek-R1 templates end the prompt with `<think>\n`.
    let config = ParserConfig { thinking: ThinkingMode::Separate, starts_in_thinking: true, ..ParserConfig::default() };
    assert_eq!(parse(&config, "hmm, 6 * 7\n</think>\n42"), [thinking("hmm, 6 * 7"), content("42")]);
    // Cut off while thinking: the reasoning so far is still reported.
    assert_eq!(parse(&config, "still going"), [thinking("still going")]);
}

#[test]
fn thinking_then_calls() {
    // Qwen 3 thinks, then calls.
    let config = ParserConfig { thinking: ThinkingMode::Separate, ..tools(ToolCallFormat::Hermes) };
    let output = "<think>\nI need the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert_eq!(
        parse(&config, output),
        [thinking("I need the weather."), OutputEvent::ToolCalls(vec![call("get_weather", json!({"city": "Paris"}))])]
    );
}

#[test]
fn without_tools_call_markup_is_content() {
    let output = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>";
    assert_eq!(parse(&ParserConfig::default(), output), [content(output)]);
}

#[test]
fn formats_are_read_from_templates() {
    assert_eq!(ToolCallFormat::from_template("{{- '<tool_call>\\n' }}"), ToolCallFormat::Hermes);
    assert_eq!(ToolCallFormat::from_template("[TOOL_CALLS] {{ tool_calls }}"), ToolCallFormat::Mistral);
    assert_eq!(ToolCallFormat::from_template("<|tool_call|>"), ToolCallFormat::Granite);
    assert_eq!(ToolCallFormat::from_template("<｜tool▁calls▁begin｜>"), ToolCallFormat::DeepSeek);
    assert_eq!(ToolCallFormat::from_template("{{ tools }} parameters"), ToolCallFormat::Json);
}

/// Found by fuzzing (`fuzz/fuzz_targets/output_parser.rs`): a stretch that opens like tool
/// calls but names none is text, never dropped.
#[test]
fn stretches_without_calls_stay_content() {
    let deepseek = tools(ToolCallFormat::DeepSeek);
    let cases = [
        "<｜tool▁calls▁begin｜>junk<｜tool▁calls▁end｜> after",
        "Sure. <｜tool▁calls▁begin｜>junk",
        "<｜tool▁calls▁begin｜>",
    ];
    for output in cases {
        assert_eq!(parse(&deepseek, output), vec![content(output)], "{output}");
    }
    assert_eq!(parse(&tools(ToolCallFormat::Json), "[]"), vec![content("[]")]);
    assert_eq!(parse(&tools(ToolCallFormat::Mistral), "[TOOL_CALLS][]"), vec![content("[TOOL_CALLS][]")]);
}
