"""`modeld lsp` driven over stdio by a real LSP client, against the real daemon: the programmed
FIM model (`tiny-fim`, exact answers) and SmolLM2 (real weights)."""

import json
import os
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import FIM, MODEL, free_port
from lsp_client import LanguageServer, ResponseError

FIM_ANSWER = "return left + right"
INVALID_PARAMS = -32602
REQUEST_CANCELLED = -32800


def start_language_server(daemon, home):
    env = dict(daemon.env, XDG_CACHE_HOME=os.path.join(home, "cache"), MODELD_LOG="lsp=debug")
    return LanguageServer(daemon.binary, env)


@pytest.fixture
def fim_server(tiny_daemon):
    with tempfile.TemporaryDirectory() as home:
        server = start_language_server(tiny_daemon, home)
        server.initialize(initialization_options={"modeld": {"model": FIM, "debounceMs": 0}})
        try:
            yield server
        finally:
            server.close()


def items(result):
    return [item["insertText"] for item in result["items"]]


def insert(server, uri, version, line, character, text):
    position = {"line": line, "character": character}
    server.change(uri, version, [{"range": {"start": position, "end": position}, "text": text}])


def test_initialize_negotiates_the_position_encoding_and_advertises_inline_completion(tiny_daemon):
    with tempfile.TemporaryDirectory() as home:
        for offered, expected in ((None, "utf-16"), (["utf-8", "utf-16"], "utf-8"), (["utf-32", "utf-16"], "utf-16")):
            server = start_language_server(tiny_daemon, home)
            try:
                result = server.initialize(position_encodings=offered)
                capabilities = result["capabilities"]
                assert capabilities["positionEncoding"] == expected
                assert capabilities["inlineCompletionProvider"] is True
                assert capabilities["textDocumentSync"]["change"] == 2  # incremental
                assert "modeld.acceptCompletion" in capabilities["executeCommandProvider"]["commands"]
            finally:
                server.close()


def test_fim_completion_at_the_cursor_and_a_repeated_suffix_is_trimmed(fim_server):
    uri = "file:///work/add.py"
    fim_server.open(uri, "def add(left, right):\n    \n", "python")
    result = fim_server.inline_completion(uri, 1, 4)
    assert items(result) == [FIM_ANSWER]
    item = result["items"][0]
    assert item["range"] == {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}
    assert item["command"]["command"] == "modeld.acceptCompletion"

    # The user writes the end of the line; the model's answer would repeat it.
    insert(fim_server, uri, 2, 1, 4, " + right")
    assert items(fim_server.inline_completion(uri, 1, 4)) == ["return left"]
    # The custom request for clients without LSP 3.18 gives the same result.
    assert items(fim_server.inline_completion(uri, 1, 4, method="modeld/inlineCompletion")) == ["return left"]


def test_incremental_edits_and_full_syncs_are_both_followed(fim_server):
    uri = "file:///work/edit.py"
    fim_server.open(uri, "x = 1\n", "python")
    # Replace the whole text, then edit it incrementally across lines.
    fim_server.change(uri, 2, [{"text": "def add(left, right):\n    pass\n"}])
    fim_server.change(uri, 3, [{"range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 8}},
                                "text": ""}])
    assert items(fim_server.inline_completion(uri, 1, 4)) == [FIM_ANSWER]
    # Mid-word there is nothing to suggest.
    fim_server.change(uri, 4, [{"text": "def add(left, right):\n    value\n"}])
    assert items(fim_server.inline_completion(uri, 1, 6)) == []


def test_typing_through_a_suggestion_is_served_from_the_cache(fim_server):
    uri = "file:///work/through.py"
    fim_server.open(uri, "def add(left, right):\n    \n", "python")
    assert items(fim_server.inline_completion(uri, 1, 4)) == [FIM_ANSWER]
    before = fim_server.stats()
    version = 2
    for typed, character in zip("return", range(4, 10)):
        insert(fim_server, uri, version, 1, character, typed)
        version += 1
        result = fim_server.inline_completion(uri, 1, character + 1)
        consumed = character + 1 - 4
        assert items(result) == [FIM_ANSWER[consumed:]], typed
    after = fim_server.stats()
    assert after["generations"] == before["generations"], "typing through asked the model again"
    assert after["cacheHits"] == before["cacheHits"] + 6


def test_utf16_and_utf8_positions_on_a_line_with_non_ascii_text(tiny_daemon):
    line = "x = '😀é'; "  # the emoji is 2 UTF-16 units and 4 bytes, é 1 unit and 2 bytes
    text = f"def add(left, right):\n    {line}\n"
    utf16_end = 4 + len(line.encode("utf-16-le")) // 2
    utf8_end = 4 + len(line.encode())
    with tempfile.TemporaryDirectory() as home:
        for encodings, column, inside_character in ((None, utf16_end, 4 + 6), (["utf-8"], utf8_end, 4 + 7)):
            server = start_language_server(tiny_daemon, home)
            try:
                server.initialize(position_encodings=encodings,
                                  initialization_options={"model": FIM, "debounceMs": 0})
                uri = "file:///work/emoji.py"
                server.open(uri, text, "python")
                result = server.inline_completion(uri, 1, column)
                assert items(result) == [FIM_ANSWER]
                assert result["items"][0]["range"]["start"] == {"line": 1, "character": column}
                with pytest.raises(ResponseError) as error:
                    server.inline_completion(uri, 1, inside_character)
                assert error.value.code == INVALID_PARAMS
                assert "inside a character" in error.value.message
                # An incremental edit after the emoji, in the same encoding, lands where it should.
                insert(server, uri, 2, 1, column, "y;")
                result = server.inline_completion(uri, 1, column + 2)
                assert items(result) == [FIM_ANSWER]
                assert result["items"][0]["range"]["start"] == {"line": 1, "character": column + 2}
            finally:
                server.close()


def test_bad_requests_get_errors_and_the_server_keeps_serving(fim_server):
    uri = "file:///work/bad.py"
    fim_server.open(uri, "def add(left, right):\n    \n", "python")
    for document, line, character, text in (
        ("file:///work/never-opened.py", 0, 0, "unknown document"),
        (uri, 10, 0, "past the end"),
        (uri, 1, 99, "past the end"),
    ):
        with pytest.raises(ResponseError) as error:
            fim_server.inline_completion(document, line, character)
        assert error.value.code == INVALID_PARAMS
        assert text in error.value.message
    # Changes to unknown documents or with bad ranges are logged, not fatal.
    insert(fim_server, "file:///work/never-opened.py", 2, 0, 0, "x")
    insert(fim_server, uri, 2, 40, 0, "x")
    with pytest.raises(ResponseError):
        fim_server.request("workspace/executeCommand", {"command": "modeld.acceptCompletion", "arguments": [999999]})
    # Code actions carrying data that is not ours, or ours about an unknown document.
    foreign = {"title": "x", "data": {"uri": uri, "range": "everywhere", "task": "fix"}}
    unknown_task = {"title": "x", "data": {"uri": uri, "range": {"start": {"line": 0, "character": 0},
                                                                  "end": {"line": 0, "character": 0}}, "task": "rm"}}
    closed = {"title": "x", "data": {"uri": "file:///work/never-opened.py", "task": "fix",
                                      "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}}}
    for action in (foreign, unknown_task, closed):
        with pytest.raises(ResponseError) as error:
            fim_server.request("codeAction/resolve", action)
        assert error.value.code == INVALID_PARAMS
    for arguments in ([], ["not an object"], [{"uri": uri}]):
        with pytest.raises(ResponseError) as error:
            fim_server.request("workspace/executeCommand", {"command": "modeld.explain", "arguments": arguments})
        assert error.value.code == INVALID_PARAMS
    assert items(fim_server.inline_completion(uri, 1, 4)) == [FIM_ANSWER]


def test_a_missing_model_is_reported_once_and_completion_recovers(fim_server):
    uri = "file:///work/missing.py"
    fim_server.open(uri, "def add(left, right):\n    \n", "python")
    fim_server.notify("workspace/didChangeConfiguration", {"settings": {"modeld": {"model": "no-such-model"}}})
    assert fim_server.inline_completion(uri, 1, 4)["items"] == []
    shown = fim_server.wait_notification("window/showMessage", lambda params: "no-such-model" in params["message"])
    assert "not found" in shown["message"]
    assert fim_server.stats()["failed"] >= 1
    fim_server.notify("workspace/didChangeConfiguration", {"settings": {"modeld": {"model": FIM}}})
    assert items(fim_server.inline_completion(uri, 1, 4)) == [FIM_ANSWER]


def test_accepts_and_dismissals_are_counted_and_readable_from_the_cli(tiny_daemon):
    with tempfile.TemporaryDirectory() as home:
        server = start_language_server(tiny_daemon, home)
        server.initialize(initialization_options={"model": FIM, "debounceMs": 0})
        uri = "file:///work/stats.py"
        server.open(uri, "def add(left, right):\n    \n", "python")
        first = server.inline_completion(uri, 1, 4)["items"][0]
        server.request("workspace/executeCommand", first["command"])
        second = server.inline_completion(uri, 1, 4)["items"][0]
        server.request("workspace/executeCommand", {"command": "modeld.partialAcceptCompletion",
                                                    "arguments": [second["command"]["arguments"][0], 6]})
        third = server.inline_completion(uri, 1, 4)["items"][0]
        server.request("workspace/executeCommand", {"command": "modeld.dismissCompletion",
                                                    "arguments": third["command"]["arguments"]})
        stats = server.stats()
        assert (stats["accepted"], stats["partiallyAccepted"], stats["dismissed"]) == (1, 1, 1)
        assert stats["acceptedCharacters"] == len(FIM_ANSWER) + 6
        server.close()
        env = dict(tiny_daemon.env, XDG_CACHE_HOME=os.path.join(home, "cache"))
        printed = subprocess.run([tiny_daemon.binary, "lsp", "--stats"], env=env, capture_output=True, text=True,
                                 timeout=60, check=True).stdout
        assert "accepted            1" in printed
        assert "dismissed           1" in printed
        assert "acceptance rate     67%" in printed


class DyingDaemon(socketserver.ThreadingTCPServer):
    """Answers like the daemon until a generation starts, then drops the connection after the
    first streamed line, as a daemon that crashes mid-request does."""
    allow_reuse_address = True
    daemon_threads = True


class DyingHandler(socketserver.StreamRequestHandler):
    def handle(self):
        request_line = self.rfile.readline().decode()
        length = 0
        while True:
            header = self.rfile.readline().decode().strip()
            if not header:
                break
            name, _, value = header.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        self.rfile.read(length)
        path = request_line.split()[1]
        if path in ("/api/version", "/api/show"):
            body = json.dumps({"version": "0.0.0", "capabilities": ["completion", "insert"]}).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % len(body) + body)
            return
        line = json.dumps({"model": "m", "response": "return", "done": False}).encode() + b"\n"
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.wfile.write(b"%x\r\n" % len(line) + line + b"\r\n")
        self.wfile.flush()
        time.sleep(0.2)
        self.connection.shutdown(socket.SHUT_RDWR)


def test_a_daemon_dying_mid_request_gives_an_empty_result_and_a_log_line(tiny_daemon):
    port = free_port()
    dying = DyingDaemon(("127.0.0.1", port), DyingHandler)
    threading.Thread(target=dying.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as home:
        env = dict(tiny_daemon.env, OLLAMA_HOST=f"127.0.0.1:{port}", XDG_CACHE_HOME=os.path.join(home, "cache"),
                   MODELD_LSP_NO_AUTOSTART="1")
        server = LanguageServer(tiny_daemon.binary, env)
        try:
            server.initialize(initialization_options={"model": FIM, "debounceMs": 0})
            uri = "file:///work/dying.py"
            server.open(uri, "def add(left, right):\n    \n", "python")
            assert server.inline_completion(uri, 1, 4)["items"] == []
            logged = server.wait_notification("window/logMessage", lambda params: "inline completion" in params["message"])
            assert logged["type"] == 1  # error
            # Still serving: the next request gets the same treatment, not a dead pipe.
            assert server.inline_completion(uri, 1, 4)["items"] == []
            assert server.stats()["failed"] == 2
        finally:
            server.close()
            dying.shutdown()
            dying.server_close()


def spawned_daemon_pids(host):
    """Processes whose environment names `host` as OLLAMA_HOST (the daemon the language server
    started on its own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue
        if f"OLLAMA_HOST={host}".encode() in variables and b"serve" in arguments:
            pids.append(int(entry))
    return pids


def test_the_daemon_is_started_on_demand(tiny_daemon):
    host = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as home:
        cache = os.path.join(home, "cache")
        env = dict(tiny_daemon.env, OLLAMA_HOST=host, XDG_CACHE_HOME=cache)
        server = LanguageServer(tiny_daemon.binary, env)
        try:
            server.initialize(initialization_options={"model": FIM, "debounceMs": 0})
            uri = "file:///work/ondemand.py"
            server.open(uri, "def add(left, right):\n    \n", "python")
            assert items(server.inline_completion(uri, 1, 4, timeout=120)) == [FIM_ANSWER]
            assert spawned_daemon_pids(host), "no daemon was started"
            assert os.path.exists(os.path.join(cache, "modeld", "logs", "serve.log"))
        finally:
            server.close()
            for pid in spawned_daemon_pids(host):
                os.kill(pid, 15)
    # The daemon outlives the language server (editors restart it); it was stopped above.


@pytest.fixture
def smollm2_server(daemon):
    with tempfile.TemporaryDirectory() as home:
        server = start_language_server(daemon, home)
        server.initialize(initialization_options={"model": MODEL, "debounceMs": 0})
        try:
            yield server
        finally:
            server.close()


def test_real_weights_complete_a_line(smollm2_server):
    uri = "file:///work/real.py"
    smollm2_server.open(uri, "def add(left, right):\n    return \n", "python")
    suggestions = items(smollm2_server.inline_completion(uri, 1, 11))
    assert len(suggestions) == 1
    suggestion = suggestions[0]
    assert "\n" not in suggestion and "```" not in suggestion
    # The body a model writes for add(left, right) uses its parameters.
    assert "left" in suggestion and "right" in suggestion


# SmolLM2 continues this list for thousands of tokens at temperature 0.
LONG_HOLE = "PRIMES = [2, 3, 5, 7, \n"


def wait_until_idle(daemon, seconds=2.0):
    """CPU seconds the daemon used over a quiet window."""
    start = daemon.cpu_seconds()
    time.sleep(seconds)
    return daemon.cpu_seconds() - start


def test_cancellation_reaches_the_engine(daemon, smollm2_server):
    smollm2_server.notify("workspace/didChangeConfiguration",
                          {"settings": {"modeld": {"maxTokens": 4000}}})
    uri = "file:///work/cancel.py"
    smollm2_server.open(uri, LONG_HOLE, "python")
    # $/cancelRequest: the request ends cancelled and the daemon goes quiet.
    request_id = smollm2_server.send_request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": 0, "character": 22}, "context": {"triggerKind": 2}})
    time.sleep(3)
    busy = daemon.cpu_seconds()
    time.sleep(1)
    assert daemon.cpu_seconds() - busy > 0.5, "the generation was not running"
    smollm2_server.cancel(request_id)
    with pytest.raises(ResponseError) as error:
        smollm2_server.wait_response(request_id, timeout=30)
    assert error.value.code == REQUEST_CANCELLED
    time.sleep(0.5)
    assert wait_until_idle(daemon) < 0.3, "the daemon kept generating after $/cancelRequest"

    # A newer request for the same document cancels the older one.
    older = smollm2_server.send_request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": 0, "character": 22}, "context": {"triggerKind": 2}})
    time.sleep(3)
    smollm2_server.change(uri, 2, [{"text": "x = \n"}])
    newer = smollm2_server.inline_completion(uri, 0, 4, timeout=120)
    assert smollm2_server.wait_response(older, timeout=30) == {"items": []}
    assert newer is not None
    time.sleep(0.5)
    assert wait_until_idle(daemon) < 0.3, "the superseded generation kept running"
    assert smollm2_server.stats()["cancelled"] == 2


def test_a_completion_does_not_wait_behind_a_long_chat(daemon, smollm2_server):
    uri = "file:///work/priority.py"
    smollm2_server.open(uri, "def add(left, right):\n    return \n", "python")
    chat_done = threading.Event()

    def long_chat():
        daemon.post("/api/chat", {"model": MODEL, "stream": False, "options": {"num_predict": 600, "temperature": 0},
                                  "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]})
        chat_done.set()

    threading.Thread(target=long_chat, daemon=True).start()
    time.sleep(1.5)
    result = smollm2_server.inline_completion(uri, 1, 11, trigger_kind=1)
    assert not chat_done.is_set(), "the chat finished first; the test proves nothing"
    assert result is not None
    chat_done.wait(timeout=300)


ACTION_SOURCE = "def add(left, right):\n    return left + rigth\n\nprint(add(1, 2))\n"


def test_code_actions_return_workspace_edits_on_real_weights(smollm2_server):
    uri = "file:///work/actions.py"
    smollm2_server.open(uri, ACTION_SOURCE, "python")
    cursor = {"start": {"line": 1, "character": 10}, "end": {"line": 1, "character": 10}}
    diagnostic = {"range": {"start": {"line": 1, "character": 18}, "end": {"line": 1, "character": 23}},
                  "message": "undefined name 'rigth'", "severity": 1}
    actions = smollm2_server.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": cursor, "context": {"diagnostics": [diagnostic]}})
    titles = [action["title"] for action in actions]
    assert titles == ["modeld: Fix this code", "modeld: Explain this code", "modeld: Document this code",
                      "modeld: Write tests for this code"]
    assert actions[0]["kind"] == "quickfix" and actions[0]["diagnostics"] == [diagnostic]
    # Without a diagnostic or a selection there is nothing to fix.
    plain = smollm2_server.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": cursor, "context": {"diagnostics": []}})
    assert "modeld: Fix this code" not in [action["title"] for action in plain]

    document = next(action for action in actions if action["title"] == "modeld: Document this code")
    resolved = smollm2_server.request("codeAction/resolve", document, timeout=600)
    edits = resolved["edit"]["changes"][uri]
    assert len(edits) == 1
    # The edit replaces the enclosing function, whole lines, with the model's code.
    assert edits[0]["range"] == {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}
    assert edits[0]["newText"].strip() and edits[0]["newText"].endswith("\n")
    assert "```" not in edits[0]["newText"]


def test_chat_streams_partial_results_that_add_up_to_the_answer(smollm2_server):
    uri = "file:///work/chat.py"
    smollm2_server.open(uri, ACTION_SOURCE, "python")
    request_id = smollm2_server.send_request("modeld/chat", {
        "textDocument": {"uri": uri},
        "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}},
        "prompt": "What does this function return?", "partialResultToken": "chat-1", "maxTokens": 40})
    result = smollm2_server.wait_response(request_id, timeout=600)

    def pieces():
        with smollm2_server.lock:
            return [message["params"]["value"]["content"] for message in smollm2_server.notifications
                    if message["method"] == "$/progress" and message["params"]["token"] == "chat-1"]

    # Notifications and the response travel on separate queues of the server's writer.
    deadline = time.time() + 5
    while "".join(pieces()) != result["content"] and time.time() < deadline:
        time.sleep(0.05)
    pieces = pieces()
    assert len(pieces) > 1
    assert "".join(pieces) == result["content"]
    assert result["content"].strip()


def test_workspace_definitions_and_recent_edits_reach_the_prompt(tiny_daemon):
    with tempfile.TemporaryDirectory() as home:
        workspace = os.path.join(home, "project")
        os.makedirs(os.path.join(workspace, "src"))
        os.makedirs(os.path.join(workspace, "build"))
        with open(os.path.join(workspace, ".gitignore"), "w") as file:
            file.write("build/\n")
        with open(os.path.join(workspace, "src", "ledger.py"), "w") as file:
            file.write("def compute_total(items):\n    return sum(items)\n")
        with open(os.path.join(workspace, "build", "copy.py"), "w") as file:
            file.write("def stale_copy(items):\n    return items\n")
        server = start_language_server(tiny_daemon, home)
        try:
            server.initialize(root_uri=f"file://{workspace}",
                              initialization_options={"model": FIM, "debounceMs": 0})
            deadline = time.time() + 30
            while not any("workspace indexed" in line for line in server.stderr_lines):
                assert time.time() < deadline, "the workspace was not indexed"
                time.sleep(0.1)
            uri = f"file://{workspace}/src/main.py"
            server.open(uri, "items = [1, 2]\ntotal = compute_total(items)\ncopy = stale_copy(items)\n\n", "python")
            assert items(server.inline_completion(uri, 3, 0)) == [FIM_ANSWER]
            context = [line for line in server.stderr_lines if "context snippets" in line]
            assert context and "src/ledger.py:1" in context[-1], context
            assert "build/" not in context[-1], "an ignored file reached the prompt"

            # A file written after indexing is picked up by the watcher.
            with open(os.path.join(workspace, "src", "fresh.py"), "w") as file:
                file.write("def fresh_helper(value):\n    return value\n")
            other = f"file://{workspace}/src/other.py"
            server.open(other, "x = fresh_helper(1)\n\n", "python")
            deadline = time.time() + 30
            attempt = 1
            while True:
                # A new text each time: the same place again would be answered from the cache.
                attempt += 1
                server.change(other, attempt, [{"text": f"x = fresh_helper({attempt})\n\n"}])
                server.inline_completion(other, 1, 0)
                context = [line for line in server.stderr_lines if "context snippets" in line]
                if "src/fresh.py:1" in context[-1]:
                    break
                assert time.time() < deadline, "the watcher did not index the new file"
                time.sleep(0.5)
            # An edit in main.py shows in a request from other.py (at a new place, not cached).
            server.change(uri, 2, [{"range": {"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 0}},
                                    "text": "print(total)\n"}])
            server.change(other, attempt + 1, [{"text": "x = fresh_helper(0)\n\n"}])
            server.inline_completion(other, 1, 0)
            context = [line for line in server.stderr_lines if "context snippets" in line]
            assert "src/main.py" in context[-1], context[-1]
        finally:
            server.close()


def test_the_model_is_loaded_when_the_server_starts(tiny_daemon):
    def loaded():
        return [model["name"] for model in tiny_daemon.request("GET", "/api/ps")[1]["models"]]

    tiny_daemon.post("/api/generate", {"model": FIM, "keep_alive": 0})
    deadline = time.time() + 30
    while any(name.startswith(FIM) for name in loaded()):
        assert time.time() < deadline, "the model did not unload"
        time.sleep(0.1)
    with tempfile.TemporaryDirectory() as home:
        server = start_language_server(tiny_daemon, home)
        try:
            server.initialize(initialization_options={"model": FIM})
            deadline = time.time() + 60
            while not any(name.startswith(FIM) for name in loaded()):
                assert time.time() < deadline, "the language server did not load its model"
                time.sleep(0.1)
        finally:
            server.close()
