//! Go `text/template` source to a syntax tree: the lexer (delimiters, trim markers, comments)
//! and a recursive-descent parser with Go's parse-time checks (known functions, declared
//! variables, `break` only in `range`), bounded in nesting.

use std::collections::HashMap;

use crate::Error;

/// How deeply blocks and parentheses may nest; Go has no limit, but real templates nest a
/// handful of levels and a crafted one must not exhaust the stack.
const MAX_NESTING: usize = 100;

/// A list of nodes: the body of a template or of a branch.
pub(crate) type List = Vec<Node>;

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares or assigns variables.
    Action(Pipeline),
    If(Box<Branch>),
    Range(Box<Branch>),
    With(Box<Branch>),
    /// `{{ template "name" pipeline }}`.
    Template {
        name: String,
        pipe: Option<Pipeline>,
        line: usize,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pipe: Pipeline,
    pub(crate) list: List,
    pub(crate) else_list: Option<List>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`), without the `$`… kept with it.
    pub(crate) variables: Vec<String>,
    pub(crate) is_assign: bool,
    pub(crate) commands: Vec<Command>,
    pub(crate) line: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) args: Vec<Operand>,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// `.`
    Dot,
    /// `.A.B`: fields of dot.
    Field(Vec<String>),
    /// `$x.A.B`
    Variable(String, Vec<String>),
    /// A function name.
    Function(String),
    /// `(pipeline).A.B`
    Chain(Box<Operand>, Vec<String>),
    /// `(pipeline)`
    Pipe(Box<Pipeline>),
    String(String),
    Number(Number),
    Bool(bool),
    Nil,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

/// A parsed template and the ones it defines with `define` and `block`.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) root: List,
    pub(crate) defined: HashMap<String, List>,
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    Open,
    Close,
    Identifier(String),
    Field(String),
    Dot,
    Variable(String),
    String(String),
    Number(String),
    Char(char),
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
struct Lexed {
    token: Token,
    /// Whitespace came right before this token (fields chain only without it).
    spaced: bool,
    line: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn lex(source: &str) -> Result<Vec<Lexed>, Error> {
    let mut tokens: Vec<Lexed> = Vec::new();
    let mut rest = source;
    let mut line = 1usize;
    let mut trim_next_text = false;
    let error = |line: usize, message: String| Error::Parse(format!("template: :{line}: {message}"));
    loop {
        let (text, after) = match rest.find("{{") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        let mut text = text;
        if trim_next_text {
            text = text.trim_start_matches(is_space);
        }
        let trim_left = after.is_some_and(|after| after.starts_with('-') && after[1..].starts_with(is_space));
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            tokens.push(Lexed { token: Token::Text(text.to_owned()), spaced: false, line });
        }
        line += rest[..rest.len() - after.map_or(0, str::len)].matches('\n').count();
        let Some(after) = after else { break };
        let mut inside = if trim_left { &after[2..] } else { after };
        // A comment is the whole action: `{{/* … */}}`, with optional trim markers.
        let spaces = inside.len() - inside.trim_start_matches(is_space).len();
        if inside[spaces..].starts_with("/*") && (spaces == 0 || trim_left) {
            let Some(end) = inside.find("*/") else { return Err(error(line, "unclosed comment".into())) };
            line += inside[..end].matches('\n').count();
            let tail = &inside[end + 2..];
            let (trim_right, tail) = if let Some(tail) = tail
                .strip_prefix(" -}}")
                .or_else(|| tail.strip_prefix(|c: char| is_space(c)).and_then(|tail| tail.strip_prefix("-}}")))
            {
                (true, tail)
            } else if let Some(tail) = tail.strip_prefix("}}") {
                (false, tail)
            } else {
                return Err(error(line, "comment ends before closing delimiter".into()));
            };
            trim_next_text = trim_right;
            rest = tail;
            continue;
        }
        tokens.push(Lexed { token: Token::Open, spaced: false, line });
        let mut spaced = false;
        loop {
            let Some(c) = inside.chars().next() else {
                return Err(error(line, "unclosed action".into()));
            };
            if is_space(c) {
                // ` -}}` closes with a right trim marker.
                let after_space = inside.trim_start_matches(is_space);
                if let Some(tail) = after_space.strip_prefix("-}}") {
                    line += inside[..inside.len() - after_space.len()].matches('\n').count();
                    tokens.push(Lexed { token: Token::Close, spaced: true, line });
                    trim_next_text = true;
                    inside = tail;
                    break;
                }
                line += inside[..inside.len() - after_space.len()].matches('\n').count();
                inside = after_space;
                spaced = true;
                continue;
            }
            if let Some(tail) = inside.strip_prefix("}}") {
                tokens.push(Lexed { token: Token::Close, spaced, line });
                trim_next_text = false;
                inside = tail;
                break;
            }
            let (token, length) = lex_token(inside).map_err(|message| error(line, message))?;
            line += inside[..length].matches('\n').count();
            tokens.push(Lexed { token, spaced, line });
            spaced = false;
            inside = &inside[length..];
        }
        rest = inside;
    }
    Ok(tokens)
}

/// One token inside an action, and how many bytes it took.
fn lex_token(text: &str) -> Result<(Token, usize), String> {
    let mut chars = text.char_indices();
    let (_, c) = chars.next().expect("lex_token is called on a non-empty text");
    let word_end = |from: usize| text[from..].find(|c: char| !is_alphanumeric(c)).map_or(text.len(), |at| from + at);
    Ok(match c {
        '|' => (Token::Pipe, 1),
        '(' => (Token::LeftParen, 1),
        ')' => (Token::RightParen, 1),
        ',' => (Token::Comma, 1),
        '=' => (Token::Assign, 1),
        ':' if text.starts_with(":=") => (Token::Declare, 2),
        '.' if text[1..].starts_with(is_alphanumeric) && !text[1..].starts_with(|c: char| c.is_ascii_digit()) => {
            let end = word_end(1);
            (Token::Field(text[1..end].to_owned()), end)
        }
        '.' if !text[1..].starts_with(|c: char| c.is_ascii_digit()) => (Token::Dot, 1),
        '$' => {
            let end = word_end(1);
            (Token::Variable(text[..end].to_owned()), end)
        }
        '"' => {
            let mut escaped = false;
            for (at, c) in chars {
                match c {
                    '\n' => return Err("unterminated quoted string".into()),
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return Ok((Token::String(unquote(&text[1..at])?), at + 1)),
                    _ => escaped = false,
                }
            }
            return Err("unterminated quoted string".into());
        }
        '`' => match text[1..].find('`') {
            Some(at) => (Token::String(text[1..at + 1].to_owned()), at + 2),
            None => return Err("unterminated raw quoted string".into()),
        },
        '\'' => {
            let mut escaped = false;
            for (at, c) in chars {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        let value = unquote(&text[1..at])?;
                        let mut value_chars = value.chars();
                        return match (value_chars.next(), value_chars.next()) {
                            (Some(c), None) => Ok((Token::Char(c), at + 1)),
                            _ => Err(format!("malformed character constant: {}", &text[..at + 1])),
                        };
                    }
                    '\n' => break,
                    _ => escaped = false,
                }
            }
            return Err("unterminated character constant".into());
        }
        '+' | '-' | '0'..='9' | '.' => {
            let end = text[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '+' || c == '-'))
                .map_or(text.len(), |at| at + 1);
            // `1-2` is not one number: a sign only follows an exponent letter.
            let mut length = 1;
            let bytes = text.as_bytes();
            while length < end {
                let b = bytes[length];
                if (b == b'+' || b == b'-') && !matches!(bytes[length - 1], b'e' | b'E' | b'p' | b'P') {
                    break;
                }
                length += 1;
            }
            (Token::Number(text[..length].to_owned()), length)
        }
        c if is_alphanumeric(c) => {
            let end = word_end(0);
            (Token::Identifier(text[..end].to_owned()), end)
        }
        other => return Err(format!("unexpected {other:?} in command")),
    })
}

/// Go's escapes in a double-quoted string or a character constant.
fn unquote(body: &str) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next().ok_or("invalid syntax")?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
            let digits: String = chars.take(n).collect();
            if digits.len() != n {
                return Err("invalid syntax".into());
            }
            u32::from_str_radix(&digits, 16).map_err(|_| "invalid syntax".to_string())
        };
        match escaped {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(escaped),
            'x' => out.push(char::from_u32(hex(&mut chars, 2)?).ok_or("invalid syntax")?),
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?).ok_or("invalid syntax")?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?).ok_or("invalid syntax")?),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let value = u32::from_str_radix(&format!("{escaped}{rest}"), 8).map_err(|_| "invalid syntax")?;
                out.push(char::from_u32(value).ok_or("invalid syntax")?);
            }
            _ => return Err("invalid syntax".into()),
        }
    }
    Ok(out)
}

fn parse_number(text: &str) -> Option<Number> {
    let clean = text.replace('_', "");
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let integer = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        i64::from_str_radix(octal, 8).ok()
    } else if let Some(binary) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        i64::from_str_radix(binary, 2).ok()
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(integer) = integer {
        return Some(Number::Int(if negative { -integer } else { integer }));
    }
    let float: f64 = digits.parse().ok()?;
    float.is_finite().then_some(Number::Float(if negative { -float } else { float }))
}

// ---------------------------------------------------------------- parser

struct Parser<'f> {
    tokens: Vec<Lexed>,
    position: usize,
    /// Variables in scope, innermost last.
    variables: Vec<String>,
    defined: HashMap<String, List>,
    functions: &'f dyn Fn(&str) -> bool,
    depth: usize,
    range_depth: usize,
}

/// What ended a list.
enum ListEnd {
    Eof,
    End,
    Else,
    ElseIf,
    ElseWith,
}

/// Parses `source`; `functions` says which names are functions (Go refuses unknown ones
/// when it parses).
pub(crate) fn parse(source: &str, functions: &dyn Fn(&str) -> bool) -> Result<Parsed, Error> {
    let tokens = lex(source)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        variables: vec!["$".into()],
        defined: HashMap::new(),
        functions,
        depth: 0,
        range_depth: 0,
    };
    let (root, end) = parser.list()?;
    match end {
        ListEnd::Eof => Ok(Parsed { root, defined: parser.defined }),
        ListEnd::End => Err(parser.error("unexpected {{end}}")),
        _ => Err(parser.error("unexpected {{else}}")),
    }
}

impl Parser<'_> {
    fn line(&self) -> usize {
        self.tokens.get(self.position).or_else(|| self.tokens.last()).map_or(1, |token| token.line)
    }

    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Parse(format!("template: :{}: {message}", self.line()))
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|lexed| &lexed.token)
    }

    fn peek_spaced(&self) -> bool {
        self.tokens.get(self.position).is_some_and(|lexed| lexed.spaced)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).map(|lexed| lexed.token.clone());
        self.position += 1;
        token
    }

    fn expect_close(&mut self, context: &str) -> Result<(), Error> {
        match self.next() {
            Some(Token::Close) => Ok(()),
            Some(other) => Err(self.error(format!("unexpected {} in {context}", describe(&other)))),
            None => Err(self.error(format!("unclosed action in {context}"))),
        }
    }

    fn nest(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(format!("nested more than {MAX_NESTING} levels deep")));
        }
        Ok(())
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self) -> Result<(List, ListEnd), Error> {
        let mut nodes = Vec::new();
        loop {
            match self.next() {
                None => return Ok((nodes, ListEnd::Eof)),
                Some(Token::Text(text)) => nodes.push(Node::Text(text)),
                Some(Token::Open) => {
                    let line = self.line();
                    match self.peek().cloned() {
                        Some(Token::Identifier(word)) => match word.as_str() {
                            "end" => {
                                self.position += 1;
                                self.expect_close("end")?;
                                return Ok((nodes, ListEnd::End));
                            }
                            "else" => {
                                self.position += 1;
                                return match self.peek() {
                                    Some(Token::Identifier(word)) if word == "if" => {
                                        self.position += 1;
                                        Ok((nodes, ListEnd::ElseIf))
                                    }
                                    Some(Token::Identifier(word)) if word == "with" => {
                                        self.position += 1;
                                        Ok((nodes, ListEnd::ElseWith))
                                    }
                                    _ => {
                                        self.expect_close("else")?;
                                        Ok((nodes, ListEnd::Else))
                                    }
                                };
                            }
                            "if" | "range" | "with" => {
                                self.position += 1;
                                nodes.push(self.control(&word)?);
                            }
                            "define" => {
                                self.position += 1;
                                self.define(false, line)?;
                            }
                            "block" => {
                                self.position += 1;
                                nodes.push(self.define(true, line)?);
                            }
                            "template" => {
                                self.position += 1;
                                nodes.push(self.template_call(line)?);
                            }
                            "break" | "continue" => {
                                self.position += 1;
                                if self.range_depth == 0 {
                                    return Err(self.error(format!("{{{{{word}}}}} outside {{{{range}}}}")));
                                }
                                self.expect_close(&word)?;
                                nodes.push(if word == "break" { Node::Break } else { Node::Continue });
                            }
                            _ => nodes.push(Node::Action(self.pipeline("command")?)),
                        },
                        _ => nodes.push(Node::Action(self.pipeline("command")?)),
                    }
                }
                Some(other) => return Err(self.error(format!("unexpected {}", describe(&other)))),
            }
        }
    }

    /// `if`, `range` or `with`, after the keyword.
    fn control(&mut self, keyword: &str) -> Result<Node, Error> {
        self.nest()?;
        let scope = self.variables.len();
        let pipe = self.pipeline(keyword)?;
        if keyword == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list()?;
        if keyword == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            ListEnd::Eof => return Err(self.error(format!("unexpected EOF in {keyword}"))),
            ListEnd::End => None,
            ListEnd::Else => {
                // Variables the pipeline declared stay in scope here too, until {{end}}.
                let (else_list, end) = self.list()?;
                if !matches!(end, ListEnd::End) {
                    return Err(self.error(format!("expected end; found else in {keyword}")));
                }
                Some(else_list)
            }
            ListEnd::ElseIf | ListEnd::ElseWith => {
                // Go allows `else if` in `if` and `else with` in `with` only.
                let chained = if matches!(end, ListEnd::ElseIf) { "if" } else { "with" };
                if chained != keyword {
                    return Err(self.error(format!("unexpected else {chained} in {keyword}")));
                }
                // `{{else if x}}…{{end}}` is `{{else}}{{if x}}…{{end}}{{end}}`: the inner
                // control consumes the shared {{end}}.
                Some(vec![self.control(chained)?])
            }
        };
        self.variables.truncate(scope);
        self.depth -= 1;
        let branch = Box::new(Branch { pipe, list, else_list });
        Ok(match keyword {
            "if" => Node::If(branch),
            "range" => Node::Range(branch),
            _ => Node::With(branch),
        })
    }

    /// `define "name"` … `end`, or `block "name" pipeline` … `end` (which also runs it).
    fn define(&mut self, is_block: bool, line: usize) -> Result<Node, Error> {
        let context = if is_block { "block clause" } else { "define clause" };
        let name = match self.next() {
            Some(Token::String(name)) => name,
            _ => return Err(self.error(format!("unexpected token in {context}"))),
        };
        let pipe = if is_block { Some(self.pipeline(context)?) } else { self.expect_close(context).map(|_| None)? };
        self.nest()?;
        let outer = std::mem::replace(&mut self.variables, vec!["$".into()]);
        let outer_range = std::mem::take(&mut self.range_depth);
        let (list, end) = self.list()?;
        self.variables = outer;
        self.range_depth = outer_range;
        self.depth -= 1;
        if !matches!(end, ListEnd::End) {
            return Err(self.error(format!("unexpected EOF in {context}")));
        }
        self.defined.insert(name.clone(), list);
        Ok(Node::Template { name, pipe, line })
    }

    fn template_call(&mut self, line: usize) -> Result<Node, Error> {
        let name = match self.next() {
            Some(Token::String(name)) => name,
            _ => return Err(self.error("unexpected token in template clause")),
        };
        let pipe = match self.peek() {
            Some(Token::Close) => {
                self.position += 1;
                None
            }
            _ => Some(self.pipeline("template clause")?),
        };
        Ok(Node::Template { name, pipe, line })
    }

    /// A pipeline up to the closing delimiter, with an optional declaration.
    fn pipeline(&mut self, context: &str) -> Result<Pipeline, Error> {
        let line = self.line();
        let mut variables = Vec::new();
        let mut is_assign = false;
        // `$x :=`, `$x =`, `$i, $e :=`
        let start = self.position;
        if let Some(Token::Variable(first)) = self.peek().cloned() {
            self.position += 1;
            let mut names = vec![first];
            if self.peek() == Some(&Token::Comma) && context == "range" {
                self.position += 1;
                match self.next() {
                    Some(Token::Variable(second)) => names.push(second),
                    _ => return Err(self.error("range can only initialize variables")),
                }
            }
            match self.peek() {
                Some(Token::Declare) => {
                    self.position += 1;
                    variables = names;
                }
                Some(Token::Assign) => {
                    self.position += 1;
                    for name in &names {
                        if !self.variables.contains(name) {
                            return Err(self.error(format!("undefined variable \"{name}\"")));
                        }
                    }
                    variables = names;
                    is_assign = true;
                }
                _ => self.position = start,
            }
        }
        let mut commands = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Close) => {
                    self.position += 1;
                    break;
                }
                None => return Err(self.error(format!("unclosed action in {context}"))),
                _ => {}
            }
            commands.push(self.command()?);
            match self.peek() {
                Some(Token::Pipe) => {
                    self.position += 1;
                    if matches!(self.peek(), Some(Token::Close)) {
                        return Err(self.error("missing command"));
                    }
                }
                Some(Token::Close) => {}
                Some(Token::RightParen) => return Err(self.error("unexpected right paren")),
                Some(other) => return Err(self.error(format!("unexpected {} in operand", describe(other)))),
                None => return Err(self.error(format!("unclosed action in {context}"))),
            }
        }
        if commands.is_empty() {
            return Err(self.error(format!("missing value for {context}")));
        }
        if !is_assign {
            self.variables.extend(variables.iter().cloned());
        }
        Ok(Pipeline { variables, is_assign, commands, line })
    }

    /// A pipeline inside parentheses, up to `)`.
    fn parenthesized(&mut self) -> Result<Pipeline, Error> {
        self.nest()?;
        let line = self.line();
        let mut commands = Vec::new();
        loop {
            match self.peek() {
                Some(Token::RightParen) => {
                    self.position += 1;
                    break;
                }
                Some(Token::Close) | None => return Err(self.error("unclosed left paren")),
                _ => {}
            }
            commands.push(self.command()?);
            match self.peek() {
                Some(Token::Pipe) => self.position += 1,
                Some(Token::RightParen) => {}
                Some(Token::Close) | None => return Err(self.error("unclosed left paren")),
                Some(other) => return Err(self.error(format!("unexpected {} in operand", describe(other)))),
            }
        }
        self.depth -= 1;
        if commands.is_empty() {
            return Err(self.error("missing value for parenthesized pipeline"));
        }
        Ok(Pipeline { variables: Vec::new(), is_assign: false, commands, line })
    }

    fn command(&mut self) -> Result<Command, Error> {
        let mut args = Vec::new();
        loop {
            match self.peek() {
                None | Some(Token::Close | Token::Pipe | Token::RightParen) => break,
                _ => {}
            }
            if !args.is_empty() && !self.peek_spaced() {
                return Err(self.error(format!("missing space before {}", describe(self.peek().expect("peeked")))));
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return Err(self.error("empty command"));
        }
        if args.len() > 1 {
            if let Operand::Nil = args[0] {
                return Err(self.error("nil is not a command"));
            }
        }
        Ok(Command { args })
    }

    fn operand(&mut self) -> Result<Operand, Error> {
        let token = self.next().expect("operand is called before a token");
        let term = match token {
            Token::Dot => Operand::Dot,
            Token::Field(name) => {
                let mut fields = vec![name];
                fields.extend(self.chained_fields());
                return Ok(Operand::Field(fields));
            }
            Token::Variable(name) => {
                if !self.variables.contains(&name) {
                    return Err(self.error(format!("undefined variable \"{name}\"")));
                }
                let fields = self.chained_fields();
                return Ok(Operand::Variable(name, fields));
            }
            Token::Identifier(word) => match word.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                _ if (self.functions)(&word) => Operand::Function(word),
                _ => return Err(self.error(format!("function \"{word}\" not defined"))),
            },
            Token::String(text) => Operand::String(text),
            Token::Char(c) => Operand::Number(Number::Int(c as i64)),
            Token::Number(text) => match parse_number(&text) {
                Some(number) => Operand::Number(number),
                None => return Err(self.error(format!("bad number syntax: \"{text}\""))),
            },
            Token::LeftParen => Operand::Pipe(Box::new(self.parenthesized()?)),
            other => return Err(self.error(format!("unexpected {} in operand", describe(&other)))),
        };
        let fields = self.chained_fields();
        if fields.is_empty() {
            return Ok(term);
        }
        match term {
            Operand::Pipe(_) | Operand::Dot => Ok(Operand::Chain(Box::new(term), fields)),
            _ => Err(self.error("unexpected . after term")),
        }
    }

    /// Field names written right after an operand, with no space: `.A.B`.
    fn chained_fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some(lexed) = self.tokens.get(self.position) {
            match &lexed.token {
                Token::Field(name) if !lexed.spaced => {
                    fields.push(name.clone());
                    self.position += 1;
                }
                _ => break,
            }
        }
        fields
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Text(_) => "text".into(),
        Token::Open => "\"{{\"".into(),
        Token::Close => "\"}}\"".into(),
        Token::Identifier(word) => format!("<{word}>"),
        Token::Field(name) => format!("<.{name}>"),
        Token::Dot => "<.>".into(),
        Token::Variable(name) => format!("<{name}>"),
        Token::String(text) => format!("{text:?}"),
        Token::Number(text) => format!("<{text}>"),
        Token::Char(c) => format!("{c:?}"),
        Token::Pipe => "\"|\"".into(),
        Token::LeftParen => "\"(\"".into(),
        Token::RightParen => "\")\"".into(),
        Token::Declare => "\":=\"".into(),
        Token::Assign => "\"=\"".into(),
        Token::Comma => "\",\"".into(),
    }
}
