//! The functions templates call: Go's builtins (`and`, `or` and `call` aside: `and`/`or` are
//! lazy and run in the executor; `call` is refused) and the four Ollama adds (`json`,
//! `currentDate`, `yesterdayDate`, `toTypeScriptType`).

use std::fmt::Write;

use crate::exec::{sublist, Execution};
use crate::value::Value;

/// Every function name a template may use.
pub(crate) const NAMES: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "call",
    "json",
    "currentDate",
    "yesterdayDate",
    "toTypeScriptType",
];

pub(crate) fn is_function(name: &str) -> bool {
    NAMES.contains(&name)
}

/// Why a function failed: its own error, or a limit of the execution.
pub(crate) enum Failure {
    Message(String),
    Limit(crate::Error),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Message(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Message(message.to_owned())
    }
}

type Outcome = Result<Value, Failure>;

pub(crate) fn call(execution: &mut Execution<'_>, name: &str, args: &[Value]) -> Outcome {
    let exactly = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("wrong number of args for {name}: want {n} got {}", args.len()))
        }
    };
    match name {
        "not" => {
            exactly(1)?;
            Ok(Value::Bool(!args[0].is_true()))
        }
        "len" => {
            exactly(1)?;
            Ok(Value::Int(length(&args[0])? as i64))
        }
        "index" => Ok(index(args)?),
        "slice" => Ok(slice(args)?),
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for other in &args[1..] {
                if equal(&args[0], other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            exactly(2)?;
            Ok(Value::Bool(!equal(&args[0], &args[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            exactly(2)?;
            let less = less_than(&args[0], &args[1])?;
            let equal = !less && !less_than(&args[1], &args[0])?;
            Ok(Value::Bool(match name {
                "lt" => less,
                "le" => less || equal,
                "gt" => !less && !equal,
                _ => !less,
            }))
        }
        "print" => Ok(sprint(args).into()),
        "println" => {
            let mut out = String::new();
            for (position, arg) in args.iter().enumerate() {
                if position > 0 {
                    out.push(' ');
                }
                arg.print(&mut out);
            }
            out.push('\n');
            Ok(out.into())
        }
        "printf" => {
            let Some(Value::String(format)) = args.first() else {
                return Err(Failure::from("printf needs a format string"));
            };
            Ok(sprintf(execution, format, &args[1..])?.into())
        }
        "html" => Ok(html_escape(&sprint(args)).into()),
        "js" => Ok(js_escape(&sprint(args)).into()),
        "urlquery" => Ok(query_escape(&sprint(args)).into()),
        "call" => Err(Failure::from("modeld's templates have no function values to call")),
        "json" => {
            exactly(1)?;
            let mut out = String::new();
            args[0].encode_json(&mut out);
            Ok(out.into())
        }
        "currentDate" => Ok(chrono::Local::now().format("%Y-%m-%d").to_string().into()),
        "yesterdayDate" => {
            let yesterday = chrono::Local::now() - chrono::Duration::days(1);
            Ok(yesterday.format("%Y-%m-%d").to_string().into())
        }
        "toTypeScriptType" => {
            exactly(1)?;
            Ok(typescript_type(&args[0]).into())
        }
        _ => Err(format!("function \"{name}\" not defined").into()),
    }
}

fn length(value: &Value) -> Result<usize, String> {
    match value {
        Value::String(text) => Ok(text.len()),
        Value::List(list) => Ok(list.items.len()),
        Value::Map(map) => Ok(map.entries.len()),
        Value::Nil => Err("len of nil pointer".into()),
        other => Err(format!("len of type {}", other.type_name())),
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(value) => Ok(*value),
        other => Err(format!("cannot index slice/array with type {}", other.type_name())),
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut value = first.clone();
    for key in keys {
        value = match &value {
            Value::List(list) => {
                let at = integer(key)?;
                usize::try_from(at)
                    .ok()
                    .and_then(|at| list.items.get(at))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {at}"))?
            }
            Value::String(text) => {
                let at = integer(key)?;
                let byte = usize::try_from(at).ok().and_then(|at| text.as_bytes().get(at));
                Value::Int(i64::from(*byte.ok_or_else(|| format!("index out of range: {at}"))?))
            }
            Value::Map(map) => match key {
                Value::String(key) => map.entries.get(&**key).cloned().unwrap_or_default(),
                other => return Err(format!("value has type {}; should be string", other.type_name())),
            },
            Value::Nil => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(value)
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let Some((first, bounds)) = args.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    if bounds.len() > 3 {
        return Err(format!("too many slice indexes: {}", bounds.len()));
    }
    let length = match first {
        Value::String(text) => text.len(),
        Value::List(list) => list.items.len(),
        Value::Nil => return Err("slice of untyped nil".into()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut indexes = [0, length, length];
    for (position, bound) in bounds.iter().enumerate() {
        let at = integer(bound)?;
        indexes[position] =
            usize::try_from(at).ok().filter(|at| *at <= length).ok_or_else(|| format!("index out of range: {at}"))?;
    }
    if bounds.len() < 2 {
        indexes[1] = length;
    }
    let (from, to) = (indexes[0], indexes[1]);
    if from > to {
        return Err(format!("invalid slice index: {from} > {to}"));
    }
    match first {
        Value::String(_) if bounds.len() == 3 => Err("cannot 3-index slice a string".into()),
        Value::String(text) => match text.get(from..to) {
            Some(part) => Ok(part.into()),
            // Go slices bytes; a cut through a character keeps the bytes it can.
            None => Ok(String::from_utf8_lossy(&text.as_bytes()[from..to]).into_owned().into()),
        },
        Value::List(list) => Ok(sublist(list, from, to)),
        _ => unreachable!("checked above"),
    }
}

fn equal(left: &Value, right: &Value) -> Result<bool, String> {
    Ok(match (left, right) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a == b,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
            return Err(format!("non-comparable type {}", left.type_name()))
        }
        (Value::Struct(_), Value::Struct(_)) => return Err(format!("non-comparable type {}", left.type_name())),
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn less_than(left: &Value, right: &Value) -> Result<bool, String> {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Ok(a < b),
        (Value::Float(a), Value::Float(b)) => Ok(a < b),
        (Value::String(a), Value::String(b)) => Ok(a < b),
        (Value::Int(_) | Value::Float(_) | Value::String(_), Value::Int(_) | Value::Float(_) | Value::String(_)) => {
            Err("incompatible types for comparison".into())
        }
        _ => Err("invalid type for comparison".into()),
    }
}

/// `fmt.Sprint`: a space between two operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (position, arg) in args.iter().enumerate() {
        let is_string = |value: &Value| matches!(value, Value::String(_));
        if position > 0 && !is_string(arg) && !is_string(&args[position - 1]) {
            out.push(' ');
        }
        arg.print(&mut out);
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %x %X %f %e %g %c %%`, with
/// flags `-`, `0` and `+`, a width and a precision.
fn sprintf(execution: &mut Execution<'_>, format: &str, args: &[Value]) -> Result<String, Failure> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left_align = false;
        let mut zero_pad = false;
        let mut plus = false;
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => left_align = true,
                '0' => zero_pad = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&digit) = chars.peek().filter(|c| c.is_ascii_digit()) {
            width.push(digit);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(&digit) = chars.peek().filter(|c| c.is_ascii_digit()) {
                digits.push(digit);
                chars.next();
            }
            precision = Some(digits.parse::<usize>().unwrap_or(0).min(1000));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let mut text = String::new();
        match (verb, arg) {
            ('v' | 's', value) => {
                value.print(&mut text);
                if let Some(precision) = precision.filter(|_| matches!(value, Value::String(_))) {
                    text = text.chars().take(precision).collect();
                }
            }
            ('d', Value::Int(value)) => {
                let _ = write!(text, "{}{value}", if plus && *value >= 0 { "+" } else { "" });
            }
            ('q', Value::String(value)) => text = format!("{:?}", &**value),
            ('q', Value::Int(value)) => {
                text = format!("{:?}", char::from_u32(u32::try_from(*value).unwrap_or(0xfffd)).unwrap_or('\u{fffd}'))
            }
            ('t', Value::Bool(value)) => text = value.to_string(),
            ('x', Value::Int(value)) => text = format!("{value:x}"),
            ('X', Value::Int(value)) => text = format!("{value:X}"),
            ('x', Value::String(value)) => text = value.bytes().map(|byte| format!("{byte:02x}")).collect(),
            ('c', Value::Int(value)) => {
                text.push(char::from_u32(u32::try_from(*value).unwrap_or(0xfffd)).unwrap_or('\u{fffd}'))
            }
            ('f' | 'F', Value::Float(value)) => text = format!("{value:.*}", precision.unwrap_or(6)),
            ('f' | 'F', Value::Int(_)) => text = format!("%!{verb}(int={})", arg.printed()),
            ('e', Value::Float(value)) => text = go_exponent(&format!("{value:.*e}", precision.unwrap_or(6))),
            ('g', Value::Float(_)) => arg.print(&mut text),
            (verb, other) => text = format!("%!{verb}({}={})", other.type_name(), other.printed()),
        }
        let width: usize = width.parse::<usize>().unwrap_or(0).min(1000);
        let length = text.chars().count();
        if length < width {
            let padding = width - length;
            if left_align {
                text.extend(std::iter::repeat_n(' ', padding));
            } else if zero_pad && matches!(arg, Value::Int(_) | Value::Float(_)) {
                let digits_at = usize::from(text.starts_with('-') || text.starts_with('+'));
                text.insert_str(digits_at, &"0".repeat(padding));
            } else {
                text.insert_str(0, &" ".repeat(padding));
            }
        }
        execution.allocate(text.len()).map_err(Failure::Limit)?;
        out.push_str(&text);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (position, arg) in args[next..].iter().enumerate() {
            if position > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={}", arg.type_name(), arg.printed());
        }
        out.push(')');
    }
    Ok(out)
}

/// Rust's `1.5e3` as Go's `1.5e+03`.
fn go_exponent(rust: &str) -> String {
    match rust.split_once('e') {
        Some((mantissa, exponent)) => {
            let value: i32 = exponent.parse().unwrap_or(0);
            format!("{mantissa}e{}{:02}", if value < 0 { '-' } else { '+' }, value.abs())
        }
        None => rust.to_owned(),
    }
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// Ollama's `toTypeScriptType` on a tool property: its JSON Schema type as TypeScript.
fn typescript_type(value: &Value) -> String {
    let Value::Struct(property) = value else { return "any".into() };
    if property.type_name != "ToolProperty" {
        return "any".into();
    }
    if let Some(Value::List(any_of)) = property.field("AnyOf") {
        if !any_of.items.is_empty() {
            return any_of.items.iter().map(typescript_type).collect::<Vec<_>>().join(" | ");
        }
    }
    let types: Vec<&str> = match property.field("Type") {
        Some(Value::List(types)) => types
            .items
            .iter()
            .filter_map(|item| match item {
                Value::String(name) => Some(&**name),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any".into();
    }
    types
        .iter()
        .map(|name| match *name {
            "string" => "string",
            "number" | "integer" => "number",
            "boolean" => "boolean",
            "array" => "any[]",
            "object" => "Record<string, any>",
            "null" => "null",
            _ => "any",
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_match_go() {
        assert_eq!(html_escape("<a href=\"x\">&'"), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;");
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(go_exponent("1.500000e3"), "1.500000e+03");
    }

    #[test]
    fn sprint_spaces_only_between_non_strings() {
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2), "a".into(), Value::Int(3)]), "1 2a3");
    }
}
