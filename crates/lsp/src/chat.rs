//! Code-aware chat: the code a question or an action is about (the selection or the enclosing
//! function), the messages that ask the model, and the edit made of its answer.

use tree_sitter::{Node, Tree};

use crate::prompt::{Snippet, CODE_FENCE};
use crate::syntax::Language;

/// A code action the language server offers on a selection or a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTask {
    Explain,
    Fix,
    Document,
    WriteTests,
}

impl CodeTask {
    pub const ALL: &'static [CodeTask] = &[CodeTask::Fix, CodeTask::Explain, CodeTask::Document, CodeTask::WriteTests];

    pub fn title(self) -> &'static str {
        match self {
            CodeTask::Explain => "modeld: Explain this code",
            CodeTask::Fix => "modeld: Fix this code",
            CodeTask::Document => "modeld: Document this code",
            CodeTask::WriteTests => "modeld: Write tests for this code",
        }
    }

    /// The name carried in the action's data.
    pub fn name(self) -> &'static str {
        match self {
            CodeTask::Explain => "explain",
            CodeTask::Fix => "fix",
            CodeTask::Document => "document",
            CodeTask::WriteTests => "tests",
        }
    }

    pub fn from_name(name: &str) -> Option<CodeTask> {
        CodeTask::ALL.iter().copied().find(|task| task.name() == name)
    }

    /// Whether the answer becomes an edit (all but explain).
    pub fn edits(self) -> bool {
        self != CodeTask::Explain
    }

    fn instruction(self, language: &str) -> String {
        match self {
            CodeTask::Explain => "Explain what this code does, briefly and precisely.".to_owned(),
            CodeTask::Fix => format!(
                "Fix this code. Reply with the whole corrected code in one {CODE_FENCE}{language} block, \
                 then at most one sentence on what you changed."
            ),
            CodeTask::Document => format!(
                "Add documentation comments to this code, in the usual style for {language}. Reply with the whole \
                 code, unchanged except for the comments, in one {CODE_FENCE}{language} block."
            ),
            CodeTask::WriteTests => format!(
                "Write unit tests for this code in {language}, in the usual test style of the language. Reply with \
                 only the tests in one {CODE_FENCE}{language} block."
            ),
        }
    }
}

/// The code a task or question is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeContext {
    /// The file name shown to the model.
    pub path: String,
    pub language: Option<Language>,
    /// Byte range of the code in the document: whole lines.
    pub start: usize,
    pub end: usize,
    pub code: String,
    /// Diagnostics on the code, as the editor reported them.
    pub diagnostics: Vec<String>,
    /// Definitions the code uses, from elsewhere in the workspace.
    pub related: Vec<Snippet>,
}

fn is_function_kind(kind: &str) -> bool {
    (kind.contains("function") || kind.contains("method") || kind.contains("constructor"))
        && !kind.contains("call")
        && !kind.contains("type")
        && !kind.contains("signature")
}

/// The smallest function (or method) node around the byte range.
pub fn enclosing_function(tree: &Tree, start: usize, end: usize) -> Option<Node<'_>> {
    let mut node = tree.root_node().descendant_for_byte_range(start, end.max(start));
    while let Some(current) = node {
        if is_function_kind(current.kind()) && current.start_byte() <= start && current.end_byte() >= end {
            return Some(current);
        }
        node = current.parent();
    }
    None
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |index| index + 1)
}

fn line_end(text: &str, offset: usize) -> usize {
    text[offset..].find('\n').map_or(text.len(), |index| offset + index + 1)
}

/// The whole lines a task works on: the selection when there is one, else the enclosing
/// function, else the cursor's line.
pub fn target_span(text: &str, tree: Option<&Tree>, start: usize, end: usize) -> (usize, usize) {
    let (start, end) = (start.min(text.len()), end.min(text.len()));
    if end > start && !text[start..end].trim().is_empty() {
        // A selection ending at the start of a line does not take that line.
        let last = if end > start && text[..end].ends_with('\n') { end - 1 } else { end };
        return (line_start(text, start), line_end(text, last.max(start)));
    }
    if let Some(function) = tree.and_then(|tree| enclosing_function(tree, start, end)) {
        return (line_start(text, function.start_byte()), line_end(text, function.end_byte().saturating_sub(1)));
    }
    (line_start(text, start), line_end(text, start))
}

/// The chat messages for a task (or a free question when `question` is given).
pub fn messages(task: Option<CodeTask>, question: Option<&str>, context: &CodeContext) -> Vec<(String, String)> {
    let language = context.language.map_or("", Language::name);
    let mut user = String::new();
    for snippet in &context.related {
        user.push_str(&format!(
            "Related code from {}:\n{CODE_FENCE}{language}\n{}\n{CODE_FENCE}\n\n",
            snippet.path, snippet.text
        ));
    }
    user.push_str(&format!("Code from {}:\n{CODE_FENCE}{language}\n{}", context.path, context.code));
    if !context.code.ends_with('\n') {
        user.push('\n');
    }
    user.push_str(CODE_FENCE);
    user.push_str("\n\n");
    if !context.diagnostics.is_empty() {
        user.push_str("The editor reports:\n");
        for diagnostic in &context.diagnostics {
            user.push_str(&format!("- {diagnostic}\n"));
        }
        user.push('\n');
    }
    match (task, question) {
        (_, Some(question)) => user.push_str(question),
        (Some(task), None) => user.push_str(&task.instruction(language)),
        (None, None) => user.push_str(&CodeTask::Explain.instruction(language)),
    }
    vec![
        (
            "system".to_owned(),
            "You are an expert programmer helping in the user's editor. Answer precisely; put code in fenced blocks."
                .to_owned(),
        ),
        ("user".to_owned(), user),
    ]
}

/// The content of the first fenced code block of an answer; an unclosed block runs to the end.
pub fn first_code_block(answer: &str) -> Option<String> {
    let open = answer.find(CODE_FENCE)?;
    let after = &answer[open + CODE_FENCE.len()..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let body = match body.find(CODE_FENCE) {
        Some(close) => &body[..close],
        None => body,
    };
    let body = body.trim_end_matches([' ', '\t']);
    (!body.trim().is_empty()).then(|| body.to_owned())
}

/// A replacement of bytes `start..end` of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

fn with_final_newline(mut code: String) -> String {
    if !code.ends_with('\n') {
        code.push('\n');
    }
    code
}

/// The edit a task's answer makes to a document of `document_length` bytes: fix and document
/// replace the code, tests go at the end of the file. `None` when the answer has no code.
pub fn edit_for(task: CodeTask, context: &CodeContext, answer: &str, document_length: usize) -> Option<Replacement> {
    let code = first_code_block(answer)?;
    match task {
        CodeTask::Explain => None,
        CodeTask::Fix | CodeTask::Document => {
            let text = with_final_newline(code);
            (text != context.code).then_some(Replacement { start: context.start, end: context.end, text })
        }
        CodeTask::WriteTests => Some(Replacement {
            start: document_length,
            end: document_length,
            text: format!("\n{}", with_final_newline(code)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str =
        "use std::fmt;\n\nfn add(left: u32, right: u32) -> u32 {\n    left + rigth\n}\n\nfn main() {}\n";

    #[test]
    fn the_target_is_the_selection_or_the_enclosing_function() {
        let tree = Language::Rust.parse(SOURCE, None).unwrap();
        let inside = SOURCE.find("rigth").unwrap();
        let (start, end) = target_span(SOURCE, Some(&tree), inside, inside);
        assert_eq!(&SOURCE[start..end], "fn add(left: u32, right: u32) -> u32 {\n    left + rigth\n}\n");
        let selection_start = SOURCE.find("left +").unwrap();
        let (start, end) = target_span(SOURCE, Some(&tree), selection_start, selection_start + 4);
        assert_eq!(&SOURCE[start..end], "    left + rigth\n");
        let (start, end) = target_span(SOURCE, Some(&tree), 0, 0);
        assert_eq!(&SOURCE[start..end], "use std::fmt;\n");
        // A selection of whole lines ending at the next line's start.
        let line = SOURCE.find("fn main").unwrap();
        let (start, end) = target_span(SOURCE, Some(&tree), 0, line);
        assert_eq!(&SOURCE[start..end], &SOURCE[..line]);
    }

    #[test]
    fn answers_become_edits() {
        let start = SOURCE.find("fn add").unwrap();
        let end = SOURCE.find("\nfn main").unwrap();
        let context = CodeContext {
            path: "src/lib.rs".into(),
            language: Some(Language::Rust),
            start,
            end,
            code: SOURCE[start..end].to_owned(),
            diagnostics: vec!["cannot find value `rigth` in this scope".into()],
            related: Vec::new(),
        };
        let answer =
            "Here:\n```rust\nfn add(left: u32, right: u32) -> u32 {\n    left + right\n}\n```\nFixed the typo.";
        let fix = edit_for(CodeTask::Fix, &context, answer, SOURCE.len()).unwrap();
        assert_eq!((fix.start, fix.end), (start, end));
        assert_eq!(fix.text, "fn add(left: u32, right: u32) -> u32 {\n    left + right\n}\n");
        let tests = edit_for(CodeTask::WriteTests, &context, "```rust\n#[test]\nfn adds() {}", SOURCE.len()).unwrap();
        assert_eq!((tests.start, tests.end), (SOURCE.len(), SOURCE.len()));
        assert_eq!(tests.text, "\n#[test]\nfn adds() {}\n");
        assert_eq!(edit_for(CodeTask::Fix, &context, "No code here.", SOURCE.len()), None);
        assert_eq!(edit_for(CodeTask::Explain, &context, answer, SOURCE.len()), None);
        let related = vec![Snippet { path: "src/util.rs:3".into(), text: "pub fn rigth() -> u32".into() }];
        let with_related = messages(Some(CodeTask::Fix), None, &CodeContext { related, ..context.clone() });
        assert!(with_related[1].1.starts_with("Related code from src/util.rs:3:\n```rust\npub fn rigth() -> u32\n```"));
        let messages = messages(Some(CodeTask::Fix), None, &context);
        assert!(messages[1].1.contains("cannot find value `rigth`"));
        assert!(messages[1].1.contains("Code from src/lib.rs:\n```rust\nfn add("));
        assert!(messages[1].1.ends_with("at most one sentence on what you changed."));
    }
}
