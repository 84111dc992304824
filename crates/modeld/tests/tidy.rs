//! Tidy checks over the workspace: every Rust file opens with a `//!` line, and the
//! protocol and engine crates are imported only where ARCHITECTURE.md says.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 20);
    let missing: Vec<String> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! line: {missing:?}");
}

#[test]
fn protocol_and_engine_crates_stay_at_their_edges() {
    let owners = [("mistralrs", "engine-mistralrs"), ("axum", "http-server"), ("candle-core", "engine-mistralrs")];
    let crates_dir = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates_dir).unwrap().flatten() {
        let manifest = std::fs::read_to_string(entry.path().join("Cargo.toml")).unwrap();
        let crate_name = entry.file_name().to_string_lossy().into_owned();
        for (dependency, owner) in owners {
            let depends = manifest.lines().any(|line| line.trim_start().starts_with(&format!("{dependency} =")));
            assert!(!depends || crate_name == owner, "{crate_name} depends on {dependency}; only {owner} may");
        }
        let workspace_dependencies: Vec<&str> = manifest
            .lines()
            .filter(|line| line.contains("path = \"../"))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(!workspace_dependencies.contains(&"modeld"), "{crate_name} depends on modeld");
        if ["engine", "ollama-api", "model-store"].contains(&crate_name.as_str()) {
            assert!(workspace_dependencies.is_empty(), "{crate_name} depends on {workspace_dependencies:?}");
        }
    }
}
