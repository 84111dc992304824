//! The `WWW-Authenticate` challenge of a registry's `401`: which token service to ask.

/// A `Bearer` challenge: the token endpoint and what to ask it for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    /// The token endpoint.
    pub(crate) realm: String,
    /// The registry's service name, passed back to the realm.
    pub(crate) service: Option<String>,
    /// The access the registry wants, e.g. `repository:library/smollm2:pull`.
    pub(crate) scope: Option<String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"`; `None` for other schemes or without a
/// realm. Values may be quoted (commas inside quotes, `\"` escapes) or bare tokens.
pub(crate) fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, value) in parameters(rest) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(BearerChallenge { realm: realm.filter(|realm| !realm.is_empty())?, service, scope })
}

/// `key=value` pairs separated by commas.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() && chars.peek().is_none() {
            return pairs;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    other => value.push(other),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        pairs.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        let cases = [
            (
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
                Some(("https://auth.example/token", Some("registry.example"), Some("repository:a/b:pull,push"))),
            ),
            (r#"bearer  scope="x" , realm=http://h/t"#, Some(("http://h/t", None, Some("x")))),
            (r#"Bearer realm="a\"b""#, Some(("a\"b", None, None))),
            (r#"Basic realm="registry""#, None),
            (r#"Bearer service="s""#, None),
            ("Bearer", None),
            ("", None),
            (r#"Bearer realm="unterminated"#, Some(("unterminated", None, None))),
            ("Bearer ,,,=,realm", None),
        ];
        for (header, expected) in cases {
            let parsed = parse_bearer_challenge(header);
            let parsed = parsed
                .as_ref()
                .map(|challenge| (challenge.realm.as_str(), challenge.service.as_deref(), challenge.scope.as_deref()));
            assert_eq!(parsed, expected, "{header}");
        }
    }
}
