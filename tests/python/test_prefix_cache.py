"""Prefix reuse on SmolLM2-135M-Instruct: a prompt sent again, or extended, is served from the
KV cache of an earlier request (the newest entry in F32, older ones in F16), and must give the
answers a daemon without that cache gives."""

import os
import tempfile
import time

import pytest

from conftest import MODEL, Daemon


def start_daemon(**extra_env):
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home, **extra_env)
        try:
            running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def uncached_daemon():
    """A daemon whose prefix cache keeps nothing (`MODELD_PREFIX_CACHE_MIB=0`), so every
    prompt is evaluated from its first token."""
    yield from start_daemon(MODELD_PREFIX_CACHE_MIB="0")


@pytest.fixture(scope="module")
def parallel_daemon():
    """A daemon with the prefix cache that decodes up to four requests in one batch."""
    yield from start_daemon(OLLAMA_NUM_PARALLEL="4")


def answer(daemon, prompt):
    body = {"model": MODEL, "prompt": prompt, "stream": False,
            "options": {"temperature": 0, "num_predict": 12}}
    result = daemon.post("/api/generate", body)
    return result["response"], result["prompt_eval_count"]


def test_repeated_and_extended_prompts_answer_as_if_cold(daemon, uncached_daemon):
    story = " ".join(f"On day {day} the miller counted {day * 7} sacks of flour." for day in range(1, 13))
    question = story + " How many sacks did the miller count on day 3?"
    # Cold, the same prompt again (the whole prompt is cached), an extension of a cached
    # prompt, the extension again, and a prefix shorter than what is cached.
    for prompt in (story, story, question, question, story[: len(story) // 2]):
        cached = answer(daemon, prompt)
        assert cached[0].strip(), "empty answer"
        assert cached == answer(uncached_daemon, prompt), prompt[-60:]


def test_older_entries_kept_in_f16_answer_as_if_cold(daemon, uncached_daemon):
    """Entries other than the newest keep their keys and values in F16 (the KV cache holds them
    at F16's precision, so nothing is lost) and get their F32 form back when used: a
    conversation resumed after another one was added, by taking its entry over or by copying
    it, must answer as a daemon without the cache does."""
    first = " ".join(f"Ship {n} carried {n * 3} crates of tea to port {n % 4}." for n in range(1, 9))
    second = " ".join(f"Train {n} left platform {n % 5} at {n} o'clock." for n in range(1, 9))
    turns = [first, second,
             first + " Which port did ship 5 reach?",  # continues the demoted first entry
             second + " When did train 2 leave?",  # continues the demoted second entry
             first[: len(first) // 2],  # copies part of an older entry
             second]
    for prompt in turns:
        assert answer(daemon, prompt) == answer(uncached_daemon, prompt), prompt[-60:]


def test_a_continuation_writes_in_place_without_disturbing_what_others_read(daemon, uncached_daemon):
    """A prompt that holds the whole prompt of a cached answer (a chat's next turn) takes that
    cache over and writes into it in place; a prompt that only shares its start copies it. The
    in-place writes must not change the positions a later, shorter prompt reads, and of two
    continuations sent at once only one may take the cache over."""
    from concurrent.futures import ThreadPoolExecutor

    story = " ".join(f"On day {day} the weaver sold {day * 3} rugs." for day in range(1, 15))
    first_turn, next_turn = story + " How many on day 2?", story + " How many on day 2? And on day 5?"
    first = answer(daemon, first_turn)
    continued = answer(daemon, next_turn)
    # The next turn wrote past the first turn's prompt in place; the first turn again reads
    # what its own prompt step computed, and answers as it did.
    assert answer(daemon, first_turn) == first
    # Every position of a prompt is computed as a decoding step at that position would compute
    # it, so the continuation answers as a daemon without the cache does.
    cold = answer(uncached_daemon, next_turn)
    assert continued == cold, (continued, cold)
    # Two continuations of the first turn at once: one takes its cache over, the other is
    # evaluated from its first token. Had both written into one cache, neither would answer
    # as the cold daemon does.
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: answer(daemon, next_turn), range(2)))
    assert both == [cold, cold], (both, cold)


def test_a_resumed_answer_and_a_fresh_one_decode_together_as_each_alone(parallel_daemon, uncached_daemon):
    """A prefix-cache entry is kept at its length (rounded up to 64 positions), a fresh prompt's
    cache in blocks of 512: a request that takes an entry over and a fresh one, once they reach
    the same length, hold caches of different capacities and decode as one batch all the same
    (the smaller padded to the larger). Each must answer as a daemon without the cache answers
    it alone. Raw prompts, so that the fresh one shares no template prefix with the entry."""
    from concurrent.futures import ThreadPoolExecutor

    def raw_answer(daemon, prompt):
        body = {"model": MODEL, "prompt": prompt, "raw": True, "stream": False,
                "options": {"temperature": 0, "num_predict": 12}}
        result = daemon.post("/api/generate", body)
        return result["response"], result["eval_count"]

    first = "Numbers in order. Count from 1 to 100: 1, 2, 3,"
    resumed, fresh = first + " 4, 5,", "Digits in order. Count from 1 to 100: 1, 2, 3, 4, 5,"
    expected = [raw_answer(uncached_daemon, prompt) for prompt in (resumed, fresh)]
    assert all(text.strip() for text, _ in expected), expected
    for _ in range(2):
        raw_answer(parallel_daemon, first)
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda prompt: raw_answer(parallel_daemon, prompt), (resumed, fresh)))
        assert both == expected


def test_a_cancelled_generation_still_serves_the_next_prompt(daemon):
    """An editor drops a completion's stream as soon as its answer is settled; what the engine
    computed for it must still serve the next request, which shares almost all of its prompt."""
    import json
    import urllib.request

    def story(name):
        return " ".join(f"On day {day} {name} counted {day * 7} sacks of flour." for day in range(1, 40))

    def prompt_seconds(prompt):
        result = daemon.post("/api/generate", {"model": MODEL, "prompt": prompt, "stream": False,
                                                "options": {"temperature": 0, "num_predict": 1}})
        return result["prompt_eval_duration"] / 1e9

    first = story("the miller")
    request = urllib.request.Request(daemon.url + "/api/generate", method="POST", data=json.dumps(
        {"model": MODEL, "prompt": first, "stream": True, "options": {"temperature": 0, "num_predict": 300}}).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        assert json.loads(response.readline())["done"] is False
    # The connection is closed: the engine cancels the sequence.
    time.sleep(1)
    warm = prompt_seconds(first + " How many on day 3?")
    cold = prompt_seconds(story("the baker") + " How many on day 3?")
    assert warm < cold / 3, f"after a cancelled request: {warm:.2f} s, cold: {cold:.2f} s"
