#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit and in-process API tests on a scripted engine),
# then the end-to-end tests in tests/python against the real daemon on real weights, driven
# by the official Ollama Python client among others, then a short run of each fuzz target.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$MODELD_ROOT/scripts/install-test-deps.sh"
source "$MODELD_CACHE/venv/bin/activate"

cd "$MODELD_ROOT"
# Formatting first, fast; which crate may import what is `crates/modeld/tests/tidy.rs`, from
# `cargo metadata`.
cargo fmt --all --check
# Every package of the lock file, other platforms' too: the boundary check reads
# `cargo metadata --offline`, which needs them all (notify's macOS and BSD backends).
cargo fetch --locked
cargo build --locked -p modeld -p tiny-models
cargo clippy --locked --workspace --all-targets -- -D warnings
# The real-weights tests in the workspace (the engine's cancellation and prefix-cache counters)
# read SmolLM2 from here.
export SMOLLM2_GGUF
cargo test --locked --workspace

# The VS Code extension: typecheck, ESLint, unit tests under a mocked `vscode`, and the .vsix
# package that the end-to-end tests install into code-server.
(cd "$MODELD_ROOT/editors/vscode" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent lint \
    && npm test --silent && npm run --silent package)

export MODELD_BIN MODELD_MCP_TOOLS MODELD_NVIM MODELD_VSCODE_TOOLS MODELD_CHROMIUM MODELD_REGISTRY MODELD_VSIX MINILM_DIR LLAMA_SERVER
python -m pytest -q tests/python

# A short run of every fuzz target (scripts/fuzz.sh SECONDS for longer ones).
bash "$MODELD_ROOT/scripts/fuzz.sh" "${MODELD_FUZZ_SECONDS:-10}"
