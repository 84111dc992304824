//! Pure conversions between MCP's shapes and the chat's: a server's tool as an OpenAI function
//! named `<server>__<tool>`, and a tool result (content blocks, structured content, errors) as
//! the bounded text of a `tool` message.

use serde_json::{json, Map, Value};

/// Separates the server's name from the tool's in the names models see.
pub(crate) const SEPARATOR: &str = "__";

/// The longest function name OpenAI's API and most templates accept.
const MAX_FUNCTION_NAME: usize = 64;

/// The most text a tool result puts into the conversation, in bytes; more is cut, with a note
/// that says so (a 10 MB result would not fit any context and would stall the prompt).
pub(crate) const MAX_RESULT_BYTES: usize = 16 * 1024;

/// The name models see for `tool` of `server`: `<server>__<tool>`, with characters outside
/// `[A-Za-z0-9_-]` replaced by `_`. `None` when it would be longer than 64 characters.
pub(crate) fn function_name(server: &str, tool: &str) -> Option<String> {
    let cleaned: String = tool
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() || character == '-' { character } else { '_' })
        .collect();
    let name = format!("{server}{SEPARATOR}{cleaned}");
    (name.len() <= MAX_FUNCTION_NAME && !tool.is_empty()).then_some(name)
}

/// A tool in OpenAI's function schema, its input schema whole (`type`, `properties`,
/// `required` and all), as the chat's `tools` carry it.
pub(crate) fn function_definition(name: &str, description: Option<&str>, input_schema: &Map<String, Value>) -> Value {
    let mut parameters = input_schema.clone();
    if !parameters.contains_key("type") {
        parameters.insert("type".into(), Value::String("object".into()));
    }
    json!({
        "type": "function",
        "function": {
            "name": name,
            "description": description.unwrap_or_default(),
            "parameters": parameters,
        }
    })
}

/// The text of a `tool` message for a `tools/call` result (as JSON): text blocks joined,
/// other blocks named, structured content as JSON when there is no text, an error flagged.
/// Returns the text and whether the tool reported an error.
pub(crate) fn result_text(result: &Value) -> (String, bool) {
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
    let mut parts: Vec<String> = Vec::new();
    for block in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
        let part = match kind {
            "text" => block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
            "image" | "audio" => {
                let mime = block.get("mimeType").and_then(Value::as_str).unwrap_or("unknown type");
                let size = block.get("data").and_then(Value::as_str).map_or(0, |data| data.len() * 3 / 4);
                format!("[{kind}: {mime}, about {size} bytes, not shown]")
            }
            "resource_link" => {
                let uri = block.get("uri").and_then(Value::as_str).unwrap_or_default();
                let name = block.get("name").and_then(Value::as_str).unwrap_or(uri);
                format!("[resource {name}: {uri}]")
            }
            "resource" => {
                let resource = block.get("resource").cloned().unwrap_or_default();
                match resource.get("text").and_then(Value::as_str) {
                    Some(text) => text.to_owned(),
                    None => format!("[resource: {}]", resource.get("uri").and_then(Value::as_str).unwrap_or_default()),
                }
            }
            other => format!("[{other} content, not shown]"),
        };
        parts.push(part);
    }
    if parts.iter().all(|part| part.is_empty()) {
        if let Some(structured) = result.get("structuredContent").filter(|value| !value.is_null()) {
            parts = vec![structured.to_string()];
        }
    }
    let text = parts.join("\n");
    let text = if is_error { format!("Error: {text}") } else { text };
    (bounded(text), is_error)
}

/// `text` cut to [`MAX_RESULT_BYTES`] at a character boundary, with a note when cut.
pub(crate) fn bounded(text: String) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text;
    }
    let end = text.floor_char_boundary(MAX_RESULT_BYTES);
    format!("{}\n[cut: the result has {} bytes; the first {end} are shown]", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_cleaned_and_bounded() {
        assert_eq!(function_name("everything", "get-sum").as_deref(), Some("everything__get-sum"));
        assert_eq!(function_name("fs", "read.file v2").as_deref(), Some("fs__read_file_v2"));
        assert_eq!(function_name("fs", ""), None);
        assert_eq!(function_name("fs", &"x".repeat(70)), None);
    }

    #[test]
    fn definitions_keep_the_whole_schema() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"a": {"type": "number"}}, "required": ["a"]});
        let definition = function_definition("s__t", Some("Adds"), schema.as_object().unwrap());
        assert_eq!(definition["function"]["parameters"], schema);
        assert_eq!(definition["function"]["description"], "Adds");
        let untyped = function_definition("s__t", None, &Map::new());
        assert_eq!(untyped["function"]["parameters"], json!({"type": "object"}));
    }

    #[test]
    fn results_become_text() {
        let cases = [
            (json!({"content": [{"type": "text", "text": "Echo: hi"}]}), "Echo: hi", false),
            (
                json!({"content": [{"type": "text", "text": "a"}, {"type": "image", "data": "AAAA", "mimeType": "image/png"}]}),
                "a\n[image: image/png, about 3 bytes, not shown]",
                false,
            ),
            (json!({"content": [], "structuredContent": {"sum": 3}}), "{\"sum\":3}", false),
            (
                json!({"content": [{"type": "text", "text": "no such tool"}], "isError": true}),
                "Error: no such tool",
                true,
            ),
            (
                json!({"content": [{"type": "resource_link", "uri": "file:///a", "name": "a"},
                                    {"type": "resource", "resource": {"uri": "x://b", "text": "body"}}]}),
                "[resource a: file:///a]\nbody",
                false,
            ),
        ];
        for (result, text, is_error) in cases {
            assert_eq!(result_text(&result), (text.to_owned(), is_error), "{result}");
        }
    }

    #[test]
    fn a_huge_result_is_cut_with_a_note() {
        let huge = "é".repeat(5 * 1024 * 1024);
        let (text, _) = result_text(&json!({"content": [{"type": "text", "text": huge}]}));
        assert!(text.len() < MAX_RESULT_BYTES + 100, "{}", text.len());
        assert!(text.ends_with("the first 16384 are shown]"), "{}", &text[text.len() - 80..]);
    }
}
