//! Renders Hugging Face style Jinja chat templates (`tokenizer.chat_template` in GGUF files).

use serde::ser::SerializeMap;
use serde::Serialize;

/// A message as chat templates see it. It serializes to the OpenAI shape templates read, and
/// deserializes from that same shape (template workers receive messages that way).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(from = "TemplateMessageShape")]
pub struct TemplateMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text.
    pub content: String,
    /// Show `content` as `none`, as the OpenAI format has it for a message that only calls
    /// tools (DeepSeek templates look for calls that way; others fail on `none`).
    pub content_is_none: bool,
    /// Calls an assistant made, as `{"id","type":"function","function":{"name","arguments"}}`
    /// objects.
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// On `tool` messages: the function that ran.
    pub name: Option<String>,
    /// On `tool` messages: the call answered.
    pub tool_call_id: Option<String>,
    /// Reasoning an assistant message came with. Jinja templates never see it (earlier
    /// thinking is not fed back); Ollama's Go templates get it as `.Thinking`.
    pub thinking: Option<String>,
}

impl Serialize for TemplateMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        if self.content_is_none {
            map.serialize_entry("content", &())?;
        } else {
            map.serialize_entry("content", &self.content)?;
        }
        if let Some(tool_calls) = &self.tool_calls {
            map.serialize_entry("tool_calls", tool_calls)?;
        }
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        if let Some(tool_call_id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", tool_call_id)?;
        }
        map.end()
    }
}

/// The serialized form of [`TemplateMessage`]: `content` is `null` when `content_is_none`.
#[derive(serde::Deserialize)]
struct TemplateMessageShape {
    role: String,
    content: Option<String>,
    tool_calls: Option<Vec<serde_json::Value>>,
    name: Option<String>,
    tool_call_id: Option<String>,
}

impl From<TemplateMessageShape> for TemplateMessage {
    fn from(shape: TemplateMessageShape) -> TemplateMessage {
        TemplateMessage {
            role: shape.role,
            content_is_none: shape.content.is_none(),
            content: shape.content.unwrap_or_default(),
            tool_calls: shape.tool_calls,
            name: shape.name,
            tool_call_id: shape.tool_call_id,
            thinking: None,
        }
    }
}

/// Everything a template reads.
#[derive(Debug, Clone, Default)]
pub struct ChatTemplateInput<'a> {
    /// The conversation.
    pub messages: &'a [TemplateMessage],
    /// Tool schemas, when the caller offers tools.
    pub tools: Option<&'a [serde_json::Value]>,
    /// Append the assistant header so the model answers next.
    pub add_generation_prompt: bool,
    /// Beginning-of-sequence text.
    pub bos_token: Option<&'a str>,
    /// End-of-sequence text.
    pub eos_token: Option<&'a str>,
    /// `enable_thinking`, as Qwen 3 style templates read it; left undefined when `None`.
    pub enable_thinking: Option<bool>,
    /// `reasoning_effort` (`low`, `medium`, `high`); left undefined when `None`.
    pub reasoning_effort: Option<&'a str>,
}

/// The template does not parse or raised an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error: {0}")]
pub struct RenderError(pub String);

/// Instructions a template may execute per render. Real chat templates use a few thousand per
/// message; a template that loops for ever runs out instead of holding a thread.
pub(crate) const TEMPLATE_FUEL: u64 = 20_000_000;

/// Bytes a rendered prompt may have. A template that writes more (on purpose or by a loop over
/// huge strings) fails instead of exhausting memory.
pub(crate) const TEMPLATE_OUTPUT_LIMIT: usize = 64 << 20;

/// Renders `template` with the given input, within [`TEMPLATE_FUEL`] and
/// [`TEMPLATE_OUTPUT_LIMIT`]. CPU-bound: callers on an async runtime run it on a blocking thread.
pub fn render_chat(template: &str, input: &ChatTemplateInput<'_>) -> Result<String, RenderError> {
    let mut environment = minijinja::Environment::new();
    environment.set_fuel(Some(TEMPLATE_FUEL));
    environment.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    environment.set_lstrip_blocks(true);
    environment.set_trim_blocks(true);
    environment.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
    });
    environment.add_function("strftime_now", strftime_now);
    // Python's `x[::-1]` reversal is common in templates and absent from Jinja.
    let template_text = template.replace("[::-1]", "|reverse");
    environment.add_template("chat", &template_text).map_err(|error| RenderError(error.to_string()))?;
    let compiled = environment.get_template("chat").map_err(|error| RenderError(error.to_string()))?;
    let mut variables = std::collections::BTreeMap::new();
    variables.insert("messages", minijinja::Value::from_serialize(input.messages));
    if let Some(tools) = input.tools {
        variables.insert("tools", minijinja::Value::from_serialize(tools));
        // SmolLM3's template reads its tools from `xml_tools`.
        variables.insert("xml_tools", minijinja::Value::from_serialize(tools));
    }
    variables.insert("add_generation_prompt", input.add_generation_prompt.into());
    variables.insert("bos_token", input.bos_token.unwrap_or_default().into());
    variables.insert("eos_token", input.eos_token.unwrap_or_default().into());
    if let Some(enable_thinking) = input.enable_thinking {
        variables.insert("enable_thinking", enable_thinking.into());
    }
    if let Some(reasoning_effort) = input.reasoning_effort {
        variables.insert("reasoning_effort", reasoning_effort.into());
    }
    let context = minijinja::Value::from_serialize(&variables);
    let mut output = LimitedOutput { bytes: Vec::new(), limit: TEMPLATE_OUTPUT_LIMIT, exceeded: false };
    let rendered = compiled.render_captured_to(context, &mut output).map(drop);
    match rendered {
        Ok(()) => String::from_utf8(output.bytes).map_err(|error| RenderError(error.to_string())),
        Err(_) if output.exceeded => {
            Err(RenderError(format!("the rendered prompt exceeds {} MiB", TEMPLATE_OUTPUT_LIMIT >> 20)))
        }
        Err(error) => Err(RenderError(error.to_string())),
    }
}

/// Python's `strftime` on the local time; a malformed format is a template error, not a panic
/// (chrono panics when it formats an invalid specifier).
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(&format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        ));
    }
    let mut text = String::new();
    use std::fmt::Write as _;
    write!(text, "{}", chrono::Local::now().format_with_items(items.into_iter())).map_err(|_| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("strftime_now: cannot format {format:?}"))
    })?;
    Ok(text)
}

/// A writer that refuses bytes past `limit`, so a runaway template stops at the cap.
struct LimitedOutput {
    bytes: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for LimitedOutput {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buffer.len()) > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("template output limit"));
        }
        self.bytes.extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn message(role: &str, content: &str) -> TemplateMessage {
        TemplateMessage { role: role.into(), content: content.into(), ..Default::default() }
    }

    #[test]
    fn renders_chatml_with_default_system() {
        let messages = [message("user", "Hi")];
        let rendered = render_chat(
            CHATML,
            &ChatTemplateInput { messages: &messages, add_generation_prompt: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn runaway_templates_fail_instead_of_exhausting_memory_or_time() {
        let messages = [message("user", "Hi")];
        let input = ChatTemplateInput { messages: &messages, ..Default::default() };
        let huge_output = "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}";
        let error = render_chat(huge_output, &input).unwrap_err();
        assert!(error.0.contains("exceeds"), "{error}");
        let endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let error = render_chat(endless, &input).unwrap_err();
        assert!(error.0.contains("fuel"), "{error}");
    }

    #[test]
    fn strftime_now_with_a_malformed_format_is_an_error_not_a_panic() {
        let messages = [message("user", "Hi")];
        let input = ChatTemplateInput { messages: &messages, ..Default::default() };
        for format in ["%", "%Q", "%-", "abc%"] {
            let error = render_chat(&format!("{{{{ strftime_now('{format}') }}}}"), &input).unwrap_err();
            assert!(error.0.contains("strftime_now"), "{format}: {error}");
        }
        let year = render_chat("{{ strftime_now('%Y') }}", &input).unwrap();
        assert!(year.len() == 4 && year.starts_with('2'), "{year}");
    }

    #[test]
    fn python_methods_and_exceptions() {
        let messages = [message("user", "  padded  ")];
        let template = "{% if messages|length > 1 %}{{ raise_exception('only one') }}{% endif %}[{{ messages[0].content.strip() }}]{% for m in messages[::-1] %}{{ m.role }}{% endfor %}";
        let input = ChatTemplateInput { messages: &messages, ..Default::default() };
        assert_eq!(render_chat(template, &input).unwrap(), "[padded]user");
        let two = [message("user", "a"), message("user", "b")];
        let error = render_chat(template, &ChatTemplateInput { messages: &two, ..Default::default() }).unwrap_err();
        assert!(error.0.contains("only one"), "{error}");
    }
}
