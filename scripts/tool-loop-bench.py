#!/usr/bin/env python3
"""Time to first token of a tool loop's rounds: the first round (the whole prompt, tools
included, nothing cached) against the second (after the tool result), which shows whether the
prefix cache carries the loop. Runs against a daemon whose MCP config has the server named by
--server.

    scripts/tool-loop-bench.py --url http://127.0.0.1:11434 --model smollm2:135m \
        --server everything --tool echo --runs 5

Each run makes two requests, each with a system prompt of its own so that nothing of it is
cached: the first round's time to first token is a request like the loop's first round that
stops after one token; the second round's is measured inside a streamed tool loop
(`mcp_servers`, `tool_choice` naming the tool, so the first round is one constrained call), from
the tool result's chunk to the next round's first chunk. Prints each run and the medians."""

import argparse
import json
import statistics
import time
import urllib.request


def stream(url, body):
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=600)


def messages(session, tool):
    # The system prompt comes first in the prompt, so a new one caches nothing.
    return [{"role": "system", "content": f"Session {session}."},
            {"role": "user", "content": f"Call the {tool} tool with a short message."}]


def first_round(url, model, server, tool, run):
    body = {"model": model, "stream": True, "temperature": 0, "max_tokens": 1,
            "messages": messages(f"{time.time_ns()}-{run}-first", tool), "mcp_servers": [server],
            "tool_choice": "none"}
    started = time.monotonic()
    with stream(url, body) as response:
        for line in response:
            if line.startswith(b"data: {") and b'"content"' in line:
                return time.monotonic() - started
    return None


def second_round(url, model, server, tool, run):
    body = {
        "model": model, "stream": True, "temperature": 0, "max_tokens": 200,
        "messages": messages(f"{time.time_ns()}-{run}-loop", tool),
        "mcp_servers": [server],
        "tool_choice": {"type": "function", "function": {"name": f"{server}__{tool}"}},
    }
    result_at = None
    with stream(url, body) as response:
        for line in response:
            line = line.strip()
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[len(b"data: "):])
            if not chunk.get("choices"):
                continue
            delta = chunk["choices"][0]["delta"]
            if delta.get("role") == "tool":
                result_at = result_at or time.monotonic()
            elif result_at is not None and (delta.get("content") or delta.get("tool_calls")):
                return time.monotonic() - result_at
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:11434")
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--server", default="everything")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    firsts, seconds = [], []
    # Loads the model, so that no run pays for it.
    first_round(arguments.url, arguments.model, arguments.server, arguments.tool, -1)
    for run in range(arguments.runs):
        first = first_round(arguments.url, arguments.model, arguments.server, arguments.tool, run)
        second = second_round(arguments.url, arguments.model, arguments.server, arguments.tool, run)
        shown = "none (the first round made no call)" if second is None else f"{second:.3f} s"
        print(f"run {run}: first round {first:.3f} s, second round {shown}")
        if first is not None and second is not None:
            firsts.append(first)
            seconds.append(second)
    if firsts:
        first, second = statistics.median(firsts), statistics.median(seconds)
        print(f"median time to first token: first round {first:.3f} s, second round {second:.3f} s, "
              f"ratio {second / first:.3f}")


if __name__ == "__main__":
    main()
