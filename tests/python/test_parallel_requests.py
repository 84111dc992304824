"""Concurrent requests on SmolLM2-135M-Instruct with `OLLAMA_NUM_PARALLEL=4`: requests that the
engine decodes in one batch (arriving together, or catching up with a batch from a few tokens
behind) must answer exactly as the same requests do one at a time.

Both daemons run without the prefix cache: a prompt partly served from it is evaluated in
shorter pieces, whose attention sums in another order, so its answers may differ from a cold
evaluation in the last bits (as llama.cpp's `cache_prompt` warns); batching itself must not
change a single bit."""

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import MODEL, Daemon


def start_daemon(**extra_env):
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home, MODELD_PREFIX_CACHE_MIB="0", **extra_env)
        try:
            running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def sequential_daemon():
    yield from start_daemon()


@pytest.fixture(scope="module")
def parallel_daemon():
    yield from start_daemon(OLLAMA_NUM_PARALLEL="4")


def answer(daemon, prompt):
    body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 24}}
    result = daemon.post("/api/generate", body)
    return result["response"], result["eval_count"]


def test_concurrent_requests_answer_as_sequential_ones(sequential_daemon, parallel_daemon):
    # Same-length prompts, which decode as one batch from the start, and prompts of other
    # lengths, which decode on their own until they catch up with a batch or finish.
    prompts = [f"Request {n}. Count from 1 to 100: 1, 2, 3," for n in range(4)]
    prompts += ["The capital of France is", "List three colours: red,",
                "Once upon a time, in a small village by the sea, there lived an old fisherman who"]
    sequential = [answer(sequential_daemon, prompt) for prompt in prompts]
    assert all(text.strip() for text, _ in sequential), sequential
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            concurrent = list(pool.map(lambda prompt: answer(parallel_daemon, prompt), prompts))
        assert concurrent == sequential


def test_an_answer_parked_behind_a_short_request_resumes_unchanged(sequential_daemon, parallel_daemon):
    # A short request arriving while a long answer streams runs alone (the shortest bucket)
    # while the long answer waits; when it finishes, the long answer must resume decoding from
    # its own cache. It used to be sent back through the prompt path, its whole text evaluated
    # again, which changed it at the first close pair of logits.
    import threading

    long_prompt = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
    short_prompt = "The capital of France is"
    alone = answer(sequential_daemon, long_prompt)
    for k in range(8, 14):
        reached = threading.Event()
        short_answer = {}
        worker = threading.Thread(target=lambda: (reached.wait(), short_answer.update(
            result=answer(parallel_daemon, short_prompt))))
        worker.start()
        body = {"model": MODEL, "prompt": long_prompt, "raw": True, "stream": True,
                "options": {"temperature": 0, "num_predict": 24}}
        text, n_pieces, last = "", 0, None
        for chunk in parallel_daemon.stream("/api/generate", body):
            if chunk.get("response"):
                text += chunk["response"]
                n_pieces += 1
                if n_pieces == k:
                    reached.set()
            if chunk.get("done"):
                last = chunk
        reached.set()
        worker.join()
        assert (text, last["eval_count"]) == alone, f"short request sent after {k} pieces"
        assert short_answer["result"] == answer(sequential_daemon, short_prompt)
