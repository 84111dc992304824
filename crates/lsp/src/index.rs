//! The workspace index: definitions found by each grammar's tree-sitter tags query in every
//! source file (respecting `.gitignore`), built in the background and kept current by a file
//! watcher, so that completions can show the model the definitions of names near the cursor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use streaming_iterator::StreamingIterator;
use tree_sitter::{Query, QueryCursor};

use crate::prompt::Snippet;
use crate::syntax::Language;

/// Files larger than this are not indexed (generated or minified code).
pub const MAX_INDEXED_FILE_BYTES: u64 = 512 * 1024;
/// The most definitions kept from one file.
const MAX_DEFINITIONS_PER_FILE: usize = 500;
/// A definition's text is its first lines, up to this many bytes.
const MAX_DEFINITION_TEXT_BYTES: usize = 240;
const MAX_DEFINITION_LINES: usize = 3;

/// One definition: where it is and how it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    /// Path relative to the workspace root.
    pub path: Arc<str>,
    /// Zero-based line of the definition's start.
    pub line: u32,
    /// `function`, `method`, `class`, `interface`, `module`, ...
    pub kind: String,
    /// Its first lines (signature), trimmed.
    pub text: String,
}

/// The tags query of each language, compiled once.
fn tags_query(language: Language) -> Option<&'static Query> {
    static QUERIES: OnceLock<HashMap<Language, Query>> = OnceLock::new();
    let queries = QUERIES.get_or_init(|| {
        let mut queries = HashMap::new();
        for &language in Language::ALL {
            let source = match language {
                Language::Rust => tree_sitter_rust::TAGS_QUERY.to_owned(),
                Language::Python => tree_sitter_python::TAGS_QUERY.to_owned(),
                Language::JavaScript => tree_sitter_javascript::TAGS_QUERY.to_owned(),
                // TypeScript's query adds its own forms to JavaScript's.
                Language::TypeScript | Language::Tsx => {
                    format!("{}\n{}", tree_sitter_javascript::TAGS_QUERY, tree_sitter_typescript::TAGS_QUERY)
                }
                Language::Go => tree_sitter_go::TAGS_QUERY.to_owned(),
                Language::C => tree_sitter_c::TAGS_QUERY.to_owned(),
                Language::Cpp => tree_sitter_cpp::TAGS_QUERY.to_owned(),
                Language::Java => tree_sitter_java::TAGS_QUERY.to_owned(),
                Language::Lua => tree_sitter_lua::TAGS_QUERY.to_owned(),
            };
            match Query::new(&language.grammar(), &source) {
                Ok(query) => {
                    queries.insert(language, query);
                }
                Err(error) => tracing::warn!(language = language.name(), %error, "tags query does not compile"),
            }
        }
        queries
    });
    queries.get(&language)
}

/// Whether the tags query of `language` compiled (every built-in language should).
pub fn has_tags(language: Language) -> bool {
    tags_query(language).is_some()
}

/// The definitions in `text`, a file of `language` at `path`.
pub fn definitions(language: Language, path: &Arc<str>, text: &str) -> Vec<Definition> {
    let Some(query) = tags_query(language) else { return Vec::new() };
    let Some(tree) = language.parse(text, None) else { return Vec::new() };
    let names = query.capture_names();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), text.as_bytes());
    let mut found = Vec::new();
    while let Some(found_match) = matches.next() {
        let mut name = None;
        let mut definition = None;
        for capture in found_match.captures {
            let capture_name = names[capture.index as usize];
            if capture_name == "name" {
                name = Some(capture.node);
            } else if let Some(kind) = capture_name.strip_prefix("definition.") {
                definition = Some((kind, capture.node));
            }
        }
        let (Some(name), Some((kind, node))) = (name, definition) else { continue };
        let Some(name_text) = text.get(name.byte_range()) else { continue };
        let start = text[..node.start_byte()].rfind('\n').map_or(0, |index| index + 1);
        let body = &text[start..node.end_byte().min(text.len())];
        let mut signature = String::new();
        for line in body.lines().take(MAX_DEFINITION_LINES) {
            if signature.len() + line.len() > MAX_DEFINITION_TEXT_BYTES {
                break;
            }
            signature.push_str(line.trim_end());
            signature.push('\n');
        }
        if signature.is_empty() {
            signature = body[..body.floor_char_boundary(MAX_DEFINITION_TEXT_BYTES)].to_owned();
        }
        found.push(Definition {
            name: name_text.to_owned(),
            path: path.clone(),
            line: node.start_position().row as u32,
            kind: kind.to_owned(),
            text: signature.trim_end().to_owned(),
        });
        if found.len() == MAX_DEFINITIONS_PER_FILE {
            break;
        }
    }
    found
}

#[derive(Debug, Default)]
struct Tables {
    /// Definitions by name.
    by_name: HashMap<String, Vec<Definition>>,
    /// Names defined in each file (relative path), to remove them when it changes.
    by_file: HashMap<Arc<str>, Vec<String>>,
}

/// Counts that describe the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexSize {
    pub files: usize,
    pub definitions: usize,
    /// Bytes of the index's own tables and strings, estimated from their sizes.
    pub estimated_bytes: usize,
}

/// The definitions of a workspace.
#[derive(Debug)]
pub struct WorkspaceIndex {
    root: PathBuf,
    tables: RwLock<Tables>,
}

impl WorkspaceIndex {
    pub fn new(root: PathBuf) -> WorkspaceIndex {
        WorkspaceIndex { root, tables: RwLock::new(Tables::default()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn relative(&self, path: &Path) -> Arc<str> {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        Arc::from(relative.to_string_lossy().as_ref())
    }

    /// Indexes (or re-indexes) one file from disk; removes it when it is gone, too large or
    /// not a language with a grammar.
    pub fn index_file(&self, path: &Path) {
        let relative = self.relative(path);
        let language = Language::from_path(&relative);
        let readable = language.is_some()
            && std::fs::metadata(path)
                .is_ok_and(|metadata| metadata.is_file() && metadata.len() <= MAX_INDEXED_FILE_BYTES);
        let found = match (language, readable) {
            (Some(language), true) => match std::fs::read_to_string(path) {
                Ok(text) => definitions(language, &relative, &text),
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        self.replace_file(relative, found);
    }

    /// Replaces what the index knows of one file.
    pub fn replace_file(&self, relative: Arc<str>, found: Vec<Definition>) {
        let mut tables = self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(names) = tables.by_file.remove(&relative) {
            for name in names {
                if let Some(list) = tables.by_name.get_mut(&name) {
                    list.retain(|definition| definition.path != relative);
                    if list.is_empty() {
                        tables.by_name.remove(&name);
                    }
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let names: Vec<String> = found.iter().map(|definition| definition.name.clone()).collect();
        for definition in found {
            tables.by_name.entry(definition.name.clone()).or_default().push(definition);
        }
        tables.by_file.insert(relative, names);
    }

    pub fn remove_file(&self, path: &Path) {
        self.replace_file(self.relative(path), Vec::new());
    }

    /// Walks the workspace (respecting `.gitignore`, `.ignore` and hidden files) and indexes
    /// every source file. Runs on the calling thread; the index is usable throughout.
    pub fn index_all(&self) -> usize {
        let mut indexed = 0;
        let walker = ignore::WalkBuilder::new(&self.root).standard_filters(true).require_git(false).build();
        for entry in walker.flatten() {
            if entry.file_type().is_some_and(|kind| kind.is_file())
                && Language::from_path(&entry.path().to_string_lossy()).is_some()
            {
                self.index_file(entry.path());
                indexed += 1;
            }
        }
        indexed
    }

    /// The definitions named `name`, outside `exclude_path` (the file being edited).
    pub fn lookup(&self, name: &str, exclude_path: Option<&str>) -> Vec<Definition> {
        let tables = self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        tables
            .by_name
            .get(name)
            .map(|list| {
                list.iter().filter(|definition| Some(definition.path.as_ref()) != exclude_path).cloned().collect()
            })
            .unwrap_or_default()
    }

    pub fn size(&self) -> IndexSize {
        let tables = self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let definitions: usize = tables.by_name.values().map(Vec::len).sum();
        let mut bytes = 0;
        for (name, list) in &tables.by_name {
            bytes += name.capacity() + std::mem::size_of::<(String, Vec<Definition>)>();
            for definition in list {
                bytes += std::mem::size_of::<Definition>()
                    + definition.name.capacity()
                    + definition.kind.capacity()
                    + definition.text.capacity();
            }
        }
        for (path, names) in &tables.by_file {
            bytes += path.len() + std::mem::size_of::<(Arc<str>, Vec<String>)>();
            bytes += names.iter().map(|name| name.capacity() + std::mem::size_of::<String>()).sum::<usize>();
        }
        IndexSize { files: tables.by_file.len(), definitions, estimated_bytes: bytes }
    }
}

/// Identifiers in `text`, nearest to its end first, without repeats. Short names and
/// keywords-like lowercase words of three letters or fewer are skipped.
pub fn identifiers_nearest_last(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut current = String::new();
    let push = |word: &mut String, found: &mut Vec<String>| {
        if word.len() >= 3 && !word.starts_with(|character: char| character.is_ascii_digit()) && !found.contains(word) {
            found.push(word.clone());
        }
        word.clear();
    };
    for character in text.chars().rev() {
        if character.is_alphanumeric() || character == '_' {
            current.insert(0, character);
        } else {
            push(&mut current, &mut found);
        }
    }
    push(&mut current, &mut found);
    found
}

/// Definitions of the names used near the cursor, as prompt snippets within `budget_bytes`.
/// `near` is the text around the cursor that does not change while the user types on the
/// cursor's line (the lines above and below it), so the snippets stay put.
pub fn snippets_for(index: &WorkspaceIndex, near: &str, current_path: &str, budget_bytes: usize) -> Vec<Snippet> {
    let mut snippets = Vec::new();
    let mut used = 0;
    for name in identifiers_nearest_last(near).into_iter().take(64) {
        let definitions = index.lookup(&name, Some(current_path));
        // A name defined in many places says little; skip it.
        if definitions.is_empty() || definitions.len() > 3 {
            continue;
        }
        for definition in definitions.into_iter().take(1) {
            let cost = definition.text.len() + definition.path.len() + 16;
            if used + cost > budget_bytes {
                return snippets;
            }
            used += cost;
            snippets
                .push(Snippet { path: format!("{}:{}", definition.path, definition.line + 1), text: definition.text });
        }
    }
    snippets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_tags_query_that_finds_definitions() {
        let samples: &[(Language, &str, &str)] = &[
            (Language::Rust, "fn compute_total(x: u32) -> u32 { x }\nstruct Ledger;\n", "compute_total"),
            (Language::Python, "def compute_total(x):\n    return x\n\nclass Ledger:\n    pass\n", "compute_total"),
            (Language::JavaScript, "function computeTotal(x) { return x; }\nclass Ledger {}\n", "computeTotal"),
            (
                Language::TypeScript,
                "function computeTotal(x: number): number { return x; }\ninterface Ledger {}\n",
                "computeTotal",
            ),
            (Language::Tsx, "function computeTotal(x: number) { return <div>{x}</div>; }\n", "computeTotal"),
            (Language::Go, "package main\nfunc computeTotal(x int) int { return x }\n", "computeTotal"),
            (Language::C, "int compute_total(int x) { return x; }\n", "compute_total"),
            (Language::Cpp, "int compute_total(int x) { return x; }\nclass Ledger {};\n", "compute_total"),
            (Language::Java, "class Ledger { int computeTotal(int x) { return x; } }\n", "computeTotal"),
            (Language::Lua, "function compute_total(x)\n  return x\nend\n", "compute_total"),
        ];
        for (language, source, name) in samples {
            assert!(has_tags(*language), "{language:?}");
            let found = definitions(*language, &Arc::from("sample"), source);
            assert!(found.iter().any(|definition| definition.name == *name), "{language:?}: {found:?}");
        }
    }

    #[test]
    fn files_are_indexed_replaced_and_removed() {
        let root = std::env::temp_dir().join(format!("modeld-index-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("target")).unwrap();
        std::fs::write(root.join(".gitignore"), "target/\n").unwrap();
        std::fs::write(root.join("src/lib.rs"), "pub fn compute_total(items: &[u32]) -> u32 {\n    0\n}\n").unwrap();
        std::fs::write(root.join("target/gen.rs"), "pub fn generated_thing() {}\n").unwrap();
        let index = WorkspaceIndex::new(root.clone());
        assert_eq!(index.index_all(), 1);
        let found = index.lookup("compute_total", None);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path.as_ref(), "src/lib.rs");
        assert_eq!(found[0].text, "pub fn compute_total(items: &[u32]) -> u32 {\n    0\n}");
        assert!(index.lookup("generated_thing", None).is_empty(), "ignored by .gitignore");
        assert!(index.lookup("compute_total", Some("src/lib.rs")).is_empty());

        std::fs::write(root.join("src/lib.rs"), "pub fn renamed_total() {}\n").unwrap();
        index.index_file(&root.join("src/lib.rs"));
        assert!(index.lookup("compute_total", None).is_empty());
        assert_eq!(index.lookup("renamed_total", None).len(), 1);
        std::fs::remove_file(root.join("src/lib.rs")).unwrap();
        index.index_file(&root.join("src/lib.rs"));
        assert_eq!(index.size().definitions, 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn snippets_come_from_names_near_the_cursor() {
        let index = WorkspaceIndex::new(PathBuf::from("/w"));
        let path: Arc<str> = Arc::from("src/ledger.rs");
        let source =
            "pub struct Ledger { total: u32 }\npub fn compute_total(ledger: &Ledger) -> u32 { ledger.total }\n";
        index.replace_file(path.clone(), definitions(Language::Rust, &path, source));
        let near = "let ledger = Ledger::default();\nlet sum = compute_total(&ledger);\n";
        let snippets = snippets_for(&index, near, "src/main.rs", 1000);
        assert_eq!(snippets.len(), 2);
        assert_eq!(snippets[0].path, "src/ledger.rs:2", "nearest name first");
        assert!(snippets[0].text.starts_with("pub fn compute_total"));
        assert!(snippets_for(&index, near, "src/main.rs", 40).len() < 2, "within the budget");
        assert_eq!(identifiers_nearest_last("a.bcd(efg_h, 12ab)"), ["efg_h", "bcd"]);
    }
}
