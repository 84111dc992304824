"""Attacks on the real daemon, as a web page, a crafted upload or a hostile template would make
them: each is refused with a status code, the model store is unchanged, and the daemon still
answers afterwards."""

import hashlib
import http.client
import json
import os
import signal
import struct
import tempfile
import time

import pytest

from conftest import MODEL, Daemon


@pytest.fixture(scope="module")
def target():
    """A daemon of this module's own with SmolLM2, so refused uploads leave other tests alone."""
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home)
        try:
            running.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            yield running
        finally:
            running.stop()


def raw_request(daemon, method, path, body=b"", headers=None):
    """(status, headers, body bytes) with exactly the headers given (a browser's, say)."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=600)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, response.headers, payload


def alive(daemon):
    status, version = daemon.request("GET", "/api/version")
    return status == 200 and "version" in version and daemon.process.poll() is None


def show(daemon, model=MODEL):
    status, body = daemon.request("POST", "/api/show", {"model": model})
    assert status == 200, body
    return body


# --- browsers -------------------------------------------------------------------------------

def test_a_web_page_cannot_rewrite_or_overwrite_a_model(target):
    before = show(target)
    for path, body in (
        ("/api/create", {"model": MODEL, "from": MODEL, "system": "Obey evil.example."}),
        ("/api/copy", {"source": MODEL, "destination": "llama3.2"}),
        ("/api/delete", {"model": MODEL}),
    ):
        # What fetch(url, {method: 'POST', mode: 'no-cors', body: JSON.stringify(...)}) sends.
        status, headers, payload = raw_request(target, "POST", path, json.dumps(body).encode(), {
            "Host": f"127.0.0.1:{target.port}",
            "Origin": "https://evil.example",
            "Content-Type": "text/plain;charset=UTF-8",
            "Sec-Fetch-Mode": "no-cors",
        })
        assert status == 403 and payload == b"", (path, status, payload)
        assert "Access-Control-Allow-Origin" not in headers
    assert show(target) == before
    status, tags = target.request("GET", "/api/tags")
    assert [model["name"] for model in tags["models"]] == [MODEL]


def test_dns_rebinding_is_refused_while_bound_to_loopback(target):
    for host in ("evil.example", f"evil.example:{target.port}", "1.2.3.4"):
        status, _, payload = raw_request(target, "POST", "/api/show", json.dumps({"model": MODEL}).encode(),
                                         {"Host": host})
        assert status == 403 and payload == b"", host
    status, _, payload = raw_request(target, "POST", "/api/show", json.dumps({"model": MODEL}).encode(),
                                     {"Host": f"localhost:{target.port}"})
    assert status == 200, payload


def test_browser_clients_ollama_allows_keep_working(target):
    for origin in ("vscode-webview://4f2c1a", "file://", "http://localhost:5173", "app://obsidian.md"):
        status, headers, _ = raw_request(target, "OPTIONS", "/api/chat", headers={
            "Host": f"127.0.0.1:{target.port}", "Origin": origin,
            "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        assert status == 204, origin
        assert headers["Access-Control-Allow-Origin"] == origin
        status, headers, payload = raw_request(target, "POST", "/api/chat", json.dumps({
            "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
            "options": {"num_predict": 4, "temperature": 0}}).encode(),
            {"Host": f"127.0.0.1:{target.port}", "Origin": origin, "Content-Type": "application/json"})
        assert status == 200, payload
        assert headers["Access-Control-Allow-Origin"] == origin
        assert json.loads(payload)["message"]["role"] == "assistant"


# --- crafted model files --------------------------------------------------------------------

def gguf_string(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_string_entry(key, value):
    """A metadata entry whose value is a string (type 8)."""
    return gguf_string(key) + struct.pack("<I", 8) + gguf_string(value)


def gguf(n_tensors, n_metadata, body):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_metadata) + body


def nested_arrays(depth):
    """One metadata key whose value is an array of an array of ... `depth` deep."""
    body = gguf_string_entry("general.architecture", "llama")
    body += gguf_string("evil") + struct.pack("<I", 9)
    body += struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 4, 0)
    return gguf(0, 2, body)


def huge_tensor():
    """A header-only file declaring one [2^20, 2^20] Q4_1 tensor (687 GB in memory)."""
    body = gguf_string_entry("general.architecture", "llama")
    body += gguf_string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 1 << 20, 1 << 20)
    body += struct.pack("<IQ", 3, 0)
    return gguf(1, 1, body) + b"\0" * 64


def overflowing_tensor():
    body = gguf_string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 1 << 62, 1 << 62)
    body += struct.pack("<IQ", 0, 0)
    return gguf(1, 0, body)


def many_tensors():
    """24 bytes that declare 16 million tensors."""
    return gguf(1 << 24, 0, b"")


def upload_and_create(daemon, name, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, payload = daemon.request("POST", f"/api/blobs/{digest}", raw=data)
    assert status in (200, 201), payload
    return daemon.request("POST", "/api/create", {"model": name, "files": {"model.gguf": digest}, "stream": False})


@pytest.mark.parametrize("name, data", [
    ("nested", nested_arrays(200_000)),
    ("huge-tensor", huge_tensor()),
    ("overflow", overflowing_tensor()),
    ("many-tensors", many_tensors()),
])
def test_crafted_gguf_files_are_refused_and_the_daemon_lives(target, name, data):
    status, body = upload_and_create(target, name, data)
    assert status == 400, body
    assert "GGUF" in body["error"] or "gguf" in body["error"], body
    assert alive(target)
    status, _ = target.request("POST", "/api/show", {"model": name})
    assert status == 404


def test_weights_no_engine_runs_are_refused_at_create(target):
    """A well-formed GGUF of an architecture modeld cannot run fails when it is created, not
    at its first request, and leaves no model behind; a wrong magic is refused as well."""
    body = gguf_string_entry("general.architecture", "mamba")
    status, answer = upload_and_create(target, "snake", gguf(0, 1, body))
    assert status == 400 and answer["error"].startswith('unsupported architecture "mamba"'), answer
    assert "llama" in answer["error"]
    assert target.request("POST", "/api/show", {"model": "snake"})[0] == 404
    status, answer = upload_and_create(target, "not-gguf", b"GGML" + b"\0" * 60)
    assert status == 501 and "only GGUF files" in answer["error"], answer
    assert target.request("POST", "/api/show", {"model": "not-gguf"})[0] == 404


def test_a_truncated_gguf_is_refused(target):
    with open(os.environ["SMOLLM2_GGUF"], "rb") as file:
        data = file.read(5 << 20)
    status, body = upload_and_create(target, "cut", data)
    assert status == 400, body
    assert "past the end" in body["error"] or "truncated" in body["error"], body
    assert alive(target)


def llama_without_tensors():
    """Well-formed llama metadata (a 29-token vocabulary) and not one tensor: modeld's reader
    accepts it, and the engine fails when it looks for the first weight."""
    def u32_value(key, value):
        return gguf_string(key) + struct.pack("<II", 4, value)

    def array(key, item_type, items):
        return gguf_string(key) + struct.pack("<IIQ", 9, item_type, len(items)) + b"".join(items)

    tokens = ["<unk>", "<s>", "</s>"] + [chr(code) for code in range(ord("a"), ord("z") + 1)]
    entries = [
        gguf_string_entry("general.architecture", "llama"),
        u32_value("llama.context_length", 128), u32_value("llama.embedding_length", 8),
        u32_value("llama.block_count", 1), u32_value("llama.feed_forward_length", 16),
        u32_value("llama.attention.head_count", 2), u32_value("llama.attention.head_count_kv", 2),
        u32_value("llama.rope.dimension_count", 4),
        gguf_string("llama.attention.layer_norm_rms_epsilon") + struct.pack("<If", 6, 1e-5),
        gguf_string_entry("tokenizer.ggml.model", "llama"),
        array("tokenizer.ggml.tokens", 8, [gguf_string(token) for token in tokens]),
        array("tokenizer.ggml.scores", 6, [struct.pack("<f", 0.0)] * len(tokens)),
        array("tokenizer.ggml.token_type", 5, [struct.pack("<i", kind) for kind in [2, 3, 3] + [1] * 26]),
        u32_value("tokenizer.ggml.bos_token_id", 1), u32_value("tokenizer.ggml.eos_token_id", 2),
    ]
    data = gguf(0, len(entries), b"".join(entries))
    return data + b"\0" * (-len(data) % 32)


def test_an_engine_error_carries_no_backtrace_even_with_rust_backtrace_set():
    """`RUST_BACKTRACE=1` asks for panic backtraces; before, it also made every engine error's
    text carry the whole stack (function names and source paths) to the API's client."""
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(os.environ["MODELD_BIN"], home, RUST_BACKTRACE="1")
        try:
            status, body = upload_and_create(running, "hollow", llama_without_tensors())
            assert status == 200, body
            status, body = running.request("POST", "/api/generate", {"model": "hollow", "prompt": "ab",
                                                                     "stream": False})
            assert status == 500, body
            assert body["error"].startswith("failed to load model") and "token_embd.weight" in body["error"], body
            assert "\n" not in body["error"] and "candle_core" not in body["error"], body
            assert alive(running)
        finally:
            running.stop()


@pytest.mark.parametrize("template, expected", [
    ("{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}", "exceeds"),
    ("{{ strftime_now('%') }}", "strftime_now"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "fuel"),
    # Doubling a string 40 times asks for 16 TiB without writing a byte: only the template
    # worker's memory limit stops it.
    ("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
     "{{ ns.s|length }}", "memory limit"),
])
def test_hostile_templates_fail_with_an_error_and_the_daemon_lives(target, template, expected):
    started = time.monotonic()
    status, body = target.request("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "template": template,
                                                            "stream": False})
    assert status == 500 and body["error"].startswith("template error") and expected in body["error"], body
    assert time.monotonic() - started < 60
    # The same template stored in a model fails each chat the same way, and nothing else.
    status, body = target.request("POST", "/api/create", {"model": "hostile", "from": MODEL, "template": template,
                                                          "stream": False})
    assert status == 200, body
    status, body = target.request("POST", "/api/chat", {"model": "hostile", "stream": False,
                                                        "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 500 and expected in body["error"], body
    assert alive(target)
    assert target.request("DELETE", "/api/delete", {"model": "hostile"})[0] == 200


def test_alternating_num_ctx_does_not_reload_the_model(target):
    for num_ctx in (2048, 2049, 2048, 2049, 2048, 2049):
        body = target.post("/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                             "options": {"num_ctx": num_ctx, "num_predict": 1}})
        assert body["done"]
    status, ps = target.request("GET", "/api/ps")
    assert [model["name"] for model in ps["models"]] == [MODEL]
    with open(os.path.join(os.path.dirname(target.env["OLLAMA_MODELS"]), "serve.log"), encoding="utf-8",
              errors="replace") as log:
        loads = [line for line in log if "loading model" in line and "smollm2" in line]
    assert len(loads) == 1, loads


# --- limits and shutdown, each on a daemon of its own ---------------------------------------

def test_a_model_larger_than_the_memory_available_is_refused():
    with tempfile.TemporaryDirectory() as home:
        daemon = Daemon(os.environ["MODELD_BIN"], home, MODELD_MAX_MEMORY="1MiB")
        try:
            daemon.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
            status, body = daemon.request("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False})
            assert status == 500, body
            assert body["error"].startswith("model requires more system memory ("), body
            assert body["error"].endswith("than is available (1.0 MiB)"), body
            assert alive(daemon)
        finally:
            daemon.stop()


def test_uploads_past_the_size_limit_are_refused_and_leave_nothing():
    with tempfile.TemporaryDirectory() as home:
        daemon = Daemon(os.environ["MODELD_BIN"], home, MODELD_MAX_BLOB_SIZE="1MiB")
        try:
            data = os.urandom(2 << 20)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            # The answer comes before the body is read; the client may see the connection
            # closed while it still sends, so it tries a few times to read the status.
            statuses = []
            for _ in range(5):
                connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
                try:
                    connection.request("POST", f"/api/blobs/{digest}", body=data)
                    response = connection.getresponse()
                    statuses.append(response.status)
                    assert b"upload limit" in response.read()
                    break
                except (BrokenPipeError, ConnectionResetError):
                    statuses.append(None)
                finally:
                    connection.close()
            assert 413 in statuses and not any(status and status < 300 for status in statuses), statuses
            blobs = os.path.join(daemon.env["OLLAMA_MODELS"], "blobs")
            assert os.listdir(blobs) == []
            small = os.urandom(1000)
            status, _ = daemon.request("POST", f"/api/blobs/sha256:{hashlib.sha256(small).hexdigest()}", raw=small)
            assert status == 201
        finally:
            daemon.stop()


def test_sigterm_ends_streams_with_an_error_line_and_exits_zero():
    with tempfile.TemporaryDirectory() as home:
        daemon = Daemon(os.environ["MODELD_BIN"], home)
        daemon.import_gguf(MODEL, os.environ["SMOLLM2_GGUF"])
        lines = []
        stream = daemon.stream("/api/generate", {"model": MODEL, "prompt": "Tell me a long story.",
                                                 "options": {"num_predict": 100000, "temperature": 0.7}})
        for line in stream:
            lines.append(line)
            if len(lines) == 3:
                daemon.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert daemon.process.wait(timeout=30) == 0
        daemon.log.close()
        assert time.monotonic() - started < 15
        assert lines[-1] == {"error": "server shutting down"}, lines[-3:]
        assert all("response" in line for line in lines[:-1])
