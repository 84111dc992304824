"""SmolLM2-135M-Instruct served from its stored Q4_1 weights as they are.

Q4_1 has SIMD kernels (`cpu_kernels::quantized_dot`, called by the vendored candle), so the
daemon loads Q4_1 weights as stored even with requantization on (it still writes Q8_0 copies of
Q5_0 and Q5_1 weights, which have none): these tests check that this path answers correctly
(greedy chat, streamed and whole generate agree, a repeated prompt served from the prefix cache
gets the answer it got first), that /api/show reports Q4_1, and that no copy is written."""

import os
import tempfile

import pytest

from conftest import MODEL, Daemon

GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def direct_daemon():
    """A daemon with requantization on, as by default. The requantize location is left to its
    default under the daemon's HOME, whatever the caller's environment says, so that
    `requantize_dir` names the one place a copy could go."""
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home, MODELD_REQUANTIZE="", MODELD_REQUANTIZE_DIR="",
                         XDG_CACHE_HOME="")
        try:
            running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            yield running
        finally:
            running.stop()


def requantize_dir(daemon):
    """Where the daemon would write Q8_0 copies, as crates/modeld/src/environment.rs decides it:
    `MODELD_REQUANTIZE_DIR`, else `$XDG_CACHE_HOME/modeld/requantized`, else
    `$HOME/.cache/modeld/requantized` (an empty variable counts as unset)."""
    if daemon.env.get("MODELD_REQUANTIZE_DIR", "").strip():
        return daemon.env["MODELD_REQUANTIZE_DIR"].strip()
    cache = daemon.env.get("XDG_CACHE_HOME", "").strip() or os.path.join(daemon.env["HOME"], ".cache")
    return os.path.join(cache, "modeld", "requantized")


def copies(directory):
    if not os.path.isdir(directory):
        return []
    return [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]


def loaded_size(daemon):
    """Loads the model (an empty prompt) and returns the size /api/ps reports for it."""
    assert daemon.post("/api/generate", {"model": MODEL, "prompt": "", "keep_alive": "5m"})["done"] is True
    status, running = daemon.request("GET", "/api/ps")
    assert status == 200
    [model] = [model for model in running["models"] if model["name"] == MODEL]
    return model["size"]


def test_greedy_chat_knows_the_capital_of_france(direct_daemon):
    messages = [{"role": "user", "content": "What is the capital of France."}]
    answer = direct_daemon.post("/api/chat", {"model": MODEL, "messages": messages, "stream": False, "options": GREEDY})
    assert answer["message"]["role"] == "assistant"
    assert "Paris" in answer["message"]["content"], answer["message"]["content"]
    assert answer["done_reason"] in ("stop", "length") and answer["eval_count"] > 0


def test_streamed_generate_equals_whole(direct_daemon):
    # A prompt's first request evaluates all of it; a repeat is served from the prefix cache,
    # which evaluates only its last token again. The first request here is left out of the
    # comparison so that both compared answers take the repeat path and only streaming differs;
    # test_a_repeated_prompt_gets_the_first_answer compares the two paths.
    body = {"model": MODEL, "prompt": "Name three colors.", "options": GREEDY}
    direct_daemon.post("/api/generate", {**body, "stream": False})
    whole = direct_daemon.post("/api/generate", {**body, "stream": False})
    assert whole["response"].strip() and whole["eval_count"] > 0
    *pieces, last = list(direct_daemon.stream("/api/generate", body))
    assert pieces and all(chunk["done"] is False for chunk in pieces) and last["done"] is True
    assert "".join(chunk["response"] for chunk in pieces) == whole["response"]
    assert last["eval_count"] == whole["eval_count"] and last["done_reason"] == whole["done_reason"]


def test_a_repeated_prompt_gets_the_first_answer(direct_daemon):
    # Greedy decoding answers a prompt the same however much of it the prefix cache served:
    # the first request evaluates the whole prompt, the repeat only its last token.
    body = {"model": MODEL, "prompt": "Name three animals.", "stream": False, "options": GREEDY}
    first = direct_daemon.post("/api/generate", body)
    repeat = direct_daemon.post("/api/generate", body)
    assert first["prompt_eval_count"] == repeat["prompt_eval_count"]
    assert repeat["response"] == first["response"], "the prefix cache's exact repeat changed the answer"


def test_show_reports_q4_1(direct_daemon):
    show = direct_daemon.post("/api/show", {"model": MODEL})
    assert show["details"]["quantization_level"] == "Q4_1"
    assert show["model_info"]["general.file_type"] == 3, "GGUF file type 3 is MOSTLY_Q4_1"
    [listed] = direct_daemon.request("GET", "/api/tags")[1]["models"]
    assert listed["details"]["quantization_level"] == "Q4_1"


def test_no_requantized_copy_is_written(direct_daemon):
    size = loaded_size(direct_daemon)
    assert copies(requantize_dir(direct_daemon)) == []
    written = [os.path.join(root, name) for root, _, names in os.walk(direct_daemon.env["HOME"])
               for name in names if name.endswith(".q8_0.gguf")]
    assert written == []
    # The weights in memory are the stored ones, not a Q8_0 copy half as large again.
    assert size < 1.2 * os.path.getsize(os.environ["SMOLLM2_GGUF"]), size
