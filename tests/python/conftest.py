"""Starts the real modeld daemon on a free port with a fresh models directory, and imports
SmolLM2-135M-Instruct into it with `modeld create`, once per test session."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

MODEL = "smollm2:135m"


def wait_for(predicate, timeout=30, what="condition"):
    """Polls `predicate` until it returns something true, which it returns."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    def __init__(self, binary, home, **extra_env):
        self.binary = binary
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.env = dict(os.environ, OLLAMA_HOST=self.host, OLLAMA_MODELS=os.path.join(home, "models"), HOME=home,
                        **extra_env)
        self.log = open(os.path.join(home, "serve.log"), "wb")
        self.process = subprocess.Popen([binary, "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("modeld serve did not start")

    def cli(self, *args, input=None, check=True):
        stdin = None if input is not None else subprocess.DEVNULL
        return subprocess.run(
            [self.binary, *args], env=self.env, input=input, stdin=stdin, capture_output=True, text=True,
            timeout=600, check=check,
        )

    def request(self, method, path, body=None, raw=None):
        """Returns (status, parsed JSON body or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode()

    def post(self, path, body):
        status, payload = self.request("POST", path, body)
        assert status == 200, payload
        return payload

    def stream(self, path, body):
        """Yields each NDJSON object of a streamed response."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=600) as response:
            assert response.headers["Content-Type"] == "application/x-ndjson"
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def import_gguf(self, name, gguf):
        """`modeld create NAME` from a Modelfile that says `FROM <gguf>`."""
        modelfile = os.path.join(os.path.dirname(self.env["OLLAMA_MODELS"]), f"Modelfile.{name}")
        with open(modelfile, "w") as file:
            file.write(f"FROM {gguf}\n")
        created = self.cli("create", name, "-f", modelfile)
        assert "success" in created.stderr, created.stderr

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        stop_process(self.process)
        self.log.close()


def stop_process(process, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def daemon():
    binary = os.environ.get("MODELD_BIN")
    gguf = os.environ.get("SMOLLM2_GGUF")
    assert binary and os.path.exists(binary), "set MODELD_BIN to the built modeld binary (scripts/test.sh does)"
    assert gguf and os.path.exists(gguf), "set SMOLLM2_GGUF to the SmolLM2 weights (scripts/test.sh does)"
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(binary, home)
        try:
            running.import_gguf(MODEL, gguf)
            yield running
        finally:
            running.stop()


AGENT = "tiny-agent"
FIM = "tiny-fim"


@pytest.fixture(scope="session")
def tiny_daemon():
    """A second daemon with the programmed test models (made by `make-tiny-model`, built next
    to modeld): `tiny-agent` thinks and calls tools with Qwen 3's template, `tiny-fim` fills in
    the middle with StarCoder's FIM tokens. Apart from `daemon`, so listings there stay exact."""
    binary = os.environ.get("MODELD_BIN")
    maker = os.path.join(os.path.dirname(binary or ""), "make-tiny-model")
    assert os.path.exists(maker), "build the tiny-models crate (scripts/test.sh does)"
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(binary, home)
        try:
            for name, recipe in ((AGENT, "agent"), (FIM, "fim")):
                gguf = os.path.join(home, f"{recipe}.gguf")
                subprocess.run([maker, recipe, gguf], check=True)
                running.import_gguf(name, gguf)
            yield running
        finally:
            running.stop()
