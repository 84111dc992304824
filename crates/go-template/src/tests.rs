//! Go `text/template` behaviour, case by case, with the outputs Go gives.

use std::collections::BTreeMap;

use crate::{Error, Limits, Template, Value};

fn data() -> Value {
    let json = serde_json::json!({
        "Name": "World",
        "Empty": "",
        "Items": ["a", "b", "c"],
        "Map": {"z": 1, "a": 2},
        "Count": 3,
        "Yes": true,
        "Response": "",
        "Nested": {"Inner": {"Value": "deep"}},
    });
    let mut value = match Value::from_json(&json) {
        Value::Map(map) => (*map).clone(),
        _ => unreachable!(),
    };
    // JSON numbers decode as float64; Go code puts ints in data too.
    value.entries.insert("Int".into(), Value::Int(3));
    Value::Map(std::sync::Arc::new(value))
}

fn render(source: &str) -> String {
    let template = Template::parse(source).unwrap_or_else(|error| panic!("{source:?}: {error}"));
    template.execute(&data(), &Limits::default()).unwrap_or_else(|error| panic!("{source:?}: {error}"))
}

fn error(source: &str) -> String {
    match Template::parse(source) {
        Err(error) => error.to_string(),
        Ok(template) => template.execute(&data(), &Limits::default()).expect_err(source).to_string(),
    }
}

#[test]
fn text_actions_and_trimming() {
    // `.Response` is appended (missing key: `<no value>`) to templates without it, as Ollama
    // does; these cases name it to keep the output plain.
    for (source, expected) in [
        ("Hello, {{ .Name }}!{{ .Response }}", "Hello, World!"),
        ("a  {{- .Name -}}  b{{ .Response }}", "aWorldb"),
        ("a\n\t {{- /* comment */ -}} \n b{{ .Response }}", "ab"),
        ("a {{/* comment */}} b{{ .Response }}", "a  b"),
        ("{{ .Missing }}|{{ .Response }}", "<no value>|"),
        ("{{ .Nested.Inner.Value }}{{ .Response }}", "deep"),
        (
            "{{ \"q\\\"uote\\n\" }}{{ `raw\\n` }}{{ 'a' }} {{ 0x10 }} {{ 1.5 }} {{ -2 }}{{ .Response }}",
            "q\"uote\nraw\\n97 16 1.5 -2",
        ),
        ("{{ .Response }}{{ .Map }}", "map[a:2 z:1]"),
        ("{{ .Response }}{{ .Items }}", "[a b c]"),
    ] {
        assert_eq!(render(source), expected, "{source:?}");
    }
}

#[test]
fn control_structures() {
    for (source, expected) in [
        ("{{ if .Yes }}y{{ else }}n{{ end }}{{ .Response }}", "y"),
        ("{{ if .Empty }}y{{ else if .Name }}{{ .Name }}{{ else }}n{{ end }}{{ .Response }}", "World"),
        ("{{ range .Items }}[{{ . }}]{{ end }}{{ .Response }}", "[a][b][c]"),
        ("{{ range $i, $e := .Items }}{{ $i }}={{ $e }} {{ end }}{{ .Response }}", "0=a 1=b 2=c "),
        ("{{ range $k, $v := .Map }}{{ $k }}:{{ $v }},{{ end }}{{ .Response }}", "a:2,z:1,"),
        ("{{ range .Missing }}x{{ else }}none{{ end }}{{ .Response }}", "none"),
        ("{{ range $i, $e := .Items }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ $e }}{{ end }}{{ .Response }}", "a"),
        ("{{ range .Int }}{{ . }}{{ end }}{{ .Response }}", "012"),
        ("{{ with .Nested.Inner }}{{ .Value }}{{ end }}{{ with .Empty }}x{{ else with .Name }}{{ . }}{{ end }}{{ .Response }}", "deepWorld"),
        ("{{ $x := 1 }}{{ if .Yes }}{{ $x = 2 }}{{ end }}{{ $x }}{{ .Response }}", "2"),
        ("{{ range .Items }}{{ $.Name }}{{ end }}{{ .Response }}", "WorldWorldWorld"),
        ("{{ define \"t\" }}<{{ . }}>{{ end }}{{ template \"t\" .Name }}{{ block \"b\" .Int }}[{{ . }}]{{ end }}{{ .Response }}", "<World>[3]"),
        ("{{- range $i, $_ := .Items }}{{ $last := eq (len (slice $.Items $i)) 1 }}{{ if $last }}last={{ . }}{{ end }}{{ end }}{{ .Response }}", "last=c"),
    ] {
        assert_eq!(render(source), expected, "{source:?}");
    }
}

#[test]
fn functions() {
    for (source, expected) in [
        ("{{ and .Yes .Name }} {{ and .Empty .Name }} {{ or .Empty .Name }} {{ or .Empty 0 }}{{ .Response }}", "World  World 0"),
        ("{{ not .Yes }} {{ len .Items }} {{ len .Name }} {{ index .Items 1 }} {{ index .Map \"z\" }}{{ .Response }}", "false 3 5 b 1"),
        ("{{ slice .Name 1 3 }} {{ slice .Items 1 }} {{ eq .Int 1 2 3 }} {{ ne .Name \"x\" }} {{ lt 1 2 }} {{ ge \"b\" \"a\" }}{{ .Response }}", "or [b c] true true true true"),
        ("{{ print 1 2 \"a\" 3 }}|{{ println \"a\" 1 }}|{{ printf \"%s-%d-%q-%v-%5.2f|%-3d|\" .Name .Int \"x\" .Items 3.14159 7 }}{{ .Response }}", "1 2a3|a 1\n|World-3-\"x\"-[a b c]- 3.14|7  |"),
        ("{{ json .Map }} {{ json .Name }} {{ json \"<&>\" }} {{ .Name | printf \"%s!\" }} {{ html \"<a>\" }} {{ urlquery \"a b\" }}{{ .Response }}", "{\"a\":2,\"z\":1} \"World\" \"\\u003c\\u0026\\u003e\" World! &lt;a&gt; a+b"),
        ("{{ len (currentDate) }}{{ .Response }}", "10"),
    ] {
        assert_eq!(render(source), expected, "{source:?}");
    }
}

#[test]
fn errors_read_like_go() {
    for (source, expected) in [
        ("{{ .Name ", "unclosed action"),
        ("{{ if .Yes }}x", "unexpected EOF"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ nope .Name }}", "function \"nope\" not defined"),
        ("{{ $x }}", "undefined variable \"$x\""),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ \"abc }}", "unterminated quoted string"),
        ("{{ .Name.Field }}", "can't evaluate field Field in type string"),
        ("{{ .Missing.Field }}", "nil pointer evaluating interface {}.Field"),
        ("{{ index .Items 9 }}", "index out of range: 9"),
        ("{{ eq .Int \"3\" }}", "incompatible types for comparison"),
        ("{{ template \"none\" . }}", "no such template \"none\""),
        ("{{ template \"x\" }}", "undefined template specified"),
        ("{{ .Name 1 }}", "can't give argument to non-function .Name"),
        ("{{ range .Items }}{{ else if .Yes }}{{ end }}", "unexpected else if in range"),
        ("{{}}", "missing value for command"),
        ("{{ if }}x{{ end }}", "missing value for if"),
        ("{{ bos_token }}{{ messages }}", "function \"bos_token\" not defined"),
    ] {
        let message = error(source);
        assert!(message.contains(expected), "{source:?}: {message:?} lacks {expected:?}");
    }
}

#[test]
fn hostile_templates_hit_limits() {
    let limits = Limits { steps: 100_000, output_bytes: 1 << 20, allocated_bytes: 1 << 20, template_depth: 16 };
    let run = |source: &str| Template::parse(source).and_then(|template| template.execute(&data(), &limits));
    // Unbounded recursion.
    assert!(matches!(
        run("{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}"),
        Err(Error::Limit(_))
    ));
    // A loop that runs for ever.
    assert!(matches!(run("{{ range 1000000000 }}{{ end }}"), Err(Error::Limit(_))));
    // A string doubled in a loop.
    assert!(matches!(
        run("{{ $s := \"ab\" }}{{ range 64 }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}"),
        Err(Error::Limit(_))
    ));
    // Output past the limit.
    assert!(matches!(run("{{ range 100000 }}0123456789abcdef{{ end }}"), Err(Error::Limit(_))));
    // Recursion through deeply nested blocks, on a thread with the blocking pool's stack.
    let nested = format!(
        "{{{{ define \"r\" }}}}{}{{{{ template \"r\" . }}}}{}{{{{ end }}}}{{{{ template \"r\" . }}}}",
        "{{ if .Yes }}".repeat(90),
        "{{ end }}".repeat(90)
    );
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Template::parse(&nested).and_then(|template| template.execute(&data(), &Limits::default())))
        .unwrap()
        .join()
        .unwrap();
    assert!(matches!(outcome, Err(Error::Limit(_))), "{outcome:?}");
    // Nesting that would exhaust the parser's stack.
    let deep = "{{ if .Yes }}".repeat(10_000);
    assert!(matches!(Template::parse(&deep), Err(Error::Parse(_))));
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(matches!(Template::parse(&parens), Err(Error::Parse(_))));
}

#[test]
fn ollama_touch_ups() {
    let template = Template::parse("{{ .System }} {{ .Prompt }}").unwrap();
    assert_eq!(template.variables().iter().cloned().collect::<Vec<_>>(), ["prompt", "system"]);
    let mut data = BTreeMap::new();
    data.insert("System".to_string(), Value::from("s"));
    data.insert("Prompt".to_string(), Value::from("p"));
    data.insert("Response".to_string(), Value::from("r"));
    // `{{ .Response }}` is appended when the template names neither it nor `.Messages`.
    assert_eq!(template.execute(&Value::map(data.clone()), &Limits::default()).unwrap(), "s pr");
    let cut = Template::parse("<s>{{ .Prompt }}</s><a>{{ .Response }}</a>{{ if .System }}x{{ end }}").unwrap();
    assert_eq!(cut.execute_up_to_response(&Value::map(data), &Limits::default()).unwrap(), "<s>p</s><a>r");
}

#[test]
fn go_and_jinja_are_told_apart() {
    for go in [
        "{{ .Prompt }}",
        "{{- if .System }}x{{ end }}",
        "{{ if .Prompt }}unclosed",
        "{{ $x := 1 }}",
        "{{ json .Tools }}",
        "plain text",
        "{{/* c */}}",
    ] {
        assert!(crate::looks_like_go(go), "{go:?}");
    }
    for jinja in ["{% for m in messages %}{% endfor %}", "{{ bos_token }}{{ .Prompt }}", "{{ messages[0]['content'] }}"]
    {
        assert!(!crate::looks_like_go(jinja), "{jinja:?}");
    }
}
