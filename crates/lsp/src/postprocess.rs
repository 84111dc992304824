//! Turns a model's raw answer into the text to insert at the cursor: cut to the hole, to one
//! line or to the enclosing block, without text that repeats the prefix or the suffix, with
//! balanced brackets and without repetitive or near-empty output.

use crate::syntax::{CompletionMode, Language};

/// The most lines a block suggestion has; a longer one is cut (and its generation stopped).
pub const MAX_BLOCK_LINES: usize = 24;

/// The hole being filled: the text around the cursor.
#[derive(Debug, Clone, Copy)]
pub struct Hole<'a> {
    /// The document up to the cursor.
    pub prefix: &'a str,
    /// The document after the cursor.
    pub suffix: &'a str,
    pub mode: CompletionMode,
    pub language: Option<Language>,
}

impl<'a> Hole<'a> {
    /// The cursor's line up to the cursor.
    pub fn line_prefix(&self) -> &'a str {
        let start = self.prefix.rfind('\n').map_or(0, |index| index + 1);
        &self.prefix[start..]
    }

    /// The cursor's line after the cursor.
    pub fn rest_of_line(&self) -> &'a str {
        let line = self.suffix.split('\n').next().unwrap_or_default();
        line.strip_suffix('\r').unwrap_or(line)
    }
}

/// Makes the suggestion for `hole` out of `raw`; `None` when nothing useful is left.
/// The answer ends at the first of `special_tokens` it contains (FIM and end tokens).
pub fn postprocess(raw: &str, hole: &Hole<'_>, special_tokens: &[&str]) -> Option<String> {
    if hole.mode == CompletionMode::Nothing {
        return None;
    }
    let mut text = raw.replace("\r\n", "\n");
    for token in special_tokens {
        if let Some(index) = text.find(token) {
            text.truncate(index);
        }
    }
    let text = strip_code_fence(&text);
    let text = strip_prefix_echo(text, hole);
    let text = match hole.mode {
        CompletionMode::SingleLine => text.split('\n').next().unwrap_or_default().to_owned(),
        _ => truncate_to_block(text, hole),
    };
    let text = cut_at_suffix_repeat(&text, hole);
    let text = cut_repetition(&text);
    let text = balance_brackets(&text, hole);
    let text = trim_suffix_overlap(&text, hole);
    let text = trim_line_ends(&text);
    let meaningful = text.chars().filter(|character| !character.is_whitespace()).count();
    (meaningful >= 2 || (meaningful == 1 && text.trim().chars().all(char::is_alphanumeric))).then_some(text)
}

/// Chat models wrap code in a Markdown fence: keep the first fenced block's content. An
/// unclosed fence (the answer was cut) keeps everything after it.
fn strip_code_fence(text: &str) -> &str {
    let Some(open) = text.find("```") else { return text };
    if !text[..open].trim().is_empty() && !text[..open].ends_with('\n') {
        return text;
    }
    let after_marker = &text[open + 3..];
    let body_start = after_marker.find('\n').map_or(after_marker.len(), |index| index + 1);
    let body = &after_marker[body_start..];
    match body.find("```") {
        Some(close) => body[..close].strip_suffix('\n').unwrap_or(&body[..close]),
        None => body,
    }
}

/// Removes the start of the answer that repeats the end of the prefix: a chat model often
/// restates the line it was asked to finish, or several lines before it.
fn strip_prefix_echo<'t>(text: &'t str, hole: &Hole<'_>) -> &'t str {
    let line_prefix = hole.line_prefix();
    let stated = line_prefix.trim_start();
    // The whole current line restated, perhaps with different indentation.
    if !stated.is_empty() {
        let answer = text.trim_start_matches([' ', '\t']);
        if let Some(rest) = answer.strip_prefix(stated) {
            return rest;
        }
    }
    // Several lines before the cursor restated: the answer starts with lines of the prefix
    // ending at the cursor.
    let tail_start = hole.prefix.ceil_char_boundary(hole.prefix.len().saturating_sub(2000));
    let tail = &hole.prefix[tail_start..];
    let mut best = 0;
    let line_starts = tail.match_indices('\n').map(|(index, _)| index + 1);
    // The document's first line starts a candidate too.
    let starts: Vec<usize> =
        if tail_start == 0 { std::iter::once(0).chain(line_starts).collect() } else { line_starts.collect() };
    for start in starts {
        let candidate = &tail[start..];
        if candidate.trim().len() >= 4 && text.starts_with(candidate) {
            best = best.max(candidate.len());
        }
    }
    &text[best..]
}

fn indentation(line: &str) -> usize {
    line.chars().take_while(|character| *character == ' ' || *character == '\t').count()
}

fn only_closers(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty()
        && (trimmed.chars().all(|character| matches!(character, '}' | ')' | ']' | ';' | ','))
            || trimmed == "end"
            || trimmed == "end)"
            || trimmed == "end,")
}

/// Keeps a multi-line answer inside the block the cursor is in: it ends before the first
/// line that dedents out of the block, or on it when that line only closes the block and the
/// suffix does not close it already. Two blank lines in a row also end it.
fn truncate_to_block(text: &str, hole: &Hole<'_>) -> String {
    let line_prefix = hole.line_prefix();
    let cursor_line_blank = line_prefix.trim().is_empty();
    let base = indentation(line_prefix);
    // Lines of the block are indented at least this much.
    let inner = if cursor_line_blank { base } else { base + 1 };
    let suffix_closes = hole
        .suffix
        .lines()
        .skip(1)
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| only_closers(line) && indentation(line) < inner);
    let mut kept: Vec<&str> = Vec::new();
    let mut blank_run = 0;
    for (index, line) in text.split('\n').enumerate() {
        if index == MAX_BLOCK_LINES {
            break;
        }
        if index == 0 {
            kept.push(line);
            continue;
        }
        if line.trim().is_empty() {
            blank_run += 1;
            if blank_run >= 2 {
                break;
            }
            kept.push(line);
            continue;
        }
        blank_run = 0;
        if indentation(line) < inner {
            let closes = only_closers(line)
                || line.trim_start().starts_with("} else")
                || line.trim_start().starts_with("}") && line.trim_end().ends_with('{');
            let language_closes_by_indent = hole.language.is_some_and(Language::blocks_close_by_indentation);
            if closes && !language_closes_by_indent && !suffix_closes {
                kept.push(line);
                // `} else {` continues the statement; a plain closer ends it.
                if only_closers(line) {
                    break;
                }
                continue;
            }
            break;
        }
        kept.push(line);
    }
    while kept.len() > 1 && kept.last().is_some_and(|line| line.trim().is_empty()) {
        kept.pop();
    }
    kept.join("\n")
}

/// Cuts the answer where a line repeats the next non-blank line of the suffix: the model has
/// run into code that is already there.
fn cut_at_suffix_repeat(text: &str, hole: &Hole<'_>) -> String {
    let Some(next_line) = hole.suffix.lines().skip(1).find(|line| !line.trim().is_empty()) else {
        return text.to_owned();
    };
    let mut kept = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 && line.trim_end() == next_line.trim_end() {
            break;
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// Cuts the answer at the first line that repeats the line before it, or that has already
/// appeared twice: small models loop.
fn cut_repetition(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let trimmed = line.trim();
        if !trimmed.is_empty() && !only_closers(line) {
            let repeats_previous = kept.last().is_some_and(|previous| previous.trim_end() == line.trim_end());
            let seen = kept.iter().filter(|earlier| earlier.trim() == trimmed).count();
            if repeats_previous || seen >= 2 {
                break;
            }
        }
        kept.push(line);
    }
    kept.join("\n")
}

fn closer_of(opener: char) -> Option<char> {
    match opener {
        '(' => Some(')'),
        '[' => Some(']'),
        '{' => Some('}'),
        _ => None,
    }
}

/// Brackets opened on the cursor's line and still open at the cursor, innermost last.
fn open_brackets(line: &str) -> Vec<char> {
    let mut stack = Vec::new();
    for character in line.chars() {
        if closer_of(character).is_some() {
            stack.push(character);
        } else if matches!(character, ')' | ']' | '}')
            && stack.last().and_then(|&opener| closer_of(opener)) == Some(character)
        {
            stack.pop();
        }
    }
    stack
}

/// Cuts the answer before a closing bracket it did not open and that no bracket left open
/// before the cursor (and not closed after it on the line) is waiting for. In multi-line mode
/// only the answer's first line may close brackets of the cursor's line.
fn balance_brackets(text: &str, hole: &Hole<'_>) -> String {
    let mut waiting = open_brackets(hole.line_prefix());
    // Closers right after the cursor (often auto-paired) already close the innermost ones.
    for character in hole.rest_of_line().chars() {
        if character.is_whitespace() {
            continue;
        }
        if waiting.last().and_then(|&opener| closer_of(opener)) == Some(character) {
            waiting.pop();
        } else {
            break;
        }
    }
    let mut own: Vec<char> = Vec::new();
    let mut in_string: Option<char> = None;
    for (index, character) in text.char_indices() {
        if let Some(quote) = in_string {
            if character == quote || character == '\n' {
                in_string = None;
            }
            continue;
        }
        match character {
            '"' | '\'' | '`' => in_string = Some(character),
            '(' | '[' | '{' => own.push(character),
            ')' | ']' | '}' => {
                if let Some(&opener) = own.last() {
                    if closer_of(opener) == Some(character) {
                        own.pop();
                        continue;
                    }
                    return text[..index].to_owned();
                }
                if waiting.last().and_then(|&opener| closer_of(opener)) == Some(character) {
                    waiting.pop();
                    continue;
                }
                // A block's closing line (kept by the block truncation) closes a bracket
                // opened before the cursor's line.
                let line_start = text[..index].rfind('\n').map_or(0, |start| start + 1);
                if hole.mode == CompletionMode::MultiLine && line_start > 0 && text[line_start..index].trim().is_empty()
                {
                    continue;
                }
                return text[..index].to_owned();
            }
            _ => {}
        }
    }
    text.to_owned()
}

/// Removes the end of a single-line answer that repeats what follows the cursor on its line.
fn trim_suffix_overlap(text: &str, hole: &Hole<'_>) -> String {
    let rest = hole.rest_of_line().trim_end();
    if rest.trim().is_empty() || text.contains('\n') {
        return text.to_owned();
    }
    // The longest end of the answer that the rest of the line starts with.
    let mut cut = text.len();
    for (index, _) in text.char_indices() {
        let tail = &text[index..];
        let significant = tail.trim().len() >= 3 || !tail.chars().any(char::is_alphanumeric);
        // Never cut a closer that balances a bracket the answer opened.
        let keeps_balance = open_brackets(&text[..index]).len() <= open_brackets(text).len();
        if !tail.trim().is_empty() && significant && keeps_balance && rest.starts_with(tail) {
            cut = index;
            break;
        }
    }
    let trimmed = &text[..cut];
    // Whitespace before the suffix's own spacing is the model restating it.
    if cut < text.len() && rest.starts_with(' ') {
        return trimmed.trim_end().to_owned();
    }
    trimmed.to_owned()
}

fn trim_line_ends(text: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').map(str::trim_end).collect();
    while lines.len() > 1 && lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Whether a streamed answer so far already decides the suggestion, so the generation can
/// stop: its first line is complete in single-line mode, or the block has ended (a code
/// fence closed, or a line left the block) in multi-line mode.
pub fn is_settled(raw: &str, hole: &Hole<'_>) -> bool {
    let text = raw.replace("\r\n", "\n");
    if let Some(open) = text.find("```") {
        if text[open + 3..].contains("```") {
            return true;
        }
        if !text[open..].contains('\n') {
            return false;
        }
    }
    let body = strip_prefix_echo(strip_code_fence(&text), hole);
    let Some(last_newline) = body.rfind('\n') else { return false };
    match hole.mode {
        CompletionMode::Nothing | CompletionMode::SingleLine => true,
        CompletionMode::MultiLine => {
            let complete_lines = &body[..last_newline];
            let lines = complete_lines.split('\n').count();
            truncate_to_block(complete_lines, hole).split('\n').count() < lines
                || cut_repetition(complete_lines).split('\n').count() < lines
        }
    }
}
