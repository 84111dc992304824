//! Name parsing cases from Ollama's rules, as a table of input and expected parts.

use super::*;

fn check(input: &str, expected: Option<&str>) {
    let parsed = ModelName::parse(input).ok().map(|name| name.display_full());
    assert_eq!(parsed.as_deref(), expected, "input {input:?}");
}

#[test]
fn parses_with_defaults_and_rejects_bad_parts() {
    let cases: &[(&str, Option<&str>)] = &[
        ("llama3.2", Some("registry.ollama.ai/library/llama3.2:latest")),
        ("llama3.2:1b", Some("registry.ollama.ai/library/llama3.2:1b")),
        ("user/model:tag", Some("registry.ollama.ai/user/model:tag")),
        ("localhost:5000/ns/model:v1", Some("localhost:5000/ns/model:v1")),
        ("localhost:5000/ns/model", Some("localhost:5000/ns/model:latest")),
        ("http://localhost:5000/ns/model", Some("localhost:5000/ns/model:latest")),
        ("smollm2:135m", Some("registry.ollama.ai/library/smollm2:135m")),
        ("_private", Some("registry.ollama.ai/library/_private:latest")),
        ("", None),
        ("model:", None),
        (":tag", None),
        ("/model", None),
        ("ns/", None),
        ("-model", None),
        ("mo del", None),
        ("ns.with.dot/model", None),
        ("localhost:5000/model", None),
        ("a/b/c/d", None),
    ];
    for (input, expected) in cases {
        check(input, *expected);
    }
}

#[test]
fn shortest_display_drops_default_parts() {
    let cases = [
        ("llama3.2", "llama3.2:latest"),
        ("registry.ollama.ai/library/x:1", "x:1"),
        ("user/m", "user/m:latest"),
        ("example.com/library/m:t", "example.com/library/m:t"),
    ];
    for (input, expected) in cases {
        assert_eq!(ModelName::parse(input).unwrap().display_shortest(), expected);
    }
}

#[test]
fn comparison_ignores_case() {
    assert_eq!(ModelName::parse("Llama3:Latest").unwrap(), ModelName::parse("llama3").unwrap());
    assert_ne!(ModelName::parse("llama3:a").unwrap(), ModelName::parse("llama3:b").unwrap());
}
