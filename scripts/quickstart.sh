#!/usr/bin/env bash
# Builds modeld, fetches SmolLM2-135M-Instruct, imports it as smollm2:135m and serves the
# Ollama API on OLLAMA_HOST (default 127.0.0.1:11434) until interrupted.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_modeld
fetch_smollm2

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
