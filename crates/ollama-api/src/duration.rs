//! `keep_alive` values: Go duration strings or numbers of seconds.

use std::time::Duration;

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload when idle for this long (zero unloads at once).
    For(Duration),
    /// Never unload (any negative value).
    Forever,
}

/// A `keep_alive` that is neither a duration string nor a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepAliveError {
    /// Bad duration text.
    #[error("time: invalid duration \"{0}\"")]
    InvalidDuration(String),
    /// Neither a string nor a number.
    #[error("Unsupported type: '{0}'")]
    UnsupportedType(String),
}

impl KeepAlive {
    /// Parses the JSON value of a `keep_alive` field.
    pub fn from_json(value: &serde_json::Value) -> Result<KeepAlive, KeepAliveError> {
        match value {
            serde_json::Value::Number(number) => {
                let seconds = number.as_f64().unwrap_or(0.0);
                Ok(KeepAlive::from_seconds(seconds))
            }
            serde_json::Value::String(text) => KeepAlive::parse(text),
            other => Err(KeepAliveError::UnsupportedType(json_type_name(other).to_owned())),
        }
    }

    /// Parses a duration string (`5m`, `-1`, `3600`, `1h30m`); bare numbers are seconds.
    pub fn parse(text: &str) -> Result<KeepAlive, KeepAliveError> {
        let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
        if let Ok(seconds) = text.parse::<f64>() {
            return Ok(KeepAlive::from_seconds(seconds));
        }
        let (negative, nanos) = parse_go_duration(text)?;
        if negative && nanos > 0 {
            return Ok(KeepAlive::Forever);
        }
        Ok(KeepAlive::For(Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)))
    }

    fn from_seconds(seconds: f64) -> KeepAlive {
        if seconds < 0.0 {
            KeepAlive::Forever
        } else {
            KeepAlive::For(Duration::from_secs_f64(seconds.min(1e12)))
        }
    }

    /// Whether the model should be unloaded as soon as it is idle.
    pub fn is_zero(&self) -> bool {
        *self == KeepAlive::For(Duration::ZERO)
    }
}

/// Parses Go's `time.ParseDuration` syntax into (negative, nanoseconds).
pub fn parse_go_duration(text: &str) -> Result<(bool, u128), KeepAliveError> {
    let invalid = || KeepAliveError::InvalidDuration(text.to_owned());
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok((negative, 0));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total_nanos += number * unit_nanos;
    }
    Ok((negative, total_nanos as u128))
}

pub(crate) fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "<nil>",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "float64",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "[]interface {}",
        serde_json::Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_forms() {
        let minutes = |m: u64| KeepAlive::For(Duration::from_secs(m * 60));
        let cases: &[(serde_json::Value, Result<KeepAlive, ()>)] = &[
            (serde_json::json!("5m"), Ok(minutes(5))),
            (serde_json::json!("1h30m"), Ok(minutes(90))),
            (serde_json::json!("-1m"), Ok(KeepAlive::Forever)),
            (serde_json::json!("0"), Ok(minutes(0))),
            (serde_json::json!(0), Ok(minutes(0))),
            (serde_json::json!(-1), Ok(KeepAlive::Forever)),
            (serde_json::json!(3600), Ok(minutes(60))),
            (serde_json::json!("300"), Ok(minutes(5))),
            (serde_json::json!("1.5h"), Ok(minutes(90))),
            (serde_json::json!("ten minutes"), Err(())),
            (serde_json::json!("5x"), Err(())),
            (serde_json::json!(true), Err(())),
        ];
        for (value, expected) in cases {
            assert_eq!(KeepAlive::from_json(value).map_err(|_| ()), *expected, "{value}");
        }
    }
}
