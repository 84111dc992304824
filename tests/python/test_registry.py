"""Pull and push against a real registry (Debian's `docker-registry`, the reference OCI
distribution registry) on loopback: a round trip with byte-identical blobs, the official ollama
client's progress, an interrupted pull that resumes with HTTP Range, a corrupted blob, a
registry behind a Bearer token service, SIGKILL of modeld mid-transfer, a disk that fills up
mid-pull, and two pulls of one blob sharing one download."""

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import ollama
import pytest

from conftest import Daemon, wait_for
from registry_server import Registry, SlowProxy, TokenService
from test_store_kill import check_store, sha256_of as sha256_file

BASE = "smollm2:135m"


@pytest.fixture(scope="module")
def home():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


@pytest.fixture(scope="module")
def registry(home):
    root = os.path.join(home, "registry")
    os.makedirs(root, exist_ok=True)
    running = Registry(root)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def local(home):
    binary, gguf = os.environ["MODELD_BIN"], os.environ["SMOLLM2_GGUF"]
    daemon_home = os.path.join(home, "daemon")
    os.makedirs(daemon_home)
    # Parts of 16 MiB: the 98 MB weights come in 7 parts, 8 at a time (the daemon in the SIGKILL
    # test keeps the default, one part for a blob this size).
    running = Daemon(binary, daemon_home, MODELD_PULL_PART_SIZE="16MiB")
    running.import_gguf(BASE, gguf)
    yield running
    running.stop()


def forget_everything(daemon):
    """Removes every model, so the blobs a pull needs are really fetched."""
    for model in daemon.request("GET", "/api/tags")[1]["models"]:
        daemon.cli("rm", model["name"])
    blobs = os.path.join(models_dir(daemon), "blobs")
    assert [name for name in os.listdir(blobs) if not name.startswith(".")] == []


def restore_base(daemon):
    if daemon.request("POST", "/api/show", {"model": BASE})[0] != 200:
        daemon.import_gguf(BASE, os.environ["SMOLLM2_GGUF"])


def models_dir(daemon):
    return daemon.env["OLLAMA_MODELS"]


def manifest_of(daemon, name):
    status, shown = daemon.request("POST", "/api/show", {"model": name})
    assert status == 200, shown
    host_namespace_model, tag = name.rsplit(":", 1) if ":" in name.rsplit("/", 1)[-1] else (name, "latest")
    path = os.path.join(models_dir(daemon), "manifests", *host_namespace_model.split("/"), tag)
    with open(path, "rb") as file:
        raw = file.read()
    return raw, json.loads(raw)


def partial_files(daemon):
    blobs = os.path.join(models_dir(daemon), "blobs")
    return sorted(name for name in os.listdir(blobs) if name.startswith(".modeld-"))


def model_layer(manifest):
    return next(layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))


def publish(daemon, name):
    """Pushes SmolLM2 to the registry as `name`; the manifest's weights layer."""
    daemon.cli("cp", BASE, name)
    push(daemon, name)
    _, manifest = manifest_of(daemon, name)
    return model_layer(manifest)


def push(daemon, name):
    lines = list(daemon.stream("/api/push", {"model": name, "insecure": True}))
    assert lines[-1] == {"status": "success"}, lines
    return lines


def pull_lines(daemon, name, **extra):
    return list(daemon.stream("/api/pull", {"model": name, "insecure": True, **extra}))


def test_push_remove_pull_round_trip_is_byte_identical(local, registry):
    name = f"{registry.host}/team/smollm2:v1"
    local.cli("cp", BASE, name)
    raw_before, manifest = manifest_of(local, name)
    blobs = [manifest["config"], *manifest["layers"]]
    hashes_before = {layer["digest"]: sha256_file(os.path.join(models_dir(local), "blobs",
                                                               layer["digest"].replace(":", "-")))
                     for layer in blobs}

    pushed = local.cli("push", "--insecure", name)
    assert "retrieving manifest" in pushed.stderr and "pushing manifest" in pushed.stderr, pushed.stderr
    for layer in blobs:
        assert f"pushing {layer['digest'][7:19]}" in pushed.stderr, pushed.stderr
    assert pushed.stderr.rstrip().splitlines()[-1].strip() == name, pushed.stderr
    # The registry holds the blobs as they are stored here.
    for layer in blobs:
        assert sha256_file(registry.blob_data_path(layer["digest"])) == layer["digest"][7:]

    forget_everything(local)
    try:
        lines = pull_lines(local, name)
    finally:
        restore_base(local)
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"], statuses
    for layer in blobs:
        reports = [line for line in lines if line.get("digest") == layer["digest"]]
        assert reports and all(line["status"] == f"pulling {layer['digest'][7:19]}" for line in reports)
        assert all(line["total"] == layer["size"] for line in reports)
        assert reports[-1]["completed"] == layer["size"]
    raw_after, _ = manifest_of(local, name)
    assert raw_after == raw_before
    for digest, expected in hashes_before.items():
        assert sha256_file(os.path.join(models_dir(local), "blobs", digest.replace(":", "-"))) == expected

    # The pulled model answers.
    answer = local.post("/api/generate", {"model": name, "prompt": "Hello", "stream": False,
                                          "options": {"num_predict": 3, "temperature": 0}})
    assert answer["done"] and answer["eval_count"] > 0

    # Pulling again fetches nothing: every blob is reported complete at once.
    again = pull_lines(local, name)
    assert again[-1] == {"status": "success"}
    assert all(line.get("completed") == line["total"] for line in again if "digest" in line)


def test_official_ollama_client_pulls_and_pushes_with_progress(local, registry):
    client = ollama.Client(host=local.url)
    name = f"{registry.host}/clients/smollm2:latest"
    local.cli("cp", BASE, name)
    statuses = [progress.status for progress in client.push(name, insecure=True, stream=True)]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"], statuses
    client.delete(name)
    progress = list(client.pull(name, insecure=True, stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    layers = [item for item in progress if item.digest]
    assert layers and all(item.total and item.status.startswith("pulling ") for item in layers)
    assert client.pull(name, insecure=True).status == "success"
    assert any(model.model == name for model in client.list().models)

    with pytest.raises(ollama.ResponseError) as missing:
        client.pull(f"{registry.host}/clients/absent", insecure=True)
    assert "file does not exist" in str(missing.value)
    with pytest.raises(ollama.ResponseError) as unknown:
        client.push(f"{registry.host}/clients/never-created", insecure=True)
    assert "not found" in str(unknown.value)


def test_bad_requests_get_ollamas_errors(local, registry):
    assert local.request("POST", "/api/pull", {"model": "bad name!"}) == (400, {"error": "invalid model name"})
    assert local.request("POST", "/api/push", {}) == (400, {"error": "model is required"})
    assert local.request("POST", "/api/push", {"model": "a/b/c/d/e"}) == (400, {"error": "invalid model name"})
    status, body = local.request("POST", "/api/pull", {"model": f"http://{registry.host}/team/smollm2",
                                                       "stream": False})
    assert (status, body) == (500, {"error": "insecure protocol http"})
    # An http registry asked over https fails with the TLS error, not a hang or a success.
    status, body = local.request("POST", "/api/pull", {"model": f"{registry.host}/team/smollm2:v1",
                                                       "stream": False})
    assert status == 500 and "https://" in body["error"], body


def test_interrupted_pull_resumes_with_range(local, registry):
    proxy = SlowProxy(registry.port, bytes_per_second=2_000_000)
    name = f"{proxy.host}/resume/smollm2:latest"
    layer = publish(local, f"{registry.host}/resume/smollm2:latest")
    forget_everything(local)
    try:
        pull_and_resume(local, registry, proxy, name, layer)
    finally:
        proxy.close()
        restore_base(local)


def pull_and_resume(local, registry, proxy, name, layer):
    seen = []
    failure = []

    def pull():
        for line in local.stream("/api/pull", {"model": name, "insecure": True}):
            seen.append(line)
            if "error" in line:
                failure.append(line["error"])

    puller = threading.Thread(target=pull)
    puller.start()
    wait_for(lambda: any(line.get("digest") == layer["digest"] and line.get("completed", 0) > layer["size"] // 4
                         for line in seen), timeout=60, what="a quarter of the weights")
    registry.kill()
    puller.join(timeout=60)
    assert failure and seen[-1].get("status") != "success", seen[-3:]
    assert local.request("POST", "/api/show", {"model": name})[0] == 404
    assert partial_files(local), "the partial download is kept for the next try"

    registry.start()
    proxy.bytes_per_second = 400_000_000
    proxy.requests.clear()
    lines = pull_lines(local, name)
    assert lines[-1] == {"status": "success"}, lines[-3:]
    first = next(line for line in lines if line.get("digest") == layer["digest"])
    assert first.get("completed", 0) > layer["size"] // 4, first
    # Only what the first try did not write is asked for, part by part.
    ranges = [range_header for line, range_header in proxy.requests if layer["digest"] in line and range_header]
    asked = 0
    for range_header in ranges:
        first, last = (int(bound) for bound in range_header[len("bytes="):].split("-"))
        asked += last - first + 1
    assert 0 < asked < layer["size"] * 3 // 4, (asked, ranges)
    assert len(ranges) > 1, ranges  # several parts, each resumed where it stopped
    blob = os.path.join(models_dir(local), "blobs", layer["digest"].replace(":", "-"))
    assert sha256_file(blob) == layer["digest"][7:]
    assert partial_files(local) == []


def test_corrupted_blob_is_refused_and_nothing_is_kept(local, registry):
    name = f"{registry.host}/corrupt/smollm2:latest"
    layer = publish(local, name)
    forget_everything(local)
    try:
        data = registry.blob_data_path(layer["digest"])
        with open(data, "r+b") as file:
            file.seek(layer["size"] // 2)
            byte = file.read(1)
            file.seek(layer["size"] // 2)
            file.write(bytes([byte[0] ^ 0xFF]))
        lines = pull_lines(local, name)
        assert "error" in lines[-1], lines[-3:]
        assert lines[-1]["error"].startswith(
            f"digest mismatch, file must be downloaded again: want {layer['digest']}, got sha256:"), lines[-1]
        assert local.request("POST", "/api/show", {"model": name})[0] == 404
        assert not os.path.exists(os.path.join(models_dir(local), "blobs", layer["digest"].replace(":", "-")))
        assert partial_files(local) == []
        with open(data, "r+b") as file:
            file.seek(layer["size"] // 2)
            file.write(byte)
    finally:
        restore_base(local)


def test_registry_that_demands_a_token(local, home):
    root = os.path.join(home, "token-registry")
    os.makedirs(root)
    tokens = TokenService(root)
    secured = Registry(root, token=tokens)
    try:
        import urllib.error
        import urllib.request
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"http://{secured.host}/v2/team/smollm2/tags/list")
        assert anonymous.value.code == 401

        name = f"{secured.host}/team/smollm2:latest"
        local.cli("cp", BASE, name)
        push(local, name)
        # The registry's challenges name the access each request needs (its order of actions
        # varies); modeld asks for just that.
        asked = [(scope.rsplit(":", 1)[0], set(scope.rsplit(":", 1)[1].split(",")))
                 for scopes in tokens.requests for scope in scopes]
        assert ("repository:team/smollm2", {"pull", "push"}) in asked, tokens.requests
        tokens.requests.clear()
        local.cli("rm", name)
        lines = pull_lines(local, name)
        assert lines[-1] == {"status": "success"}, lines[-3:]
        assert ["repository:team/smollm2:pull"] in tokens.requests

        refused = f"{secured.host}/private/smollm2:latest"
        local.cli("cp", BASE, refused)
        status, body = local.request("POST", "/api/push", {"model": refused, "insecure": True, "stream": False})
        assert (status, body) == (401, {"error": "unauthorized: access denied"})
        local.cli("rm", refused)
    finally:
        secured.stop()
        tokens.stop()


def test_sigkill_mid_pull_and_mid_push_leaves_a_consistent_store(local, registry, home):
    binary = os.environ["MODELD_BIN"]
    proxy = SlowProxy(registry.port, bytes_per_second=8_000_000)
    direct = f"{registry.host}/killed/smollm2:latest"
    layer = publish(local, direct)

    victim_home = os.path.join(home, "victim")
    os.makedirs(victim_home)
    victim = Daemon(binary, victim_home)
    try:
        name = f"{proxy.host}/killed/smollm2:latest"
        seen = []

        def follow(path):
            try:
                for line in victim.stream(path, {"model": name, "insecure": True}):
                    seen.append(line)
            except Exception:
                pass

        puller = threading.Thread(target=follow, args=("/api/pull",))
        puller.start()
        wait_for(lambda: any(line.get("completed", 0) > layer["size"] // 4 for line in seen), timeout=60,
                 what="a quarter of the weights")
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        puller.join(timeout=30)
        victim.log.close()

        victim = Daemon(binary, victim_home)
        check_store(models_dir(victim), set())
        assert victim.request("POST", "/api/show", {"model": name})[0] == 404
        proxy.bytes_per_second = 400_000_000
        lines = pull_lines(victim, name)
        assert lines[-1] == {"status": "success"}, lines[-3:]
        assert check_store(models_dir(victim), set()) == 1
        assert partial_files(victim) == []

        # Killed mid-push: the registry has no manifest for the tag, the local store is intact,
        # and the next push completes.
        pushed_name = f"{proxy.host}/killed/pushed:latest"
        victim.cli("cp", name, pushed_name)
        # A new blob (a system prompt layer) makes the push upload something slowly.
        victim.post("/api/create", {"model": pushed_name, "from": name, "system": "x" * 20_000_000,
                                    "stream": False})
        proxy.bytes_per_second = 200_000
        seen.clear()
        pusher = threading.Thread(target=follow, args=("/api/push",))
        name = pushed_name
        pusher.start()
        wait_for(lambda: any(line.get("status", "").startswith("pushing ") for line in seen), timeout=60,
                 what="the push to start")
        time.sleep(0.5)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        pusher.join(timeout=30)
        victim.log.close()
        victim = Daemon(binary, victim_home)
        assert check_store(models_dir(victim), set()) == 2
        proxy.bytes_per_second = 400_000_000
        lines = push(victim, pushed_name)
        victim.cli("rm", pushed_name)
        assert pull_lines(victim, pushed_name)[-1] == {"status": "success"}
    finally:
        victim.stop()
        proxy.close()


def files_of(models):
    """Every file under a store, with its digest: what "the store as it was" means."""
    found = {}
    for directory, _, names in os.walk(models):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, models)] = sha256_file(path)
    return found


def test_a_full_disk_mid_pull_leaves_the_store_as_it_was(local, registry, home):
    """The store on a 64 MiB tmpfs: a tiny model fits, SmolLM2's 98 MB of weights do not. The
    pull fails with the disk's error, the store holds exactly what it held, the daemon goes on
    serving, and once there is room the same pull completes."""
    binary = os.environ["MODELD_BIN"]
    name = f"{registry.host}/full/smollm2:latest"
    publish(local, name)
    victim_home = os.path.join(home, "full-disk")
    disk = os.path.join(victim_home, "models")
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk], check=True)
    victim = None
    try:
        victim = Daemon(binary, victim_home)
        tiny = os.path.join(victim_home, "fim.gguf")
        subprocess.run([os.path.join(os.path.dirname(binary), "make-tiny-model"), "fim", tiny], check=True)
        victim.import_gguf("kept", tiny)
        before = files_of(disk)
        assert any(path.startswith("manifests") for path in before)

        lines = pull_lines(victim, name)
        assert "no space left on device" in lines[-1].get("error", "").lower(), lines[-3:]
        assert files_of(disk) == before
        answer = victim.post("/api/generate", {"model": "kept", "prompt": "def f", "stream": False,
                                               "options": {"num_predict": 2}})
        assert answer["done"] is True

        subprocess.run(["mount", "-o", "remount,size=256m", disk], check=True)
        assert pull_lines(victim, name)[-1] == {"status": "success"}
        assert check_store(disk, set()) == 2
        assert partial_files(victim) == []
    finally:
        if victim:
            victim.stop()
        subprocess.run(["umount", "-l", disk], check=False)


def test_two_pulls_of_one_blob_share_one_download(local, registry):
    proxy = SlowProxy(registry.port, bytes_per_second=50_000_000)
    direct = f"{registry.host}/shared/smollm2:latest"
    layer = publish(local, direct)
    forget_everything(local)
    try:
        name = f"{proxy.host}/shared/smollm2:latest"
        results = []
        pullers = [threading.Thread(target=lambda: results.append(pull_lines(local, name))) for _ in range(2)]
        for puller in pullers:
            puller.start()
        for puller in pullers:
            puller.join(timeout=120)
        assert [lines[-1] for lines in results] == [{"status": "success"}] * 2, [lines[-2:] for lines in results]
        assert proxy.bytes_answered < layer["size"] * 1.5, (proxy.bytes_answered, layer["size"])
        blob = os.path.join(models_dir(local), "blobs", layer["digest"].replace(":", "-"))
        assert sha256_file(blob) == layer["digest"][7:]
    finally:
        proxy.close()
        restore_base(local)


def test_hostile_registry_cannot_overfill_a_blob_or_send_tokens_elsewhere(local):
    """A registry that answers a blob with more bytes than its manifest says, one whose
    manifest is larger than any model's, and one whose token realm is another host: each pull
    fails with a clear error and leaves nothing in the store."""
    import http.server
    import socketserver

    blob = b"x" * 64
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(blob)}],
    }).encode()

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            repository = self.path.split("/")[2]
            if repository == "realm":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="http://attacker.example/token",service="x"')
                self.end_headers()
                return
            if "/manifests/" in self.path:
                body = manifest if repository == "overfill" else b"{" + b" " * (5 << 20) + b"}"
            elif "/blobs/" in self.path and digest in self.path:
                body = blob * 1000
            else:
                body = config
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        before = sorted(os.listdir(os.path.join(models_dir(local), "blobs")))
        cases = {
            "overfill": "the registry sent more bytes than the blob has",
            "huge": "larger than 4194304 bytes",
            "realm": "is not on the registry's host",
        }
        for repository, expected in cases.items():
            status, body = local.request("POST", "/api/pull", {"model": f"{host}/{repository}/model",
                                                               "insecure": True, "stream": False})
            assert status == 500 and expected in body["error"], (repository, body)
            assert local.request("POST", "/api/show", {"model": f"{host}/{repository}/model"})[0] == 404
        after = sorted(os.listdir(os.path.join(models_dir(local), "blobs")))
        assert digest.replace(":", "-") not in after and set(after) <= set(before) | {config_digest.replace(":", "-")}
    finally:
        server.shutdown()
