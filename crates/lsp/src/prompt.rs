//! Builds the generation request for a hole: the prefix and suffix windows, budgeted and cut
//! at line boundaries so that successive requests while typing share their start (the
//! daemon's prefix cache then serves it), and the prompt for FIM models or chat models.

use crate::syntax::{CompletionMode, Language};

/// Rough size of a token in characters of source code, for budgeting without a tokenizer.
/// Code tokenizes at 3 to 4 characters per token; the lower figure keeps prompts within
/// their budget.
pub const CHARACTERS_PER_TOKEN: usize = 3;

/// The prefix window's start moves in steps of this many lines, so that while the user types
/// it stays put and the shared part of successive prompts is the whole window.
pub const PREFIX_START_STRIDE: usize = 16;

/// Text shown to the model from another place in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// Where it comes from, relative to the workspace when possible.
    pub path: String,
    pub text: String,
}

/// The parts of a document around the cursor that go into a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// The window around byte `offset` of `text` that fits `budget_tokens`: a quarter for the
/// suffix (what it leaves unused goes to the prefix), the rest for the prefix. Both are cut
/// at line boundaries; the prefix's first line moves in steps of [`PREFIX_START_STRIDE`].
pub fn window(text: &str, offset: usize, budget_tokens: usize) -> Window<'_> {
    let budget = budget_tokens.saturating_mul(CHARACTERS_PER_TOKEN);
    let suffix_budget = budget / 4;
    let after = &text[offset..];
    // Whole lines of the suffix; the rest of the cursor's line is cut only when it alone is
    // over the budget.
    let mut suffix_end = 0;
    if after.len() <= suffix_budget {
        suffix_end = after.len();
    } else {
        for (index, _) in after.match_indices('\n') {
            if index + 1 > suffix_budget {
                break;
            }
            suffix_end = index + 1;
        }
        if suffix_end == 0 {
            suffix_end = after.floor_char_boundary(suffix_budget);
        }
    }
    let suffix = &after[..suffix_end];
    let prefix_budget = budget - suffix.len().min(budget);
    let before = &text[..offset];
    if before.len() <= prefix_budget {
        return Window { prefix: before, suffix };
    }
    let line_starts: Vec<usize> =
        std::iter::once(0).chain(before.match_indices('\n').map(|(index, _)| index + 1)).collect();
    let cursor_line = line_starts.len() - 1;
    let start = match line_starts.iter().position(|&start| before.len() - start <= prefix_budget) {
        Some(first_fitting) => {
            let stepped = first_fitting.div_ceil(PREFIX_START_STRIDE) * PREFIX_START_STRIDE;
            line_starts[if stepped <= cursor_line { stepped } else { first_fitting }]
        }
        // The cursor's line alone is over the budget: keep its end.
        None => before.ceil_char_boundary(before.len() - prefix_budget),
    };
    let start = before.ceil_char_boundary(start);
    Window { prefix: &before[start..], suffix }
}

/// How the daemon is asked for the middle.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// The model has FIM tokens: `/api/generate` with `prompt` and `suffix`, templated by the
    /// server in the family's order.
    FillInTheMiddle { prefix: String, suffix: String },
    /// A chat model: `/api/chat` where the user shows the code after the cursor and the
    /// assistant's answer is prefilled with the code up to it, so the model continues the
    /// code at the cursor and the prompt's moving end is the cursor.
    /// `held_back` is the whitespace at the end of the prefix, left out of the prefill: models
    /// tokenize a space together with the word after it, so they write it themselves.
    Chat { system: String, user: String, prefill: String, held_back: String },
}

/// What a prompt is built from.
#[derive(Debug, Clone)]
pub struct PromptInput<'a> {
    pub window: Window<'a>,
    pub path: &'a str,
    pub language: Option<Language>,
    pub mode: CompletionMode,
    /// Context from elsewhere in the workspace, most important first; placed before the
    /// moving prefix.
    pub snippets: &'a [Snippet],
}

/// The fence that ends a chat model's code.
pub const CODE_FENCE: &str = "```";

const CHAT_SYSTEM: &str = "You are a code completion engine. You continue the user's code at the cursor so that \
it joins the code after the cursor. You write only code.";

/// Snippets rendered as line comments, the way code models saw other files in training.
fn render_snippets(snippets: &[Snippet], language: Option<Language>) -> String {
    let comment = language.map_or("//", Language::line_comment);
    let mut rendered = String::new();
    for snippet in snippets {
        rendered.push_str(&format!("{comment} Path: {}\n", snippet.path));
        for line in snippet.text.lines() {
            rendered.push_str(&format!("{comment} {line}\n"));
        }
    }
    rendered
}

/// The prompt for a hole. FIM prompts place snippets before the prefix; chat prompts put the
/// stable parts (snippets, then the code after the cursor) in the user's message and the
/// prefix last, in the prefilled answer.
pub fn build(input: &PromptInput<'_>, fill_in_the_middle: bool) -> Prompt {
    let snippets = render_snippets(input.snippets, input.language);
    if fill_in_the_middle {
        return Prompt::FillInTheMiddle {
            prefix: format!("{snippets}{}", input.window.prefix),
            suffix: input.window.suffix.to_owned(),
        };
    }
    let language = input.language.map_or("", Language::name);
    let what = match input.mode {
        CompletionMode::MultiLine => "the next lines",
        _ => "the rest of the line",
    };
    let mut user = String::new();
    if !snippets.is_empty() {
        user.push_str(&format!("Related code:\n{CODE_FENCE}{language}\n{snippets}{CODE_FENCE}\n\n"));
    }
    user.push_str(&format!(
        "This code comes after the cursor in {path}:\n{CODE_FENCE}{language}\n{suffix}\n{CODE_FENCE}\n\nContinue the code of {path} from the cursor with {what}, then close the code block.",
        path = input.path,
        suffix = input.window.suffix,
    ));
    let prefix = input.window.prefix;
    let kept = prefix.trim_end_matches([' ', '\t']);
    Prompt::Chat {
        system: CHAT_SYSTEM.to_owned(),
        user,
        prefill: format!("{CODE_FENCE}{language}\n{kept}"),
        held_back: prefix[kept.len()..].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered_lines(count: usize) -> String {
        (0..count).map(|index| format!("line {index:04}\n")).collect()
    }

    #[test]
    fn a_short_document_fits_whole() {
        let text = "fn main() {\n    \n}\n";
        let window = window(text, 16, 1024);
        assert_eq!(window.prefix, "fn main() {\n    ");
        assert_eq!(window.suffix, "\n}\n");
    }

    #[test]
    fn the_prefix_start_stays_put_while_typing() {
        let mut text = numbered_lines(400);
        let budget_tokens = 300;
        let first = window(&text, text.len(), budget_tokens).prefix.to_owned();
        assert!(first.len() <= budget_tokens * CHARACTERS_PER_TOKEN);
        assert!(first.starts_with("line "), "cut at a line boundary: {first:?}");
        let first_start_line = first.lines().next().unwrap().to_owned();
        let mut moves = 0;
        let mut previous_start = first_start_line;
        for typed in 0..200 {
            text.push(if typed % 10 == 9 { '\n' } else { 'x' });
            let current = window(&text, text.len(), budget_tokens).prefix.to_owned();
            let start = current.lines().next().unwrap().to_owned();
            if start != previous_start {
                moves += 1;
                previous_start = start;
            }
            assert!(current.len() <= budget_tokens * CHARACTERS_PER_TOKEN);
        }
        // Twenty new lines move the start at most twice with a 16-line stride.
        assert!(moves <= 2, "the prefix start moved {moves} times");
    }

    #[test]
    fn the_suffix_keeps_whole_lines_within_its_quarter() {
        let text = numbered_lines(100);
        let offset = text.find("line 0010").unwrap();
        let window = window(&text, offset, 100);
        assert!(window.suffix.len() <= 75, "{}", window.suffix.len());
        assert!(window.suffix.ends_with('\n'));
        assert!(window.suffix.starts_with("line 0010"));
    }

    #[test]
    fn a_long_line_is_cut_inside_it_at_a_character_boundary() {
        let text = "é".repeat(5000);
        let window = window(&text, text.len(), 100);
        assert!(window.prefix.len() <= 300);
        assert!(!window.prefix.is_empty());
    }

    #[test]
    fn chat_prompts_end_at_the_cursor() {
        let input = PromptInput {
            window: Window { prefix: "def add(a, b):\n    return ", suffix: "\n\nprint(add(1, 2))\n" },
            path: "add.py",
            language: Some(Language::Python),
            mode: CompletionMode::SingleLine,
            snippets: &[Snippet { path: "util.py".into(), text: "def sub(a, b):\n    return a - b".into() }],
        };
        let Prompt::Chat { user, prefill, held_back, .. } = build(&input, false) else { panic!("a chat") };
        assert_eq!(held_back, " ");
        assert!(user.starts_with("Related code:\n```python\n# Path: util.py\n# def sub(a, b):\n"));
        assert!(user.contains("print(add(1, 2))"));
        assert_eq!(prefill, "```python\ndef add(a, b):\n    return");
        let Prompt::FillInTheMiddle { prefix, suffix } = build(&input, true) else { panic!("FIM") };
        assert!(prefix.starts_with("# Path: util.py\n"));
        assert!(prefix.ends_with("    return "));
        assert_eq!(suffix, "\n\nprint(add(1, 2))\n");
    }
}
