//! Executes a parsed template over a [`Value`], as Go's `text/template` does with
//! `missingkey=zero`, within [`Limits`] on steps, output, allocation and call depth.

use std::sync::Arc;

use crate::parse::{Branch, Command, List, Node, Number, Operand, Parsed, Pipeline};
use crate::value::Value;
use crate::{functions, Error, Limits};

/// How deeply lists may nest while executing, through blocks and template calls together:
/// real templates nest a few levels; a recursive one must stop long before the stack does.
const MAX_NESTING: usize = 200;

/// What ended a list: its end, or a `break` or `continue` inside a `range`.
enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Execution<'t> {
    parsed: &'t Parsed,
    limits: &'t Limits,
    /// Variables in scope, innermost last; `$` first.
    variables: Vec<(String, Value)>,
    pub(crate) out: String,
    steps: u64,
    /// Bytes of strings that functions made.
    allocated: usize,
    /// Nested `template` calls.
    depth: usize,
    /// Lists being walked, nested (through blocks and template calls).
    nesting: usize,
    /// The line of the action being executed, for errors.
    line: usize,
}

impl<'t> Execution<'t> {
    pub(crate) fn new(parsed: &'t Parsed, limits: &'t Limits) -> Execution<'t> {
        Execution {
            parsed,
            limits,
            variables: Vec::new(),
            out: String::new(),
            steps: 0,
            allocated: 0,
            depth: 0,
            nesting: 0,
            line: 1,
        }
    }

    pub(crate) fn run(&mut self, root: &List, data: &Value) -> Result<(), Error> {
        self.variables = vec![("$".into(), data.clone())];
        self.walk(root, data).map(drop)
    }

    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Execute(format!("template: :{}: {message}", self.line))
    }

    fn step(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > self.limits.steps {
            return Err(Error::Limit(format!("the template ran more than {} steps", self.limits.steps)));
        }
        Ok(())
    }

    /// Counts `bytes` of a string a function made against the allocation limit.
    pub(crate) fn allocate(&mut self, bytes: usize) -> Result<(), Error> {
        self.allocated += bytes;
        if self.allocated > self.limits.allocated_bytes {
            return Err(Error::Limit(format!(
                "the template made more than {} MiB of strings",
                self.limits.allocated_bytes >> 20
            )));
        }
        Ok(())
    }

    fn check_output(&self) -> Result<(), Error> {
        if self.out.len() > self.limits.output_bytes {
            return Err(Error::Limit(format!("the rendered prompt exceeds {} MiB", self.limits.output_bytes >> 20)));
        }
        Ok(())
    }

    fn walk(&mut self, list: &List, dot: &Value) -> Result<Flow, Error> {
        if self.nesting >= MAX_NESTING {
            return Err(Error::Limit(format!("the template nests blocks and calls more than {MAX_NESTING} deep")));
        }
        self.nesting += 1;
        let flow = self.walk_nodes(list, dot);
        self.nesting -= 1;
        flow
    }

    fn walk_nodes(&mut self, list: &List, dot: &Value) -> Result<Flow, Error> {
        for node in list {
            self.step()?;
            match node {
                Node::Text(text) => {
                    self.out.push_str(text);
                    self.check_output()?;
                }
                Node::Action(pipe) => {
                    self.line = pipe.line;
                    let value = self.pipeline(dot, pipe)?;
                    if pipe.variables.is_empty() {
                        value.print_action(&mut self.out);
                        self.check_output()?;
                    }
                }
                Node::If(branch) => match self.if_or_with(branch, dot, false)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::With(branch) => match self.if_or_with(branch, dot, true)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::Range(branch) => self.range(branch, dot)?,
                Node::Template { name, pipe, line } => {
                    self.line = *line;
                    let Some(body) = self.parsed.defined.get(name) else {
                        return Err(self.error(format!("no such template \"{name}\"")));
                    };
                    let value = match pipe {
                        Some(pipe) => self.pipeline(dot, pipe)?,
                        None => Value::Nil,
                    };
                    if self.depth >= self.limits.template_depth {
                        return Err(Error::Limit(format!(
                            "templates called each other more than {} deep",
                            self.limits.template_depth
                        )));
                    }
                    self.depth += 1;
                    let outer = std::mem::replace(&mut self.variables, vec![("$".into(), value.clone())]);
                    let walked = self.walk(body, &value);
                    self.variables = outer;
                    self.depth -= 1;
                    walked?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn if_or_with(&mut self, branch: &Branch, dot: &Value, is_with: bool) -> Result<Flow, Error> {
        let scope = self.variables.len();
        self.line = branch.pipe.line;
        let value = self.pipeline(dot, &branch.pipe)?;
        let flow = if value.is_true() {
            self.walk(&branch.list, if is_with { &value } else { dot })
        } else if let Some(else_list) = &branch.else_list {
            self.walk(else_list, dot)
        } else {
            Ok(Flow::Normal)
        };
        self.variables.truncate(scope);
        flow
    }

    fn range(&mut self, branch: &Branch, dot: &Value) -> Result<(), Error> {
        let scope = self.variables.len();
        self.line = branch.pipe.line;
        let value = self.pipeline(dot, &branch.pipe)?;
        let count = match &value {
            Value::Nil => 0,
            Value::List(list) => list.items.len(),
            Value::Map(map) => map.entries.len(),
            Value::Int(count) => usize::try_from(*count).unwrap_or(0),
            other => return Err(self.error(format!("range can't iterate over {}", other.printed()))),
        };
        let mut map_entries = match &value {
            Value::Map(map) => Some(map.entries.iter()),
            _ => None,
        };
        let items = (0..count).map(|index| match &value {
            Value::List(list) => (Value::Int(index as i64), list.items[index].clone()),
            Value::Int(_) => (Value::Int(index as i64), Value::Int(index as i64)),
            _ => match map_entries.as_mut().and_then(Iterator::next) {
                Some((key, item)) => (Value::String(key.as_str().into()), item.clone()),
                None => (Value::Nil, Value::Nil),
            },
        });
        let declared = &branch.pipe.variables;
        let mut ran = false;
        for (key, item) in items {
            ran = true;
            self.step()?;
            let iteration_scope = self.variables.len();
            match declared.len() {
                0 => {}
                1 => self.set_variable(&declared[0], item.clone(), branch.pipe.is_assign)?,
                _ => {
                    self.set_variable(&declared[0], key, branch.pipe.is_assign)?;
                    self.set_variable(&declared[1], item.clone(), branch.pipe.is_assign)?;
                }
            }
            let flow = self.walk(&branch.list, &item)?;
            self.variables.truncate(iteration_scope);
            if let Flow::Break = flow {
                break;
            }
        }
        if !ran {
            if let Some(else_list) = &branch.else_list {
                self.walk(else_list, dot)?;
            }
        }
        self.variables.truncate(scope);
        Ok(())
    }

    /// Sets (the innermost) `name`, or declares it in this scope.
    fn set_variable(&mut self, name: &str, value: Value, is_assign: bool) -> Result<(), Error> {
        if is_assign {
            match self.variables.iter_mut().rev().find(|(existing, _)| existing == name) {
                Some(slot) => slot.1 = value,
                None => return Err(self.error(format!("undefined variable: {name}"))),
            }
        } else {
            self.variables.push((name.to_owned(), value));
        }
        Ok(())
    }

    fn variable(&self, name: &str) -> Result<Value, Error> {
        match self.variables.iter().rev().find(|(existing, _)| existing == name) {
            Some((_, value)) => Ok(value.clone()),
            None => Err(self.error(format!("undefined variable: {name}"))),
        }
    }

    /// Evaluates a pipeline; declared variables are set to (in `range`: declared for) its value.
    fn pipeline(&mut self, dot: &Value, pipe: &Pipeline) -> Result<Value, Error> {
        let mut value = None;
        for command in &pipe.commands {
            self.step()?;
            value = Some(self.command(dot, command, value)?);
        }
        let value = value.unwrap_or_default();
        // As in Go, a range's variables first take the whole value; each element then
        // replaces them.
        for name in &pipe.variables {
            self.set_variable(name, value.clone(), pipe.is_assign)?;
        }
        Ok(value)
    }

    fn command(&mut self, dot: &Value, command: &Command, last: Option<Value>) -> Result<Value, Error> {
        let first = &command.args[0];
        if let Operand::Function(name) = first {
            return self.call(dot, name, &command.args[1..], last);
        }
        if command.args.len() > 1 || last.is_some() {
            return Err(self.error(format!("can't give argument to non-function {}", describe(first))));
        }
        self.operand(dot, first)
    }

    fn operand(&mut self, dot: &Value, operand: &Operand) -> Result<Value, Error> {
        self.step()?;
        Ok(match operand {
            Operand::Dot => dot.clone(),
            Operand::Field(fields) => self.fields(dot.clone(), fields)?,
            Operand::Variable(name, fields) => {
                let value = self.variable(name)?;
                self.fields(value, fields)?
            }
            Operand::Function(name) => self.call(dot, name, &[], None)?,
            Operand::Chain(inner, fields) => {
                let value = self.operand(dot, inner)?;
                self.fields(value, fields)?
            }
            Operand::Pipe(pipe) => {
                let scope = self.variables.len();
                let value = self.pipeline(dot, pipe)?;
                self.variables.truncate(scope);
                value
            }
            Operand::String(text) => Value::String(text.as_str().into()),
            Operand::Number(Number::Int(value)) => Value::Int(*value),
            Operand::Number(Number::Float(value)) => Value::Float(*value),
            Operand::Bool(value) => Value::Bool(*value),
            Operand::Nil => return Err(self.error("nil is not a command")),
        })
    }

    fn fields(&self, mut value: Value, fields: &[String]) -> Result<Value, Error> {
        for name in fields {
            value = match &value {
                Value::Map(map) => map.entries.get(name).cloned().unwrap_or_default(),
                Value::Struct(structure) => match structure.field(name) {
                    Some(field) => field.clone(),
                    None => {
                        return Err(self.error(format!("can't evaluate field {name} in type {}", structure.type_name)))
                    }
                },
                Value::Nil => return Err(self.error(format!("nil pointer evaluating interface {{}}.{name}"))),
                other => return Err(self.error(format!("can't evaluate field {name} in type {}", other.type_name()))),
            };
        }
        Ok(value)
    }

    fn call(&mut self, dot: &Value, name: &str, args: &[Operand], last: Option<Value>) -> Result<Value, Error> {
        // `and` and `or` evaluate their arguments only as far as needed.
        if name == "and" || name == "or" {
            let count = args.len() + usize::from(last.is_some());
            if count == 0 {
                return Err(self.error(format!("wrong number of args for {name}: want at least 1 got 0")));
            }
            let mut value = Value::Nil;
            for arg in args {
                value = self.operand(dot, arg)?;
                if value.is_true() == (name == "or") {
                    return Ok(value);
                }
            }
            if let Some(last) = last {
                value = last;
            }
            return Ok(value);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.operand(dot, arg)?);
        }
        values.extend(last);
        let result = functions::call(self, name, &values).map_err(|failure| match failure {
            functions::Failure::Message(message) => self.error(format!("error calling {name}: {message}")),
            functions::Failure::Limit(error) => error,
        })?;
        if let Value::String(text) = &result {
            self.allocate(text.len())?;
        }
        Ok(result)
    }
}

fn describe(operand: &Operand) -> String {
    match operand {
        Operand::Dot => ".".into(),
        Operand::Field(fields) => fields.iter().map(|field| format!(".{field}")).collect(),
        Operand::Variable(name, fields) => {
            format!("{name}{}", fields.iter().map(|field| format!(".{field}")).collect::<String>())
        }
        Operand::String(text) => format!("{text:?}"),
        Operand::Number(Number::Int(value)) => value.to_string(),
        Operand::Number(Number::Float(value)) => value.to_string(),
        Operand::Bool(value) => value.to_string(),
        Operand::Nil => "nil".into(),
        Operand::Function(name) => name.clone(),
        Operand::Chain(..) | Operand::Pipe(_) => "(...)".into(),
    }
}

/// A slice of a list as a new list of the same kind.
pub(crate) fn sublist(list: &crate::value::List, from: usize, to: usize) -> Value {
    let items = list.items[from..to].to_vec();
    Value::List(Arc::new(crate::value::List { items, printing: list.printing, is_nil: list.is_nil && from == to }))
}
