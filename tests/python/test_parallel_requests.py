"""Concurrent requests on SmolLM2-135M-Instruct with `OLLAMA_NUM_PARALLEL=4`: requests that the
engine decodes in one batch (arriving together or at different times, with prompts and answers
of different lengths) must answer exactly as the same requests do one at a time, and an answer
that started earlier keeps streaming while a later one decodes beside it.

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


def answer(daemon, prompt, num_predict=24):
    body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": num_predict}}
    result = daemon.post("/api/generate", body)
    return result["response"], result["eval_count"]


def stream_recording(daemon, prompt, num_predict, who, events, lock, after_pieces=None):
    """Streams an answer, appending `(who, piece index)` to `events` as each piece arrives;
    sets `after_pieces[1]` once `after_pieces[0]` pieces have come. Returns (text, eval_count)."""
    body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": True,
            "options": {"temperature": 0, "num_predict": num_predict}}
    text, pieces, last = "", 0, None
    for chunk in daemon.stream("/api/generate", body):
        if chunk.get("response"):
            text += chunk["response"]
            with lock:
                events.append((who, pieces))
            pieces += 1
            if after_pieces and pieces == after_pieces[0]:
                after_pieces[1].set()
        if chunk.get("done"):
            last = chunk
    return text, last["eval_count"]


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
        streamed = stream_recording(parallel_daemon, long_prompt, 24, "long", [], threading.Lock(), (k, reached))
        reached.set()
        worker.join()
        assert streamed == alone, f"short request sent after {k} pieces"
        assert short_answer["result"] == answer(sequential_daemon, short_prompt)


def test_an_earlier_answer_keeps_streaming_while_a_later_one_decodes(sequential_daemon, parallel_daemon):
    # A long answer is streaming when a short request arrives: their caches differ in length.
    # Both must decode in the same steps, so the long answer gets a piece for about every piece
    # of the short one. When sequences batched only with others of the same length, the short
    # request ran as its own bucket and the long answer got one step in five while it did
    # (`MODELD_DECODE_MIXED_LENGTHS=0` brings that back, and this test fails with it). Pieces are
    # counted by their order of arrival, not by time: a few out of order cannot pass the bound.
    import threading

    long_prompt = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
    short_prompt = "The capital of France is"
    long_alone = answer(sequential_daemon, long_prompt, 160)
    short_alone = answer(sequential_daemon, short_prompt)
    events, lock, started = [], threading.Lock(), threading.Event()
    results = {}
    short_worker = threading.Thread(target=lambda: (started.wait(), results.update(
        short=stream_recording(parallel_daemon, short_prompt, 24, "short", events, lock))))
    short_worker.start()
    results["long"] = stream_recording(parallel_daemon, long_prompt, 160, "long", events, lock, (6, started))
    started.set()
    short_worker.join()
    assert results["long"] == long_alone
    assert results["short"] == short_alone
    order = [who for who, _ in events]
    first_short, last_short = order.index("short"), len(order) - 1 - order[::-1].index("short")
    long_between = order[first_short:last_short].count("long")
    short_pieces = order.count("short")
    assert short_pieces >= 20, short_alone
    assert long_between >= short_pieces * 3 // 4, (
        f"the long answer got {long_between} pieces while the short one got {short_pieces}: "
        + "".join(who[0] for who in order))

