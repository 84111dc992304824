#!/usr/bin/env python3
"""Time to first token of a tool loop's rounds: the first round (the whole prompt, tools
included) against the second (after the tool result), which shows whether the prefix cache
carries the loop. Runs against a daemon whose MCP config has the server named by --server.

    scripts/tool-loop-bench.py --url http://127.0.0.1:11434 --model smollm2:135m \
        --server everything --tool echo --runs 5

Each run streams one `/v1/chat/completions` request with `mcp_servers` and `tool_choice` naming
the tool, so the first round is one constrained call; the second round starts when the tool
result arrives. Prints each run and the medians."""

import argparse
import json
import statistics
import time
import urllib.request


def one_run(url, model, server, tool, run):
    body = {
        "model": model, "stream": True, "temperature": 0, "max_tokens": 48,
        # A different question each run, so that no run finds the previous one's prompt cached.
        "messages": [{"role": "user", "content": f"Run {run}: call the {tool} tool with a short message."}],
        "mcp_servers": [server],
        "tool_choice": {"type": "function", "function": {"name": f"{server}__{tool}"}},
    }
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    first_round = None
    result_at = None
    second_round = None
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[len(b"data: "):])
            if not chunk.get("choices"):
                continue
            delta = chunk["choices"][0]["delta"]
            now = time.monotonic()
            if delta.get("role") == "tool":
                result_at = result_at or now
            elif result_at is None and first_round is None and (delta.get("content") or delta.get("tool_calls")):
                first_round = now - started
            elif result_at is not None and second_round is None and (delta.get("content") or delta.get("tool_calls")):
                second_round = now - result_at
    return first_round, second_round


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:11434")
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--server", default="everything")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    firsts, seconds = [], []
    for run in range(arguments.runs):
        first, second = one_run(arguments.url, arguments.model, arguments.server, arguments.tool, run)
        print(f"run {run}: first round {first:.3f} s, second round {second if second is None else round(second, 3)} s")
        if first is not None and second is not None:
            firsts.append(first)
            seconds.append(second)
    if firsts:
        first, second = statistics.median(firsts), statistics.median(seconds)
        print(f"median time to first token: first round {first:.3f} s, second round {second:.3f} s, "
              f"ratio {second / first:.3f}")


if __name__ == "__main__":
    main()
