#!/usr/bin/env python3
"""Embedding speed, side by side in one run on the same CPU: modeld (`/v1/embeddings` on
all-MiniLM-L6-v2 imported from its folder), sentence-transformers in this process, and
llama.cpp's `llama-server --embeddings` (the engine inside Ollama) on the GGUF modeld wrote.
Prints sentences per second for batches of 1, 8 and 64 sentences of about 20 words, and the
latency of one short query, as medians of `--runs`; the engines take turns call by call.

Run with a Python that has `sentence-transformers` (see scripts/embedding-reference.py):

    python scripts/embed-bench.py --modeld ~/.cache/modeld/target/debug/modeld \\
        --model-dir ~/.cache/modeld/models/all-MiniLM-L6-v2 --llama-server PATH/llama-server
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

WORDS = ("the a local model vector search query document editor server memory speed cache token "
         "sentence meaning answer question library daemon request batch engine network file code "
         "function value river mountain city morning light quick brown fox jumps over lazy dog").split()


def sentences(count, seed=7):
    generator = random.Random(seed)
    return [" ".join(generator.choice(WORDS) for _ in range(20)).capitalize() + "." for _ in range(count)]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def wait_until_up(url, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def median_seconds(engines, inputs, runs):
    """Each engine's median seconds over `runs` calls on `inputs`. The engines take turns, one
    call each per round, so a slow spell of a shared machine falls on all of them alike."""
    for embed in engines.values():
        embed(inputs)  # warm-up
    timings = {name: [] for name in engines}
    for _ in range(runs):
        for name, embed in engines.items():
            started = time.perf_counter()
            embed(inputs)
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def http_embedder(url, model):
    def embed(batch):
        answer = post(url + "/v1/embeddings", {"model": model, "input": batch})
        assert len(answer["data"]) == len(batch), answer
    return embed


def start_modeld(binary, model_dir, home):
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=os.path.join(home, "models"), HOME=home)
    process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/")
    modelfile = os.path.join(home, "Modelfile")
    with open(modelfile, "w") as file:
        file.write(f"FROM {model_dir}\n")
    subprocess.run([binary, "create", "all-minilm", "-f", modelfile], env=env, check=True, capture_output=True)
    manifest_path = os.path.join(home, "models", "manifests", "registry.ollama.ai", "library", "all-minilm", "latest")
    with open(manifest_path) as file:
        manifest = json.load(file)
    layer = next(layer for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))
    gguf = os.path.join(home, "models", "blobs", layer["digest"].replace(":", "-"))
    return process, url, gguf


def start_llama_server(binary, gguf, threads, slots):
    port = free_port()
    context = 256 * slots
    process = subprocess.Popen(
        [binary, "-m", gguf, "--embeddings", "--pooling", "mean", "--port", str(port), "-t", str(threads),
         "-np", str(slots), "-c", str(context), "-b", str(context), "-ub", str(context)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health")
    return process, url


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modeld", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--llama-server", action="append", default=[],
                        help="PATH, or LABEL=PATH to compare several builds (repeatable)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slots", type=int, default=8, help="llama-server's parallel sequences (-np)")
    arguments = parser.parse_args()
    threads = len(os.sched_getaffinity(0))

    from sentence_transformers import SentenceTransformer
    import torch
    torch.set_num_threads(threads)
    reference = SentenceTransformer(arguments.model_dir, device="cpu")

    home = tempfile.mkdtemp(prefix="embed-bench-")
    modeld, modeld_url, gguf = start_modeld(arguments.modeld, arguments.model_dir, home)
    engines = {
        "modeld": http_embedder(modeld_url, "all-minilm"),
        "sentence-transformers": lambda batch: reference.encode(batch, batch_size=len(batch)),
    }
    llamas = []
    for spec in arguments.llama_server:
        label, _, path = spec.rpartition("=")
        process, llama_url = start_llama_server(path, gguf, threads, arguments.slots)
        llamas.append(process)
        engines[label or "llama.cpp"] = http_embedder(llama_url, "all-minilm")
    try:
        texts = sentences(64)
        rows = []
        for size in (1, 8, 64):
            batch = texts[:size]
            rows.append((f"batch of {size}, sentences/s",
                         {name: size / seconds for name, seconds in median_seconds(engines, batch, arguments.runs).items()},
                         True))
        query = ["how do I reverse a list in python"]
        rows.append(("one short query, ms",
                     {name: 1000 * seconds for name, seconds in median_seconds(engines, query, arguments.runs * 4).items()},
                     False))
    finally:
        modeld.terminate()
        for process in llamas:
            process.terminate()

    names = list(engines)
    print(f"all-MiniLM-L6-v2, {threads} CPUs, medians of {arguments.runs} runs (queries: {arguments.runs * 4}); "
          f"llama-server -np {arguments.slots}; sentences of 20 words")
    header = f"{'figure':34}" + "".join(f"{name:>23}" for name in names) + "".join(
        f"{'modeld / ' + name:>32}" for name in names[1:])
    print(header)
    for label, figures, higher_is_better in rows:
        line = f"{label:34}" + "".join(f"{figures[name]:23.1f}" for name in names)
        for name in names[1:]:
            ratio = figures["modeld"] / figures[name] if higher_is_better else figures[name] / figures["modeld"]
            line += f"{ratio:32.2f}"
        print(line)
    print("(ratios above 1: modeld ahead)")


if __name__ == "__main__":
    main()
