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

/// Outside crates, by the concern that owns them, and the workspace crates that may depend on
/// them directly.
const OWNERS: &[(&str, &[&str], &[&str])] = &[
    ("the inference engine", &["mistralrs", "mistralrs-core", "mistralrs-quant"], &["engine-mistralrs"]),
    ("tensors", &["candle-core", "candle-nn", "candle-transformers"], &["engine-mistralrs", "engine-bert"]),
    ("HTTP", &["axum", "axum-core", "hyper", "tower-http"], &["http-server"]),
    ("the language server protocol", &["tower-lsp-server", "tower-lsp", "lsp-types", "ls-types"], &["lsp"]),
    (
        "syntax trees",
        &[
            "tree-sitter",
            "tree-sitter-rust",
            "tree-sitter-python",
            "tree-sitter-javascript",
            "tree-sitter-typescript",
            "tree-sitter-go",
            "tree-sitter-c",
            "tree-sitter-cpp",
            "tree-sitter-java",
            "tree-sitter-lua",
        ],
        &["lsp"],
    ),
    ("MCP", &["rmcp"], &["mcp"]),
];

/// Workspace crates that a layer must not depend on: the faces, the wire formats and the
/// binary sit above it.
const LAYERS_ABOVE: &[(&str, &[&str])] = &[
    ("serving", &["http-server", "ollama-api", "engine-mistralrs", "engine-bert", "lsp", "mcp", "remote", "modeld"]),
    // The language server is a client of the daemon's HTTP API: it links no engine, no core,
    // no server.
    ("lsp", &["serving", "engine", "engine-mistralrs", "engine-bert", "http-server", "model-store", "modeld"]),
    // The MCP face uses the core in process; it imports no other face and no wire format.
    ("mcp", &["http-server", "ollama-api", "engine-mistralrs", "engine-bert", "lsp", "modeld"]),
    ("engine", &["serving", "http-server", "ollama-api", "engine-mistralrs", "engine-bert", "model-store", "modeld"]),
    // Go templates are pure logic over values: no engine, store or face.
    (
        "go-template",
        &[
            "engine",
            "serving",
            "http-server",
            "ollama-api",
            "engine-mistralrs",
            "engine-bert",
            "model-store",
            "model-formats",
            "lsp",
            "mcp",
            "modeld",
        ],
    ),
    ("model-formats", &["engine", "serving", "http-server", "ollama-api", "engine-mistralrs", "engine-bert", "modeld"]),
    (
        "model-store",
        &["engine", "serving", "http-server", "ollama-api", "engine-mistralrs", "engine-bert", "registry", "modeld"],
    ),
    // The registry client moves blobs between the store and a registry: no engine, no face.
    (
        "registry",
        &["engine", "serving", "http-server", "ollama-api", "engine-mistralrs", "engine-bert", "lsp", "mcp", "modeld"],
    ),
    ("ollama-api", &["engine", "serving", "http-server", "engine-mistralrs", "engine-bert", "modeld"]),
    // Remote models are an engine kind reached over HTTP: the core's types in, the remote's
    // API out; no face, no local engine, no wire format of the daemon's own.
    ("remote", &["http-server", "ollama-api", "engine-mistralrs", "engine-bert", "lsp", "mcp", "registry", "modeld"]),
    // The kernels are arithmetic on slices: they know no model, engine or protocol.
    ("cpu-kernels", EVERY_LAYER),
    // The batching rule the vendored scheduler asks is data in, data out.
    ("batch-scheduling", EVERY_LAYER),
];

/// The workspace crates that the crates the vendored upstream copies call (`cpu-kernels`,
/// `batch-scheduling`) must not depend on: all of them.
const EVERY_LAYER: &[&str] = &[
    "engine",
    "engine-bert",
    "engine-mistralrs",
    "serving",
    "http-server",
    "ollama-api",
    "model-formats",
    "model-store",
    "registry",
    "lsp",
    "mcp",
    "modeld",
    "cpu-kernels",
    "batch-scheduling",
];

/// Direct dependencies (every kind: a test that links mistral.rs crosses the boundary as much as
/// the library would) of each workspace crate, from the graph cargo resolves.
fn workspace_dependencies() -> Vec<(String, Vec<String>)> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: Vec<&str> =
        metadata["workspace_members"].as_array().unwrap().iter().filter_map(serde_json::Value::as_str).collect();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| members.contains(&package["id"].as_str().unwrap_or_default()))
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
                .collect();
            (package["name"].as_str().unwrap().to_owned(), dependencies)
        })
        .collect()
}

#[test]
fn protocol_and_engine_crates_stay_at_their_edges() {
    let crates = workspace_dependencies();
    assert!(crates.len() >= 9, "{} workspace crates", crates.len());
    let mut problems = Vec::new();
    for (name, dependencies) in &crates {
        for (concern, owned, owners) in OWNERS {
            for dependency in dependencies.iter().filter(|dependency| owned.contains(&dependency.as_str())) {
                if !owners.contains(&name.as_str()) {
                    problems.push(format!("{name} depends on {dependency} ({concern}); only {owners:?} may"));
                }
            }
        }
        let above = LAYERS_ABOVE.iter().find(|(layer, _)| layer == name).map_or(&[][..], |(_, above)| *above);
        for dependency in dependencies.iter().filter(|dependency| above.contains(&dependency.as_str())) {
            problems.push(format!("{name} depends on {dependency}, a layer above it"));
        }
    }
    assert!(problems.is_empty(), "boundaries crossed:\n{}", problems.join("\n"));
}

#[test]
fn the_boundary_check_sees_a_crossing() {
    // The check reads real dependency names: the HTTP crate does depend on axum, so a rule
    // that gave axum to another crate would fail.
    let crates = workspace_dependencies();
    let http = crates.iter().find(|(name, _)| name == "http-server").expect("http-server is a member");
    assert!(http.1.iter().any(|dependency| dependency == "axum"), "{:?}", http.1);
    let serving = crates.iter().find(|(name, _)| name == "serving").expect("serving is a member");
    assert!(serving.1.iter().any(|dependency| dependency == "engine"), "{:?}", serving.1);
}
