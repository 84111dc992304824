#!/usr/bin/env python3
"""Completion quality and speed of `modeld lsp`, asked through LSP as an editor asks.

Masks single lines, multi-line blocks and random spans of real source files (this repository's
crates and crates/lsp/bench-corpus, one file per language) at positions drawn with a fixed seed,
asks the language server for the hole, and prints exact match, edit similarity and latency
(p50/p95), separately for cold requests and for typing sessions (one request per typed
character). Also measures a cold request on a 1,000-token prompt, and indexing a generated
10,000-file workspace (time, index size, the server's memory, a completion during indexing).

    python3 scripts/lsp-bench.py --modeld target/debug/modeld --model smollm2:135m

A daemon must answer at OLLAMA_HOST with the model imported, or pass --gguf to start one on
a free port with that file imported as --model into a fresh models directory.
"""

import argparse
import glob
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from lsp_client import LanguageServer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LANGUAGE_IDS = {".rs": "rust", ".py": "python", ".js": "javascript", ".ts": "typescript", ".go": "go",
                ".c": "c", ".cpp": "cpp", ".java": "java", ".lua": "lua"}


def edit_similarity(a, b):
    """1 - Levenshtein(a, b) / max(len): 1.0 for identical strings."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def source_files():
    files = sorted(glob.glob(os.path.join(ROOT, "crates", "*", "src", "*.rs")))
    rust = [path for path in files if os.path.getsize(path) < 40_000][:12]
    corpus = sorted(glob.glob(os.path.join(ROOT, "crates", "lsp", "bench-corpus", "*")))
    return rust + corpus


def position_of(text, offset):
    """The LSP position (UTF-16 column) of character index `offset` of `text`."""
    before = text[:offset]
    line = before.count("\n")
    column_text = before[before.rfind("\n") + 1:]
    return line, len(column_text.encode("utf-16-le")) // 2


def make_masks(files, rng, per_kind):
    """(kind, path, text without the hole, cursor index, expected) cases."""
    cases = []
    contents = {path: open(path, encoding="utf-8").read() for path in files}
    for kind in ("single-line", "multi-line", "random-span"):
        attempts = 0
        made = 0
        while made < per_kind and attempts < per_kind * 50:
            attempts += 1
            path = rng.choice(files)
            text = contents[path]
            lines = text.split("\n")
            if len(lines) < 10:
                continue
            index = rng.randrange(3, len(lines) - 3)
            line = lines[index]
            stripped = line.strip()
            if len(stripped) < 8 or stripped.startswith(("//", "#", "--", "/*", "*")):
                continue
            start = sum(len(previous) + 1 for previous in lines[:index])
            indent = len(line) - len(line.lstrip())
            if kind == "single-line":
                cursor = start + indent
                expected = line[indent:]
            elif kind == "multi-line":
                count = rng.randint(2, 4)
                block = lines[index:index + count]
                if any(not entry.strip() for entry in block):
                    continue
                cursor = start + indent
                expected = "\n".join(block)[indent:]
            else:
                if len(line) - indent < 12:
                    continue
                span_start = rng.randrange(indent, len(line) - 6)
                span_length = rng.randint(5, min(40, len(line) - span_start))
                cursor = start + span_start
                expected = line[span_start:span_start + span_length]
            hole_text = text[:cursor] + text[cursor + len(expected):]
            cases.append((kind, path, hole_text, cursor, expected))
            made += 1
    return cases


class Bench:
    def __init__(self, args, env):
        self.args = args
        self.server = LanguageServer(args.modeld, env)
        self.server.initialize(initialization_options={"model": args.model, "debounceMs": 0,
                                                       "contextTokens": args.context_tokens})
        self.counter = 0

    def uri(self, path):
        self.counter += 1
        base = os.path.basename(path)
        return f"file:///bench/{self.counter}/{base}"

    def complete(self, uri, text, cursor):
        line, character = position_of(text, cursor)
        started = time.perf_counter()
        result = self.server.inline_completion(uri, line, character, timeout=600)
        elapsed = time.perf_counter() - started
        suggestion = result["items"][0]["insertText"] if result and result["items"] else ""
        return suggestion, elapsed

    def cold(self, cases):
        rows = {}
        for kind, path, text, cursor, expected in cases:
            uri = self.uri(path)
            self.server.open(uri, text, LANGUAGE_IDS[os.path.splitext(path)[1]])
            suggestion, elapsed = self.complete(uri, text, cursor)
            first_line = expected.split("\n")[0]
            target = expected if "\n" in suggestion else first_line
            row = rows.setdefault(kind, {"latency": [], "exact": 0, "similarity": [], "shown": 0})
            row["latency"].append(elapsed)
            row["exact"] += suggestion.strip() == target.strip() and bool(suggestion.strip())
            row["similarity"].append(edit_similarity(suggestion.strip(), target.strip()))
            row["shown"] += bool(suggestion)
        return rows

    def typing(self, cases):
        """Types each masked single line one character at a time, asking after each."""
        latency, similarity, exact, cache_hits_before = [], [], 0, self.server.stats()["cacheHits"]
        generated, after_first = [], []
        requests = 0
        for kind, path, text, cursor, expected in cases:
            uri = self.uri(path)
            self.server.open(uri, text, LANGUAGE_IDS[os.path.splitext(path)[1]])
            version = 1
            current = text
            for typed_count in range(len(expected)):
                if typed_count:
                    character = expected[typed_count - 1]
                    line, column = position_of(current, cursor + typed_count - 1)
                    version += 1
                    self.server.change(uri, version, [{"range": {"start": {"line": line, "character": column},
                                                                 "end": {"line": line, "character": column}},
                                                       "text": character}])
                    current = current[:cursor + typed_count - 1] + character + current[cursor + typed_count - 1:]
                hits_before = self.server.stats()["cacheHits"]
                suggestion, elapsed = self.complete(uri, current, cursor + typed_count)
                remaining = expected[typed_count:]
                latency.append(elapsed)
                if typed_count:
                    after_first.append(elapsed)
                if self.server.stats()["cacheHits"] == hits_before:
                    generated.append(elapsed)
                similarity.append(edit_similarity(suggestion.strip(), remaining.strip()))
                exact += bool(suggestion.strip()) and suggestion.strip() == remaining.strip()
                requests += 1
        cache_hits = self.server.stats()["cacheHits"] - cache_hits_before
        return {"requests": requests, "latency": latency, "similarity": similarity, "exact": exact,
                "cache_hits": cache_hits, "generated": generated, "after_first": after_first}

    def long_prompt(self):
        """A cold request whose prompt is about 1,000 tokens (3,000 characters of prefix)."""
        path = os.path.join(ROOT, "crates", "lsp", "src", "postprocess.rs")
        text = open(path, encoding="utf-8").read()
        # The end of the first line past 3,000 characters.
        cursor = text.find("\n", 3000)
        uri = self.uri("long.rs")
        self.server.open(uri, text, "rust")
        _, elapsed = self.complete(uri, text, cursor)
        return elapsed, cursor


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def index_bench(args, env, files):
    """Indexes a generated workspace of `files` source files."""
    with tempfile.TemporaryDirectory() as workspace:
        for number in range(files):
            directory = os.path.join(workspace, f"package_{number // 100:03d}")
            os.makedirs(directory, exist_ok=True)
            if number % 2:
                body = "".join(f"def function_{number}_{k}(value):\n    return value + {k}\n\n\n" for k in range(8))
                name = f"module_{number}.py"
            else:
                body = "".join(f"pub fn function_{number}_{k}(value: u32) -> u32 {{\n    value + {k}\n}}\n\n"
                               for k in range(8))
                name = f"module_{number}.rs"
            with open(os.path.join(directory, name), "w") as file:
                file.write(body)
        # The same server without a workspace, after one completion: the baseline.
        with tempfile.TemporaryDirectory() as empty:
            baseline_server = LanguageServer(args.modeld, dict(env, MODELD_LOG="info"))
            baseline_server.initialize(initialization_options={"model": args.model, "debounceMs": 0})
            baseline_uri = f"file://{empty}/main.py"
            baseline_server.open(baseline_uri, "import os\n\ndef main():\n    value = function_1_3(2)\n    \n", "python")
            baseline_server.inline_completion(baseline_uri, 4, 4, timeout=600)
            before = rss_kib(baseline_server.process.pid)
            baseline_server.close()
        server = LanguageServer(args.modeld, dict(env, MODELD_LOG="info"))
        started = time.perf_counter()
        server.initialize(root_uri=f"file://{workspace}",
                          initialization_options={"model": args.model, "debounceMs": 0})
        uri = f"file://{workspace}/main.py"
        server.open(uri, "import os\n\ndef main():\n    value = function_1_3(2)\n    \n", "python")
        during_started = time.perf_counter()
        server.inline_completion(uri, 4, 4, timeout=600)
        during = time.perf_counter() - during_started
        indexed_line = None
        while indexed_line is None:
            indexed_line = next((line for line in server.stderr_lines if "workspace indexed" in line), None)
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        after = rss_kib(server.process.pid)
        server.close()
        fields = dict(part.split("=", 1) for part in indexed_line.split() if "=" in part)
        return {"files": files, "seconds": elapsed, "index_kib": int(fields.get("index_kib", 0)),
                "definitions": int(fields.get("definitions", 0)), "rss_before_kib": before, "rss_after_kib": after,
                "completion_during_indexing": during}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modeld", default=os.environ.get("MODELD_BIN", "modeld"))
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cases", type=int, default=20, help="masks per kind for cold requests")
    parser.add_argument("--typing-lines", type=int, default=8, help="single lines typed character by character")
    parser.add_argument("--context-tokens", type=int, default=1024)
    parser.add_argument("--index-files", type=int, default=10000, help="0 skips the indexing benchmark")
    parser.add_argument("--gguf", help="start a daemon with this model file imported as --model")
    parser.add_argument("--only-index", action="store_true", help="run only the indexing benchmark")
    args = parser.parse_args()

    env = dict(os.environ)
    daemon = None
    if args.gguf:
        from conftest import Daemon  # noqa: E402
        home = tempfile.mkdtemp(prefix="modeld-lsp-bench-")
        daemon = Daemon(args.modeld, home)
        daemon.import_gguf(args.model, args.gguf)
        env = dict(daemon.env)
    try:
        run(args, env)
    finally:
        if daemon:
            daemon.stop()


def print_index_bench(args, env):
    result = index_bench(args, env, args.index_files)
    print(f"index: {result['files']} files, {result['definitions']} definitions in "
          f"{result['seconds']:.1f} s; index tables ~{result['index_kib'] / 1024:.1f} MiB; "
          f"server RSS {result['rss_before_kib'] / 1024:.0f} MiB without a workspace, "
          f"{result['rss_after_kib'] / 1024:.0f} MiB with it; "
          f"a completion during indexing took {result['completion_during_indexing'] * 1000:.0f} ms")


def run(args, env):
    if args.only_index:
        with tempfile.TemporaryDirectory() as cache:
            print_index_bench(args, dict(env, XDG_CACHE_HOME=cache))
        return
    with tempfile.TemporaryDirectory() as cache:
        env["XDG_CACHE_HOME"] = cache
        rng = random.Random(args.seed)
        files = source_files()
        cold_cases = make_masks(files, rng, args.cases)
        typing_cases = [case for case in make_masks(files, rng, args.typing_lines * 3)
                        if case[0] == "single-line"][:args.typing_lines]
        bench = Bench(args, env)
        # Load the model first, so "cold" means a new prompt, not a model load.
        warm_uri = bench.uri("warm.py")
        bench.server.open(warm_uri, "x = \n", "python")
        bench.complete(warm_uri, "x = \n", 4)

        long_latency, long_cursor = bench.long_prompt()
        cold = bench.cold(cold_cases)
        typing = bench.typing(typing_cases)
        stats = bench.server.stats()
        bench.server.close()

        print(f"modeld lsp bench: model {args.model}, seed {args.seed}, {len(files)} files, "
              f"context {args.context_tokens} tokens")
        print(f"cold request on a ~1,000-token prompt ({long_cursor} characters before the cursor): "
              f"{long_latency * 1000:.0f} ms")
        print()
        print(f"{'cold requests':<16}{'cases':>6}{'shown':>7}{'exact':>7}{'edit sim':>10}{'p50 ms':>9}{'p95 ms':>9}")
        for kind, row in cold.items():
            count = len(row["latency"])
            print(f"{kind:<16}{count:>6}{row['shown']:>7}{row['exact'] / count:>7.0%}"
                  f"{statistics.mean(row['similarity']):>10.2f}{percentile(row['latency'], 0.5) * 1000:>9.0f}"
                  f"{percentile(row['latency'], 0.95) * 1000:>9.0f}")
        print()
        print(f"typing sessions: {len(typing_cases)} lines, {typing['requests']} requests (one per character), "
              f"{typing['cache_hits']} served from the cache")
        print(f"  latency p50 {percentile(typing['latency'], 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(typing['latency'], 0.95) * 1000:.0f} ms; "
              f"exact {typing['exact'] / max(1, typing['requests']):.0%}, "
              f"edit similarity {statistics.mean(typing['similarity']):.2f}")
        print(f"  after each line's first request (the session's cold start): "
              f"p50 {percentile(typing['after_first'], 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(typing['after_first'], 0.95) * 1000:.0f} ms")
        print(f"  requests that asked the model ({len(typing['generated'])}): "
              f"p50 {percentile(typing['generated'], 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(typing['generated'], 0.95) * 1000:.0f} ms")
        print(f"server statistics: {stats}")
        if args.index_files:
            print()
            print_index_bench(args, env)


if __name__ == "__main__":
    main()
