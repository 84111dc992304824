//! Go `text/template`, as Ollama uses it for chat templates: parse with Go's checks, execute
//! with `missingkey=zero` over Go-shaped values, within limits that a crafted template cannot
//! pass. [`ollama`] builds the data Ollama gives a template and runs its turn logic.
//!
//! Supported: text and actions with `{{-`/`-}}` trimming and comments; pipelines, variables
//! (`:=`, `=`), parenthesised pipelines and field chains; `if`/`else if`/`else`, `range`
//! (over slices, maps in key order and integers; `break`, `continue`, `else`), `with`/`else
//! with`, `define`/`template`/`block`; Go's functions `and or not len index slice eq ne lt le
//! gt ge print printf println html js urlquery` and Ollama's `json currentDate yesterdayDate
//! toTypeScriptType`. Not supported: methods on values and `call`.

mod exec;
mod functions;
pub mod ollama;
mod parse;
mod value;

use std::collections::BTreeSet;

pub use value::{Field, List, Map, Printing, Struct, Value};

use parse::{Node, Operand, Parsed, Pipeline};

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a valid template.
    #[error("{0}")]
    Parse(String),
    /// Executing it failed.
    #[error("{0}")]
    Execute(String),
    /// It ran past a limit.
    #[error("{0}")]
    Limit(String),
}

/// Bounds on one execution.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Nodes, commands and operands evaluated.
    pub steps: u64,
    /// Bytes of output.
    pub output_bytes: usize,
    /// Bytes of strings made by functions (`printf`, `json`, `slice`…), so that a loop that
    /// doubles a variable fails before memory does.
    pub allocated_bytes: usize,
    /// Nested `template` calls.
    pub template_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { steps: 20_000_000, output_bytes: 64 << 20, allocated_bytes: 256 << 20, template_depth: 64 }
    }
}

/// Template text bigger than this is refused before parsing.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// Whether `text` is written as a Go template rather than as Jinja: no `{%` blocks, and every
/// action opens with what Go's actions open with (a field, a variable, a keyword, a known
/// function, a literal, a comment or a parenthesis). Decides which error a broken template
/// reports.
pub fn looks_like_go(text: &str) -> bool {
    if text.contains("{%") {
        return false;
    }
    const KEYWORDS: &[&str] = &[
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true",
        "false",
    ];
    text.split("{{").skip(1).all(|action| {
        let action = action.strip_prefix('-').unwrap_or(action).trim_start();
        let word: String = action.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        action.starts_with(['.', '$', '"', '`', '\'', '(', '/', '-', '}'])
            || action.starts_with(|c: char| c.is_ascii_digit())
            || KEYWORDS.contains(&word.as_str())
            || functions::is_function(&word)
    })
}

/// A parsed template, with Ollama's touch-up: one that names neither `.Messages` nor
/// `.Response` gets `{{ .Response }}` appended.
#[derive(Debug, Clone)]
pub struct Template {
    parsed: Parsed,
    source: String,
    variables: BTreeSet<String>,
}

impl Template {
    /// Parses `source` as Ollama does (`template.Parse`).
    pub fn parse(source: &str) -> Result<Template, Error> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::Parse(format!("template is larger than {} MiB", MAX_TEMPLATE_BYTES >> 20)));
        }
        let mut parsed = parse::parse(source, &functions::is_function)?;
        let mut variables = BTreeSet::new();
        for list in std::iter::once(&parsed.root).chain(parsed.defined.values()) {
            identifiers_in_list(list, &mut variables)?;
        }
        let variables: BTreeSet<String> = variables.into_iter().map(|name| name.to_lowercase()).collect();
        if !variables.contains("messages") && !variables.contains("response") {
            parsed.root.push(Node::Action(Pipeline {
                variables: Vec::new(),
                is_assign: false,
                commands: vec![parse::Command { args: vec![Operand::Field(vec!["Response".into()])] }],
                line: 0,
            }));
        }
        Ok(Template { parsed, source: source.to_owned(), variables })
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field and variable names it uses, lower-cased (Ollama's `Vars`): `messages`,
    /// `tools`, `suffix`, `think`…
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Whether it uses `name` (lower-case).
    pub fn uses(&self, name: &str) -> bool {
        self.variables.contains(name)
    }

    /// Executes it over `data`.
    pub fn execute(&self, data: &Value, limits: &Limits) -> Result<String, Error> {
        execute_parsed(&self.parsed, &self.parsed.root, data, limits)
    }

    /// Executes the part of it up to and including the first `.Response` field, as Ollama
    /// does for the last turn of a template without `.Messages`, so that the prompt ends
    /// where the model's answer starts.
    pub(crate) fn execute_up_to_response(&self, data: &Value, limits: &Limits) -> Result<String, Error> {
        let mut cut = false;
        let root = cut_after_response(&self.parsed.root, &mut cut);
        execute_parsed(&self.parsed, &root, data, limits)
    }
}

fn execute_parsed(parsed: &Parsed, root: &parse::List, data: &Value, limits: &Limits) -> Result<String, Error> {
    let mut execution = exec::Execution::new(parsed, limits);
    execution.run(root, data)?;
    Ok(execution.out)
}

/// Ollama's `Identifiers`: names of fields and variables in actions, branches and template
/// calls (not inside `(…).Field` chains).
fn identifiers_in_list(list: &parse::List, names: &mut BTreeSet<String>) -> Result<(), Error> {
    for node in list {
        match node {
            Node::Action(pipe) => identifiers_in_pipe(pipe, names),
            Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
                identifiers_in_pipe(&branch.pipe, names);
                identifiers_in_list(&branch.list, names)?;
                if let Some(else_list) = &branch.else_list {
                    identifiers_in_list(else_list, names)?;
                }
            }
            Node::Template { pipe: Some(pipe), .. } => identifiers_in_pipe(pipe, names),
            Node::Template { pipe: None, .. } => {
                return Err(Error::Parse("undefined template specified".into()));
            }
            Node::Text(_) | Node::Break | Node::Continue => {}
        }
    }
    Ok(())
}

fn identifiers_in_pipe(pipe: &Pipeline, names: &mut BTreeSet<String>) {
    for arg in pipe.commands.iter().flat_map(|command| &command.args) {
        match arg {
            Operand::Field(fields) => names.extend(fields.iter().cloned()),
            Operand::Variable(name, fields) => {
                names.insert(name.clone());
                names.extend(fields.iter().cloned());
            }
            Operand::Pipe(inner) => identifiers_in_pipe(inner, names),
            _ => {}
        }
    }
}

/// Ollama's `deleteNode` with its `.Response` predicate: keeps everything up to and including
/// the first `.Response` field and drops what follows it. Branch conditions are not looked
/// into, as in Ollama.
fn cut_after_response(list: &parse::List, cut: &mut bool) -> parse::List {
    let mut kept = Vec::new();
    for node in list {
        if *cut {
            break;
        }
        match node {
            Node::Action(pipe) => {
                if let Some(pipe) = cut_pipe(pipe, cut) {
                    kept.push(Node::Action(pipe));
                }
            }
            Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
                let mut branch = (**branch).clone();
                branch.list = cut_after_response(&branch.list, cut);
                if let Some(else_list) = &branch.else_list {
                    branch.else_list = if *cut { None } else { Some(cut_after_response(else_list, cut)) };
                }
                let branch = Box::new(branch);
                kept.push(match node {
                    Node::If(_) => Node::If(branch),
                    Node::Range(_) => Node::Range(branch),
                    _ => Node::With(branch),
                });
            }
            other => kept.push(other.clone()),
        }
    }
    kept
}

fn cut_pipe(pipe: &Pipeline, cut: &mut bool) -> Option<Pipeline> {
    let mut commands = Vec::new();
    for command in &pipe.commands {
        let mut args = Vec::new();
        for arg in &command.args {
            if *cut {
                continue;
            }
            if let Operand::Field(fields) = arg {
                if fields.iter().any(|field| field == "Response") {
                    *cut = true;
                }
            }
            args.push(arg.clone());
        }
        if args.is_empty() {
            return None;
        }
        commands.push(parse::Command { args });
    }
    (!commands.is_empty()).then(|| Pipeline { commands, ..pipe.clone() })
}

#[cfg(test)]
mod tests;
