//! Checks an answer against the JSON schema a request asked for, for remotes that do not
//! enforce `format`/`response_format` themselves: the keywords structured output uses (types,
//! properties, required, additional properties, items, enums, lengths, bounds, `anyOf`,
//! `oneOf`, `allOf`). Keywords it does not know pass. Nesting is bounded, so a crafted schema
//! or answer cannot exhaust the stack.

use serde_json::{Map, Value};

/// How deep schemas and values are followed.
const MAX_DEPTH: usize = 64;

/// `Ok` when `value` matches `schema`; else the first mismatch, with where it is.
pub fn check(value: &Value, schema: &Value) -> Result<(), String> {
    check_at(value, schema, "$", 0)
}

fn check_at(value: &Value, schema: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: nested deeper than {MAX_DEPTH}"));
    }
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
        Value::Object(schema) => schema,
        _ => return Ok(()),
    };
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|kind| is_of_type(value, kind)) {
            return Err(format!("{at}: expected {}, got {}", allowed.join(" or "), type_name(value)));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not one of {}", Value::Array(options.clone())));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            return Err(format!("{at}: expected {constant}"));
        }
    }
    for (keyword, any) in [("anyOf", true), ("oneOf", true), ("allOf", false)] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            let results: Vec<Result<(), String>> =
                branches.iter().map(|branch| check_at(value, branch, at, depth + 1)).collect();
            if any && !results.iter().any(Result::is_ok) {
                return Err(format!("{at}: matches none of {keyword}"));
            }
            if let (false, Some(Err(error))) = (any, results.into_iter().find(Result::is_err)) {
                return Err(error);
            }
        }
    }
    match value {
        Value::Object(object) => check_object(object, schema, at, depth),
        Value::Array(items) => check_array(items, schema, at, depth),
        Value::String(text) => {
            let length = text.chars().count() as u64;
            if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
                return Err(format!("{at}: shorter than minLength"));
            }
            if schema.get("maxLength").and_then(Value::as_u64).is_some_and(|max| length > max) {
                return Err(format!("{at}: longer than maxLength"));
            }
            Ok(())
        }
        Value::Number(number) => {
            let number = number.as_f64().unwrap_or(f64::NAN);
            let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
            let outside = bound("minimum").is_some_and(|min| number < min)
                || bound("maximum").is_some_and(|max| number > max)
                || bound("exclusiveMinimum").is_some_and(|min| number <= min)
                || bound("exclusiveMaximum").is_some_and(|max| number >= max);
            if outside {
                return Err(format!("{at}: {number} is out of bounds"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_object(
    object: &Map<String, Value>,
    schema: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<(), String> {
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !object.contains_key(required) {
            return Err(format!("{at}: missing required property \"{required}\""));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, item) in object {
        let path = format!("{at}.{key}");
        match properties.and_then(|properties| properties.get(key)) {
            Some(property) => check_at(item, property, &path, depth + 1)?,
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => return Err(format!("{at}: property \"{key}\" is not allowed")),
                Some(additional @ Value::Object(_)) => check_at(item, additional, &path, depth + 1)?,
                _ => {}
            },
        }
    }
    Ok(())
}

fn check_array(items: &[Value], schema: &Map<String, Value>, at: &str, depth: usize) -> Result<(), String> {
    let count = items.len() as u64;
    if schema.get("minItems").and_then(Value::as_u64).is_some_and(|min| count < min) {
        return Err(format!("{at}: fewer than minItems"));
    }
    if schema.get("maxItems").and_then(Value::as_u64).is_some_and(|max| count > max) {
        return Err(format!("{at}: more than maxItems"));
    }
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check_at(item, item_schema, &format!("{at}[{index}]"), depth + 1)?;
        }
    }
    Ok(())
}

fn is_of_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.as_i64().is_some() || value.as_u64().is_some() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_that_match_pass_and_others_say_where() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 8},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "kind": {"anyOf": [{"type": "null"}, {"const": "cat"}]}
            },
            "required": ["name", "age"],
            "additionalProperties": false
        });
        assert_eq!(check(&json!({"name": "Rex", "age": 3, "tags": ["a"], "kind": "cat"}), &schema), Ok(()));
        let cases = [
            (json!("Rex"), "$: expected object, got string"),
            (json!({"name": "Rex"}), "$: missing required property \"age\""),
            (json!({"name": "Rex", "age": -1}), "$.age: -1 is out of bounds"),
            (json!({"name": "Rex", "age": 1.5}), "$.age: expected integer, got number"),
            (json!({"name": "", "age": 1}), "$.name: shorter than minLength"),
            (json!({"name": "Rex", "age": 1, "tags": ["c"]}), "$.tags[0]: \"c\" is not one of [\"a\",\"b\"]"),
            (json!({"name": "Rex", "age": 1, "tags": ["a", "a", "b"]}), "$.tags: more than maxItems"),
            (json!({"name": "Rex", "age": 1, "kind": "dog"}), "$.kind: matches none of anyOf"),
            (json!({"name": "Rex", "age": 1, "extra": 1}), "$: property \"extra\" is not allowed"),
        ];
        for (value, expected) in cases {
            assert_eq!(check(&value, &schema), Err(expected.to_owned()), "{value}");
        }
    }

    #[test]
    fn unknown_keywords_pass_and_nesting_is_bounded() {
        assert_eq!(check(&json!({"a": 1}), &json!({"type": "object", "x-custom": 1, "$ref": "#/nowhere"})), Ok(()));
        let mut deep_value = json!(1);
        let mut deep_schema = json!({"type": "integer"});
        for _ in 0..200 {
            deep_value = json!([deep_value]);
            deep_schema = json!({"type": "array", "items": deep_schema});
        }
        assert!(check(&deep_value, &deep_schema).unwrap_err().contains("nested deeper than"));
    }
}
