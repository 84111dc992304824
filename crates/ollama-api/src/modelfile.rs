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
    /// `REQUIRES`: the least Ollama version the model needs, a valid semver.
    pub requires: Option<String>,
    /// `DRAFT`: a draft model for speculative decoding.
    pub draft: Option<String>,
    /// `RENDERER`: a built-in prompt renderer's name.
    pub renderer: Option<String>,
    /// `PARSER`: a built-in output parser's name.
    pub parser: Option<String>,
    /// `ENDPOINT`s (modeld's): the replicas of a remote model, whose name on the remote side
    /// `FROM` gives.
    pub endpoints: Vec<model_store::RemoteEndpoint>,
}

const COMMANDS: &str = "command must be one of \"from\", \"license\", \"template\", \"system\", \"adapter\", \"draft\", \"renderer\", \"parser\", \"parameter\", \"message\", \"requires\", or \"endpoint\"";
const KNOWN_COMMANDS: [&str; 12] = [
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
    "endpoint",
];
/// What `REQUIRES` must look like; Ollama's text.
pub const REQUIRES_ERROR: &str = "requires must be a valid semver (e.g. 0.14.0)";

/// A malformed Modelfile: what is wrong (Ollama's texts) and on which line, shown as Ollama
/// shows it, `(line 3): unknown parameter 'x'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", line.map(|line| format!("(line {line}): ")).unwrap_or_default())]
pub struct ModelfileError {
    /// The line the problem is on (from 1); `None` for the file as a whole.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ModelfileErrorKind,
}

/// What is wrong with a Modelfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelfileErrorKind {
    /// No `FROM` instruction.
    #[error("no FROM line")]
    NoFrom,
    /// An instruction Ollama does not know, or a command not followed by a space.
    #[error("{}", COMMANDS)]
    UnknownCommand {
        /// The command as written, lowercased.
        command: String,
    },
    /// `PARAMETER` without a name (letters, digits, `_`) and a space.
    #[error("PARAMETER needs a name and a value")]
    MissingParameterName,
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
    /// A quoted string that never closes.
    #[error("unterminated {0} string")]
    UnterminatedString(&'static str),
    /// Text after the closing quotes of a value, on the same line.
    #[error("unexpected text after the closing {0}")]
    TextAfterString(&'static str),
    /// `REQUIRES` that is not a semantic version.
    #[error("{}", REQUIRES_ERROR)]
    InvalidRequires(String),
    /// `ENDPOINT` that is not `URL API [key-env=NAME]`.
    #[error("{0}")]
    InvalidEndpoint(model_store::RemoteEndpointError),
}

/// Parses Modelfile text: instructions one after another, names in any case, `#` comments,
/// values bare (to the end of the line), in `"..."` or in `"""..."""` (both may span lines).
pub fn parse(text: &str) -> Result<Modelfile, ModelfileError> {
    let mut scanner = Scanner { text: text.trim_start_matches('\u{feff}'), position: 0, line: 1 };
    let mut modelfile = Modelfile::default();
    let mut saw_from = false;
    loop {
        scanner.skip_while(|c| c.is_whitespace());
        let Some(first) = scanner.peek() else { break };
        if first == '#' {
            scanner.skip_while(|c| c != '\n');
            continue;
        }
        let line = scanner.line;
        let at = |kind| ModelfileError { line: Some(line), kind };
        let command = scanner.take_while(|c| c.is_ascii_alphabetic()).to_ascii_lowercase();
        if !KNOWN_COMMANDS.contains(&command.as_str()) || !scanner.at_blank() {
            return Err(at(ModelfileErrorKind::UnknownCommand { command }));
        }
        scanner.skip_blanks();
        match command.as_str() {
            "parameter" => {
                let key = scanner.take_while(|c| c.is_ascii_alphanumeric() || c == '_').to_ascii_lowercase();
                if key.is_empty() || !scanner.at_blank() {
                    return Err(at(ModelfileErrorKind::MissingParameterName));
                }
                scanner.skip_blanks();
                let raw = scanner.value().map_err(at)?;
                add_parameter(&mut modelfile.parameters, key, raw).map_err(at)?;
            }
            "message" => {
                let role = scanner.take_while(|c| c.is_ascii_alphabetic()).to_ascii_lowercase();
                if !["system", "user", "assistant"].contains(&role.as_str()) || !scanner.at_blank() {
                    return Err(at(ModelfileErrorKind::InvalidRole(role)));
                }
                scanner.skip_blanks();
                let content = scanner.value().map_err(at)?;
                modelfile.messages.push((role, content));
            }
            _ => {
                let value = scanner.value().map_err(at)?;
                match command.as_str() {
                    "from" => {
                        modelfile.from = value;
                        saw_from = true;
                    }
                    "template" => modelfile.template = Some(value),
                    "system" => modelfile.system = Some(value),
                    "license" => modelfile.licenses.push(value),
                    "adapter" => modelfile.adapter = Some(value),
                    "draft" => modelfile.draft = Some(value),
                    "renderer" => modelfile.renderer = Some(value),
                    "parser" => modelfile.parser = Some(value),
                    "requires" => {
                        if !is_semver(&value) {
                            return Err(at(ModelfileErrorKind::InvalidRequires(value)));
                        }
                        modelfile.requires = Some(value);
                    }
                    "endpoint" => {
                        let endpoint = model_store::RemoteEndpoint::parse_line(&value)
                            .map_err(|error| at(ModelfileErrorKind::InvalidEndpoint(error)))?;
                        modelfile.endpoints.push(endpoint);
                    }
                    _ => unreachable!("every known command is handled"),
                }
            }
        }
    }
    if !saw_from {
        return Err(ModelfileError { line: None, kind: ModelfileErrorKind::NoFrom });
    }
    Ok(modelfile)
}

fn add_parameter(parameters: &mut Map<String, Value>, key: String, raw: String) -> Result<(), ModelfileErrorKind> {
    if !Options::is_known_key(&key) {
        return Err(ModelfileErrorKind::UnknownParameter(key));
    }
    let trimmed = raw.trim();
    let invalid = |kind: &'static str| ModelfileErrorKind::InvalidValue { kind, value: raw.clone() };
    let typed = match Options::key_kind(&key) {
        "int" => Value::from(trimmed.parse::<i64>().map_err(|_| invalid("int"))?),
        "float" => Value::from(trimmed.parse::<f64>().map_err(|_| invalid("float"))?),
        "bool" => Value::from(trimmed.parse::<bool>().map_err(|_| invalid("bool"))?),
        _ => Value::from(raw.clone()),
    };
    if key == "stop" {
        let entry = parameters.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = entry {
            items.push(typed);
        }
    } else {
        parameters.insert(key, typed);
    }
    Ok(())
}

/// Whether `text` is a semantic version as Go's `semver` takes it after a `v`: `1`, `1.2` or
/// `1.2.3`, with an optional `-prerelease` and `+build`.
pub fn is_semver(text: &str) -> bool {
    let text = text.strip_prefix('v').unwrap_or(text);
    let (version, build) = text.split_once('+').map_or((text, None), |(version, build)| (version, Some(build)));
    let (core, prerelease) =
        version.split_once('-').map_or((version, None), |(core, prerelease)| (core, Some(prerelease)));
    let numbers: Vec<&str> = core.split('.').collect();
    let number_ok = |part: &&str| {
        !part.is_empty()
            && part.bytes().all(|byte| byte.is_ascii_digit())
            && (part.len() == 1 || !part.starts_with('0'))
    };
    let identifiers_ok = |text: Option<&str>| {
        text.is_none_or(|text| {
            text.split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-'))
        })
    };
    (1..=3).contains(&numbers.len())
        && numbers.iter().all(number_ok)
        && (numbers.len() == 3 || (prerelease.is_none() && build.is_none()))
        && identifiers_ok(prerelease)
        && identifiers_ok(build)
}

/// Writes a value so that [`parse`] reads it back: bare when it can be, else in `"..."`, or in
/// `"""..."""` when it holds a `"` (as Ollama quotes).
pub fn quote(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value.contains(['\n', '\r'])
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace)
        || value.starts_with('"');
    if !needs_quotes {
        value.to_owned()
    } else if value.contains('"') {
        format!("\"\"\"{value}\"\"\"")
    } else {
        format!("\"{value}\"")
    }
}

/// A cursor over the text that counts lines.
struct Scanner<'text> {
    text: &'text str,
    position: usize,
    line: usize,
}

impl<'text> Scanner<'text> {
    fn rest(&self) -> &'text str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn advance(&mut self, n_bytes: usize) -> &'text str {
        let taken = &self.text[self.position..self.position + n_bytes];
        self.line += taken.matches('\n').count();
        self.position += n_bytes;
        taken
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'text str {
        let n_bytes = self.rest().find(|c| !keep(c)).unwrap_or(self.rest().len());
        self.advance(n_bytes)
    }

    fn skip_while(&mut self, skip: impl Fn(char) -> bool) {
        self.take_while(skip);
    }

    /// Whether a space or tab comes next.
    fn at_blank(&self) -> bool {
        matches!(self.peek(), Some(' ' | '\t'))
    }

    fn skip_blanks(&mut self) {
        self.skip_while(|c| c == ' ' || c == '\t');
    }

    /// The value up to the end of its line (or of its quotes), consuming the line's end.
    fn value(&mut self) -> Result<String, ModelfileErrorKind> {
        let value = if self.rest().starts_with("\"\"\"") {
            self.advance(3);
            let end = self.rest().find("\"\"\"").ok_or(ModelfileErrorKind::UnterminatedString("\"\"\""))?;
            let value = self.advance(end).to_owned();
            self.advance(3);
            self.end_of_value("\"\"\"")?;
            value
        } else if self.rest().starts_with('"') {
            // The closing quote is the first one that ends its line (a value may hold quotes).
            let body = &self.rest()[1..];
            let close = body
                .match_indices('"')
                .map(|(index, _)| index)
                .find(|&index| {
                    let after = body[index + 1..].trim_start_matches([' ', '\t']);
                    after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
                })
                .ok_or(ModelfileErrorKind::UnterminatedString("\""))?;
            self.advance(1);
            let value = self.advance(close).to_owned();
            self.advance(1);
            self.end_of_value("\"")?;
            value
        } else {
            let line = self.take_while(|c| c != '\n');
            line.trim_end_matches('\r').trim_end().to_owned()
        };
        Ok(value)
    }

    /// After closing quotes: only blanks until the end of the line.
    fn end_of_value(&mut self, quotes: &'static str) -> Result<(), ModelfileErrorKind> {
        self.skip_while(|c| c == ' ' || c == '\t' || c == '\r');
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some(_) => Err(ModelfileErrorKind::TextAfterString(quotes)),
        }
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
    fn errors_say_what_and_where() {
        let cases = [
            ("PARAMETER temperature 1", "no FROM line".to_owned()),
            ("FROM x\nFOO bar", format!("(line 2): {COMMANDS}")),
            ("FROM x\nFROM\n", format!("(line 2): {COMMANDS}")),
            ("FROM x\n\n# note\nPARAMETER nonsense 1", "(line 4): unknown parameter 'nonsense'".to_owned()),
            ("FROM x\nPARAMETER num_ctx big", "(line 2): invalid int value [big]".to_owned()),
            ("FROM x\nPARAMETER  \n", "(line 2): PARAMETER needs a name and a value".to_owned()),
            (
                "FROM x\nMESSAGE tool hi",
                "(line 2): message role must be one of \"system\", \"user\", or \"assistant\"".to_owned(),
            ),
            ("FROM x\nSYSTEM \"\"\"open\nstill open", "(line 2): unterminated \"\"\" string".to_owned()),
            ("FROM x\nSYSTEM \"open\n", "(line 2): unterminated \" string".to_owned()),
            ("FROM x\nSYSTEM \"\"\"a\"\"\" b\n", "(line 2): unexpected text after the closing \"\"\"".to_owned()),
            ("FROM x\nREQUIRES soon", format!("(line 2): {REQUIRES_ERROR}")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), expected, "{text}");
        }
    }

    #[test]
    fn errors_carry_what_was_wrong() {
        let kind = |text: &str| parse(text).unwrap_err().kind;
        assert_eq!(kind("FROM x\nFOO bar"), ModelfileErrorKind::UnknownCommand { command: "foo".into() });
        assert_eq!(
            kind("FROM x\nPARAMETER use_mmap maybe"),
            ModelfileErrorKind::InvalidValue { kind: "bool", value: "maybe".into() }
        );
        assert_eq!(kind("FROM x\nMESSAGE Tool hi"), ModelfileErrorKind::InvalidRole("tool".into()));
    }

    #[test]
    fn quoted_values_span_lines_and_keep_inner_quotes() {
        let text = "from x\r\nSYSTEM \"first line\nsecond \"quoted\" line\"\r\nTemplate \"\"\"{{ .Prompt }}\n\"\"\"  \nPARAMETER stop \"\n\n\"\nPARAMETER stop \"User:\"\nLICENSE \"\"\"\"\"\"\nMESSAGE user \"a\" and \"b\"\n";
        let modelfile = parse(text).unwrap();
        assert_eq!(modelfile.system.as_deref(), Some("first line\nsecond \"quoted\" line"));
        assert_eq!(modelfile.template.as_deref(), Some("{{ .Prompt }}\n"));
        assert_eq!(modelfile.parameters["stop"], json!(["\n\n", "User:"]));
        assert_eq!(modelfile.licenses, vec![String::new()]);
        assert_eq!(modelfile.messages, vec![("user".to_owned(), "a\" and \"b".to_owned())]);
    }

    #[test]
    fn newer_commands_are_kept() {
        let modelfile =
            parse("FROM x\nREQUIRES 0.14.0\nRENDERER qwen3-coder\nPARSER qwen3-coder\nDRAFT ./draft.gguf\n").unwrap();
        assert_eq!(modelfile.requires.as_deref(), Some("0.14.0"));
        assert_eq!(modelfile.renderer.as_deref(), Some("qwen3-coder"));
        assert_eq!(modelfile.parser.as_deref(), Some("qwen3-coder"));
        assert_eq!(modelfile.draft.as_deref(), Some("./draft.gguf"));
    }

    #[test]
    fn endpoints_make_a_remote_model() {
        let text = "FROM llama3.3:70b\nENDPOINT http://10.0.0.5:8000 openai key-env=VLLM_API_KEY\nendpoint http://10.0.0.6:11434 ollama\n";
        let modelfile = parse(text).unwrap();
        assert_eq!(modelfile.from, "llama3.3:70b");
        let lines: Vec<String> = modelfile.endpoints.iter().map(model_store::RemoteEndpoint::to_line).collect();
        assert_eq!(lines, ["http://10.0.0.5:8000 openai key-env=VLLM_API_KEY", "http://10.0.0.6:11434 ollama"]);
        assert_eq!(
            parse("FROM m\nENDPOINT http://h:1 openai key=sk-secret").unwrap_err().to_string(),
            "(line 2): unknown endpoint option \"key=sk-secret\" (expected key-env=NAME or parallel=N)"
        );
        assert_eq!(
            parse("FROM m\n\nENDPOINT http://h:1").unwrap_err().to_string(),
            "(line 3): ENDPOINT needs a URL and an API: ENDPOINT http://host:port openai|ollama [key-env=NAME] [parallel=N]"
        );
    }

    #[test]
    fn semantic_versions() {
        for valid in ["0.14.0", "1", "1.2", "v1.2.3", "1.2.3-rc.1", "1.2.3+build.5", "10.20.30-alpha-1"] {
            assert!(is_semver(valid), "{valid}");
        }
        for invalid in ["", "soon", "1.2.3.4", "01.2.3", "1.2-rc1", "1..3", "1.2.3-", "1.2.3+", "1.2.x", "-1.2.3"] {
            assert!(!is_semver(invalid), "{invalid}");
        }
    }

    #[test]
    fn quoted_values_read_back_as_written() {
        let values = [
            "plain",
            "",
            " leading",
            "trailing ",
            "two\nlines",
            "say \"hi\"",
            "\"starts quoted",
            "multi\n\"line\" quotes",
            "\n\n",
            "# not a comment",
            "tab\tinside",
        ];
        for value in values {
            let text = format!("FROM x\nSYSTEM {}\n", quote(value));
            assert_eq!(parse(&text).unwrap().system.as_deref(), Some(value), "{text:?}");
        }
    }
}
