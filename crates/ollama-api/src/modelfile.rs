//! The Modelfile format: `FROM`, `PARAMETER`, `TEMPLATE`, `SYSTEM`, `MESSAGE`, `LICENSE`...
//!
//! Pure text to data, with Ollama's error texts; `modeld create` reads a Modelfile with it.

use serde_json::{Map, Value};

use crate::Options;

/// A parsed Modelfile.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Modelfile {
    /// `FROM`: a local path or a model name.
    pub from: String,
    /// `PARAMETER`s, typed as the option takes them (`stop` collects a list).
    pub parameters: Map<String, Value>,
    /// `TEMPLATE`.
    pub template: Option<String>,
    /// `SYSTEM`.
    pub system: Option<String>,
    /// `LICENSE`s, in order.
    pub licenses: Vec<String>,
    /// `MESSAGE`s as (role, content).
    pub messages: Vec<(String, String)>,
    /// `ADAPTER`.
    pub adapter: Option<String>,
}

const COMMANDS: &str = "command must be one of \"from\", \"license\", \"template\", \"system\", \"adapter\", \"draft\", \"renderer\", \"parser\", \"parameter\", \"message\", or \"requires\"";

/// The Modelfile is malformed; the texts are Ollama's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelfileError {
    /// No `FROM` instruction.
    #[error("no FROM line")]
    NoFrom,
    /// An instruction Ollama does not know.
    #[error("{}", COMMANDS)]
    UnknownCommand {
        /// The command as written, lowercased.
        command: String,
    },
    /// `PARAMETER` with a key that is not an option.
    #[error("unknown parameter '{0}'")]
    UnknownParameter(String),
    /// `PARAMETER` with a value of the wrong type.
    #[error("invalid {kind} value [{value}]")]
    InvalidValue {
        /// `int`, `float` or `bool`.
        kind: &'static str,
        /// The value as written.
        value: String,
    },
    /// `MESSAGE` with a role other than system, user or assistant.
    #[error("message role must be one of \"system\", \"user\", or \"assistant\"")]
    InvalidRole(String),
    /// A `"""` string that never closes.
    #[error("unterminated \"\"\" string")]
    UnterminatedString,
}

/// Parses Modelfile text.
pub fn parse(text: &str) -> Result<Modelfile, ModelfileError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut modelfile = Modelfile::default();
    let mut saw_from = false;
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..line_end].trim();
        if line.is_empty() || line.starts_with('#') {
            rest = rest.get(line_end + 1..).unwrap_or("");
            continue;
        }
        let line_start = rest.len() - rest.trim_start().len();
        let after_indent = &rest[line_start..];
        let command_len = after_indent.find(char::is_whitespace).unwrap_or(after_indent.len());
        let command = after_indent[..command_len].to_ascii_lowercase();
        let (value, remaining) = read_value(after_indent[command_len..].trim_start_matches([' ', '\t']))?;
        rest = remaining;
        match command.as_str() {
            "from" => {
                modelfile.from = value;
                saw_from = true;
            }
            "parameter" => {
                let (key, raw) = value.split_once(char::is_whitespace).unwrap_or((value.as_str(), ""));
                let key = key.to_ascii_lowercase();
                let raw = unquote(raw.trim());
                if !Options::is_known_key(&key) {
                    return Err(ModelfileError::UnknownParameter(key));
                }
                let invalid = |kind: &'static str| ModelfileError::InvalidValue { kind, value: raw.to_owned() };
                let typed = match Options::key_kind(&key) {
                    "int" => Value::from(raw.parse::<i64>().map_err(|_| invalid("int"))?),
                    "float" => Value::from(raw.parse::<f64>().map_err(|_| invalid("float"))?),
                    "bool" => Value::from(raw.parse::<bool>().map_err(|_| invalid("bool"))?),
                    _ => Value::from(raw.to_owned()),
                };
                if key == "stop" {
                    let entry = modelfile.parameters.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = entry {
                        items.push(typed);
                    }
                } else {
                    modelfile.parameters.insert(key, typed);
                }
            }
            "template" => modelfile.template = Some(value),
            "system" => modelfile.system = Some(value),
            "license" => modelfile.licenses.push(value),
            "adapter" => modelfile.adapter = Some(value),
            "message" => {
                let (role, content) = value.split_once(char::is_whitespace).unwrap_or((value.as_str(), ""));
                let role = role.to_ascii_lowercase();
                if !["system", "user", "assistant"].contains(&role.as_str()) {
                    return Err(ModelfileError::InvalidRole(role));
                }
                modelfile.messages.push((role, unquote(content.trim()).to_owned()));
            }
            "draft" | "renderer" | "parser" | "requires" => {}
            _ => return Err(ModelfileError::UnknownCommand { command }),
        }
    }
    if !saw_from {
        return Err(ModelfileError::NoFrom);
    }
    Ok(modelfile)
}

/// Reads a value: `"""multi-line"""`, `"quoted"` or the rest of the line. Returns the value
/// and the text after it.
fn read_value(text: &str) -> Result<(String, &str), ModelfileError> {
    if let Some(body) = text.strip_prefix("\"\"\"") {
        let Some(end) = body.find("\"\"\"") else { return Err(ModelfileError::UnterminatedString) };
        let after = &body[end + 3..];
        let after = after.find('\n').map_or("", |newline| &after[newline + 1..]);
        return Ok((body[..end].to_owned(), after));
    }
    let line_end = text.find('\n').unwrap_or(text.len());
    let line = text[..line_end].trim_end_matches('\r').trim();
    Ok((unquote(line).to_owned(), text.get(line_end + 1..).unwrap_or("")))
}

fn unquote(text: &str) -> &str {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        &text[1..text.len() - 1]
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_instruction() {
        let text = "# comment\nFROM ./model.gguf\nPARAMETER temperature 0.2\nPARAMETER stop \"<|im_end|>\"\nparameter stop <|endoftext|>\nPARAMETER num_ctx 2048\nSYSTEM \"\"\"You are\nterse.\"\"\"\nTEMPLATE {{ .Prompt }}\nMESSAGE user Hi\nMESSAGE assistant \"Hello\"\nLICENSE MIT\n";
        let modelfile = parse(text).unwrap();
        assert_eq!(modelfile.from, "./model.gguf");
        assert_eq!(
            Value::Object(modelfile.parameters.clone()),
            json!({"temperature": 0.2, "stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 2048})
        );
        assert_eq!(modelfile.system.as_deref(), Some("You are\nterse."));
        assert_eq!(modelfile.template.as_deref(), Some("{{ .Prompt }}"));
        assert_eq!(modelfile.messages, vec![("user".into(), "Hi".into()), ("assistant".into(), "Hello".into())]);
        assert_eq!(modelfile.licenses, vec!["MIT".to_owned()]);
    }

    #[test]
    fn errors() {
        let cases = [
            ("PARAMETER temperature 1", "no FROM line"),
            ("FROM x\nFOO bar", COMMANDS),
            ("FROM x\nPARAMETER nonsense 1", "unknown parameter 'nonsense'"),
            ("FROM x\nPARAMETER num_ctx big", "invalid int value [big]"),
            ("FROM x\nMESSAGE tool hi", "message role must be one of \"system\", \"user\", or \"assistant\""),
            ("FROM x\nSYSTEM \"\"\"open", "unterminated \"\"\" string"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), expected, "{text}");
        }
    }

    #[test]
    fn errors_carry_what_was_wrong() {
        assert_eq!(parse("FROM x\nFOO bar"), Err(ModelfileError::UnknownCommand { command: "foo".into() }));
        assert_eq!(
            parse("FROM x\nPARAMETER use_mmap maybe"),
            Err(ModelfileError::InvalidValue { kind: "bool", value: "maybe".into() })
        );
        assert_eq!(parse("FROM x\nMESSAGE Tool hi"), Err(ModelfileError::InvalidRole("tool".into())));
    }
}
