#!/usr/bin/env python3
"""Load test for a running modeld (or any Ollama-compatible) daemon.

N concurrent clients loop for --duration seconds over a random mix of requests:
  chat      POST /api/chat, streamed, num_predict 8-32, temperature 0.7
  generate  POST /api/generate, not streamed, num_predict 8-32, temperature 0.7
  tags      GET  /api/tags
  show      POST /api/show

Each request ends in exactly one of:
  served  a complete answer: 200 and, for streams, every line valid JSON and a last `done: true`
          chunk; for the others a well-formed JSON body of the expected shape
  BUSY    Ollama's 503 `server busy, please try again.  maximum pending requests exceeded`
          (a correct refusal; the client then pauses for --busy-backoff seconds, jittered)
  FAILED  anything else (other status, truncated stream, an `{"error": ...}` line, a reset...)
  HUNG    no complete answer within --request-timeout seconds

With --pid (or --spawn) it samples the daemon's VmRSS every 0.5 s. With --spawn BINARY --gguf
PATH it starts `BINARY serve` on a free port with a temporary HOME and OLLAMA_MODELS, imports
the GGUF with `BINARY create MODEL -f Modelfile`, runs the load, then stops the daemon with
SIGTERM and reports its exit status and how long it took to exit.

Exit status: 0 when nothing FAILED or HUNG (and a spawned daemon exited 0 on SIGTERM), else 1.
Uses only the standard library: HTTP/1.1 over asyncio streams, one connection per request.
"""

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
KINDS = ("chat", "generate", "tags", "show")
STREAMED = ("chat",)
PROMPTS = [
    "Why is the sky blue?",
    "Name three fruits.",
    "What is 2 + 2?",
    "Say hello in French.",
    "Write one sentence about the sea.",
    "What colour is grass?",
    "Give me a word that rhymes with cat.",
    "What is the capital of Italy?",
    "Count from one to five.",
    "Describe a cat in a few words.",
    "What does a compiler do?",
    "Tell me a very short joke.",
]


class Failure(Exception):
    """A request that did not get a complete, valid answer."""


class Busy(Exception):
    """Ollama's 503 `server busy` refusal."""


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams


class Response:
    def __init__(self, status, reason, headers, reader):
        self.status = status
        self.reason = reason
        self.headers = headers
        self._reader = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
        self._eof = False

    async def read_piece(self):
        """Returns the next piece of the body, b"" at its proper end; raises Failure when the
        connection ends before the body does."""
        if self._eof:
            return b""
        reader = self._reader
        try:
            if self._chunked:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    self._eof = True
                    return b""
                data = await reader.readexactly(size)
                if await reader.readexactly(2) != b"\r\n":
                    raise Failure("malformed chunked encoding (no CRLF after a chunk)")
                return data
            if self._remaining is not None:
                if self._remaining == 0:
                    self._eof = True
                    return b""
                data = await reader.read(min(self._remaining, 65536))
                if not data:
                    raise Failure(f"connection closed with {self._remaining} body bytes missing")
                self._remaining -= len(data)
                return data
            data = await reader.read(65536)  # body delimited by the connection's end
            if not data:
                self._eof = True
            return data
        except asyncio.IncompleteReadError as error:
            raise Failure(f"connection closed mid-body ({len(error.partial)} bytes of a piece read)") from None
        except asyncio.LimitOverrunError:
            raise Failure("malformed chunked encoding (chunk size line too long)") from None
        except ValueError as error:
            raise Failure(f"malformed chunked encoding ({error})") from None

    async def read_all(self):
        parts = []
        while True:
            piece = await self.read_piece()
            if not piece:
                return b"".join(parts)
            parts.append(piece)


async def open_request(host, port, method, path, body=None):
    """Sends one request (Connection: close) and reads the status line and headers."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: modeld-load-test",
            "Accept: application/json, application/x-ndjson", "Connection: close"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    try:
        status_line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as error:
        writer.close()
        raise Failure(f"connection closed before a status line ({len(error.partial)} bytes)") from None
    parts = status_line.decode("latin-1").strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        writer.close()
        raise Failure(f"malformed status line {status_line[:80]!r}")
    headers = {}
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError:
            writer.close()
            raise Failure("connection closed in the response headers") from None
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, reader), writer


def snippet(data, limit=300):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


def check_error_status(response, body):
    """Raises Busy for Ollama's 503 refusal, Failure for any other non-200."""
    if response.status == 200:
        return
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    if response.status == 503 and message == BUSY_MESSAGE:
        raise Busy()
    raise Failure(f"HTTP {response.status}: {snippet(body)}")


# ---------------------------------------------------------------------------------------------
# The requests


def make_request(kind, model, rng):
    num_predict = rng.randint(8, 32)
    prompt = rng.choice(PROMPTS)
    if kind == "chat":
        return "POST", "/api/chat", {"model": model, "stream": True,
                                     "messages": [{"role": "user", "content": prompt}],
                                     "options": {"num_predict": num_predict, "temperature": 0.7}}
    if kind == "generate":
        return "POST", "/api/generate", {"model": model, "stream": False, "prompt": prompt,
                                         "options": {"num_predict": num_predict, "temperature": 0.7}}
    if kind == "tags":
        return "GET", "/api/tags", None
    return "POST", "/api/show", {"model": model}


async def run_request(host, port, kind, method, path, body, model, record):
    """Performs one request; raises Busy or Failure, or returns normally when served. Fills
    `record` with ttfc (time to first NDJSON chunk) and eval_count where they apply."""
    started = time.monotonic()
    try:
        response, writer = await open_request(host, port, method, path, body)
    except (ConnectionError, OSError) as error:
        raise Failure(f"connect/send: {type(error).__name__}: {error}") from None
    try:
        if response.status != 200:
            check_error_status(response, await response.read_all())
        if kind in STREAMED:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("application/x-ndjson"):
                raise Failure(f"stream Content-Type {content_type!r}")
            buffer = b""
            n_lines = 0
            done_chunk = None
            while True:
                try:
                    piece = await response.read_piece()
                except Failure as error:
                    raise Failure(f"truncated stream after {n_lines} lines: {error}") from None
                if not piece:
                    break
                buffer += piece
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    if done_chunk is not None:
                        raise Failure(f"line after the done chunk: {snippet(line)}")
                    try:
                        chunk = json.loads(line)
                    except ValueError:
                        raise Failure(f"invalid JSON line #{n_lines + 1}: {snippet(line)}") from None
                    now = time.monotonic() - started
                    if n_lines == 0:
                        record["ttfc"] = now
                    else:
                        record["max_gap_s"] = max(record.get("max_gap_s", 0.0), now - record["last_chunk_s"])
                    record["last_chunk_s"] = now
                    n_lines += 1
                    record["lines"] = n_lines
                    if not isinstance(chunk, dict):
                        raise Failure(f"non-object line #{n_lines}: {snippet(line)}")
                    if "error" in chunk:
                        raise Failure(f"error line #{n_lines} mid-stream: {snippet(line)}")
                    if chunk.get("done") is True:
                        done_chunk = chunk
                    elif not isinstance(chunk.get("message"), dict):
                        raise Failure(f"chunk #{n_lines} without a message: {snippet(line)}")
            if buffer.strip():
                raise Failure(f"unterminated last line: {snippet(buffer)}")
            if done_chunk is None:
                raise Failure(f"truncated stream: {n_lines} lines, no done:true chunk")
            record["eval_count"] = done_chunk.get("eval_count") or 0
            return
        data = await response.read_all()
        try:
            payload = json.loads(data)
        except ValueError:
            raise Failure(f"invalid JSON body: {snippet(data)}") from None
        if not isinstance(payload, dict) or "error" in payload:
            raise Failure(f"unexpected body: {snippet(data)}")
        if kind == "generate":
            if payload.get("done") is not True or not isinstance(payload.get("response"), str):
                raise Failure(f"generate body without done:true/response: {snippet(data)}")
            record["eval_count"] = payload.get("eval_count") or 0
        elif kind == "tags":
            names = [entry.get("name") for entry in payload.get("models") or [] if isinstance(entry, dict)]
            if not isinstance(payload.get("models"), list) or not any(
                    name == model or name == model + ":latest" for name in names):
                raise Failure(f"tags without {model}: {snippet(data)}")
        elif kind == "show":
            if not any(key in payload for key in ("details", "modelfile", "model_info")):
                raise Failure(f"show body without details/modelfile/model_info: {snippet(data)}")
    except (ConnectionError, OSError) as error:
        raise Failure(f"{type(error).__name__}: {error}") from None
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------------
# Statistics


class Stats:
    def __init__(self):
        self.by_kind = {kind: {"sent": 0, "served": 0, "busy": 0, "failed": 0, "hung": 0,
                               "latency": [], "ttfc": [], "eval_tokens": 0} for kind in KINDS}
        self.failures = []  # (kind, reason, request body) in order
        self.hung = []
        self.model_requests = []  # every chat/generate that was not refused busy
        self.in_flight = 0

    def total(self, field):
        return sum(entry[field] for entry in self.by_kind.values())


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


async def client(index, args, host, port, stats, stop_at, rng, weights):
    while time.monotonic() < stop_at:
        kind = rng.choices(KINDS, weights)[0]
        method, path, body = make_request(kind, args.model, rng)
        entry = stats.by_kind[kind]
        entry["sent"] += 1
        stats.in_flight += 1
        record = {}
        started = time.monotonic()
        outcome = "served"
        timeout = args.request_timeout
        if args.max_drain is not None:  # nothing may run past the end of the load plus max_drain
            timeout = max(0.001, min(timeout, stop_at + args.max_drain - started))
        try:
            await asyncio.wait_for(run_request(host, port, kind, method, path, body, args.model, record), timeout)
        except Busy:
            outcome = "busy"
        except Failure as error:
            outcome = "failed"
            stats.failures.append({"kind": kind, "client": index, "reason": str(error),
                                   "request": f"{method} {path} {json.dumps(body) if body else ''}".strip(),
                                   "at_s": round(started - stats.started, 3)})
        except asyncio.TimeoutError:
            outcome = "hung"
            stats.hung.append({"kind": kind, "client": index, "timeout_s": round(timeout, 3),
                               "request": f"{method} {path} {json.dumps(body) if body else ''}".strip(),
                               "at_s": round(started - stats.started, 3),
                               "ttfc": record.get("ttfc"), "lines": record.get("lines", 0),
                               "last_chunk_s": record.get("last_chunk_s")})
        except Exception as error:  # anything unexpected in the client itself is a failure too
            outcome = "failed"
            stats.failures.append({"kind": kind, "client": index,
                                   "reason": f"client error {type(error).__name__}: {error}",
                                   "request": f"{method} {path}", "at_s": round(started - stats.started, 3)})
        finally:
            stats.in_flight -= 1
        elapsed = time.monotonic() - started
        entry[outcome] += 1
        if kind in ("chat", "generate") and outcome != "busy":
            stats.model_requests.append({"kind": kind, "client": index, "outcome": outcome,
                                         "start_s": round(started - stats.started, 3), "elapsed_s": round(elapsed, 3),
                                         "ttfc_s": record.get("ttfc"), "lines": record.get("lines"),
                                         "max_gap_s": record.get("max_gap_s"),
                                         "num_predict": body["options"]["num_predict"],
                                         "eval_count": record.get("eval_count")})
        if outcome == "served":
            entry["latency"].append(elapsed)
            if "ttfc" in record:
                entry["ttfc"].append(record["ttfc"])
            entry["eval_tokens"] += record.get("eval_count", 0)
        elif outcome == "busy" and args.busy_backoff > 0:
            await asyncio.sleep(args.busy_backoff * rng.uniform(0.5, 1.5))


def read_cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def read_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


async def sample_rss(pid, rss, stop_event):
    while True:
        value = read_rss_kib(pid)
        cpu = read_cpu_seconds(pid)
        if cpu is not None:
            rss["cpu_first_s"] = cpu if rss.get("cpu_first_s") is None else rss["cpu_first_s"]
            rss["cpu_last_s"] = cpu
            rss["cpu_wall_first"] = rss.get("cpu_wall_first") or time.monotonic()
            rss["cpu_wall_last"] = time.monotonic()
        if value is not None:
            rss["samples"] += 1
            rss["first_kib"] = rss["first_kib"] or value
            rss["final_kib"] = value
            rss["peak_kib"] = max(rss["peak_kib"] or 0, value)
        else:
            rss["gone"] = True
        try:
            await asyncio.wait_for(stop_event.wait(), 0.5)
            return
        except asyncio.TimeoutError:
            pass


async def run_load(args, host, port, pid):
    stats = Stats()
    weights = [args.weight_chat, args.weight_generate, args.weight_tags, args.weight_show]
    master = random.Random(args.seed)
    rss = {"samples": 0, "first_kib": None, "peak_kib": None, "final_kib": None, "gone": False}
    stop_event = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, rss, stop_event)) if pid else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu_before = usage.ru_utime + usage.ru_stime
    stats.started = time.monotonic()
    stop_at = stats.started + args.duration
    progress = asyncio.create_task(report_progress(stats, stop_at, args.progress)) if args.progress > 0 else None
    clients = [asyncio.create_task(client(i, args, host, port, stats, stop_at, random.Random(master.random()), weights))
               for i in range(args.clients)]
    await asyncio.gather(*clients)
    elapsed = time.monotonic() - stats.started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss["client_cpu_s"] = usage.ru_utime + usage.ru_stime - client_cpu_before
    if progress:
        progress.cancel()
    if sampler:
        stop_event.set()
        await sampler
    return stats, elapsed, rss


async def report_progress(stats, stop_at, every):
    while True:
        await asyncio.sleep(every)
        left = max(0, stop_at - time.monotonic())
        print(f"  [{time.monotonic() - stats.started:6.0f} s] served {stats.total('served')}, "
              f"busy {stats.total('busy')}, failed {stats.total('failed')}, hung {stats.total('hung')}, "
              f"in flight {stats.in_flight}, {left:.0f} s of load left", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Spawning the daemon


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url, timeout=1.0):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return True
    except OSError:
        return False


class SpawnedDaemon:
    def __init__(self, binary, home, log_path, num_parallel, max_queue, extra_env):
        self.binary = binary
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log_path = log_path
        self.env = dict(os.environ, HOME=home, OLLAMA_HOST=self.host, OLLAMA_MODELS=os.path.join(home, "models"),
                        OLLAMA_NUM_PARALLEL=str(num_parallel), OLLAMA_MAX_QUEUE=str(max_queue), **extra_env)
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([binary, "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"modeld serve exited with {self.process.returncode}; log:\n{self.log_tail()}")
            if http_ok(self.url + "/"):
                return
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"modeld serve did not answer within 60 s; log:\n{self.log_tail()}")

    def import_gguf(self, name, gguf):
        modelfile = os.path.join(self.env["HOME"], f"Modelfile.{name.replace(':', '_')}")
        with open(modelfile, "w") as file:
            file.write(f"FROM {os.path.abspath(gguf)}\n")
        created = subprocess.run([self.binary, "create", name, "-f", modelfile], env=self.env, capture_output=True,
                                 text=True, timeout=600, stdin=subprocess.DEVNULL)
        if created.returncode != 0 or "success" not in created.stderr:
            raise RuntimeError(f"`create {name}` failed ({created.returncode}):\n{created.stdout}{created.stderr}")

    def stop(self, timeout):
        """SIGTERM, then waits; returns (exit code or None if it had to be killed, seconds)."""
        if self.process.poll() is not None:
            self.log.close()
            return self.process.returncode, 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        elapsed = time.monotonic() - started
        self.log.close()
        return code, elapsed

    def log_tail(self, n_lines=40, skip_busy=True):
        """The log's last lines, without colours and (by default) without the lines of 503
        busy refusals, which would otherwise fill it under load."""
        try:
            self.log.flush()
        except (ValueError, OSError):
            pass
        try:
            with open(self.log_path, "rb") as file:
                lines = file.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
        if skip_busy:
            n_all = len(lines)
            lines = [line for line in lines if "status=503" not in line and BUSY_MESSAGE not in line]
            if n_all > len(lines):
                lines.append(f"({n_all - len(lines)} lines about 503 busy refusals left out)")
        return "\n".join(lines[-n_lines:])


def warm_up(url, model, timeout):
    """Loads the model with one tiny generate so that the load time is not counted as
    request latency. Returns seconds taken."""
    import urllib.request
    body = json.dumps({"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}}).encode()
    started = time.monotonic()
    request = urllib.request.Request(url + "/api/generate", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        json.loads(response.read())
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Report


def fmt_seconds(value):
    return "-" if value is None else f"{value:.2f}"


def fmt_mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def build_summary(args, stats, elapsed, rss, daemon_info):
    kinds = {}
    for kind, entry in stats.by_kind.items():
        kinds[kind] = {
            "sent": entry["sent"], "served": entry["served"], "busy": entry["busy"], "failed": entry["failed"],
            "hung": entry["hung"],
            "latency_s": {"p50": percentile(entry["latency"], 0.5), "p95": percentile(entry["latency"], 0.95),
                          "max": max(entry["latency"]) if entry["latency"] else None},
            "eval_tokens": entry["eval_tokens"],
        }
        if kind in STREAMED:
            kinds[kind]["ttfc_s"] = {"p50": percentile(entry["ttfc"], 0.5), "p95": percentile(entry["ttfc"], 0.95),
                                     "max": max(entry["ttfc"]) if entry["ttfc"] else None}
    served = stats.total("served")
    tokens = sum(entry["eval_tokens"] for entry in stats.by_kind.values())
    return {
        "config": {"url": args.url, "model": args.model, "clients": args.clients, "duration_s": args.duration,
                   "request_timeout_s": args.request_timeout, "max_drain_s": args.max_drain,
                   "busy_backoff_s": args.busy_backoff,
                   "num_parallel": args.num_parallel if args.spawn else None,
                   "max_queue": args.max_queue if args.spawn else None, "seed": args.seed},
        "elapsed_s": elapsed,
        "kinds": kinds,
        "totals": {"sent": stats.total("sent"), "served": served, "busy": stats.total("busy"),
                   "failed": stats.total("failed"), "hung": stats.total("hung")},
        "throughput_rps": served / elapsed if elapsed > 0 else 0.0,
        "generation_tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
        "failures": stats.failures,
        "failure_reasons": count_reasons(stats.failures),
        "hung": stats.hung,
        "model_requests": stats.model_requests,
        "rss": rss,
        "daemon": daemon_info,
    }


def count_reasons(failures):
    counts = {}
    for failure in failures:
        key = f"{failure['kind']}: {re.sub(r'[0-9]+', 'N', failure['reason'])[:120]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def print_table(summary, out=sys.stdout):
    config = summary["config"]
    print(file=out)
    print(f"modeld load test: {config['clients']} clients, {config['duration_s']:.0f} s of load, model "
          f"{config['model']}, {config['url']}" + (f", NUM_PARALLEL {config['num_parallel']}, MAX_QUEUE "
                                                   f"{config['max_queue']}" if config["num_parallel"] else ""), file=out)
    header = (f"{'kind':<9}{'sent':>7}{'served':>8}{'BUSY':>7}{'FAILED':>8}{'HUNG':>6}"
              f"{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'ttfc p50':>10}{'ttfc p95':>10}{'ttfc max':>10}")
    print(header, file=out)
    print("-" * len(header), file=out)
    for kind, entry in summary["kinds"].items():
        latency = entry["latency_s"]
        ttfc = entry.get("ttfc_s") or {}
        print(f"{kind:<9}{entry['sent']:>7}{entry['served']:>8}{entry['busy']:>7}{entry['failed']:>8}{entry['hung']:>6}"
              f"{fmt_seconds(latency['p50']):>8}{fmt_seconds(latency['p95']):>8}{fmt_seconds(latency['max']):>8}"
              f"{fmt_seconds(ttfc.get('p50')) if ttfc else '':>10}{fmt_seconds(ttfc.get('p95')) if ttfc else '':>10}"
              f"{fmt_seconds(ttfc.get('max')) if ttfc else '':>10}", file=out)
    totals = summary["totals"]
    print("-" * len(header), file=out)
    print(f"{'total':<9}{totals['sent']:>7}{totals['served']:>8}{totals['busy']:>7}{totals['failed']:>8}"
          f"{totals['hung']:>6}", file=out)
    print(f"elapsed {summary['elapsed_s']:.1f} s (load plus drain of requests in flight); throughput "
          f"{summary['throughput_rps']:.2f} served requests/s; {summary['generation_tokens_per_s']:.1f} generated "
          f"tokens/s (chat+generate)", file=out)
    rss = summary["rss"]
    if rss["samples"]:
        print(f"daemon RSS: at start {fmt_mib(rss['first_kib'])}, peak {fmt_mib(rss['peak_kib'])}, final "
              f"{fmt_mib(rss['final_kib'])} ({rss['samples']} samples every 0.5 s)"
              + ("; the process went away during the run" if rss["gone"] else ""), file=out)
        if rss.get("cpu_last_s") is not None and rss["cpu_wall_last"] > rss["cpu_wall_first"]:
            cpu = rss["cpu_last_s"] - rss["cpu_first_s"]
            wall = rss["cpu_wall_last"] - rss["cpu_wall_first"]
            print(f"daemon CPU: {cpu:.1f} s in {wall:.1f} s ({cpu / wall:.2f} cores on average; "
                  f"{os.cpu_count()} CPUs here)", file=out)
    if rss.get("client_cpu_s") is not None:
        print(f"load client CPU (this script): {rss['client_cpu_s']:.1f} s in {summary['elapsed_s']:.1f} s "
              f"({rss['client_cpu_s'] / summary['elapsed_s']:.2f} cores on average)", file=out)
    if summary["failures"]:
        print(f"FAILED reasons (first {min(5, len(summary['failures']))} of {len(summary['failures'])}):", file=out)
        for failure in summary["failures"][:5]:
            print(f"  at {failure['at_s']:.1f} s, {failure['request']}\n    -> {failure['reason']}", file=out)
        if len(summary["failure_reasons"]) > 1:
            print("  by reason:", file=out)
            for reason, count in sorted(summary["failure_reasons"].items(), key=lambda item: -item[1])[:10]:
                print(f"    {count:>6}  {reason}", file=out)
    if summary["hung"]:
        print(f"HUNG requests (first {min(5, len(summary['hung']))} of {len(summary['hung'])}):", file=out)
        for hung in summary["hung"][:5]:
            detail = "no answer yet" if hung["kind"] not in STREAMED else (
                "no chunk" if not hung["lines"] else
                f"{hung['lines']} chunks, the first after {fmt_seconds(hung['ttfc'])} s, the last after "
                f"{fmt_seconds(hung['last_chunk_s'])} s")
            print(f"  at {hung['at_s']:.1f} s, {hung['request']}\n    -> no end after {hung['timeout_s']:.1f} s; "
                  f"{detail}", file=out)
    daemon = summary["daemon"]
    if daemon:
        if daemon.get("warmup_s") is not None:
            print(f"warm-up (model load + 1 token): {daemon['warmup_s']:.2f} s", file=out)
        if "crashed_with" in daemon:
            print(f"the daemon exited by itself during the run, with code {daemon['crashed_with']}", file=out)
        elif "exit_code" in daemon:
            code = daemon["exit_code"]
            print(f"daemon shutdown on SIGTERM: "
                  + ("did not exit within the timeout (killed)" if code is None else f"exit code {code}")
                  + f" after {daemon['shutdown_s']:.2f} s", file=out)
        if daemon.get("log"):
            print(f"daemon log: {daemon['log']}", file=out)


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:11434")
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="per request; past it: HUNG")
    parser.add_argument("--max-drain", type=float, default=None,
                        help="seconds requests in flight may run on after the load ends; those still unanswered "
                             "then count as HUNG (default: only --request-timeout applies)")
    parser.add_argument("--busy-backoff", type=float, default=0.25,
                        help="seconds a client pauses after a 503 busy (x0.5-1.5 jitter; 0: none)")
    parser.add_argument("--pid", type=int, help="daemon PID whose VmRSS to sample")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--seed", type=int, default=None, help="seed of the request mix")
    parser.add_argument("--progress", type=float, default=30.0, help="progress line every N s on stderr (0: off)")
    for kind, weight in (("chat", 3), ("generate", 3), ("tags", 1), ("show", 1)):
        parser.add_argument(f"--weight-{kind}", type=float, default=weight, help=f"weight of {kind} (default {weight})")
    spawn = parser.add_argument_group("spawning the daemon")
    spawn.add_argument("--spawn", metavar="BINARY", help="start `BINARY serve` on a free port (overrides --url/--pid)")
    spawn.add_argument("--gguf", help="weights imported as --model with `BINARY create`")
    spawn.add_argument("--num-parallel", type=int, default=4)
    spawn.add_argument("--max-queue", type=int, default=16)
    spawn.add_argument("--log", help="daemon log file (default: in the temporary HOME, tail shown on trouble)")
    spawn.add_argument("--no-warmup", action="store_true", help="do not load the model before the clock starts")
    spawn.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds to wait after SIGTERM")
    spawn.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                       help="extra environment for the daemon (repeatable)")
    args = parser.parse_args(argv)
    if args.spawn and not args.gguf:
        parser.error("--spawn needs --gguf")
    if args.clients < 1 or args.duration <= 0 or args.request_timeout <= 0:
        parser.error("--clients, --duration and --request-timeout must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    daemon = None
    daemon_info = {}
    temp_home = None
    try:
        if args.spawn:
            temp_home = tempfile.TemporaryDirectory(prefix="modeld-load-")
            log_path = os.path.abspath(args.log) if args.log else os.path.join(temp_home.name, "serve.log")
            extra_env = dict(item.split("=", 1) for item in args.env)
            print(f"starting {args.spawn} serve (NUM_PARALLEL {args.num_parallel}, MAX_QUEUE {args.max_queue}), "
                  f"log {log_path}", file=sys.stderr, flush=True)
            try:
                daemon = SpawnedDaemon(args.spawn, temp_home.name, log_path, args.num_parallel, args.max_queue,
                                       extra_env)
                args.url = daemon.url
                args.pid = daemon.process.pid
                daemon_info["log"] = log_path if args.log else None
                daemon.import_gguf(args.model, args.gguf)
                if not args.no_warmup:
                    daemon_info["warmup_s"] = warm_up(args.url, args.model, args.request_timeout)
            except Exception as error:
                print(f"setting up the daemon failed: {type(error).__name__}: {error}", file=sys.stderr)
                if daemon:
                    print("---- daemon log tail ----\n" + daemon.log_tail(60), file=sys.stderr)
                return 2
        parsed = urllib.parse.urlsplit(args.url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 11434
        print(f"load: {args.clients} clients for {args.duration:.0f} s against {args.url}", file=sys.stderr, flush=True)
        stats, elapsed, rss = asyncio.run(run_load(args, host, port, args.pid))
        if daemon:
            crashed = daemon.process.poll()
            if crashed is not None:
                daemon_info["crashed_with"] = crashed
            code, took = daemon.stop(args.shutdown_timeout)
            daemon_info["exit_code"] = code
            daemon_info["shutdown_s"] = took
        summary = build_summary(args, stats, elapsed, rss, daemon_info)
        bad = summary["totals"]["failed"] or summary["totals"]["hung"]
        bad_exit = bool(daemon) and daemon_info.get("exit_code") != 0
        if daemon and (bad or bad_exit):
            summary["daemon"]["log_tail"] = daemon.log_tail(60)
        print_table(summary)
        if summary["daemon"].get("log_tail"):
            print("---- daemon log tail ----\n" + summary["daemon"]["log_tail"] + "\n-------------------------")
        if args.json:
            with open(args.json, "w") as file:
                json.dump(summary, file, indent=2)
        return 1 if bad or bad_exit else 0
    finally:
        if daemon and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        if temp_home:
            temp_home.cleanup()


if __name__ == "__main__":
    sys.exit(main())
