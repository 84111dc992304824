//! The language server's pure logic against fixture files: what to suggest at a cursor, and
//! the suggestion made of a model's raw answer.

use lsp::postprocess::{postprocess, Hole};
use lsp::syntax::{completion_mode, CompletionMode, Language};

const CURSOR: char = '█';

struct Case {
    name: String,
    language_id: String,
    expected_mode: Option<String>,
    document: String,
    raw: Option<String>,
    expected: Option<Option<String>>,
}

/// Reads "=== name | language | mode?" cases with optional "--- raw" and "--- expected"
/// sections. Lines starting with '#' before the first case are comments.
fn read_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let (header, body) = block.split_once('\n').unwrap_or((block, ""));
        let fields: Vec<&str> = header.split('|').map(str::trim).collect();
        let mut sections = body.split("\n--- ");
        let document = format!("{}\n", sections.next().unwrap_or_default().trim_end_matches('\n'));
        let mut case = Case {
            name: fields[0].to_owned(),
            language_id: fields.get(1).copied().unwrap_or_default().to_owned(),
            expected_mode: fields.get(2).map(|mode| (*mode).to_owned()),
            document,
            raw: None,
            expected: None,
        };
        for section in sections {
            let (title, content) = section.split_once('\n').unwrap_or((section, ""));
            let content = content.trim_end_matches('\n').replace('⏎', "\n");
            match title.trim() {
                "raw" => case.raw = Some(content),
                "expected" => case.expected = Some(Some(content)),
                "expected nothing" => case.expected = Some(None),
                other => panic!("{}: unknown section {other:?}", case.name),
            }
        }
        cases.push(case);
    }
    cases
}

fn mode_at(case: &Case) -> (String, usize, Option<Language>, CompletionMode) {
    let offset = case.document.find(CURSOR).unwrap_or_else(|| panic!("{}: no cursor", case.name));
    let text = case.document.replacen(CURSOR, "", 1);
    let language = Language::detect(&case.language_id, "");
    let tree = language.and_then(|language| language.parse(&text, None));
    let mode = completion_mode(&text, offset, tree.as_ref(), language);
    (text, offset, language, mode)
}

fn mode_name(mode: CompletionMode) -> &'static str {
    match mode {
        CompletionMode::Nothing => "nothing",
        CompletionMode::SingleLine => "single",
        CompletionMode::MultiLine => "multi",
    }
}

#[test]
fn completion_modes_from_fixtures() {
    let cases = read_cases(include_str!("fixtures/modes.txt"));
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (_, _, _, mode) = mode_at(case);
        let expected = case.expected_mode.as_deref().unwrap_or_default();
        if mode_name(mode) != expected {
            failures.push(format!("{}: expected {expected}, got {}", case.name, mode_name(mode)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn postprocessing_from_fixtures() {
    let cases = read_cases(include_str!("fixtures/postprocess.txt"));
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let special = ["<|endoftext|>", "<fim_middle>"];
    let mut failures = Vec::new();
    for case in &cases {
        let (text, offset, language, mode) = mode_at(case);
        let (prefix, suffix) = text.split_at(offset);
        let hole = Hole { prefix, suffix, mode, language };
        let raw = case.raw.as_deref().unwrap_or_else(|| panic!("{}: no raw answer", case.name));
        let got = postprocess(raw, &hole, &special);
        let expected = case.expected.clone().unwrap_or_else(|| panic!("{}: no expectation", case.name));
        if got != expected {
            failures.push(format!("{} ({}):\n  expected {expected:?}\n  got      {got:?}", case.name, mode_name(mode)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
