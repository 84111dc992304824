//! What differs per model family, as pure functions over text: how a model writes tool calls
//! and thinking (parsed incrementally from its output by [`OutputParser`]), and how it is
//! prompted to fill in the middle ([`FimTemplate`]).

mod fim;
mod json_scan;
mod output;
mod tool_calls;

pub use fim::{FimFamily, FimTemplate};
pub use output::{merge_events, OutputEvent, OutputParser, ParserConfig, ThinkingMode};
pub use tool_calls::{ParsedToolCall, ToolCallFormat};

/// The tag that opens a thinking block.
pub const THINK_OPEN: &str = "<think>";
/// The tag that closes a thinking block.
pub const THINK_CLOSE: &str = "</think>";

/// Tokens that end a turn or a text in the families modeld knows (ChatML, Llama 2 and 3,
/// Phi, Gemma, GPT-2 style): generation ends at any of them the vocabulary has, also where the
/// GGUF names another end-of-sequence token (grammar-constrained decoding ends with these).
pub const END_OF_TURN_TOKENS: &[&str] =
    &["<|endoftext|>", "<|im_end|>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>"];

/// Whether a chat template renders the tools a request offers (Ollama's test for the `tools`
/// capability); [`ToolCallFormat::from_template`] then says how the model writes its calls.
pub fn template_supports_tools(template: &str) -> bool {
    template.contains("tools")
}

/// Whether a chat template lets the model think in `<think>` blocks.
pub fn template_supports_thinking(template: &str) -> bool {
    template.contains(THINK_CLOSE) || template.contains("enable_thinking")
}

/// Removes `<think>…</think>` blocks from an earlier assistant turn, so that a model's past
/// reasoning is not fed back to it.
pub fn strip_thinking(content: &str) -> String {
    let mut rest = content;
    let mut kept = String::new();
    while let Some(close) = rest.find(THINK_CLOSE) {
        let before = &rest[..close];
        if let Some(open) = before.find(THINK_OPEN) {
            kept.push_str(&before[..open]);
        }
        rest = &rest[close + THINK_CLOSE.len()..];
    }
    kept.push_str(rest);
    if kept.len() == content.len() {
        kept
    } else {
        kept.trim_start().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_thinking_is_stripped() {
        assert_eq!(strip_thinking("<think>\nhmm\n</think>\n\nAnswer"), "Answer");
        assert_eq!(strip_thinking("no thinking here"), "no thinking here");
        assert_eq!(strip_thinking("hmm</think>Answer"), "Answer");
        assert_eq!(strip_thinking("  keep  "), "  keep  ");
    }
}
