//! The documents the editor has open: their text, version, language and syntax tree, kept up
//! to date by full and incremental changes.

use std::collections::HashMap;

use tree_sitter::Tree;

use crate::syntax::{edit_tree, Language};
use crate::text::{apply_change, PositionEncoding, PositionError, TextChange};

/// Largest document kept, so a huge generated file cannot exhaust memory.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// One open document.
#[derive(Debug, Clone)]
pub struct Document {
    pub uri: String,
    pub text: String,
    pub version: i32,
    pub language_id: String,
    pub language: Option<Language>,
    /// The last parse, edited (not reparsed) by changes since.
    tree: Option<Tree>,
    tree_current: bool,
    /// Byte offset of the latest edit, for "recently edited" context.
    pub last_edit: Option<usize>,
}

impl Document {
    pub fn new(uri: String, text: String, version: i32, language_id: String) -> Document {
        let language = Language::detect(&language_id, &uri);
        Document { uri, text, version, language_id, language, tree: None, tree_current: false, last_edit: None }
    }

    /// The syntax tree of the current text, reparsing incrementally when it is stale.
    pub fn tree(&mut self) -> Option<&Tree> {
        let language = self.language?;
        if !self.tree_current {
            self.tree = language.parse(&self.text, self.tree.as_ref());
            self.tree_current = true;
        }
        self.tree.as_ref()
    }
}

/// Why a change could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    Unknown(String),
    Position(PositionError),
    TooLarge(String),
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentError::Unknown(uri) => write!(formatter, "unknown document {uri}: it was not opened"),
            DocumentError::Position(error) => error.fmt(formatter),
            DocumentError::TooLarge(uri) => write!(formatter, "document {uri} is over {MAX_DOCUMENT_BYTES} bytes"),
        }
    }
}

impl std::error::Error for DocumentError {}

/// The open documents by URI.
#[derive(Debug, Default)]
pub struct Documents {
    open: HashMap<String, Document>,
}

impl Documents {
    pub fn open(&mut self, document: Document) -> Result<(), DocumentError> {
        if document.text.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge(document.uri));
        }
        self.open.insert(document.uri.clone(), document);
        Ok(())
    }

    pub fn close(&mut self, uri: &str) {
        self.open.remove(uri);
    }

    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.open.get(uri)
    }

    pub fn get_mut(&mut self, uri: &str) -> Option<&mut Document> {
        self.open.get_mut(uri)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Document> {
        self.open.values()
    }

    /// Applies the changes of one `didChange`, in order. On an invalid range the document is
    /// left as the earlier changes made it and the error is returned; the client's next full
    /// sync repairs it.
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: &[TextChange],
        encoding: PositionEncoding,
    ) -> Result<(), DocumentError> {
        let document = self.open.get_mut(uri).ok_or_else(|| DocumentError::Unknown(uri.to_owned()))?;
        for change in changes {
            let edit = apply_change(&mut document.text, change, encoding).map_err(DocumentError::Position)?;
            document.tree_current = false;
            document.last_edit = Some(edit.map_or(0, |edit| edit.new_end_byte));
            match (edit, document.tree.as_mut()) {
                (Some(edit), Some(tree)) => edit_tree(tree, &edit),
                // A full replacement: the old tree says nothing about the new text.
                (None, _) => document.tree = None,
                (Some(_), None) => {}
            }
            if document.text.len() > MAX_DOCUMENT_BYTES {
                self.open.remove(uri);
                return Err(DocumentError::TooLarge(uri.to_owned()));
            }
        }
        document.version = version;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::LinePosition;

    #[test]
    fn incremental_changes_keep_the_tree_in_step() {
        let mut documents = Documents::default();
        let text = "fn main() {\n    let x = 1;\n}\n".to_owned();
        documents.open(Document::new("file:///a.rs".into(), text, 1, "rust".into())).unwrap();
        let document = documents.get_mut("file:///a.rs").unwrap();
        assert!(!document.tree().unwrap().root_node().has_error());
        let at = |line, column| LinePosition { line, column };
        let change = TextChange { range: Some((at(1, 12), at(1, 13))), text: "2 +".into() };
        documents.change("file:///a.rs", 2, &[change], PositionEncoding::Utf16).unwrap();
        let document = documents.get_mut("file:///a.rs").unwrap();
        assert_eq!(document.text, "fn main() {\n    let x = 2 +;\n}\n");
        assert!(document.tree().unwrap().root_node().has_error());
        let fix = TextChange { range: Some((at(1, 15), at(1, 15))), text: " 3".into() };
        documents.change("file:///a.rs", 3, &[fix], PositionEncoding::Utf16).unwrap();
        let document = documents.get_mut("file:///a.rs").unwrap();
        let reparsed = document.tree().unwrap().root_node().to_sexp();
        let fresh = Language::Rust.parse(&document.text, None).unwrap().root_node().to_sexp();
        assert_eq!(reparsed, fresh);
        assert_eq!(document.version, 3);
    }

    #[test]
    fn bad_changes_are_errors_not_panics() {
        let mut documents = Documents::default();
        let change = TextChange { range: None, text: "x".into() };
        assert!(matches!(
            documents.change("file:///missing", 1, &[change], PositionEncoding::Utf16),
            Err(DocumentError::Unknown(_))
        ));
        documents.open(Document::new("file:///b.py".into(), "é\n".into(), 1, "python".into())).unwrap();
        let at = |line, column| LinePosition { line, column };
        let past = TextChange { range: Some((at(5, 0), at(5, 0))), text: "x".into() };
        assert!(matches!(
            documents.change("file:///b.py", 2, &[past], PositionEncoding::Utf16),
            Err(DocumentError::Position(_))
        ));
        let inside = TextChange { range: Some((at(0, 1), at(0, 1))), text: "x".into() };
        assert!(documents.change("file:///b.py", 2, &[inside], PositionEncoding::Utf8).is_err());
        assert_eq!(documents.get("file:///b.py").unwrap().text, "é\n");
    }
}
