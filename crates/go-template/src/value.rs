//! The values templates see, shaped like Go's: maps (ranged in key order), structs (fields by
//! name, JSON by tag), slices, and how `fmt` prints them and `encoding/json` encodes them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// A value in a template's data.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// Go's `nil`: a missing map key, a nil slice or interface.
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Arc<str>),
    List(Arc<List>),
    Map(Arc<Map>),
    Struct(Arc<Struct>),
}

/// How a value prints when its Go type has a `String` method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Printing {
    /// `fmt`'s default: `[a b]`, `map[k:v]`, `{a b}`.
    #[default]
    Plain,
    /// A `String()` that returns the value's JSON (Ollama's tool types).
    Json,
    /// Ollama's `PropertyType`: one type prints bare, several as `[a b]`; JSON is a string or
    /// an array the same way.
    PropertyType,
}

/// A Go slice.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub items: Vec<Value>,
    pub printing: Printing,
    /// A nil slice: prints `[]` but encodes as `null`.
    pub is_nil: bool,
}

/// A Go map with string keys: ranged, printed and encoded in key order.
#[derive(Debug, Clone, Default)]
pub struct Map {
    pub entries: BTreeMap<String, Value>,
    pub printing: Printing,
    /// A nil map (encodes as `null`, and as `{}` where its `String` says so).
    pub is_nil: bool,
    /// The order its JSON lists keys in, for Go's ordered maps; `None` sorts them.
    pub key_order: Option<Vec<String>>,
}

/// A Go struct: fields by their Go names, encoded under their JSON names.
#[derive(Debug, Clone, Default)]
pub struct Struct {
    /// The Go type's name, for error messages and for functions that take one type.
    pub type_name: &'static str,
    pub fields: Vec<Field>,
    pub printing: Printing,
}

/// One field of a [`Struct`].
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    /// The JSON key; `None` encodes under the Go name.
    pub json_name: Option<&'static str>,
    /// `omitempty`: left out of JSON when empty.
    pub omit_empty: bool,
    pub value: Value,
}

impl Field {
    /// A field with a JSON tag.
    pub fn tagged(name: &'static str, json_name: &'static str, value: Value) -> Field {
        Field { name, json_name: Some(json_name), omit_empty: false, value }
    }

    /// A field with a JSON tag and `omitempty`.
    pub fn omit_empty(name: &'static str, json_name: &'static str, value: Value) -> Field {
        Field { name, json_name: Some(json_name), omit_empty: true, value }
    }

    /// A field without a JSON tag.
    pub fn plain(name: &'static str, value: Value) -> Field {
        Field { name, json_name: None, omit_empty: false, value }
    }
}

impl Struct {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|field| field.name == name).map(|field| &field.value)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.into())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text.into())
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl Value {
    /// A plain slice.
    pub fn list(items: Vec<Value>) -> Value {
        Value::list_printed(items, Printing::Plain)
    }

    /// A slice of a type that prints as `printing` says.
    pub fn list_printed(items: Vec<Value>, printing: Printing) -> Value {
        Value::List(Arc::new(List { items, printing, is_nil: false }))
    }

    /// A nil slice of a type that prints as `printing` says.
    pub fn nil_list(printing: Printing) -> Value {
        Value::List(Arc::new(List { items: Vec::new(), printing, is_nil: true }))
    }

    /// A plain map.
    pub fn map(entries: BTreeMap<String, Value>) -> Value {
        Value::map_printed(entries, Printing::Plain)
    }

    /// A map of a type that prints as `printing` says.
    pub fn map_printed(entries: BTreeMap<String, Value>, printing: Printing) -> Value {
        Value::Map(Arc::new(Map { entries, printing, is_nil: false, key_order: None }))
    }

    /// A nil map of a type that prints as `printing` says.
    pub fn nil_map(printing: Printing) -> Value {
        Value::Map(Arc::new(Map { printing, is_nil: true, ..Map::default() }))
    }

    /// A struct.
    pub fn structure(type_name: &'static str, fields: Vec<Field>, printing: Printing) -> Value {
        Value::Struct(Arc::new(Struct { type_name, fields, printing }))
    }

    /// What Go's `encoding/json` gives when it decodes `json` into `any`: objects become maps,
    /// numbers `float64`.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(value) => Value::Bool(*value),
            serde_json::Value::Number(number) => Value::Float(number.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(text) => Value::String(text.as_str().into()),
            serde_json::Value::Array(items) => Value::list(items.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(object) => {
                Value::map(object.iter().map(|(key, value)| (key.clone(), Value::from_json(value))).collect())
            }
        }
    }

    /// Go's truth: false, zero, nil and empty are false; structs are true.
    pub(crate) fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(value) => *value,
            Value::Int(value) => *value != 0,
            Value::Float(value) => *value != 0.0,
            Value::String(text) => !text.is_empty(),
            Value::List(list) => !list.items.is_empty(),
            Value::Map(map) => !map.entries.is_empty(),
            Value::Struct(_) => true,
        }
    }

    /// The Go type, as error messages name it.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "interface {}",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Struct(structure) => structure.type_name,
        }
    }

    /// Whether `omitempty` leaves it out.
    fn is_empty_for_json(&self) -> bool {
        match self {
            Value::Struct(_) => false,
            other => !other.is_true(),
        }
    }

    /// As a template action prints it (`fmt.Fprint`, or the type's `String`); a nil prints
    /// `<no value>`.
    pub(crate) fn print_action(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            other => other.print(out),
        }
    }

    /// As `fmt`'s `%v` prints it, as a new string.
    pub(crate) fn printed(&self) -> String {
        let mut out = String::new();
        self.print(&mut out);
        out
    }

    /// As `fmt`'s `%v` prints it.
    pub(crate) fn print(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Value::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Value::Float(value) => format_float_v(*value, out),
            Value::String(text) => out.push_str(text),
            Value::List(list) => match list.printing {
                Printing::Json => self.encode_json(out),
                Printing::PropertyType if list.items.len() == 1 => list.items[0].print(out),
                Printing::PropertyType if list.items.is_empty() => {}
                _ => {
                    out.push('[');
                    for (index, item) in list.items.iter().enumerate() {
                        if index > 0 {
                            out.push(' ');
                        }
                        item.print(out);
                    }
                    out.push(']');
                }
            },
            Value::Map(map) => match map.printing {
                Printing::Json if map.is_nil => out.push_str("{}"),
                Printing::Json => self.encode_json(out),
                _ => {
                    out.push_str("map[");
                    for (index, (key, value)) in map.entries.iter().enumerate() {
                        if index > 0 {
                            out.push(' ');
                        }
                        out.push_str(key);
                        out.push(':');
                        value.print(out);
                    }
                    out.push(']');
                }
            },
            Value::Struct(structure) => match structure.printing {
                Printing::Json => self.encode_json(out),
                _ => {
                    out.push('{');
                    for (index, field) in structure.fields.iter().enumerate() {
                        if index > 0 {
                            out.push(' ');
                        }
                        field.value.print(out);
                    }
                    out.push('}');
                }
            },
        }
    }

    /// Go's `json.Marshal`: map keys sorted, struct fields by tag, HTML characters escaped.
    pub(crate) fn encode_json(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("null"),
            Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Value::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Value::Float(value) => format_float_json(*value, out),
            Value::String(text) => encode_json_string(text, out),
            Value::List(list) if list.is_nil => out.push_str("null"),
            Value::List(list) => {
                if list.printing == Printing::PropertyType && list.items.len() == 1 {
                    return list.items[0].encode_json(out);
                }
                out.push('[');
                for (index, item) in list.items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.encode_json(out);
                }
                out.push(']');
            }
            Value::Map(map) if map.is_nil => out.push_str("null"),
            Value::Map(map) => {
                out.push('{');
                let mut write_entry = |index: usize, key: &str, value: &Value| {
                    if index > 0 {
                        out.push(',');
                    }
                    encode_json_string(key, out);
                    out.push(':');
                    value.encode_json(out);
                };
                match &map.key_order {
                    Some(order) => {
                        let present = order.iter().filter_map(|key| map.entries.get_key_value(key));
                        for (index, (key, value)) in present.enumerate() {
                            write_entry(index, key, value);
                        }
                    }
                    None => {
                        for (index, (key, value)) in map.entries.iter().enumerate() {
                            write_entry(index, key, value);
                        }
                    }
                }
                out.push('}');
            }
            Value::Struct(structure) => {
                out.push('{');
                let mut first = true;
                for field in &structure.fields {
                    if field.omit_empty && field.value.is_empty_for_json() {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    encode_json_string(field.json_name.unwrap_or(field.name), out);
                    out.push(':');
                    field.value.encode_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string as Go writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn encode_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The shortest digits of `value` and its decimal exponent, as `d.ddd` × 10^exponent.
fn shortest_digits(value: f64) -> (String, i32) {
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    (mantissa.to_owned(), exponent.parse().unwrap_or(0))
}

/// `fmt`'s `%v` for a float64: shortest digits, exponent form below 1e-4 or from 1e6 on.
fn format_float_v(value: f64, out: &mut String) {
    if value.is_nan() {
        return out.push_str("NaN");
    }
    if value.is_infinite() {
        return out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    }
    let (mantissa, exponent) = shortest_digits(value);
    if value != 0.0 && !(-4..6).contains(&exponent) {
        if value < 0.0 {
            out.push('-');
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.abs());
    } else {
        let _ = write!(out, "{value}");
    }
}

/// `encoding/json`'s float64: shortest digits, exponent form below 1e-6 or from 1e21 on.
fn format_float_json(value: f64, out: &mut String) {
    if !value.is_finite() {
        // Go refuses to encode these; its `json` template function then prints nothing.
        return out.push_str("null");
    }
    let absolute = value.abs();
    if absolute != 0.0 && !(1e-6..1e21).contains(&absolute) {
        let (mantissa, exponent) = shortest_digits(value);
        if value < 0.0 {
            out.push('-');
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{}", exponent.abs());
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(value: &Value) -> String {
        let mut out = String::new();
        value.print(&mut out);
        out
    }

    fn json(value: &Value) -> String {
        let mut out = String::new();
        value.encode_json(&mut out);
        out
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        for (value, v, encoded) in [
            (3.0, "3", "3"),
            (2.5, "2.5", "2.5"),
            (-0.5, "-0.5", "-0.5"),
            (1e6, "1e+06", "1000000"),
            (1e21, "1e+21", "1e+21"),
            (0.0001, "0.0001", "0.0001"),
            (0.00001, "1e-05", "0.00001"),
            (0.0000001, "1e-07", "1e-7"),
            (123456789.0, "1.23456789e+08", "123456789"),
        ] {
            assert_eq!(printed(&Value::Float(value)), v, "{value} %v");
            assert_eq!(json(&Value::Float(value)), encoded, "{value} json");
        }
    }

    #[test]
    fn json_escapes_html_as_go_does() {
        assert_eq!(json(&Value::from("a<b>&\"c\"\n\u{2028}\u{1}é")), r#""a\u003cb\u003e\u0026\"c\"\n\u2028\u0001é""#);
    }

    #[test]
    fn maps_are_sorted_and_structs_follow_tags() {
        let map = Value::from_json(&serde_json::json!({"b": 1, "a": [true, null]}));
        assert_eq!(json(&map), r#"{"a":[true,null],"b":1}"#);
        assert_eq!(printed(&map), "map[a:[true <nil>] b:1]");
        let structure = Value::structure(
            "T",
            vec![
                Field::tagged("Name", "name", "x".into()),
                Field::omit_empty("Description", "description", "".into()),
                Field::plain("Index", Value::Int(2)),
            ],
            Printing::Plain,
        );
        assert_eq!(json(&structure), r#"{"name":"x","Index":2}"#);
        assert_eq!(printed(&structure), "{x  2}");
    }
}
