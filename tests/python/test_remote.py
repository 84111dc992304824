"""Remote models: a front daemon serves models that two more modeld daemons (Ollama-compatible
replicas, and one OpenAI-compatible face of them) run, through every face, with routing by
prompt prefix, failover before the first token and an error line when a replica dies
mid-stream. The replicas run SmolLM2 and the programmed tiny models on the real engine, so the
front's answers are compared with the replicas' own, exactly."""

import concurrent.futures
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

import ollama
import openai
import pytest

from conftest import MODEL, Daemon, free_port, wait_for

GREEDY = {"temperature": 0, "seed": 7}
SECRET = "sk-modeld-test-secret-0123456789"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}]
EMBEDDER = "minilm"
# What the programmed FIM model answers (crates/tiny-models), and StarCoder's FIM prompt as an
# Ollama template.
FIM_MIDDLE = "return left + right"
STARCODER_FIM = '"""{{ if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>{{ else }}{{ .Prompt }}{{ end }}"""'


def replica(binary, home, maker):
    """A modeld with SmolLM2, the tiny agent and FIM models, and MiniLM."""
    running = Daemon(binary, home)
    running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
    for name, recipe in (("tiny-agent", "agent"), ("tiny-fim", "fim")):
        gguf = os.path.join(home, f"{recipe}.gguf")
        subprocess.run([maker, recipe, gguf], check=True)
        running.import_gguf(name, gguf)
    modelfile = os.path.join(home, "Modelfile.minilm")
    with open(modelfile, "w") as file:
        file.write(f"FROM {os.environ['MINILM_DIR']}\n")
    created = running.cli("create", EMBEDDER, "-f", modelfile)
    assert "success" in created.stderr, created.stderr
    return running


def create_remote(front, name, lines):
    modelfile = os.path.join(os.path.dirname(front.env["OLLAMA_MODELS"]), f"Modelfile.{name.replace(':', '_')}")
    with open(modelfile, "w") as file:
        file.write("\n".join(lines) + "\n")
    created = front.cli("create", name, "-f", modelfile, check=False)
    assert created.returncode == 0 and "success" in created.stderr, created.stderr
    return created


@pytest.fixture(scope="module")
def cluster():
    binary = os.environ["MODELD_BIN"]
    maker = os.path.join(os.path.dirname(binary), "make-tiny-model")
    with tempfile.TemporaryDirectory() as home_a, tempfile.TemporaryDirectory() as home_b, \
            tempfile.TemporaryDirectory() as home_front:
        started = []
        try:
            a = replica(binary, home_a, maker)
            started.append(a)
            b = replica(binary, home_b, maker)
            started.append(b)
            front = Daemon(binary, home_front, MODELD_TEST_KEY=SECRET)
            started.append(front)
            both = [f"ENDPOINT {a.url} ollama key-env=MODELD_TEST_KEY", f"ENDPOINT {b.url} ollama"]
            create_remote(front, "team-chat", [f"FROM {MODEL}", *both])
            create_remote(front, "team-agent", ["FROM tiny-agent", *both])
            create_remote(front, "team-fim", ["FROM tiny-fim", *both])
            create_remote(front, "team-embed", [f"FROM {EMBEDDER}", *both])
            create_remote(front, "openai-chat", [f"FROM {MODEL}", f"ENDPOINT {a.url} openai key-env=MODELD_TEST_KEY"])
            create_remote(front, "openai-agent", ["FROM tiny-agent", f"ENDPOINT {b.url} openai"])
            yield {"a": a, "b": b, "front": front}
        finally:
            for running in started:
                running.stop()


def test_remote_models_are_listed_shown_and_given_back(cluster):
    front, a = cluster["front"], cluster["a"]
    status, listing = front.request("GET", "/api/tags")
    assert status == 200
    names = {model["name"]: model for model in listing["models"]}
    assert names["team-chat:latest"]["remote_model"] == MODEL
    assert names["team-chat:latest"]["remote_host"] == a.url
    shown = front.post("/api/show", {"model": "team-agent"})
    # Capabilities as the replica reports them for its model.
    assert shown["capabilities"] == a.post("/api/show", {"model": "tiny-agent"})["capabilities"]
    assert shown["remote_model"] == "tiny-agent"
    assert f"ENDPOINT {a.url} ollama key-env=MODELD_TEST_KEY" in shown["modelfile"]
    assert "FROM tiny-agent\n" in shown["modelfile"]
    listed = {model.id for model in openai.OpenAI(base_url=front.url + "/v1/", api_key="x").models.list()}
    assert {"team-chat:latest", "openai-chat:latest"} <= listed
    # The key's variable is stored, never the key.
    models_dir = front.env["OLLAMA_MODELS"]
    for folder, _, files in os.walk(models_dir):
        for file_name in files:
            with open(os.path.join(folder, file_name), "rb") as file:
                assert SECRET.encode() not in file.read(), file_name


def test_chat_through_the_front_equals_the_replica(cluster):
    front, a = cluster["front"], cluster["a"]
    messages = [{"role": "user", "content": "Name three colours."}]
    direct = ollama.Client(host=a.url).chat(MODEL, messages=messages, options={**GREEDY, "num_predict": 24})
    remote = ollama.Client(host=front.url).chat("team-chat", messages=messages, options={**GREEDY, "num_predict": 24})
    assert remote.message.content == direct.message.content
    assert remote.eval_count == direct.eval_count and remote.prompt_eval_count == direct.prompt_eval_count
    chunks = list(ollama.Client(host=front.url).chat("team-chat", messages=messages, stream=True,
                                                       options={**GREEDY, "num_predict": 24}))
    assert "".join(chunk.message.content for chunk in chunks) == direct.message.content
    assert chunks[-1].done and chunks[-1].done_reason == direct.done_reason
    assert len(chunks) > 3, "the stream is passed on as it arrives, not whole"


def test_a_conversation_stays_on_its_replica(cluster):
    front = cluster["front"]
    replicas = {cluster["a"].url, cluster["b"].url}
    for topic in ("the sea", "mountains", "rivers", "deserts"):
        system = f"You are a poet who writes only about {topic}. " * 40
        messages = [{"role": "system", "content": system}, {"role": "user", "content": "Write one line."}]
        served = []
        for _ in range(3):
            reply = front.post("/api/chat", {"model": "team-chat", "messages": messages, "stream": False,
                                             "options": {**GREEDY, "num_predict": 8}})
            served.append(reply["remote_host"])
            messages += [reply["message"], {"role": "user", "content": "Another line."}]
        assert served[0] in replicas
        assert served == [served[0]] * 3, served
    # Different conversations spread over both replicas (even load, rotated).
    first_turns = set()
    for topic in ("snow", "rain", "wind", "fog"):
        reply = front.post("/api/chat", {"model": "team-chat", "stream": False, "options": {**GREEDY, "num_predict": 4},
                                         "messages": [{"role": "user", "content": f"One word about {topic}."}]})
        first_turns.add(reply["remote_host"])
    assert first_turns == replicas


def test_tools_structured_output_and_fill_in_the_middle(cluster):
    front, a = ollama.Client(host=cluster["front"].url), ollama.Client(host=cluster["a"].url)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    direct = a.chat("tiny-agent", messages=messages, tools=TOOLS, options=GREEDY)
    remote = front.chat("team-agent", messages=messages, tools=TOOLS, options=GREEDY)
    assert [(call.function.name, call.function.arguments) for call in remote.message.tool_calls] == \
        [(call.function.name, call.function.arguments) for call in direct.message.tool_calls]
    assert remote.message.thinking == direct.message.thinking

    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    answer = front.chat("team-chat", messages=[{"role": "user", "content": "Your favourite colour?"}],
                        format=schema, options={**GREEDY, "num_predict": 40})
    assert isinstance(json.loads(answer.message.content)["colour"], str)

    prefix, suffix = "def add(left, right):\n    ", "\n\nprint(add(1, 2))\n"
    direct = a.generate("tiny-fim", prompt=prefix, suffix=suffix, options=GREEDY)
    remote = front.generate("team-fim", prompt=prefix, suffix=suffix, options=GREEDY)
    assert remote.response == direct.response == FIM_MIDDLE

    # A TEMPLATE that names .Suffix prompts the middle here; the remote completes raw text.
    create_remote(cluster["front"], "team-fim-template", ["FROM tiny-fim", f"TEMPLATE {STARCODER_FIM}",
                                                          f"ENDPOINT {cluster['b'].url} ollama"])
    assert "insert" in front.show("team-fim-template").capabilities
    remote = front.generate("team-fim-template", prompt=prefix, suffix=suffix, options=GREEDY)
    assert remote.response == FIM_MIDDLE
    assert remote.prompt_eval_count == 3 + len(prefix.encode()) + len(suffix.encode())
    status, body = cluster["front"].request("POST", "/api/create", {
        "model": "chat-template", "from": MODEL, "template": "{{ .Prompt }}",
        "endpoints": [{"url": cluster["a"].url, "api": "ollama"}]})
    assert status == 400 and "fill-in-the-middle" in body["error"], body


def test_embeddings_through_the_front(cluster):
    sentences = ["The cat sat on the mat.", "A feline rested on the rug."]
    direct = ollama.Client(host=cluster["a"].url).embed(EMBEDDER, input=sentences)
    remote = ollama.Client(host=cluster["front"].url).embed("team-embed", input=sentences)
    for left, right in zip(direct.embeddings, remote.embeddings):
        assert max(abs(x - y) for x, y in zip(left, right)) < 1e-6
    cut = ollama.Client(host=cluster["front"].url).embed("team-embed", input=sentences[0], dimensions=8)
    assert len(cut.embeddings[0]) == 8


def test_openai_compatible_remotes(cluster):
    front, a, b = cluster["front"], cluster["a"], cluster["b"]
    messages = [{"role": "user", "content": "Name three colours."}]
    direct = ollama.Client(host=a.url).chat(MODEL, messages=messages, options={**GREEDY, "num_predict": 24})
    # The front speaks OpenAI to replica A, and the official openai client speaks it to the front.
    client = openai.OpenAI(base_url=front.url + "/v1/", api_key="x", max_retries=0)
    remote = client.chat.completions.create(model="openai-chat", messages=messages, temperature=0, seed=7,
                                            max_tokens=24)
    assert remote.choices[0].message.content == direct.message.content
    assert remote.usage.completion_tokens == direct.eval_count
    streamed = client.chat.completions.create(model="openai-chat", messages=messages, temperature=0, seed=7,
                                              max_tokens=24, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == \
        direct.message.content
    # Tool calls come back through OpenAI's stream as whole calls.
    call = ollama.Client(host=front.url).chat("openai-agent", tools=TOOLS, options=GREEDY,
                                              messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    direct_call = ollama.Client(host=b.url).chat("tiny-agent", tools=TOOLS, options=GREEDY,
                                                 messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert [c.function.name for c in call.message.tool_calls] == [c.function.name for c in direct_call.message.tool_calls]
    assert call.message.tool_calls[0].function.arguments == direct_call.message.tool_calls[0].function.arguments


def test_remote_errors_pass_through(cluster):
    front = cluster["front"]
    status, body = front.request("POST", "/api/create", {"model": "ghost", "from": "no-such-model",
                                                          "endpoints": [{"url": cluster["a"].url, "api": "ollama"}]})
    assert status == 404 and "not found" in body["error"], body
    status, body = front.request("POST", "/api/create", {"model": "bad", "from": "m",
                                                          "endpoints": [{"url": "file:///etc/passwd", "api": "ollama"}]})
    assert status == 400 and "http://" in body["error"], body
    status, body = front.request("POST", "/api/create", {"model": "bad", "from": "m",
                                                          "endpoints": [{"url": "http://u:p@h:1", "api": "openai"}]})
    assert status == 400 and "credentials" in body["error"], body
    # The replica's own refusal, with its status and words: SmolLM2 cannot fill in the middle.
    status, body = front.request("POST", "/api/generate", {"model": "team-chat", "prompt": "a", "suffix": "b",
                                                           "stream": False})
    assert status == 400 and "does not support insert" in body["error"], body


def test_limits_failover_and_a_replica_dying_mid_stream():
    """Replicas of their own: one with a limit of one request at a time, and one killed
    mid-stream, then before requests, then brought back."""
    binary = os.environ["MODELD_BIN"]
    with tempfile.TemporaryDirectory() as home_c, tempfile.TemporaryDirectory() as home_d, \
            tempfile.TemporaryDirectory() as home_front:
        c = Daemon(binary, home_c)
        d = Daemon(binary, home_d)
        front = Daemon(binary, home_front, OLLAMA_MAX_QUEUE="1")
        restarted = None
        try:
            for running in (c, d):
                running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            create_remote(front, "solo", [f"FROM {MODEL}", f"ENDPOINT {c.url} ollama"])
            create_remote(front, "pair", [f"FROM {MODEL}", f"ENDPOINT {c.url} ollama", f"ENDPOINT {d.url} ollama"])

            # One runs, one waits (the queue holds one), the next is refused as Ollama refuses.
            # The replica is a fixture whose stories never end, so the first holds its slot.
            endless = FixtureOpenAiServer(endless_stories)
            try:
                create_remote(front, "one-at-a-time", ["FROM endless", f"ENDPOINT {endless.url} openai parallel=1"])
                assert "parallel=1" in front.post("/api/show", {"model": "one-at-a-time"})["modelfile"]
                running_story = front.stream("/api/chat", {"model": "one-at-a-time",
                                                           "messages": [{"role": "user", "content": "A story"}]})
                next(running_story)
                short = {"model": "one-at-a-time", "stream": False, "messages": [{"role": "user", "content": "Hi"}]}
                waiting = concurrent.futures.ThreadPoolExecutor(1).submit(front.request, "POST", "/api/chat", short)
                wait_for(lambda: len(endless.requests) == 1 and not waiting.done() or None, what="one waiting")
                time.sleep(0.5)
                status, body = front.request("POST", "/api/chat", short)
                assert status == 503, body
                assert body["error"] == "server busy, please try again.  maximum pending requests exceeded"
                assert not waiting.done() and len(endless.requests) == 1
                running_story.close()
                status, body = waiting.result(timeout=60)
                assert status == 200 and body["message"]["content"] == "Hello.", body
            finally:
                endless.close()

            story = {"prompt": "Tell me a long story.", "options": {"num_predict": 2000}}
            lines = front.stream("/api/generate", {**story, "model": "solo"})
            first = next(lines)
            assert "response" in first and not first["done"]
            c.process.send_signal(signal.SIGKILL)
            rest = list(lines)
            assert "error" in rest[-1] and not any(line.get("done") for line in rest), rest[-3:]
            # C is dead: every request goes to D, the ones routed to C first after a retry.
            for attempt in range(4):
                reply = front.post("/api/chat", {"model": "pair", "stream": False, "options": {"num_predict": 4},
                                                 "messages": [{"role": "user", "content": f"Hello {attempt}"}]})
                assert reply["remote_host"] == d.url and reply["done"]
            # C comes back on its address: a health probe finds it and it serves again.
            c.process.wait()
            restarted = subprocess.Popen([binary, "serve"], env=c.env, stdout=c.log, stderr=subprocess.STDOUT)

            def served_by_c():
                reply = front.post("/api/chat", {"model": "pair", "stream": False, "options": {"num_predict": 2},
                                                 "messages": [{"role": "user", "content": "Back?"}]})
                return reply["remote_host"] == c.url or None
            wait_for(served_by_c, timeout=90, what="the restarted replica to serve again")
            # No replica at all: a 502 that says why.
            restarted.send_signal(signal.SIGKILL)
            d.process.send_signal(signal.SIGKILL)
            status, body = front.request("POST", "/api/chat", {"model": "pair", "stream": False,
                                                               "messages": [{"role": "user", "content": "Hi"}]})
            assert status == 502 and "no replica" in body["error"], body
        finally:
            if restarted is not None:
                restarted.kill()
            for running in (c, d, front):
                running.stop()


def test_cancellation_reaches_the_replica(cluster):
    front, b = cluster["front"], cluster["b"]
    # Only B serves this model, so B's CPU time shows the generation.
    create_remote(front, "only-b", [f"FROM {MODEL}", f"ENDPOINT {b.url} ollama"])
    lines = front.stream("/api/generate", {"model": "only-b", "prompt": "Tell me a long story.",
                                           "options": {"num_predict": 4000}})
    next(lines)
    lines.close()
    time.sleep(1)
    before = b.cpu_seconds()
    time.sleep(3)
    # Idle: well under one core-second in three seconds (a running generation takes ~2).
    assert b.cpu_seconds() - before < 1.0


def blob_of(daemon, model):
    """The GGUF file a daemon's model is (its Modelfile's FROM line)."""
    modelfile = daemon.post("/api/show", {"model": model})["modelfile"]
    return next(line[len("FROM "):] for line in modelfile.splitlines() if line.startswith("FROM /"))


def start_llama_server(gguf, log_dir, *flags):
    binary = os.environ.get("LLAMA_SERVER")
    assert binary and os.path.exists(binary), "set LLAMA_SERVER to a built llama-server (scripts/test.sh does)"
    port = free_port()
    log = open(os.path.join(log_dir, f"llama-server-{port}.log"), "wb")
    process = subprocess.Popen([binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
                                "-np", "2", "--no-webui", *flags], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return process.poll() is not None and AssertionError(f"llama-server exited, see {log.name}")
    outcome = wait_for(healthy, timeout=120, what="llama-server to load its model")
    assert outcome is True, outcome
    return process, url


@pytest.fixture(scope="module")
def llama_servers(cluster):
    """llama.cpp's llama-server on SmolLM2 (chat, tools), on the MiniLM GGUF that replica A
    converted (embeddings) and on the tiny FIM model (`/infill`)."""
    a = cluster["a"]
    started = []
    with tempfile.TemporaryDirectory() as logs:
        try:
            chat = start_llama_server(os.environ["SMOLLM2_GGUF"], logs, "--jinja")
            started.append(chat[0])
            embed = start_llama_server(blob_of(a, EMBEDDER), logs, "--embeddings")
            started.append(embed[0])
            fim = start_llama_server(blob_of(a, "tiny-fim"), logs)
            started.append(fim[0])
            yield {"chat": chat[1], "embed": embed[1], "fim": fim[1]}
        finally:
            for process in started:
                process.terminate()
                process.wait(timeout=15)


def test_llama_server_behind_the_front(cluster, llama_servers):
    front = cluster["front"]
    create_remote(front, "llama-chat", [f"FROM {MODEL}", f"ENDPOINT {llama_servers['chat']} openai"])
    create_remote(front, "llama-embed", [f"FROM {EMBEDDER}", f"ENDPOINT {llama_servers['embed']} openai"])
    create_remote(front, "llama-fim", ["FROM tiny-fim", f"ENDPOINT {llama_servers['fim']} openai"])
    client = ollama.Client(host=front.url)
    direct = openai.OpenAI(base_url=llama_servers["chat"] + "/v1/", api_key="x", max_retries=0)

    messages = [{"role": "user", "content": "Name three colours."}]
    expected = direct.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=24)
    answer = client.chat("llama-chat", messages=messages, options={"temperature": 0, "num_predict": 24})
    assert answer.message.content == expected.choices[0].message.content
    assert answer.prompt_eval_count == expected.usage.prompt_tokens
    assert answer.eval_count == expected.usage.completion_tokens
    streamed = list(client.chat("llama-chat", messages=messages, stream=True,
                                options={"temperature": 0, "num_predict": 24}))
    assert "".join(chunk.message.content for chunk in streamed) == expected.choices[0].message.content
    assert len(streamed) > 3

    # Tools: whatever llama-server makes of them (SmolLM2's template has no tool format, so
    # llama-server's generic one), the front gives the same.
    asked = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    expected = direct.chat.completions.create(model=MODEL, messages=asked, tools=TOOLS, temperature=0, max_tokens=64)
    answer = client.chat("llama-chat", messages=asked, tools=TOOLS, options={"temperature": 0, "num_predict": 64})
    expected_calls = [(call.function.name, json.loads(call.function.arguments))
                      for call in expected.choices[0].message.tool_calls or []]
    assert [(call.function.name, dict(call.function.arguments)) for call in answer.message.tool_calls or []] == \
        expected_calls
    if not expected_calls:
        assert answer.message.content == expected.choices[0].message.content

    # Structured output becomes response_format, which llama-server enforces.
    schema = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}
    answer = client.chat("llama-chat", messages=[{"role": "user", "content": "Your favourite colour?"}],
                         format=schema, options={"temperature": 0, "num_predict": 80})
    assert answer.done_reason == "stop"
    assert 0 < len(json.loads(answer.message.content)["colour"]) <= 12

    # Embeddings: llama.cpp's BERT on the GGUF modeld converted, against modeld's own.
    sentences = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    ours = ollama.Client(host=cluster["a"].url).embed(EMBEDDER, input=sentences).embeddings
    theirs = client.embed("llama-embed", input=sentences).embeddings
    for left, right in zip(ours, theirs):
        assert sum(x * y for x, y in zip(left, right)) > 0.999

    # Fill-in-the-middle through llama-server's /infill, and through /v1/completions with the
    # prompt made here by a TEMPLATE. (llama.cpp's arithmetic does not run the programmed
    # model's trick, so its answers are compared with llama-server's own; the prompt's token
    # count, 3 FIM tokens and one per byte, shows what reached it.)
    prefix, suffix = "def add(left, right):\n    ", "\n\nprint(add(1, 2))\n"
    n_prompt = 3 + len(prefix.encode()) + len(suffix.encode())

    def post(path, body):
        request = urllib.request.Request(llama_servers["fim"] + path, method="POST", data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    expected = post("/infill", {"input_prefix": prefix, "input_suffix": suffix, "temperature": 0, "n_predict": 16})
    answer = client.generate("llama-fim", prompt=prefix, suffix=suffix, options={"temperature": 0, "num_predict": 16})
    assert answer.response == expected["content"]
    assert answer.prompt_eval_count == expected["tokens_evaluated"] >= n_prompt
    create_remote(front, "llama-fim-template", ["FROM tiny-fim", f"TEMPLATE {STARCODER_FIM}",
                                                f"ENDPOINT {llama_servers['fim']} openai"])
    expected = post("/v1/completions", {"prompt": f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
                                        "temperature": 0, "max_tokens": 16})
    answer = client.generate("llama-fim-template", prompt=prefix, suffix=suffix,
                             options={"temperature": 0, "num_predict": 16})
    assert answer.response == expected["choices"][0]["text"]
    assert answer.prompt_eval_count == expected["usage"]["prompt_tokens"] >= n_prompt


def test_the_language_server_completes_with_a_remote_model(cluster):
    """`modeld lsp` against the front: fill-in-the-middle by a model the replicas serve."""
    from lsp_client import LanguageServer
    front = cluster["front"]
    with tempfile.TemporaryDirectory() as home:
        server = LanguageServer(front.binary, dict(front.env, XDG_CACHE_HOME=os.path.join(home, "cache")))
        try:
            server.initialize(initialization_options={"modeld": {"model": "team-fim", "debounceMs": 0}})
            uri = "file:///tmp/remote_add.py"
            server.open(uri, "def add(left, right):\n    \n", "python")
            result = server.inline_completion(uri, 1, 4)
            assert [item["insertText"] for item in result["items"]] == ["return left + right"]
        finally:
            server.close()


class FixtureOpenAiServer:
    """An OpenAI-compatible server on loopback for what real servers do not do on demand: it
    lists one model, records every request body, and answers each with `answer(body)`, a list
    of SSE chunks (or an int: that status, with an OpenAI error body)."""

    def __init__(self, answer):
        import http.server
        import threading
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_json(self, status, body):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self.send_json(200, {"object": "list", "data": [{"id": "fixture", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                chunks = answer(body)
                if isinstance(chunks, int):
                    return self.send_json(chunks, {"error": {"message": "response_format is not supported",
                                                             "type": "invalid_request_error"}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(b"data: " + chunk + b"\n\n")
                        self.wfile.flush()
                except OSError:
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def sse_chunk(content=None, finish_reason=None):
    delta = {} if content is None else {"content": content}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}).encode()


def sse_answer(text):
    return [sse_chunk(text[:5]), sse_chunk(text[5:]), sse_chunk(finish_reason="stop"), b"[DONE]"]


def endless_stories(body):
    """Stories never end (a chunk every 50 ms until the client leaves); anything else: Hello."""
    if "story" not in body["messages"][-1]["content"].lower():
        return sse_answer("Hello.")

    def forever():
        while True:
            yield sse_chunk("and then ")
            time.sleep(0.05)
    return forever()


def lax_structured_output(refuse, always_prose=False):
    """No structured output: `response_format` refused (400) or ignored, and prose unless the
    prompt asks for JSON in words."""
    def answer(body):
        if refuse and "response_format" in body:
            return 400
        asked = any("JSON schema" in message.get("content", "") for message in body["messages"])
        return sse_answer('{"colour": "teal"}' if asked and not always_prose else "Teal is a lovely colour.")
    return answer


def test_structured_output_is_checked_for_remotes_that_do_not_enforce_it(cluster):
    front = cluster["front"]
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    for refuse in (True, False):
        lax = FixtureOpenAiServer(lax_structured_output(refuse))
        try:
            name = f"lax-{'refusing' if refuse else 'ignoring'}"
            create_remote(front, name, ["FROM lax", f"ENDPOINT {lax.url} openai"])
            answer = ollama.Client(host=front.url).chat(name, format=schema,
                                                        messages=[{"role": "user", "content": "A colour?"}])
            assert json.loads(answer.message.content) == {"colour": "teal"}
            # Asked with the constraint, then again without it and with the schema in words.
            assert "response_format" in lax.requests[0] and "response_format" not in lax.requests[1]
            assert json.dumps(schema, separators=(",", ":")) in lax.requests[1]["messages"][0]["content"]
            # Without a schema nothing is gathered or asked twice.
            plain = ollama.Client(host=front.url).chat(name, messages=[{"role": "user", "content": "A colour?"}])
            assert plain.message.content == "Teal is a lovely colour." and len(lax.requests) == 3
        finally:
            lax.close()
    stubborn = FixtureOpenAiServer(lax_structured_output(False, always_prose=True))
    try:
        create_remote(front, "lax-stubborn", ["FROM lax", f"ENDPOINT {stubborn.url} openai"])
        status, body = front.request("POST", "/api/chat", {"model": "lax-stubborn", "format": schema, "stream": False,
                                                           "messages": [{"role": "user", "content": "A colour?"}]})
        assert status == 502 and "does not match the requested format" in body["error"], body
        assert len(stubborn.requests) == 2
    finally:
        stubborn.close()
