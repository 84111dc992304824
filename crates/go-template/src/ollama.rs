//! What Ollama gives a chat template and how it runs one (`template.Execute`): messages
//! collated by role, tools and tool calls in Ollama's Go types, the fill-in-the-middle call
//! with `.Prompt` and `.Suffix`, and templates without `.Messages` run once per turn.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::value::{Field, Map, Printing, Value};
use crate::{Error, Limits, Template};

/// A chat message as Ollama's API carries it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Message {
    pub role: String,
    pub content: String,
    pub thinking: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_name: String,
    pub tool_call_id: String,
}

/// A call the assistant made.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ToolCall {
    pub id: String,
    pub function: ToolCallFunction,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ToolCallFunction {
    pub index: i64,
    pub name: String,
    /// `None` when the call carried no arguments object.
    pub arguments: Option<serde_json::Map<String, Json>>,
}

/// Everything a render reads (Ollama's `template.Values`).
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub messages: &'a [Message],
    /// Tool definitions as the API carries them (`{"type":"function","function":{…}}`).
    pub tools: &'a [Json],
    /// With `suffix`, a fill-in-the-middle render.
    pub prompt: &'a str,
    pub suffix: &'a str,
    pub think: bool,
    pub think_level: &'a str,
    pub is_think_set: bool,
}

/// Renders `template` with `values` as Ollama's `Template.Execute` does.
pub fn execute(template: &Template, values: &Values<'_>, limits: &Limits) -> Result<String, Error> {
    let (system, messages) = collate(values.messages);
    let think = |data: &mut BTreeMap<String, Value>| {
        data.insert("Think".into(), Value::Bool(values.think));
        data.insert("ThinkLevel".into(), values.think_level.into());
        data.insert("IsThinkSet".into(), Value::Bool(values.is_think_set));
    };
    if !values.prompt.is_empty() && !values.suffix.is_empty() {
        let mut data = BTreeMap::new();
        data.insert("Prompt".into(), values.prompt.into());
        data.insert("Suffix".into(), values.suffix.into());
        data.insert("Response".into(), "".into());
        think(&mut data);
        return template.execute(&Value::map(data), limits);
    }
    if template.uses("messages") {
        let mut data = BTreeMap::new();
        data.insert("System".into(), system.into());
        data.insert("Messages".into(), Value::list(messages.iter().map(message_value).collect()));
        data.insert("Tools".into(), tools_value(values.tools));
        data.insert("Response".into(), "".into());
        think(&mut data);
        return template.execute(&Value::map(data), limits);
    }
    // A template without `.Messages` runs once per exchange; the last run stops where the
    // answer goes.
    let turn = |system: &str, prompt: &str, response: &str| {
        let mut data = BTreeMap::new();
        data.insert("System".into(), system.into());
        data.insert("Prompt".into(), prompt.into());
        data.insert("Response".into(), response.into());
        think(&mut data);
        Value::map(data)
    };
    let mut out = String::new();
    let (mut system, mut prompt, mut response) = (String::new(), String::new(), String::new());
    for message in &messages {
        let pending = match message.role.as_str() {
            "system" => !prompt.is_empty() || !response.is_empty(),
            "user" => !response.is_empty(),
            _ => false,
        };
        if pending {
            out.push_str(&template.execute(&turn(&system, &prompt, &response), limits)?);
            system.clear();
            prompt.clear();
            response.clear();
        }
        match message.role.as_str() {
            "system" => system = message.content.clone(),
            "user" => prompt = message.content.clone(),
            "assistant" => response = message.content.clone(),
            _ => {}
        }
    }
    out.push_str(&template.execute_up_to_response(&turn(&system, &prompt, &response), limits)?);
    Ok(out)
}

/// Ollama's `collate`: consecutive messages of one role (other than `tool`) merged with a
/// blank line between them, and every system message's text joined the same way.
fn collate(messages: &[Message]) -> (String, Vec<Message>) {
    let mut system = Vec::new();
    let mut collated: Vec<Message> = Vec::new();
    for message in messages {
        if message.role == "system" {
            system.push(message.content.as_str());
        }
        match collated.last_mut() {
            Some(last) if last.role == message.role && message.role != "tool" => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => collated.push(message.clone()),
        }
    }
    (system.join("\n\n"), collated)
}

/// A message as Ollama's `templateMessage` (no JSON tags, so JSON keys are the Go names).
fn message_value(message: &Message) -> Value {
    let tool_calls = if message.tool_calls.is_empty() {
        Value::nil_list(Printing::Plain)
    } else {
        Value::list(message.tool_calls.iter().map(tool_call_value).collect())
    };
    Value::structure(
        "*template.templateMessage",
        vec![
            Field::plain("Role", message.role.to_lowercase().into()),
            Field::plain("Content", message.content.as_str().into()),
            Field::plain("Thinking", message.thinking.as_str().into()),
            Field::plain("Images", Value::nil_list(Printing::Plain)),
            Field::plain("ToolCalls", tool_calls),
            Field::plain("ToolName", message.tool_name.as_str().into()),
            Field::plain("ToolCallID", message.tool_call_id.as_str().into()),
        ],
        Printing::Plain,
    )
}

fn tool_call_value(call: &ToolCall) -> Value {
    let arguments = match &call.function.arguments {
        Some(arguments) => json_map(arguments, Printing::Json),
        None => Value::nil_map(Printing::Json),
    };
    let function = Value::structure(
        "template.templateToolCallFunction",
        vec![
            Field::plain("Index", Value::Int(call.function.index)),
            Field::plain("Name", call.function.name.as_str().into()),
            Field::plain("Arguments", arguments),
        ],
        Printing::Plain,
    );
    Value::structure(
        "template.templateToolCall",
        vec![Field::plain("ID", call.id.as_str().into()), Field::plain("Function", function)],
        Printing::Plain,
    )
}

/// A JSON object as a Go map (keys sorted) of decoded values.
fn json_map(object: &serde_json::Map<String, Json>, printing: Printing) -> Value {
    Value::map_printed(object.iter().map(|(key, value)| (key.clone(), Value::from_json(value))).collect(), printing)
}

/// The tools as Ollama's `templateTools`; `nil` when none are offered.
fn tools_value(tools: &[Json]) -> Value {
    if tools.is_empty() {
        return Value::Nil;
    }
    Value::list_printed(tools.iter().map(tool_value).collect(), Printing::Json)
}

fn string_field(json: &Json, key: &str) -> Value {
    json.get(key).and_then(Json::as_str).unwrap_or_default().into()
}

fn any_field(json: &Json, key: &str) -> Value {
    json.get(key).map(Value::from_json).unwrap_or_default()
}

fn strings_field(json: &Json, key: &str) -> Value {
    match json.get(key).and_then(Json::as_array) {
        Some(items) => Value::list(items.iter().filter_map(Json::as_str).map(Value::from).collect()),
        None => Value::nil_list(Printing::Plain),
    }
}

fn tool_value(tool: &Json) -> Value {
    let function = tool.get("function").cloned().unwrap_or(Json::Null);
    let parameters = function.get("parameters").cloned().unwrap_or(Json::Null);
    let properties = match parameters.get("properties").and_then(Json::as_object) {
        Some(properties) => Value::map_printed(
            properties.iter().map(|(name, property)| (name.clone(), property_value(property))).collect(),
            Printing::Json,
        ),
        None => Value::nil_map(Printing::Json),
    };
    let parameters = Value::structure(
        "template.templateToolFunctionParameters",
        vec![
            Field::tagged("Type", "type", string_field(&parameters, "type")),
            Field::omit_empty("Defs", "$defs", any_field(&parameters, "$defs")),
            Field::omit_empty("Items", "items", any_field(&parameters, "items")),
            Field::omit_empty("Required", "required", strings_field(&parameters, "required")),
            Field::tagged("Properties", "properties", properties),
        ],
        Printing::Plain,
    );
    let function = Value::structure(
        "template.templateToolFunction",
        vec![
            Field::tagged("Name", "name", string_field(&function, "name")),
            Field::tagged("Description", "description", string_field(&function, "description")),
            Field::tagged("Parameters", "parameters", parameters),
        ],
        Printing::Plain,
    );
    Value::structure(
        "template.templateTool",
        vec![
            Field::tagged("Type", "type", string_field(tool, "type")),
            Field::omit_empty("Items", "items", any_field(tool, "items")),
            Field::tagged("Function", "function", function),
        ],
        Printing::Json,
    )
}

/// A property schema as Ollama's `api.ToolProperty`: keys it does not know are dropped.
fn property_value(property: &Json) -> Value {
    let property_type = match property.get("type") {
        Some(Json::String(name)) => Value::list_printed(vec![Value::from(name.as_str())], Printing::PropertyType),
        Some(Json::Array(names)) => Value::list_printed(
            names.iter().filter_map(Json::as_str).map(Value::from).collect(),
            Printing::PropertyType,
        ),
        _ => Value::nil_list(Printing::PropertyType),
    };
    let any_of = match property.get("anyOf").and_then(Json::as_array) {
        Some(items) => Value::list(items.iter().map(property_value).collect()),
        None => Value::nil_list(Printing::Plain),
    };
    let enumeration = match property.get("enum").and_then(Json::as_array) {
        Some(items) => Value::list(items.iter().map(Value::from_json).collect()),
        None => Value::nil_list(Printing::Plain),
    };
    // Nested properties keep their order (Ollama's ordered map).
    let nested = match property.get("properties").and_then(Json::as_object) {
        Some(properties) => Value::Map(std::sync::Arc::new(Map {
            entries: properties.iter().map(|(name, property)| (name.clone(), property_value(property))).collect(),
            printing: Printing::Plain,
            is_nil: false,
            key_order: Some(properties.keys().cloned().collect()),
        })),
        None => Value::Nil,
    };
    Value::structure(
        "ToolProperty",
        vec![
            Field::omit_empty("AnyOf", "anyOf", any_of),
            Field::omit_empty("Type", "type", property_type),
            Field::omit_empty("Items", "items", any_field(property, "items")),
            Field::omit_empty("Description", "description", string_field(property, "description")),
            Field::omit_empty("Enum", "enum", enumeration),
            Field::omit_empty("Properties", "properties", nested),
            Field::omit_empty("Required", "required", strings_field(property, "required")),
        ],
        Printing::Plain,
    )
}
