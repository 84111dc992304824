"""The HTTP API on SmolLM2-135M-Instruct: generate and chat, streamed and whole, sampling
controls, limits, keep-alive, cancellation, model management and errors."""

import time

from conftest import MODEL

GREEDY = {"temperature": 0, "num_predict": 24}


def test_generate_whole_and_streamed_agree(daemon):
    whole = daemon.post("/api/generate", {"model": MODEL, "prompt": "Name three colors.", "stream": False, "options": GREEDY})
    assert whole["done"] is True and whole["done_reason"] in ("stop", "length")
    assert whole["response"].strip()
    assert whole["eval_count"] > 0 and whole["eval_duration"] > 0
    assert whole["prompt_eval_count"] > 5 and whole["prompt_eval_duration"] > 0
    assert whole["total_duration"] >= whole["eval_duration"] + whole["prompt_eval_duration"]
    assert len(whole["context"]) >= whole["prompt_eval_count"] + whole["eval_count"]

    chunks = list(daemon.stream("/api/generate", {"model": MODEL, "prompt": "Name three colors.", "options": GREEDY}))
    *pieces, last = chunks
    assert all(chunk["done"] is False for chunk in pieces) and last["done"] is True
    assert "".join(chunk["response"] for chunk in pieces) == whole["response"]
    assert last["eval_count"] == whole["eval_count"]


def test_chat_whole_and_streamed_agree(daemon):
    messages = [{"role": "user", "content": "What is the capital of France."}]
    whole = daemon.post("/api/chat", {"model": MODEL, "messages": messages, "stream": False, "options": GREEDY})
    assert whole["message"]["role"] == "assistant"
    assert "Paris" in whole["message"]["content"]
    chunks = list(daemon.stream("/api/chat", {"model": MODEL, "messages": messages, "options": GREEDY}))
    assert "".join(chunk["message"]["content"] for chunk in chunks) == whole["message"]["content"]
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] == whole["done_reason"]


def test_same_seed_same_text(daemon):
    def sample(seed, temperature, **options):
        options = {"temperature": temperature, "num_predict": 20, **options}
        if seed is not None:
            options["seed"] = seed
        body = {"model": MODEL, "prompt": "Write a sentence about the sea.", "stream": False, "options": options}
        result = daemon.post("/api/generate", body)
        assert result["eval_count"] > 0 and result["response"].strip(), result
        return result["response"]

    # The greedy pair comes first: its first request evaluates the whole prompt, every later one
    # reuses the prompt's KV cache, so the sampled answers below are all compared on one path.
    assert sample(42, 0) == sample(42, 0)
    assert sample(7, 0.9) == sample(7, 0.9)
    # At temperature 1.0, with top_k and top_p at their defaults (40, 0.9) and then widened to
    # the whole vocabulary, a seed gives its text again and other seeds give other texts.
    for widened in ({}, {"top_k": 0, "top_p": 1.0}):
        texts = {}
        for seed in (1, 2, 3):
            texts[seed] = sample(seed, 1.0, **widened)
            assert sample(seed, 1.0, **widened) == texts[seed], (seed, widened)
        assert len(set(texts.values())) == 3, f"different seeds at temperature 1.0 gave the same text: {texts}"
    # Without a seed, the sampler draws a fresh one per request.
    unseeded = {sample(None, 1.0) for _ in range(3)}
    assert len(unseeded) > 1, f"unseeded samples at temperature 1.0 all gave the same text: {unseeded}"
    different = {sample(seed, 1.5) for seed in (1, 2, 3)}
    assert len(different) > 1, "different seeds at a high temperature all gave the same text"


def test_num_predict_bounds_eval_count(daemon):
    for limit in (1, 5):
        result = daemon.post("/api/generate", {"model": MODEL, "prompt": "Count from one to fifty.", "stream": False,
                                               "options": {"temperature": 0, "num_predict": limit}})
        assert result["eval_count"] == limit
        assert result["done_reason"] == "length"


def test_stop_sequence_ends_output(daemon):
    body = {"model": MODEL, "prompt": "Count from one to twenty, separated by commas.", "stream": False,
            "options": {"temperature": 0, "num_predict": 40}}
    free = daemon.post("/api/generate", body)["response"]
    words = [word for word in free.split() if len(word) > 2]
    assert len(words) >= 3, free
    stop = words[2]
    body["options"]["stop"] = [stop]
    stopped = daemon.post("/api/generate", body)
    assert stopped["response"] == free[: free.index(stop)]
    assert stopped["done_reason"] == "stop"


def test_second_turn_counts_the_first(daemon):
    first = [{"role": "user", "content": "My name is Ada. Say hello."}]
    answer = daemon.post("/api/chat", {"model": MODEL, "messages": first, "stream": False, "options": GREEDY})
    second = first + [answer["message"], {"role": "user", "content": "What is my name?"}]
    followup = daemon.post("/api/chat", {"model": MODEL, "messages": second, "stream": False, "options": GREEDY})
    assert followup["prompt_eval_count"] > answer["prompt_eval_count"] + answer["eval_count"]


def test_context_window_is_enforced(daemon):
    # A prompt longer than num_ctx is truncated and generation stops at the context end,
    # instead of failing inside the engine.
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
    result = daemon.post("/api/generate", {"model": MODEL, "prompt": long_prompt, "stream": False,
                                           "options": {"num_ctx": 128, "temperature": 0}})
    assert result["prompt_eval_count"] < 128
    assert result["prompt_eval_count"] + result["eval_count"] <= 128
    assert result["done"] is True


def test_keep_alive_zero_empties_ps(daemon):
    daemon.post("/api/generate", {"model": MODEL, "prompt": "", "keep_alive": "5m"})
    status, running = daemon.request("GET", "/api/ps")
    assert [model["name"] for model in running["models"]] == [MODEL]
    assert running["models"][0]["size"] > 50_000_000
    unloaded = daemon.post("/api/generate", {"model": MODEL, "keep_alive": 0})
    assert unloaded["done_reason"] == "unload"
    status, running = daemon.request("GET", "/api/ps")
    assert running == {"models": []}


def test_closed_connection_stops_generation(daemon):
    body = {"model": MODEL, "prompt": "Tell me a very long story about a dragon.",
            "options": {"num_predict": 2000, "temperature": 0.7}}
    stream = daemon.stream("/api/generate", body)
    for _ in range(3):
        next(stream)
    busy_start = daemon.cpu_seconds()
    time.sleep(1.0)
    busy = daemon.cpu_seconds() - busy_start
    stream.close()
    time.sleep(1.0)
    idle_start = daemon.cpu_seconds()
    time.sleep(2.0)
    idle = (daemon.cpu_seconds() - idle_start) / 2.0
    assert busy > 0.5, f"the daemon was not generating ({busy:.2f} CPU-seconds in 1 s)"
    assert idle < 0.2, f"the daemon kept working after the client left ({idle:.2f} CPU-seconds per second)"


def test_create_copy_delete_round_trip(daemon):
    created = list(daemon.stream("/api/create", {"model": "terse", "from": MODEL, "system": "Answer in one word.",
                                                 "parameters": {"temperature": 0, "num_predict": 8}}))
    assert created[-1] == {"status": "success"}
    show = daemon.post("/api/show", {"model": "terse"})
    assert show["system"] == "Answer in one word."
    assert show["details"]["family"] == "llama"
    result = daemon.post("/api/generate", {"model": "terse", "prompt": "Hi", "stream": False})
    assert result["eval_count"] <= 8, "the model's parameters apply"

    status, _ = daemon.request("POST", "/api/copy", {"source": "terse", "destination": "terse-copy"})
    assert status == 200
    names = {model["name"] for model in daemon.request("GET", "/api/tags")[1]["models"]}
    assert {"terse:latest", "terse-copy:latest", MODEL} <= names
    for name in ("terse", "terse-copy"):
        status, _ = daemon.request("DELETE", "/api/delete", {"model": name})
        assert status == 200
    names = {model["name"] for model in daemon.request("GET", "/api/tags")[1]["models"]}
    assert names == {MODEL}
    assert daemon.post("/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False, "options": GREEDY})["done"]


def test_errors_match_ollama(daemon):
    assert daemon.request("POST", "/api/generate", {"model": "no-such-model", "prompt": "x"}) == (
        404, {"error": "model 'no-such-model' not found"})
    assert daemon.request("POST", "/api/chat", {"model": "no-such-model", "messages": []}) == (
        404, {"error": "model 'no-such-model' not found"})
    status, body = daemon.request("POST", "/api/chat", raw=b"{not json")
    assert status == 400 and "error" in body
    assert daemon.request("POST", "/api/chat", raw=b"") == (400, {"error": "missing request body"})
    assert daemon.request("POST", "/api/show", {"model": "nope"}) == (404, {"error": "model 'nope:latest' not found"})


PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                                  "job": {"type": "string"}}, "required": ["name", "age", "job"]}


def check_person(text):
    import json
    person = json.loads(text)
    assert set(person) == {"name", "age", "job"}, person
    assert isinstance(person["name"], str) and isinstance(person["job"], str)
    assert isinstance(person["age"], int) and not isinstance(person["age"], bool)
    return person


def test_structured_output_follows_the_schema(daemon):
    intro = "Hi, I am Maria, I am 31 years old and I work as a nurse. Extract my name, age and job."
    whole = daemon.post("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": intro}],
                                      "format": PERSON_SCHEMA, "stream": False, "options": {"temperature": 0}})
    person = check_person(whole["message"]["content"])
    assert person["name"] == "Maria" and person["age"] == 31
    assert whole["done_reason"] == "stop"
    for seed in (1, 2):
        chunks = daemon.stream("/api/generate", {"model": MODEL, "prompt": intro, "format": PERSON_SCHEMA,
                                                 "options": {"temperature": 1.0, "seed": seed}})
        check_person("".join(chunk["response"] for chunk in chunks))
    import json
    anything = daemon.post("/api/generate", {"model": MODEL, "prompt": "List two fruits.", "format": "json",
                                             "stream": False, "options": {"temperature": 0}})
    assert isinstance(json.loads(anything["response"]), dict)
    status, error = daemon.request("POST", "/api/generate", {"model": MODEL, "prompt": "x", "format": {"type": "thing"}})
    assert status == 400 and "invalid JSON schema" in error["error"]
