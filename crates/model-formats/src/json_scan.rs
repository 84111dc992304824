//! Finds where a JSON value written by a model ends, without parsing it, so that a call can be
//! cut out of running text as soon as it is complete.

/// The length of the JSON object or array that `text` starts with (after no whitespace), or
/// `None` while it is still open. Strings and escapes are honoured; the value is not checked.
pub(crate) fn balanced_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (index, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            _ if depth == 0 && !byte.is_ascii_whitespace() => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_objects_and_arrays() {
        assert_eq!(balanced_end(r#"{"a": 1} tail"#), Some(8));
        assert_eq!(balanced_end(r#"[{"a": "}"}, {"b": [1, 2]}]x"#), Some(27));
        assert_eq!(balanced_end(r#"{"a": "quote \" and brace {"}"#), Some(29));
        assert_eq!(balanced_end(r#"{"a": {"b": 1}"#), None);
        assert_eq!(balanced_end("plain text"), None);
        assert_eq!(balanced_end("}"), None);
    }
}
