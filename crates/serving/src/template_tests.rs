//! Tool and thinking history rendered through real chat templates of each model family
//! (`tests/fixtures/chat_templates`), as the chat pipeline prepares it.

use engine::{render_chat, ChatTemplateInput, TemplateMessage};
use model_formats::ToolCallFormat;
use serde_json::json;

use crate::prompt::{shape_tool_history, template_message, PromptRenderer, ThinkSettings};
use crate::{ChatMessage, ToolCall};

struct Family {
    file: &'static str,
    template: &'static str,
    format: ToolCallFormat,
    thinks: bool,
    /// Whether the template writes earlier calls back into the prompt.
    renders_past_calls: bool,
}

macro_rules! family {
    ($file:literal, $format:ident, thinks: $thinks:literal, renders_past_calls: $past:literal) => {
        Family {
            file: $file,
            template: include_str!(concat!("../../../tests/fixtures/chat_templates/", $file)),
            format: ToolCallFormat::$format,
            thinks: $thinks,
            renders_past_calls: $past,
        }
    };
}

fn families() -> Vec<Family> {
    vec![
        family!("qwen2.5-instruct.jinja", Hermes, thinks: false, renders_past_calls: true),
        family!("qwen3.jinja", Hermes, thinks: true, renders_past_calls: true),
        family!("smollm3.jinja", Hermes, thinks: true, renders_past_calls: false),
        family!("llama3.1-instruct.jinja", Json, thinks: false, renders_past_calls: true),
        family!("llama3.2-instruct.jinja", Json, thinks: false, renders_past_calls: true),
        family!("mistral-nemo.jinja", Mistral, thinks: false, renders_past_calls: true),
        family!("deepseek-r1.jinja", DeepSeek, thinks: true, renders_past_calls: true),
        family!("deepseek-v3.1.jinja", DeepSeek, thinks: true, renders_past_calls: true),
        family!("granite-3.x-instruct.jinja", Granite, thinks: true, renders_past_calls: false),
    ]
}

fn tools() -> Vec<serde_json::Value> {
    vec![json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    }})]
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// user asks, assistant calls (with thinking the model must not see again), tool answers.
fn conversation(with_ids: bool) -> Vec<ChatMessage> {
    let call = ToolCall {
        id: with_ids.then(|| "call_k3j4h5g6".to_owned()),
        index: 0,
        name: "get_weather".into(),
        arguments: json!({"city": "Paris"}).as_object().unwrap().clone(),
    };
    vec![
        message("user", "Weather in Paris?"),
        ChatMessage { thinking: Some("SECRET-REASONING".into()), tool_calls: vec![call], ..message("assistant", "") },
        ChatMessage {
            tool_name: Some("get_weather".into()),
            tool_call_id: with_ids.then(|| "call_k3j4h5g6".to_owned()),
            ..message("tool", "18C and sunny")
        },
    ]
}

fn render(family: &Family, messages: &[ChatMessage]) -> String {
    let mut messages: Vec<TemplateMessage> = messages.iter().map(template_message).collect();
    shape_tool_history(&mut messages, family.format);
    let tools = tools();
    render_chat(
        family.template,
        &ChatTemplateInput {
            messages: &messages,
            tools: Some(&tools),
            add_generation_prompt: true,
            bos_token: Some("<s>"),
            eos_token: Some("</s>"),
            ..Default::default()
        },
    )
    .unwrap_or_else(|error| panic!("{}: {error}", family.file))
}

#[test]
fn each_family_is_recognised_from_its_template() {
    for family in families() {
        assert_eq!(ToolCallFormat::from_template(family.template), family.format, "{}", family.file);
        assert_eq!(model_formats::template_supports_thinking(family.template), family.thinks, "{}", family.file);
    }
}

#[test]
fn a_call_and_its_result_render_back_in_every_family() {
    for family in families() {
        for with_ids in [true, false] {
            let prompt = render(&family, &conversation(with_ids));
            // DeepSeek-R1 renders no tool list (Ollama does not offer it tools either).
            let lists_tools = model_formats::template_supports_tools(family.template);
            assert_eq!(
                prompt.contains("Get the current weather for a city"),
                lists_tools,
                "{}: tool list\n{prompt}",
                family.file
            );
            assert!(prompt.contains("18C and sunny"), "{}: tool result missing\n{prompt}", family.file);
            assert!(!prompt.contains("SECRET-REASONING"), "{}: thinking fed back\n{prompt}", family.file);
            if family.renders_past_calls {
                assert!(
                    prompt
                        .split_once("Weather in Paris?")
                        .is_some_and(|(_, after)| after.contains("get_weather") && after.contains("Paris\"")),
                    "{}: the earlier call is missing\n{prompt}",
                    family.file
                );
            }
        }
    }
}

#[test]
fn mistral_ids_are_nine_alphanumerics_on_both_sides() {
    let family = families().into_iter().find(|family| family.format == ToolCallFormat::Mistral).unwrap();
    let prompt = render(&family, &conversation(true));
    assert!(prompt.contains("\"id\": \"0k3j4h5g6\""), "{prompt}");
    assert!(prompt.contains("\"call_id\": \"0k3j4h5g6\""), "{prompt}");
    let prompt = render(&family, &conversation(false));
    assert!(prompt.contains("\"call_id\": \"000000001\""), "{prompt}");
}

#[test]
fn earlier_think_blocks_are_not_fed_back() {
    let family = families().into_iter().find(|family| family.file == "qwen3.jinja").unwrap();
    let messages = vec![
        message("user", "2 + 2?"),
        message("assistant", "<think>\nOLD-SECRET\n</think>\n\n4"),
        message("user", "And 3 + 3?"),
    ];
    let prompt = render(&family, &messages);
    assert!(!prompt.contains("OLD-SECRET"), "{prompt}");
    assert!(prompt.contains("4<|im_end|>"), "{prompt}");
}

#[test]
fn a_final_assistant_message_is_continued_in_every_family() {
    for family in families() {
        let renderer = PromptRenderer {
            template: Some(crate::PromptTemplate::Jinja(family.template.to_owned())),
            tools: None,
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
            think: ThinkSettings::default(),
            workers: None,
        };
        let messages: Vec<TemplateMessage> =
            [message("user", "Finish the function."), message("assistant", "def add(left, right):\n    return")]
                .iter()
                .map(template_message)
                .collect();
        let prompt = renderer.render_now(&messages).unwrap_or_else(|error| panic!("{}: {error:?}", family.file));
        assert!(prompt.ends_with("def add(left, right):\n    return"), "{}: {prompt:?}", family.file);
        assert!(prompt.contains("Finish the function."), "{}", family.file);
        // A conversation ending with a user message still gets the generation prompt.
        let asked = renderer.render_now(&messages[..1]).unwrap();
        assert!(!asked.ends_with("Finish the function."), "{}: {asked:?}", family.file);
    }
}
