"""A short load test: scripts/load-test.py spawns a fresh daemon on SmolLM2-135M-Instruct with
`OLLAMA_NUM_PARALLEL=4` and `OLLAMA_MAX_QUEUE=8`, and 24 clients drive it for 20 s with streamed
chats, generates, tags and shows. More clients than slots and queue places, so some requests
must be refused with Ollama's 503 `server busy`; none may fail or hang, and the daemon must exit
0 on SIGTERM afterwards. A request counts as hung after 40 s, or when it is still unanswered 25 s
after the load ends, which keeps the whole test under a minute: with 4 slots and 8 waiting on
2 cores, answers take 10 to 35 s under this load. The full run is `scripts/load-test.py --spawn BIN --gguf GGUF` (64
clients, 300 s)."""

import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "load-test.py")


def test_short_load_with_refusals(tmp_path):
    binary = os.environ.get("MODELD_BIN")
    gguf = os.environ.get("SMOLLM2_GGUF")
    assert binary and os.path.exists(binary), "set MODELD_BIN to the built modeld binary (scripts/test.sh does)"
    assert gguf and os.path.exists(gguf), "set SMOLLM2_GGUF to the SmolLM2 weights (scripts/test.sh does)"
    figures_path = tmp_path / "figures.json"
    log_path = tmp_path / "serve.log"
    command = [sys.executable, SCRIPT, "--spawn", binary, "--gguf", gguf, "--clients", "24", "--duration", "20",
               "--num-parallel", "4", "--max-queue", "8", "--request-timeout", "40", "--max-drain", "25",
               "--shutdown-timeout", "10",
               "--progress", "0", "--seed", "1", "--json", str(figures_path), "--log", str(log_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL)
    report = f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert figures_path.exists(), report
    figures = json.loads(figures_path.read_text())
    totals, kinds = figures["totals"], figures["kinds"]
    assert totals["failed"] == 0, report
    assert totals["hung"] == 0, report
    assert kinds["chat"]["served"] + kinds["generate"]["served"] >= 1, report
    assert totals["busy"] >= 1, report
    assert "crashed_with" not in figures["daemon"], report
    assert figures["daemon"]["exit_code"] == 0, report
    assert run.returncode == 0, report
