"""Prefix reuse on SmolLM2-135M-Instruct: a prompt sent again, or extended, is served from the
KV cache of an earlier request, and must give the answers a daemon without that cache gives."""

import os
import tempfile

import pytest

from conftest import MODEL, Daemon


@pytest.fixture(scope="module")
def uncached_daemon():
    """A daemon whose prefix cache keeps nothing (`MODELD_PREFIX_CACHE_MIB=0`), so every
    prompt is evaluated from its first token."""
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home, MODELD_PREFIX_CACHE_MIB="0")
        try:
            running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            yield running
        finally:
            running.stop()


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
