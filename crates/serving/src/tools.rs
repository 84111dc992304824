//! Tools for every model: `tool_choice`, the prompt and the decoding constraint that let a
//! model whose template has no tool format call tools, and the provider trait through which
//! the server-side tool loop calls tools it does not own (MCP servers).

use std::future::Future;
use std::pin::Pin;

use engine::{OutputConstraint, TemplateMessage};
use serde_json::{json, Map, Value};

use crate::ServingError;

/// Which of the offered tools the model may or must call (`tool_choice` on `/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// Text or calls, as the model likes.
    #[default]
    Auto,
    /// No calls: the tools are not shown to the model.
    None,
    /// At least one call, to any offered tool.
    Required,
    /// A call to this function.
    Function(String),
}

/// How a model whose template has no tool format answers a request with tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolsWithoutTemplate {
    /// The tools are listed in the system prompt and the answer is constrained while decoding
    /// to either text or one call that matches an offered tool's schema.
    #[default]
    Prompt,
    /// 400 `<model> does not support tools`, as Ollama answers.
    Refuse,
}

/// The MCP servers a chat request takes tools from (`mcp_servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolServers {
    /// Every configured server.
    All,
    /// These, by name.
    Named(Vec<String>),
}

/// A tool offered by a [`ToolProvider`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProvidedTool {
    /// Its definition in OpenAI's function schema (`{"type":"function","function":{…}}`).
    pub definition: Value,
    /// Calls go back to the caller unexecuted, for a person to approve.
    pub needs_approval: bool,
}

impl ProvidedTool {
    /// The function's name.
    pub fn name(&self) -> Option<&str> {
        tool_name(&self.definition)
    }
}

/// What a tool call gave back, as the text of a `tool` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The result, or what went wrong.
    pub content: String,
    /// The tool failed (an error, a timeout, a dead server); the text says how.
    pub is_error: bool,
}

/// What `modeld mcp servers` shows of one configured server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolServerStatus {
    /// Its name in the config.
    pub name: String,
    /// `starting`, `running`, `restarting` or `invalid`.
    pub state: String,
    /// How it is reached: the command or the URL.
    pub transport: String,
    /// What went wrong last, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its tools, as models see their names.
    pub tools: Vec<String>,
    /// Times it was restarted after it died or failed to start.
    pub restarts: u32,
}

/// A future that calls a tool.
pub type ToolCallFuture = Pin<Box<dyn Future<Output = ToolOutput> + Send>>;

/// Tools the daemon runs itself in a chat's tool loop: the MCP client implements it.
pub trait ToolProvider: Send + Sync + 'static {
    /// The tools of `servers`; an unknown server name is an invalid request.
    fn tools(&self, servers: &ToolServers) -> Result<Vec<ProvidedTool>, ServingError>;

    /// Calls the tool `name` (as [`ToolProvider::tools`] named it). Failures are outputs with
    /// `is_error`, never a failed request. Dropping the future cancels the call.
    fn call(&self, name: &str, arguments: Map<String, Value>) -> ToolCallFuture;

    /// Every configured server and its state.
    fn servers(&self) -> Vec<ToolServerStatus>;

    /// Models whose chats use MCP servers' tools when the request does not say
    /// (`mcp_servers`), by model name as configured: how clients that cannot send the field
    /// (Ollama's own) get the tool loop.
    fn model_defaults(&self) -> Vec<(String, ToolServers)> {
        Vec::new()
    }
}

/// The function name of a tool in OpenAI's schema.
pub(crate) fn tool_name(tool: &Value) -> Option<&str> {
    tool.get("function")?.get("name")?.as_str()
}

/// The tools a choice leaves to the model, or why it names none: `None` hides them all and
/// a named function must be one of them.
pub(crate) fn chosen_tools(tools: &[Value], choice: &ToolChoice) -> Result<Vec<Value>, ServingError> {
    match choice {
        ToolChoice::None => Ok(Vec::new()),
        ToolChoice::Auto | ToolChoice::Required => Ok(tools.to_vec()),
        ToolChoice::Function(name) => {
            let chosen: Vec<Value> =
                tools.iter().filter(|tool| tool_name(tool) == Some(name.as_str())).cloned().collect();
            if chosen.is_empty() {
                return Err(ServingError::invalid(format!(
                    "tool_choice names \"{name}\", which is not among the tools"
                )));
            }
            Ok(chosen)
        }
    }
}

/// The parameters schema of a tool, made acceptable to the decoding constraint: an object
/// schema without the `$schema` and `$id` keywords that MCP servers written in TypeScript add.
fn parameters_schema(tool: &Value) -> Value {
    match tool.get("function").and_then(|function| function.get("parameters")) {
        Some(Value::Object(schema)) => {
            let mut schema = schema.clone();
            schema.remove("$schema");
            schema.remove("$id");
            if !schema.contains_key("type") && !schema.contains_key("anyOf") && !schema.contains_key("oneOf") {
                schema.insert("type".into(), Value::String("object".into()));
            }
            Value::Object(schema)
        }
        _ => json!({"type": "object"}),
    }
}

/// The JSON schema of one call to any of `tools`: `{"name": <one of them>, "arguments": <its
/// parameters>}`. Each tool's `$defs` move to the root under the tool's position (references
/// resolve against the root).
pub(crate) fn call_schema(tools: &[Value]) -> Value {
    let mut definitions = Map::new();
    let mut variants: Vec<Value> = tools
        .iter()
        .enumerate()
        .filter_map(|(position, tool)| {
            let name = tool_name(tool)?;
            let mut arguments = parameters_schema(tool);
            hoist_definitions(&mut arguments, &format!("t{position}_"), &mut definitions);
            Some(json!({
                "type": "object",
                "properties": {
                    "name": {"const": name},
                    "arguments": arguments,
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            }))
        })
        .collect();
    let mut schema = if variants.len() == 1 { variants.remove(0) } else { json!({"anyOf": variants}) };
    if !definitions.is_empty() {
        schema["$defs"] = Value::Object(definitions);
    }
    // Keywords the decoder cannot enforce are skipped rather than failing the request; the
    // JSON is written as models write it, on one line (free white space lets small models
    // ramble in newlines).
    schema["x-guidance"] = json!({
        "lenient": true,
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
    });
    schema
}

/// Moves `$defs` and `definitions` out of a tool's schema into `definitions`, renamed with
/// `prefix`, and points the tool's local references at them.
fn hoist_definitions(schema: &mut Value, prefix: &str, definitions: &mut Map<String, Value>) {
    let mut local = Map::new();
    if let Value::Object(object) = schema {
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(found)) = object.remove(key) {
                local.extend(found);
            }
        }
    }
    rewrite_references(schema, prefix);
    for (name, mut definition) in local {
        rewrite_references(&mut definition, prefix);
        definitions.insert(format!("{prefix}{name}"), definition);
    }
}

fn rewrite_references(schema: &mut Value, prefix: &str) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                if key == "$ref" {
                    if let Value::String(reference) = value {
                        for local in ["#/$defs/", "#/definitions/"] {
                            if let Some(name) = reference.strip_prefix(local) {
                                *reference = format!("#/$defs/{prefix}{name}");
                                break;
                            }
                        }
                    }
                } else {
                    rewrite_references(value, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_references(item, prefix)),
        _ => {}
    }
}

/// The constraint for a turn with tools on a model without a tool format: with `auto`, text
/// (not starting with `{`) or one call; with `required` or a named function, one call; with
/// `none`, text only.
pub(crate) fn prompted_tools_constraint(tools: &[Value], choice: &ToolChoice) -> OutputConstraint {
    match choice {
        ToolChoice::None => OutputConstraint::Lark(format!("start: text\n{TEXT_RULE}\n")),
        ToolChoice::Auto => OutputConstraint::Lark(text_or_call_grammar(&call_schema(tools))),
        ToolChoice::Required | ToolChoice::Function(_) => OutputConstraint::JsonSchema(call_schema(tools)),
    }
}

/// Free text that starts with neither `{` nor white space (which would let a call through
/// unconstrained).
const TEXT_RULE: &str = "text: /[^{\\s][\\s\\S]*/";

/// A grammar in llguidance's Lark dialect: free text ([`TEXT_RULE`]), or one JSON object
/// matching `call_schema`, which starts at once.
pub(crate) fn text_or_call_grammar(call_schema: &Value) -> String {
    format!("start: text | call\n{TEXT_RULE}\ncall: %json {call_schema}\n")
}

/// The system prompt's addition that tells a model without a tool format how to call tools.
pub(crate) fn tools_system_prompt(tools: &[Value], choice: &ToolChoice) -> String {
    let mut text = String::from("You can call these tools, given as JSON:\n");
    for tool in tools {
        let Some(function) = tool.get("function") else { continue };
        let mut summary = Map::new();
        for key in ["name", "description", "parameters"] {
            if let Some(value) = function.get(key) {
                summary.insert(key.into(), value.clone());
            }
        }
        text.push_str(&Value::Object(summary).to_string());
        text.push('\n');
    }
    text.push_str(match choice {
        ToolChoice::None => "No tool can be called now: answer in plain text.",
        ToolChoice::Required | ToolChoice::Function(_) => {
            "Answer with one tool call: a JSON object {\"name\": <tool name>, \"arguments\": {<its arguments>}} and nothing else."
        }
        _ => {
            "To call a tool, answer with only a JSON object {\"name\": <tool name>, \"arguments\": {<its arguments>}}. \
Results come back in a message starting with \"Tool result\". To answer without a tool, write plain text."
        }
    });
    text
}

/// Puts `addition` into the conversation's system prompt (after the first system message's
/// text, or as a new first message).
pub(crate) fn add_to_system_prompt(messages: &mut Vec<TemplateMessage>, addition: &str) {
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            if !first.content.is_empty() {
                first.content.push_str("\n\n");
            }
            first.content.push_str(addition);
        }
        _ => messages.insert(
            0,
            TemplateMessage { role: "system".into(), content: addition.to_owned(), ..TemplateMessage::default() },
        ),
    }
}

/// Tool history for a template that knows nothing of tools: an assistant's calls become the
/// JSON it was constrained to write, and a tool's reply becomes a user message that names
/// the tool, since such templates know only `system`, `user` and `assistant`.
pub(crate) fn history_without_tool_format(messages: &mut [TemplateMessage]) {
    for message in messages.iter_mut() {
        if let Some(calls) = message.tool_calls.take() {
            for call in calls {
                let function = call.get("function").cloned().unwrap_or_default();
                let written = json!({
                    "name": function.get("name").cloned().unwrap_or_default(),
                    "arguments": function.get("arguments").cloned().unwrap_or_else(|| json!({})),
                });
                if !message.content.is_empty() {
                    message.content.push('\n');
                }
                message.content.push_str(&written.to_string());
            }
        }
        if message.role == "tool" {
            message.role = "user".into();
            message.content = match message.name.take() {
                Some(name) => format!("Tool result from {name}:\n{}", message.content),
                None => format!("Tool result:\n{}", message.content),
            };
            message.tool_call_id = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, parameters: Value) -> Value {
        json!({"type": "function", "function": {"name": name, "description": "d", "parameters": parameters}})
    }

    #[test]
    fn one_tool_is_one_call_schema_and_several_are_any_of() {
        let echo = tool(
            "echo",
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                   "properties": {"message": {"type": "string"}}, "required": ["message"]}),
        );
        let single = call_schema(std::slice::from_ref(&echo));
        assert_eq!(single["properties"]["name"], json!({"const": "echo"}));
        assert_eq!(
            single["properties"]["arguments"],
            json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})
        );
        assert_eq!(single["x-guidance"]["lenient"], json!(true));
        let both = call_schema(&[echo, tool("now", Value::Null)]);
        let variants = both["anyOf"].as_array().unwrap();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1]["properties"]["arguments"], json!({"type": "object"}));
    }

    #[test]
    fn definitions_move_to_the_root_where_references_resolve() {
        let nested = tool(
            "add",
            json!({"type": "object", "properties": {"item": {"$ref": "#/$defs/Item"}},
                   "$defs": {"Item": {"type": "object", "properties": {"tag": {"$ref": "#/definitions/Tag"}}}},
                   "definitions": {"Tag": {"type": "string"}}}),
        );
        let schema = call_schema(&[tool("other", json!({})), nested]);
        let arguments = &schema["anyOf"][1]["properties"]["arguments"];
        assert_eq!(arguments["properties"]["item"]["$ref"], "#/$defs/t1_Item");
        assert!(arguments.get("$defs").is_none());
        assert_eq!(schema["$defs"]["t1_Item"]["properties"]["tag"]["$ref"], "#/$defs/t1_Tag");
        assert_eq!(schema["$defs"]["t1_Tag"], json!({"type": "string"}));
    }

    #[test]
    fn tool_choice_picks_and_checks_functions() {
        let tools = vec![tool("a", json!({})), tool("b", json!({}))];
        assert_eq!(chosen_tools(&tools, &ToolChoice::None).unwrap(), Vec::<Value>::new());
        assert_eq!(chosen_tools(&tools, &ToolChoice::Required).unwrap().len(), 2);
        assert_eq!(chosen_tools(&tools, &ToolChoice::Function("b".into())).unwrap(), vec![tools[1].clone()]);
        let error = chosen_tools(&tools, &ToolChoice::Function("c".into())).unwrap_err();
        assert_eq!(error.to_string(), "tool_choice names \"c\", which is not among the tools");
    }

    #[test]
    fn auto_allows_text_and_required_forces_a_call() {
        let tools = vec![tool("a", json!({"type": "object"}))];
        let OutputConstraint::Lark(grammar) = prompted_tools_constraint(&tools, &ToolChoice::Auto) else {
            panic!("auto is a grammar")
        };
        assert!(grammar.starts_with("start: text | call\ntext: /[^{\\s][\\s\\S]*/\n"), "{grammar}");
        assert!(grammar.contains("call: %json {\"type\":\"object\""), "{grammar}");
        assert_eq!(
            prompted_tools_constraint(&tools, &ToolChoice::Required),
            OutputConstraint::JsonSchema(call_schema(&tools))
        );
    }

    #[test]
    fn history_becomes_plain_turns_for_templates_without_tools() {
        let mut messages = vec![
            TemplateMessage { role: "user".into(), content: "Echo hi".into(), ..Default::default() },
            TemplateMessage {
                role: "assistant".into(),
                tool_calls: Some(vec![json!({"id": "call_1", "type": "function",
                    "function": {"name": "echo", "arguments": {"message": "hi"}}})]),
                ..Default::default()
            },
            TemplateMessage {
                role: "tool".into(),
                content: "Echo: hi".into(),
                name: Some("echo".into()),
                tool_call_id: Some("call_1".into()),
                ..Default::default()
            },
        ];
        history_without_tool_format(&mut messages);
        assert_eq!(messages[1].content, r#"{"name":"echo","arguments":{"message":"hi"}}"#);
        assert_eq!(messages[1].tool_calls, None);
        assert_eq!(messages[2].role, "user");
        assert_eq!(messages[2].content, "Tool result from echo:\nEcho: hi");
    }

    #[test]
    fn the_tool_prompt_joins_an_existing_system_prompt() {
        let mut messages = vec![TemplateMessage { role: "user".into(), content: "hi".into(), ..Default::default() }];
        add_to_system_prompt(&mut messages, "tools");
        assert_eq!((messages[0].role.as_str(), messages[0].content.as_str()), ("system", "tools"));
        add_to_system_prompt(&mut messages, "more");
        assert_eq!(messages[0].content, "tools\n\nmore");
        assert_eq!(messages.len(), 2);
    }
}
