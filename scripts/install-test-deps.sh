#!/usr/bin/env bash
# Installs what the tests need, outside the work tree: a Python virtual environment with
# pytest and the official ollama client, and the SmolLM2 weights. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

venv="$MODELD_CACHE/venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$MODELD_ROOT/tests/python/requirements.txt"
fetch_smollm2
fetch_neovim
# The MCP reference servers and the MCP Inspector (with the Node 22 it needs, from npm) for the
# MCP tests, installed from the lock file; again only when the lock file changed.
mcp_tools="$MODELD_CACHE/mcp-test-tools"
if [[ ! -d "$mcp_tools/node_modules" ]] || ! cmp -s "$MODELD_ROOT/tests/python/mcp/package-lock.json" "$mcp_tools/package-lock.json"; then
    mkdir -p "$mcp_tools"
    cp "$MODELD_ROOT/tests/python/mcp/package.json" "$MODELD_ROOT/tests/python/mcp/package-lock.json" "$mcp_tools/"
    (cd "$mcp_tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
# rustfmt and clippy for the checks in scripts/test.sh.
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi
# cargo-fuzz for scripts/fuzz.sh; building it takes a few minutes the first time.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
