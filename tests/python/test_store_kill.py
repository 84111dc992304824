"""The store survives SIGKILL at any point: the daemon is killed at random moments while
models are created (an upload and a create from a GGUF, creates from an existing model with
new layers, deletes), 50 times; after each restart every manifest's blobs are present with the
right digests and no temporary file is left."""

import hashlib
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

from conftest import Daemon

ROUNDS = 50


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_store(models, verified):
    """Every manifest names present blobs whose bytes hash to their names; no temporary file.
    `verified` caches digests already hashed (blobs never change once named)."""
    temporary = []
    for root, _, files in os.walk(models):
        temporary += [os.path.join(root, name) for name in files if name.startswith(".modeld-tmp-")]
    assert temporary == [], temporary
    manifests_dir = os.path.join(models, "manifests")
    n_manifests = 0
    for root, _, files in os.walk(manifests_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as file:
                manifest = json.loads(file.read())
            n_manifests += 1
            for layer in [manifest["config"], *manifest["layers"]]:
                hex_digest = layer["digest"].split(":", 1)[1]
                blob = os.path.join(models, "blobs", f"sha256-{hex_digest}")
                assert os.path.isfile(blob), (name, layer)
                if hex_digest not in verified:
                    assert sha256_of(blob) == hex_digest, blob
                    verified.add(hex_digest)
                assert os.path.getsize(blob) == layer["size"], (blob, layer)
    return n_manifests


def test_sigkill_during_creates_never_corrupts_the_store():
    binary, gguf = os.environ["MODELD_BIN"], os.environ["SMOLLM2_GGUF"]
    rng = random.Random(20261202)
    verified = set()
    with tempfile.TemporaryDirectory() as home:
        models = os.path.join(home, "models")
        daemon = Daemon(binary, home)
        daemon.import_gguf("base", gguf)
        n_killed_mid_work = 0
        for round_index in range(ROUNDS):
            # Work that writes: a whole import, and creates/copies/deletes with new small layers.
            def work(index=round_index):
                try:
                    if index % 3 == 0:
                        modelfile = os.path.join(home, "Modelfile.kill")
                        with open(modelfile, "w") as file:
                            file.write(f"FROM {gguf}\nSYSTEM round {index}\n")
                        subprocess.run([binary, "create", f"import-{index % 4}", "-f", modelfile], env=daemon.env,
                                       capture_output=True, timeout=120)
                    for step in range(100_000):  # until the kill
                        daemon.request("POST", "/api/create", {
                            "model": f"variant-{step % 5}", "from": "base",
                            "system": f"round {index} step {step}", "stream": False})
                        daemon.request("POST", "/api/copy", {"source": f"variant-{step % 5}",
                                                             "destination": f"copy-{step % 3}"})
                        if step % 4 == 3:
                            daemon.request("DELETE", "/api/delete", {"model": f"copy-{step % 3}"})
                except OSError:
                    pass  # the daemon died under us: that is the point

            worker = threading.Thread(target=work)
            worker.start()
            time.sleep(rng.uniform(0.05, 1.5))
            n_killed_mid_work += worker.is_alive()
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait()
            worker.join(timeout=60)
            daemon.log.close()
            daemon = Daemon(binary, home)
            n_manifests = check_store(models, verified)
            assert n_manifests >= 1
            status, show = daemon.request("POST", "/api/show", {"model": "base"})
            assert status == 200, show
        daemon.stop()
        assert n_killed_mid_work >= ROUNDS // 2, n_killed_mid_work
