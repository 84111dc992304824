"""A small Language Server Protocol client over stdio, for driving `modeld lsp` in tests the way
an editor does: framed JSON-RPC requests, notifications and cancellation."""

import json
import os
import queue
import subprocess
import threading
import time


class ResponseError(Exception):
    def __init__(self, error):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")


class LanguageServer:
    def __init__(self, binary, env, args=("lsp",)):
        self.process = subprocess.Popen([binary, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.next_id = 1
        self.responses = {}
        self.notifications = []
        self.lock = threading.Condition()
        self.stderr_lines = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        stream = self.process.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    with self.lock:
                        self.lock.notify_all()
                    return
                line = line.decode().strip()
                if not line:
                    break
                name, value = line.split(":", 1)
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            message = json.loads(body)
            with self.lock:
                if "id" in message and "method" not in message:
                    self.responses[message["id"]] = message
                elif "method" in message:
                    self.notifications.append(message)
                    if "id" in message:
                        # A request from the server (e.g. workDoneProgress/create): accept it.
                        self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
                self.lock.notify_all()

    def _read_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def _write(self, message):
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def send_request(self, method, params):
        """Sends a request and returns its id without waiting."""
        with self.lock:
            request_id = self.next_id
            self.next_id += 1
            self._write({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return request_id

    def wait_response(self, request_id, timeout=300):
        deadline = time.time() + timeout
        with self.lock:
            while request_id not in self.responses:
                if self.process.poll() is not None:
                    raise RuntimeError("the language server exited:\n" + "".join(self.stderr_lines[-30:]))
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise TimeoutError(f"no response to request {request_id}")
                self.lock.wait(min(remaining, 0.5))
            response = self.responses.pop(request_id)
        if "error" in response:
            raise ResponseError(response["error"])
        return response.get("result")

    def request(self, method, params, timeout=300):
        return self.wait_response(self.send_request(method, params), timeout)

    def notify(self, method, params):
        with self.lock:
            self._write({"jsonrpc": "2.0", "method": method, "params": params})

    def cancel(self, request_id):
        self.notify("$/cancelRequest", {"id": request_id})

    def wait_notification(self, method, predicate=lambda params: True, timeout=60):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                for message in self.notifications:
                    if message["method"] == method and predicate(message.get("params")):
                        return message.get("params")
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise TimeoutError(f"no {method} notification")
                self.lock.wait(min(remaining, 0.5))

    def initialize(self, root_uri=None, position_encodings=None, initialization_options=None):
        general = {"positionEncodings": position_encodings} if position_encodings else {}
        result = self.request("initialize", {
            "processId": os.getpid(),
            "rootUri": root_uri,
            "capabilities": {"general": general, "textDocument": {"inlineCompletion": {}}},
            "initializationOptions": initialization_options,
        })
        self.notify("initialized", {})
        return result

    def open(self, uri, text, language_id, version=1):
        self.notify("textDocument/didOpen", {
            "textDocument": {"uri": uri, "languageId": language_id, "version": version, "text": text}})

    def change(self, uri, version, changes):
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": changes})

    def inline_completion(self, uri, line, character, method="textDocument/inlineCompletion", trigger_kind=2,
                          timeout=300):
        return self.request(method, {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": trigger_kind}}, timeout=timeout)

    def stats(self):
        return self.request("workspace/executeCommand", {"command": "modeld.stats", "arguments": []})

    def close(self):
        try:
            if self.process.poll() is None:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
                self.process.wait(timeout=10)
        except (OSError, TimeoutError, RuntimeError, ResponseError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
