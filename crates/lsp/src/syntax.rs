//! The languages tree-sitter parses for us, and what the tree says at the cursor: whether to
//! suggest nothing, one line or a block.

use tree_sitter::{InputEdit, Node, Parser, Point, Tree};

use crate::text::AppliedEdit;

/// A language with a tree-sitter grammar built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
    Lua,
}

impl Language {
    /// Every language, for settings that list them.
    pub const ALL: &'static [Language] = &[
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::C,
        Language::Cpp,
        Language::Java,
        Language::Lua,
    ];

    /// From an LSP `languageId`, or failing that the file name's extension.
    pub fn detect(language_id: &str, path: &str) -> Option<Language> {
        let by_id = match language_id {
            "rust" => Some(Language::Rust),
            "python" => Some(Language::Python),
            "javascript" | "javascriptreact" => Some(Language::JavaScript),
            "typescript" => Some(Language::TypeScript),
            "typescriptreact" => Some(Language::Tsx),
            "go" => Some(Language::Go),
            "c" => Some(Language::C),
            "cpp" | "c++" => Some(Language::Cpp),
            "java" => Some(Language::Java),
            "lua" => Some(Language::Lua),
            _ => None,
        };
        by_id.or_else(|| Language::from_path(path))
    }

    /// From a file name's extension.
    pub fn from_path(path: &str) -> Option<Language> {
        let extension = path.rsplit_once('.')?.1;
        Some(match extension {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Language::Cpp,
            "java" => Language::Java,
            "lua" => Language::Lua,
            _ => return None,
        })
    }

    /// The name users write in settings (`languages.disabled`), the LSP `languageId`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "typescriptreact",
            Language::Go => "go",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Java => "java",
            Language::Lua => "lua",
        }
    }

    /// How a line comment starts, for context snippets placed in the prompt.
    pub fn line_comment(self) -> &'static str {
        match self {
            Language::Python => "#",
            Language::Lua => "--",
            _ => "//",
        }
    }

    /// Whether blocks end by dedenting alone, with no closing line.
    pub fn blocks_close_by_indentation(self) -> bool {
        self == Language::Python
    }

    pub(crate) fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::Go => tree_sitter_go::LANGUAGE.into(),
            Language::C => tree_sitter_c::LANGUAGE.into(),
            Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Language::Java => tree_sitter_java::LANGUAGE.into(),
            Language::Lua => tree_sitter_lua::LANGUAGE.into(),
        }
    }

    /// Parses `text`, reusing `old` (already edited) for the unchanged parts.
    pub fn parse(self, text: &str, old: Option<&Tree>) -> Option<Tree> {
        let mut parser = Parser::new();
        parser.set_language(&self.grammar()).ok()?;
        parser.parse(text, old)
    }
}

/// Tells a kept tree about an edit, so the next parse reuses what did not change.
pub fn edit_tree(tree: &mut Tree, edit: &AppliedEdit) {
    let point = |(row, column): (usize, usize)| Point { row, column };
    tree.edit(&InputEdit {
        start_byte: edit.start_byte,
        old_end_byte: edit.old_end_byte,
        new_end_byte: edit.new_end_byte,
        start_position: point(edit.start_point),
        old_end_position: point(edit.old_end_point),
        new_end_position: point(edit.new_end_point),
    });
}

/// What kind of suggestion fits at the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionMode {
    /// None: the cursor is in the middle of a word or of code that continues on its line.
    Nothing,
    /// The rest of the current line.
    SingleLine,
    /// A block: the cursor starts a new, empty block or body.
    MultiLine,
}

fn is_word_character(character: char) -> bool {
    character.is_alphanumeric() || character == '_'
}

/// Whether a line opens a block that the next lines fill.
fn opens_block(line: &str, language: Option<Language>) -> bool {
    let line = line.trim_end();
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") || trimmed.starts_with('#') || trimmed.starts_with("--") {
        return false;
    }
    match language {
        Some(Language::Python) => line.ends_with(':'),
        Some(Language::Lua) => {
            line.ends_with(" do")
                || line.ends_with(" then")
                || line.ends_with("else")
                || line.ends_with('{')
                || (line.ends_with(')')
                    && (trimmed.starts_with("function")
                        || trimmed.contains("function(")
                        || trimmed.starts_with("local function")))
        }
        _ => line.ends_with('{') || line.ends_with('(') || line.ends_with('[') || line.ends_with("=>"),
    }
}

fn is_comment_or_string(kind: &str) -> bool {
    kind.contains("comment") || kind.contains("string") || kind == "char_literal" || kind == "heredoc_body"
}

/// Whether the inside of `node`, without its first and last character (the delimiters of a
/// block, a body or an argument list), is blank.
fn has_blank_inside(node: Node<'_>, text: &str) -> bool {
    let inside = &text[node.start_byte()..node.end_byte()];
    let mut characters = inside.chars();
    characters.next();
    characters.next_back();
    characters.as_str().trim().is_empty()
}

/// Decides what to suggest at byte `offset` of `text`, using `tree` when the language has one.
pub fn completion_mode(text: &str, offset: usize, tree: Option<&Tree>, language: Option<Language>) -> CompletionMode {
    let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |index| offset + index);
    let before = &text[line_start..offset];
    let after = text[offset..line_end].trim();
    // In the middle of a word: nothing fits without rewriting it.
    if text[offset..line_end].chars().next().is_some_and(is_word_character) {
        return CompletionMode::Nothing;
    }
    if let Some(tree) = tree {
        // Inside a comment or a string literal: finish it on this line.
        let probe = offset.saturating_sub(1).max(line_start);
        let mut node = tree.root_node().descendant_for_byte_range(probe, offset);
        while let Some(current) = node {
            if is_comment_or_string(current.kind()) && current.start_byte() < offset {
                return CompletionMode::SingleLine;
            }
            node = current.parent();
        }
    }
    if !after.is_empty() {
        // Code follows the cursor on its line: finish the line up to it.
        return CompletionMode::SingleLine;
    }
    if before.trim().is_empty() {
        let previous_line = text[..line_start].lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("");
        if previous_line.is_empty() || opens_block(previous_line, language) {
            return CompletionMode::MultiLine;
        }
        if let Some(tree) = tree {
            let mut node = tree.root_node().descendant_for_byte_range(offset, offset);
            while let Some(current) = node {
                if current.is_named() && current.end_byte() > offset && current.start_byte() < offset {
                    if current.parent().is_none() || has_blank_inside(current, text) {
                        return CompletionMode::MultiLine;
                    }
                    break;
                }
                node = current.parent();
            }
        }
        return CompletionMode::SingleLine;
    }
    if opens_block(before, language) {
        return CompletionMode::MultiLine;
    }
    CompletionMode::SingleLine
}
