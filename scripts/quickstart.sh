#!/usr/bin/env bash
# Builds modeld (linked as ~/.local/bin/modeld), fetches SmolLM2-135M-Instruct, imports it as
# smollm2:135m and serves the Ollama API on OLLAMA_HOST (default 127.0.0.1:11434) until
# interrupted.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_modeld
fetch_smollm2

# The editor plugins and the examples call `modeld`: a link in ~/.local/bin puts it on PATH.
mkdir -p "$HOME/.local/bin"
ln -sf "$MODELD_BIN" "$HOME/.local/bin/modeld"
case ":$PATH:" in
    *":$HOME/.local/bin:"*) ;;
    *) echo "modeld is linked in ~/.local/bin; put it on PATH with: export PATH=\"\$HOME/.local/bin:\$PATH\"" ;;
esac

"$MODELD_BIN" serve &
daemon_pid=$!
trap 'kill "$daemon_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
    "$MODELD_BIN" list >/dev/null 2>&1 && break
    sleep 0.1
done
modelfile="$(mktemp)"
printf 'FROM %s\n' "$SMOLLM2_GGUF" > "$modelfile"
"$MODELD_BIN" create smollm2:135m -f "$modelfile"
rm -f "$modelfile"
echo "modeld is serving smollm2:135m; try:"
echo "  curl http://${OLLAMA_HOST:-127.0.0.1:11434}/api/chat -d '{\"model\":\"smollm2:135m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'"
wait "$daemon_pid"
