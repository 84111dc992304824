#!/usr/bin/env python3
"""Remote models over replicas, measured in one run: several concurrent chat sessions through a
front modeld whose model is served by one replica, then by two (total tokens/s), and the time to
first token of follow-up turns over two replicas with routing by cached prefix on and off.

The replicas are modeld daemons on SmolLM2 (their prefix caches are what affinity keeps warm).
On a machine whose cores the replicas share, two replicas add no compute: the throughput row
shows what routing costs or saves, not what a second GPU machine would add.

Usage: scripts/remote-bench.py [--sessions 6] [--turns 4] [--json]
(MODELD_BIN and SMOLLM2_GGUF as scripts/test.sh sets them, or the defaults under ~/.cache/modeld)
"""

import argparse
import random
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CACHE = os.environ.get("MODELD_CACHE", os.path.expanduser("~/.cache/modeld"))
BINARY = os.environ.get("MODELD_BIN", os.path.join(CACHE, "target/debug/modeld"))
GGUF = os.environ.get("SMOLLM2_GGUF", os.path.join(CACHE, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
TOPICS = ["the sea", "mountains", "old trains", "bees", "deserts", "rivers", "glaciers", "forests"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    def __init__(self, home, **env):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = dict(os.environ, OLLAMA_HOST=self.url[len("http://"):], OLLAMA_MODELS=os.path.join(home, "models"),
                        HOME=home, **env)
        self.home = home
        self.process = subprocess.Popen([BINARY, "serve"], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("modeld serve did not start")

    def create(self, name, lines):
        path = os.path.join(self.home, f"Modelfile.{name}")
        with open(path, "w") as file:
            file.write("\n".join(lines) + "\n")
        subprocess.run([BINARY, "create", name, "-f", path], env=self.env, check=True, capture_output=True)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=15)


def chat_turn(url, model, messages, num_predict):
    """Streams one turn; returns (answer message, seconds to first token, tokens generated, replica)."""
    body = {"model": model, "messages": messages, "options": {"temperature": 0, "num_predict": num_predict}}
    request = urllib.request.Request(url + "/api/chat", data=json.dumps(body).encode(), method="POST")
    started = time.perf_counter()
    first, content, final = None, [], {}
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:
            chunk = json.loads(line)
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            text = chunk.get("message", {}).get("content", "")
            if text and first is None:
                first = time.perf_counter() - started
            content.append(text)
            if chunk.get("done"):
                final = chunk
    message = {"role": "assistant", "content": "".join(content)}
    return message, first if first is not None else time.perf_counter() - started, final.get("eval_count", 0), \
        final.get("remote_host")


def run_sessions(url, model, n_sessions, n_turns, num_predict, label, pause):
    """Runs the sessions at once, turn after turn each (after a pause like a person's, with
    `pause`); returns wall seconds, tokens, follow-up
    first-token times and how often a session's turns stayed on one replica."""
    follow_ups, tokens, kept = [], [0], [0]
    lock = threading.Lock()

    def session(index):
        topic = TOPICS[index % len(TOPICS)]
        system = (f"[{label} {index}] You are a patient guide who talks only about {topic}. "
                  f"Answer in plain words, one short paragraph, and never change the subject from {topic}. ") * 12
        messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Tell me about {topic}."}]
        replicas = []
        # A person reads and types between turns: sessions do not move in lock-step, so the
        # least loaded replica differs from turn to turn (seeded, the same in every phase).
        pauses = random.Random(index)
        for turn in range(n_turns):
            if pause:
                time.sleep(pauses.uniform(0.0, 1.5))
            answer, first, generated, replica = chat_turn(url, model, messages, num_predict)
            replicas.append(replica)
            with lock:
                tokens[0] += generated
                if turn > 0:
                    follow_ups.append(first)
            messages += [answer, {"role": "user", "content": "Tell me more."}]
        with lock:
            kept[0] += len(set(replicas)) == 1

    threads = [threading.Thread(target=session, args=(index,)) for index in range(n_sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, tokens[0], follow_ups, kept[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--num-predict", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    homes = [tempfile.mkdtemp(prefix="modeld-remote-bench-") for _ in range(4)]
    daemons = []
    try:
        a, b = Daemon(homes[0], OLLAMA_NUM_PARALLEL="4"), Daemon(homes[1], OLLAMA_NUM_PARALLEL="4")
        daemons += [a, b]
        for replica in (a, b):
            replica.create("smollm2", [f"FROM {GGUF}"])
        front_on, front_off = Daemon(homes[2]), Daemon(homes[3], MODELD_REMOTE_AFFINITY="false")
        daemons += [front_on, front_off]
        for front in (front_on, front_off):
            front.create("one", ["FROM smollm2", f"ENDPOINT {a.url} ollama"])
            front.create("two", ["FROM smollm2", f"ENDPOINT {a.url} ollama", f"ENDPOINT {b.url} ollama"])
        # Load the weights on both replicas before measuring.
        for replica in (a, b):
            chat_turn(replica.url, "smollm2", [{"role": "user", "content": "Hi"}], 1)
        common = (arguments.sessions, arguments.turns, arguments.num_predict)
        # Throughput: every session sends its next turn at once.
        one = run_sessions(front_on.url, "one", *common, "one", pause=False)
        two = run_sessions(front_on.url, "two", *common, "two", pause=False)
        # Affinity: sessions with pauses between turns, as people type.
        on = run_sessions(front_on.url, "two", *common, "on", pause=True)
        off = run_sessions(front_off.url, "two", *common, "off", pause=True)
    finally:
        for daemon in daemons:
            daemon.stop()
    median_ms = lambda times: 1000 * statistics.median(times)
    p90_ms = lambda times: 1000 * statistics.quantiles(times, n=10)[-1]
    figures = {
        "sessions": arguments.sessions,
        "turns": arguments.turns,
        "cpus": os.cpu_count(),
        "one_replica_tokens_per_s": one[1] / one[0],
        "two_replicas_tokens_per_s": two[1] / two[0],
        "follow_up_first_token_ms_affinity_on": median_ms(on[2]),
        "follow_up_first_token_ms_affinity_off": median_ms(off[2]),
        "follow_up_first_token_p90_ms_affinity_on": p90_ms(on[2]),
        "follow_up_first_token_p90_ms_affinity_off": p90_ms(off[2]),
        "sessions_kept_on_one_replica_affinity_on": on[3],
        "sessions_kept_on_one_replica_affinity_off": off[3],
    }
    if arguments.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return
    print(f"{arguments.sessions} concurrent chat sessions of {arguments.turns} turns, SmolLM2 replicas "
          f"(modeld, OLLAMA_NUM_PARALLEL=4), {os.cpu_count()} CPUs shared by all daemons")
    print(f"{'figure':<52}{'value':>10}  unit")
    rows = [
        ("total throughput, one replica", figures["one_replica_tokens_per_s"], "tokens/s"),
        ("total throughput, two replicas", figures["two_replicas_tokens_per_s"], "tokens/s"),
        ("  ratio two / one", figures["two_replicas_tokens_per_s"] / figures["one_replica_tokens_per_s"], "x"),
        ("follow-up turn, first token, affinity on (median)", figures["follow_up_first_token_ms_affinity_on"], "ms"),
        ("follow-up turn, first token, affinity off (median)", figures["follow_up_first_token_ms_affinity_off"], "ms"),
        ("  ratio off / on", figures["follow_up_first_token_ms_affinity_off"]
         / figures["follow_up_first_token_ms_affinity_on"], "x"),
        ("follow-up turn, first token, affinity on (p90)", figures["follow_up_first_token_p90_ms_affinity_on"], "ms"),
        ("follow-up turn, first token, affinity off (p90)", figures["follow_up_first_token_p90_ms_affinity_off"], "ms"),
        ("  ratio off / on", figures["follow_up_first_token_p90_ms_affinity_off"]
         / figures["follow_up_first_token_p90_ms_affinity_on"], "x"),
        ("sessions kept on one replica, affinity on", on[3], f"of {arguments.sessions}"),
        ("sessions kept on one replica, affinity off", off[3], f"of {arguments.sessions}"),
    ]
    for name, value, unit in rows:
        print(f"{name:<52}{value:>10.2f}  {unit}")


if __name__ == "__main__":
    main()
