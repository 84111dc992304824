#!/usr/bin/env python3
"""Pull and push speed from a registry on loopback (Debian's `docker-registry`), side by side
in one run: `modeld pull` of SmolLM2 (a 98 MB model) into an emptied store, against `curl`
fetching the same weights blob into a file on the same disk, and against curl followed by what
modeld does on top (`sha256sum` to check the digest, `sync` to make the file durable). They
take turns run by run; prints the medians of `--runs` in MB/s and the ratios, and the time of
the first push.

    python scripts/pull-bench.py --modeld ~/.cache/modeld/target/debug/modeld \\
        --gguf ~/.cache/modeld/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from conftest import Daemon  # noqa: E402
from registry_server import Registry  # noqa: E402


def forget_everything(daemon):
    with urllib.request.urlopen(daemon.url + "/api/tags") as response:
        models = json.load(response)["models"]
    for model in models:
        daemon.cli("rm", model["name"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modeld", required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        registry_root = os.path.join(home, "registry")
        os.makedirs(registry_root)
        registry = Registry(registry_root)
        daemon = Daemon(os.path.abspath(args.modeld), home)
        try:
            daemon.import_gguf("smollm2", args.gguf)
            name = f"{registry.host}/bench/smollm2:latest"
            daemon.cli("cp", "smollm2", name)
            push_seconds = []
            for run in range(3):
                started = time.perf_counter()
                daemon.cli("push", "--insecure", name)
                push_seconds.append(time.perf_counter() - started)
                if run == 0:
                    # Later pushes find every blob in the registry: only the first uploads.
                    first_push = push_seconds[0]
            with open(os.path.join(daemon.env["OLLAMA_MODELS"], "manifests", registry.host, "bench", "smollm2",
                                   "latest")) as file:
                manifest = json.load(file)
            weights = next(layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))
            size = weights["size"]
            blob_url = f"http://{registry.host}/v2/bench/smollm2/blobs/{weights['digest']}"
            target = os.path.join(home, "curl-blob")

            modeld_rates, curl_rates, safe_rates = [], [], []
            for _ in range(args.runs):
                forget_everything(daemon)
                started = time.perf_counter()
                pulled = daemon.cli("pull", "--insecure", name)
                elapsed = time.perf_counter() - started
                assert "success" in pulled.stderr, pulled.stderr
                modeld_rates.append(size / elapsed / 1e6)

                started = time.perf_counter()
                subprocess.run(["curl", "-sSf", "-o", target, blob_url], check=True)
                elapsed = time.perf_counter() - started
                assert os.path.getsize(target) == size
                os.remove(target)
                curl_rates.append(size / elapsed / 1e6)

                # What modeld does on top: check the digest and make the file durable.
                started = time.perf_counter()
                subprocess.run(["curl", "-sSf", "-o", target, blob_url], check=True)
                hashed = subprocess.run(["sha256sum", target], check=True, capture_output=True, text=True)
                subprocess.run(["sync", target], check=True)
                elapsed = time.perf_counter() - started
                assert hashed.stdout.split()[0] == weights["digest"][7:]
                os.remove(target)
                safe_rates.append(size / elapsed / 1e6)
        finally:
            daemon.stop()
            registry.stop()

    modeld, curl, safe = (statistics.median(rates) for rates in (modeld_rates, curl_rates, safe_rates))
    print(f"weights blob: {size / 1e6:.1f} MB, {args.runs} runs each, taking turns")
    print(f"modeld pull (whole model, verified, written): {modeld:8.1f} MB/s")
    print(f"curl (weights blob only, written):            {curl:8.1f} MB/s")
    print(f"curl + sha256sum + sync (verified, durable):  {safe:8.1f} MB/s")
    print(f"ratio modeld / curl: {modeld / curl:.2f}; modeld / (curl + sha256sum + sync): {modeld / safe:.2f}")
    print(f"modeld push (first, uploads {size / 1e6:.0f} MB): {first_push:.2f} s")


if __name__ == "__main__":
    main()
