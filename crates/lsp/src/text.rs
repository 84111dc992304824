//! Open documents' text and the conversion between LSP positions (line and column in the
//! negotiated encoding) and byte offsets.

use std::fmt;

/// How a position's column counts characters, as negotiated at initialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEncoding {
    /// UTF-16 code units: the LSP default, what VS Code and most clients use.
    Utf16,
    /// Bytes of UTF-8, offered by Neovim and Helix.
    Utf8,
}

/// A line and column as the client sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinePosition {
    pub line: u32,
    pub column: u32,
}

/// Why a position names no place in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionError {
    /// The line is past the last line.
    LinePastEnd { line: u32, lines: usize },
    /// The column is past the end of its line.
    ColumnPastEnd { line: u32, column: u32 },
    /// The column falls inside a character (between the two halves of a UTF-16 surrogate pair,
    /// or inside a multi-byte UTF-8 sequence).
    InsideCharacter { line: u32, column: u32 },
}

impl fmt::Display for PositionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PositionError::LinePastEnd { line, lines } => {
                write!(formatter, "line {line} is past the end of the document ({lines} lines)")
            }
            PositionError::ColumnPastEnd { line, column } => {
                write!(formatter, "column {column} is past the end of line {line}")
            }
            PositionError::InsideCharacter { line, column } => {
                write!(formatter, "column {column} of line {line} falls inside a character")
            }
        }
    }
}

impl std::error::Error for PositionError {}

/// The byte range of each line of `text`, without its line ending.
fn line_start(text: &str, line: u32) -> Option<usize> {
    if line == 0 {
        return Some(0);
    }
    let mut seen = 0;
    for (index, byte) in text.bytes().enumerate() {
        if byte == b'\n' {
            seen += 1;
            if seen == line {
                return Some(index + 1);
            }
        }
    }
    None
}

/// The byte offset of `position` in `text`. A column past the end of its line is an error, as
/// is one inside a character; the LSP lets clients send the line's length, which maps to the
/// line's end.
pub fn offset_of(text: &str, position: LinePosition, encoding: PositionEncoding) -> Result<usize, PositionError> {
    let start = line_start(text, position.line)
        .ok_or(PositionError::LinePastEnd { line: position.line, lines: text.split('\n').count() })?;
    let rest = &text[start..];
    let line_text = rest.split('\n').next().unwrap_or_default();
    let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
    let wanted = position.column as usize;
    let mut counted = 0;
    for (byte_index, character) in line_text.char_indices() {
        if counted == wanted {
            return Ok(start + byte_index);
        }
        let width = match encoding {
            PositionEncoding::Utf16 => character.len_utf16(),
            PositionEncoding::Utf8 => character.len_utf8(),
        };
        if counted + width > wanted {
            return Err(PositionError::InsideCharacter { line: position.line, column: position.column });
        }
        counted += width;
    }
    if counted == wanted {
        Ok(start + line_text.len())
    } else {
        Err(PositionError::ColumnPastEnd { line: position.line, column: position.column })
    }
}

/// The position of byte `offset` (clamped to the text, moved back to a character boundary).
pub fn position_of(text: &str, offset: usize, encoding: PositionEncoding) -> LinePosition {
    let offset = text.floor_char_boundary(offset);
    let before = &text[..offset];
    let line = before.bytes().filter(|&byte| byte == b'\n').count() as u32;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = match encoding {
        PositionEncoding::Utf16 => before[line_start..].chars().map(char::len_utf16).sum::<usize>(),
        PositionEncoding::Utf8 => offset - line_start,
    };
    LinePosition { line, column: column as u32 }
}

/// One edit as the client sends it: a range (absent for the whole text) and its new text.
#[derive(Debug, Clone)]
pub struct TextChange {
    pub range: Option<(LinePosition, LinePosition)>,
    pub text: String,
}

/// Where an edit landed, in bytes and (row, byte column) points, for incremental reparsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedEdit {
    pub start_byte: usize,
    pub old_end_byte: usize,
    pub new_end_byte: usize,
    pub start_point: (usize, usize),
    pub old_end_point: (usize, usize),
    pub new_end_point: (usize, usize),
}

fn point_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let row = before.bytes().filter(|&byte| byte == b'\n').count();
    let column = offset - before.rfind('\n').map_or(0, |index| index + 1);
    (row, column)
}

/// Applies `change` to `text`. Returns the edit when it had a range, `None` when it replaced
/// the whole text.
pub fn apply_change(
    text: &mut String,
    change: &TextChange,
    encoding: PositionEncoding,
) -> Result<Option<AppliedEdit>, PositionError> {
    let Some((start, end)) = change.range else {
        text.clone_from(&change.text);
        return Ok(None);
    };
    let start_byte = offset_of(text, start, encoding)?;
    let old_end_byte = offset_of(text, end, encoding)?.max(start_byte);
    let start_point = point_of(text, start_byte);
    let old_end_point = point_of(text, old_end_byte);
    text.replace_range(start_byte..old_end_byte, &change.text);
    let new_end_byte = start_byte + change.text.len();
    let new_end_point = point_of(text, new_end_byte);
    Ok(Some(AppliedEdit { start_byte, old_end_byte, new_end_byte, start_point, old_end_point, new_end_point }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> LinePosition {
        LinePosition { line, column }
    }

    #[test]
    fn utf16_columns_count_surrogate_pairs_as_two() {
        let text = "let s = \"😀é\";\nx";
        let quote = text.find('"').unwrap();
        assert_eq!(offset_of(text, at(0, 9), PositionEncoding::Utf16), Ok(quote + 1));
        // The emoji is two UTF-16 units and four bytes.
        assert_eq!(offset_of(text, at(0, 11), PositionEncoding::Utf16), Ok(quote + 5));
        assert_eq!(
            offset_of(text, at(0, 10), PositionEncoding::Utf16),
            Err(PositionError::InsideCharacter { line: 0, column: 10 })
        );
        assert_eq!(offset_of(text, at(0, 12), PositionEncoding::Utf16), Ok(quote + 7));
        assert_eq!(offset_of(text, at(0, 13), PositionEncoding::Utf8), Ok(quote + 5));
        assert_eq!(offset_of(text, at(1, 1), PositionEncoding::Utf16), Ok(text.len()));
        assert_eq!(position_of(text, quote + 5, PositionEncoding::Utf16), at(0, 11));
        assert_eq!(position_of(text, quote + 5, PositionEncoding::Utf8), at(0, 13));
    }

    #[test]
    fn positions_past_the_end_are_errors() {
        let text = "ab\ncd";
        assert_eq!(
            offset_of(text, at(2, 0), PositionEncoding::Utf16),
            Err(PositionError::LinePastEnd { line: 2, lines: 2 })
        );
        assert_eq!(
            offset_of(text, at(0, 3), PositionEncoding::Utf16),
            Err(PositionError::ColumnPastEnd { line: 0, column: 3 })
        );
        assert_eq!(offset_of(text, at(0, 2), PositionEncoding::Utf16), Ok(2));
        assert_eq!(offset_of("a\r\nb", at(0, 1), PositionEncoding::Utf16), Ok(1));
    }

    #[test]
    fn incremental_changes_report_their_edit() {
        let mut text = String::from("fn main() {\n    let é = 1;\n}\n");
        let change = TextChange { range: Some((at(1, 8), at(1, 9))), text: "ab\ncd".into() };
        let edit = apply_change(&mut text, &change, PositionEncoding::Utf16).unwrap().unwrap();
        assert_eq!(text, "fn main() {\n    let ab\ncd = 1;\n}\n");
        assert_eq!(edit.start_point, (1, 8));
        assert_eq!(edit.old_end_point, (1, 10));
        assert_eq!(edit.new_end_point, (2, 2));
        assert_eq!(edit.old_end_byte - edit.start_byte, 2);
        let whole = TextChange { range: None, text: "new".into() };
        assert_eq!(apply_change(&mut text, &whole, PositionEncoding::Utf16).unwrap(), None);
        assert_eq!(text, "new");
    }
}
