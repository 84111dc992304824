//! Real templates from Ollama's library, rendered for a set of conversations and compared with
//! what Ollama's own `template` package renders for them (`tests/ollama/expected.jsonl`,
//! written by `scripts/ollama-template-oracle`).

use std::path::Path;

use go_template::ollama::{self, Message};
use go_template::{Limits, Template};
use serde_json::Value;

#[derive(serde::Deserialize)]
struct Conversation {
    name: String,
    #[serde(default)]
    messages: Vec<Message>,
    tools: Option<String>,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    think: bool,
    #[serde(default)]
    is_think_set: bool,
    #[serde(default)]
    think_level: String,
}

#[derive(serde::Deserialize)]
struct Expected {
    template: String,
    case: String,
    output: Option<String>,
    error: Option<String>,
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ollama"))
}

#[test]
fn library_templates_render_as_ollama_renders_them() {
    let read = |name: &str| std::fs::read_to_string(fixtures().join(name)).unwrap();
    let conversations: Vec<Conversation> = serde_json::from_str(&read("conversations.json")).unwrap();
    let tools: serde_json::Map<String, Value> = serde_json::from_str(&read("tools.json")).unwrap();
    let mut compared = 0;
    let mut templates = std::collections::BTreeSet::new();
    let mut mismatches = Vec::new();
    for line in read("expected.jsonl").lines() {
        let expected: Expected = serde_json::from_str(line).unwrap();
        let source = read(&format!("templates/{}.gotmpl", expected.template)).replace("\r\n", "\n");
        let template = Template::parse(&source).unwrap_or_else(|error| panic!("{}: {error}", expected.template));
        let conversation = conversations.iter().find(|conversation| conversation.name == expected.case).unwrap();
        let offered: Vec<Value> = match &conversation.tools {
            Some(name) => tools[name].as_array().unwrap().clone(),
            None => Vec::new(),
        };
        let values = ollama::Values {
            messages: &conversation.messages,
            tools: &offered,
            prompt: &conversation.prompt,
            suffix: &conversation.suffix,
            think: conversation.think,
            think_level: &conversation.think_level,
            is_think_set: conversation.is_think_set,
        };
        let rendered = ollama::execute(&template, &values, &Limits::default());
        compared += 1;
        templates.insert(expected.template.clone());
        match (&rendered, &expected.output, &expected.error) {
            (Ok(text), Some(output), _) if text == output => {}
            (Err(_), None, Some(_)) => {}
            _ => mismatches.push(format!(
                "{} / {}:\n  modeld: {rendered:?}\n  ollama: {:?}",
                expected.template,
                expected.case,
                expected.output.as_ref().ok_or(&expected.error)
            )),
        }
    }
    assert!(templates.len() >= 15 && compared >= 200, "{} templates, {compared} renders", templates.len());
    assert!(mismatches.is_empty(), "{} of {compared} renders differ:\n{}", mismatches.len(), mismatches.join("\n"));
}
