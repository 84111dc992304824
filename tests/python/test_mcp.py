"""MCP end to end: the daemon as an MCP client of the reference servers (npm
`@modelcontextprotocol/server-everything` and `server-memory`, over stdio and Streamable HTTP),
running the tool loop for `/api/chat` and `/v1/chat/completions` with the official `ollama` and
`openai` clients, on the programmed `tiny-mcp-agent` (exact answers) and on SmolLM2 (real
weights, through the constrained tool call); and the daemon as an MCP server for the official
Python `mcp` client and the MCP Inspector, over HTTP (`/mcp`) and stdio (`modeld mcp`)."""

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import ollama
import openai
import pytest
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import MODEL, Daemon, free_port, wait_for

AGENT = "tiny-mcp-agent"
# tiny_models::MCP_AGENT_ANSWER
AGENT_ANSWER = "The tools have answered."
HERE = os.path.dirname(os.path.abspath(__file__))


def mcp_tool(name):
    tools = os.environ.get("MODELD_MCP_TOOLS", "")
    path = os.path.join(tools, name)
    assert os.path.exists(path), f"set MODELD_MCP_TOOLS to the npm tools' bin folder (scripts/test.sh does): {path}"
    return path


@pytest.fixture(scope="module")
def mcp_daemon():
    """A daemon with SmolLM2 and `tiny-mcp-agent`, and MCP servers configured: `everything`
    (stdio, its sampling answered by SmolLM2), `remote` (the same server over Streamable
    HTTP), `memory` (stdio, its deletions needing approval), `fixture` (hostile tools, 4 s
    timeout), `garbage` (prints garbage on stdout) and `broken` (no command)."""
    binary = os.environ.get("MODELD_BIN")
    gguf = os.environ.get("SMOLLM2_GGUF")
    maker = os.path.join(os.path.dirname(binary or ""), "make-tiny-model")
    http_port = free_port()
    remote = subprocess.Popen([mcp_tool("mcp-server-everything"), "streamableHttp"],
                              env=dict(os.environ, PORT=str(http_port)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as home:
        config = {
            "mcpServers": {
                "everything": {"command": mcp_tool("mcp-server-everything"),
                               "sampling": {"model": MODEL, "maxTokens": 12}},
                "remote": {"type": "http", "url": f"http://127.0.0.1:{http_port}/mcp"},
                "memory": {"command": mcp_tool("mcp-server-memory"), "requireApproval": ["delete_entities"],
                           "env": {"MEMORY_FILE_PATH": os.path.join(home, "memory.jsonl")}},
                "fixture": {"command": sys.executable, "args": [os.path.join(HERE, "mcp", "fixture_server.py")],
                            "timeout": 4},
                "garbage": {"command": sys.executable, "startTimeout": 2,
                            "args": ["-c", "import time\nprint('not json at all')\ntime.sleep(600)"]},
                "broken": {"args": ["--no-command"]},
            },
            # Ollama's own clients cannot send `mcp_servers`: this model uses `everything` anyway.
            "models": {AGENT: {"mcpServers": ["everything"]}},
        }
        config_path = os.path.join(home, "mcp.json")
        with open(config_path, "w") as file:
            json.dump(config, file)
        # The HTTP server must answer before the daemon connects (a server that does not is
        # retried with backoff, which would only slow the test down).
        wait_for(lambda: port_open(http_port), what="server-everything over HTTP")
        running = Daemon(binary, home, MODELD_MCP_CONFIG=config_path)
        try:
            running.import_gguf(MODEL, gguf)
            agent_gguf = os.path.join(home, "mcp-agent.gguf")
            subprocess.run([maker, "mcp-agent", agent_gguf], check=True)
            running.import_gguf(AGENT, agent_gguf)
            wait_for(lambda: all(server["state"] == "running" for server in servers(running)
                                 if server["name"] in ("everything", "remote", "memory", "fixture")),
                     what="the MCP servers to start")
            yield running
        finally:
            running.stop()
            remote.terminate()
            remote.wait(timeout=10)


def port_open(port):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def servers(daemon):
    status, body = daemon.request("GET", "/api/mcp/servers")
    assert status == 200, body
    return body["servers"]


def server(daemon, name):
    return next(server for server in servers(daemon) if server["name"] == name)


def test_servers_start_with_the_daemon_and_bad_entries_say_why(mcp_daemon):
    everything = server(mcp_daemon, "everything")
    # Discovered despite the four tools/list_changed notifications it sends first.
    assert {"everything__echo", "everything__get-sum", "everything__trigger-sampling-request"} <= set(
        everything["tools"])
    assert "remote__echo" in server(mcp_daemon, "remote")["tools"]
    broken = server(mcp_daemon, "broken")
    assert broken["state"] == "invalid"
    assert "missing \"command\"" in broken["error"]
    # Garbage on stdout is not MCP: the server is restarted with backoff, and the rest serve.
    garbage = wait_for(lambda: (lambda found: found if found["restarts"] >= 1 else None)(server(mcp_daemon, "garbage")),
                       what="the garbage server to be restarted")
    assert garbage["state"] != "running"
    assert "did not start within 2 s" in garbage["error"] or "initialize failed" in garbage["error"], garbage
    listed = mcp_daemon.cli("mcp", "servers").stdout
    assert re.search(r"^everything\s+running\s+\d+", listed, re.M), listed
    assert "broken: missing \"command\"" in listed, listed


def test_the_tool_loop_runs_mcp_tools_and_sampling_for_the_ollama_client(mcp_daemon):
    # The official client sends no `mcp_servers`; the model's default in the config applies.
    client = ollama.Client(host=mcp_daemon.url)
    answer = client.chat(AGENT, messages=[{"role": "user", "content": "Go"}], options={"temperature": 0})
    assert answer.message.content == AGENT_ANSWER
    streamed = list(client.chat(AGENT, messages=[{"role": "user", "content": "Go"}], stream=True,
                                options={"temperature": 0}))
    tool_messages = [chunk.message for chunk in streamed if chunk.message.role == "tool"]
    assert [message.tool_name for message in tool_messages] == ["everything__echo",
                                                                 "everything__trigger-sampling-request"]
    assert tool_messages[0].content == "Echo: hello from tiny"

    response = mcp_daemon.post("/api/chat", {
        "model": AGENT, "messages": [{"role": "user", "content": "Go"}], "stream": False,
        "mcp_servers": ["everything"], "options": {"temperature": 0}})
    assert response["message"]["content"] == AGENT_ANSWER
    exchange = response["messages"]
    assert [message["role"] for message in exchange] == ["assistant", "tool", "tool", "assistant"]
    calls = exchange[0]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["everything__echo", "everything__trigger-sampling-request"]
    assert exchange[1] == {"role": "tool", "content": "Echo: hello from tiny", "tool_name": "everything__echo",
                           "tool_call_id": calls[0]["id"]}
    # server-everything asked the daemon's model for a message and shows what it got.
    sampled = exchange[2]["content"]
    assert sampled.startswith("LLM sampling result:"), sampled
    assert json.loads(sampled.split(":", 1)[1])["model"] == MODEL
    assert exchange[3]["content"] == AGENT_ANSWER
    # The history the caller keeps goes back in through the client's own types.
    history = [{"role": "user", "content": "Go"}, *exchange, {"role": "user", "content": "Thanks"}]
    assert client.chat(AGENT, messages=[ollama.Message(**message) for message in history],
                       options={"temperature": 0}).message.content


def test_streamed_loops_show_each_call_and_result_as_it_happens(mcp_daemon):
    request = urllib.request.Request(mcp_daemon.url + "/api/chat", method="POST", data=json.dumps({
        "model": AGENT, "messages": [{"role": "user", "content": "Go"}], "mcp_servers": "all",
        "options": {"temperature": 0}}).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        chunks = [json.loads(line) for line in response if line.strip()]
    kinds = []
    for chunk in chunks:
        message = chunk["message"]
        kind = "call" if message.get("tool_calls") else message["role"]
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    # Thinking, the two calls, their results, the answer.
    assert kinds == ["assistant", "call", "tool", "assistant"], kinds
    assert chunks[0]["message"]["thinking"]
    assert chunks[-1]["done"] is True
    assert "".join(chunk["message"]["content"] for chunk in chunks if chunk["message"]["role"] == "assistant") \
        == AGENT_ANSWER
    assert [message["role"] for message in chunks[-1]["messages"]] == ["assistant", "tool", "tool", "assistant"]


def test_the_openai_client_gets_the_loop_on_v1(mcp_daemon):
    client = openai.OpenAI(base_url=mcp_daemon.url + "/v1", api_key="unused")
    completion = client.chat.completions.create(
        model=AGENT, messages=[{"role": "user", "content": "Go"}], temperature=0,
        extra_body={"mcp_servers": ["everything"]})
    assert completion.choices[0].message.content == AGENT_ANSWER
    assert completion.choices[0].finish_reason == "stop"
    exchange = completion.model_extra["messages"]
    assert exchange[1]["role"] == "tool" and exchange[1]["content"] == "Echo: hello from tiny"
    assert exchange[1]["tool_call_id"] == exchange[0]["tool_calls"][0]["id"]

    stream = client.chat.completions.create(
        model=AGENT, messages=[{"role": "user", "content": "Go"}], temperature=0, stream=True,
        extra_body={"mcp_servers": ["everything"]})
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    assert any(delta.role == "tool" for delta in deltas)
    assert "".join(delta.content or "" for delta in deltas if delta.role == "assistant") == AGENT_ANSWER


def test_tools_of_the_caller_come_back_unexecuted(mcp_daemon):
    # The caller's own tool shadows the MCP tool of the same name: both calls of the round
    # come back, and nothing runs.
    caller_tool = {"type": "function", "function": {"name": "everything__echo", "description": "mine",
                                                    "parameters": {"type": "object"}}}
    response = mcp_daemon.post("/api/chat", {
        "model": AGENT, "messages": [{"role": "user", "content": "Go"}], "stream": False,
        "tools": [caller_tool], "mcp_servers": ["everything"], "options": {"temperature": 0}})
    assert [call["function"]["name"] for call in response["message"]["tool_calls"]] == [
        "everything__echo", "everything__trigger-sampling-request"]
    assert "messages" not in response


def sent_back(daemon, call, servers=("everything",)):
    """Sends a conversation that ends with an unanswered call: the loop runs it first (as it
    does a call that waited for approval), then the model answers."""
    return daemon.post("/api/chat", {
        "model": AGENT, "stream": False, "mcp_servers": list(servers), "options": {"temperature": 0},
        "messages": [{"role": "user", "content": "Go"},
                     {"role": "assistant", "content": "", "tool_calls": [{"function": call}]}]})


def test_bad_calls_become_tool_messages_and_the_daemon_keeps_serving(mcp_daemon):
    # Arguments that do not match the schema: the server's error, as a tool message.
    bad = sent_back(mcp_daemon, {"name": "everything__get-sum", "arguments": {"a": "two"}})
    assert bad["messages"][0]["role"] == "tool"
    assert bad["messages"][0]["content"].startswith("Error:"), bad["messages"][0]
    assert bad["message"]["content"] == AGENT_ANSWER
    # An unknown tool.
    unknown = sent_back(mcp_daemon, {"name": "everything__no-such-tool", "arguments": {}})
    assert unknown["messages"] == [] or unknown["message"]["content"] == AGENT_ANSWER
    # A hung tool is cancelled after the server's timeout (4 s).
    started = time.time()
    hung = sent_back(mcp_daemon, {"name": "fixture__hang", "arguments": {}}, servers=("fixture",))
    assert "did not answer within 4 s" in hung["messages"][0]["content"], hung["messages"][0]
    assert time.time() - started < 30
    # 10 MB of result is cut, with a note.
    huge = sent_back(mcp_daemon, {"name": "fixture__huge", "arguments": {}}, servers=("fixture",))
    content = huge["messages"][0]["content"]
    assert len(content) < 20_000 and "the result has 10485760 bytes" in content, content[-200:]
    # A valid call still works afterwards.
    good = sent_back(mcp_daemon, {"name": "everything__get-sum", "arguments": {"a": 2, "b": 3}})
    assert good["messages"][0]["content"] == "The sum of 2 and 3 is 5."


def test_a_call_that_reports_progress_completes(mcp_daemon):
    # server-everything sends notifications/progress for each step before its result.
    for server_name in ("everything", "remote"):
        done = sent_back(mcp_daemon, {"name": f"{server_name}__trigger-long-running-operation",
                                      "arguments": {"duration": 1, "steps": 3}}, servers=(server_name,))
        assert "Long running operation completed" in done["messages"][0]["content"], done["messages"][0]


def test_a_server_killed_mid_call_is_a_tool_message_and_comes_back(mcp_daemon):
    first_pid = sent_back(mcp_daemon, {"name": "fixture__pid", "arguments": {}}, servers=("fixture",))
    first_pid = first_pid["messages"][0]["content"]
    died = sent_back(mcp_daemon, {"name": "fixture__die", "arguments": {}}, servers=("fixture",))
    assert died["messages"][0]["content"].startswith("Error:"), died["messages"][0]
    assert died["message"]["content"] == AGENT_ANSWER
    wait_for(lambda: server(mcp_daemon, "fixture")["state"] == "running" and server(mcp_daemon, "fixture")["restarts"]
             >= 1, what="the fixture server to be restarted")
    again = sent_back(mcp_daemon, {"name": "fixture__pid", "arguments": {}}, servers=("fixture",))
    assert again["messages"][0]["content"].isdigit() and again["messages"][0]["content"] != first_pid


def test_calls_needing_approval_come_back_and_run_when_sent_back(mcp_daemon):
    created = sent_back(mcp_daemon, {"name": "memory__create_entities", "arguments": {"entities": [
        {"name": "modeld", "entityType": "daemon", "observations": ["serves models"]}]}}, servers=("memory",))
    assert "modeld" in created["messages"][0]["content"]
    graph = sent_back(mcp_daemon, {"name": "memory__read_graph", "arguments": {}}, servers=("memory",))
    assert "serves models" in graph["messages"][0]["content"]
    # delete_entities needs approval: a model's call to it would come back; the conversation
    # sent back with it unanswered is the approval, and it runs.
    deleted = sent_back(mcp_daemon, {"name": "memory__delete_entities", "arguments": {"entityNames": ["modeld"]}},
                        servers=("memory",))
    assert deleted["messages"][0]["role"] == "tool"
    graph = sent_back(mcp_daemon, {"name": "memory__read_graph", "arguments": {}}, servers=("memory",))
    assert "serves models" not in graph["messages"][0]["content"]


def test_bad_requests_are_400s(mcp_daemon):
    status, body = mcp_daemon.request("POST", "/api/chat", {
        "model": AGENT, "messages": [{"role": "user", "content": "Go"}], "mcp_servers": ["nope"]})
    assert status == 400
    assert body["error"].startswith("mcp_servers: no MCP server is named \"nope\" (configured: broken, everything,")
    status, body = mcp_daemon.request("POST", "/api/chat", {
        "model": AGENT, "messages": [{"role": "user", "content": "Go"}], "mcp_servers": 5})
    assert (status, body["error"]) == (400, "mcp_servers must be \"all\" or a list of MCP server names")
    status, body = mcp_daemon.request("POST", "/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "tool_choice": "sometimes"})
    assert status == 400 and "invalid tool_choice" in body["error"]["message"]


SUM = re.compile(r"The sum of (-?[\d.]+) and (-?[\d.]+) is (-?[\d.]+)\.")


def test_smollm2_calls_mcp_tools_through_the_constrained_path(mcp_daemon):
    """SmolLM2's template has no tool format: the tools are in its system prompt and its
    answer is constrained to a call that matches get-sum's schema, over stdio and over HTTP."""
    client = openai.OpenAI(base_url=mcp_daemon.url + "/v1", api_key="unused")
    for server_name in ("everything", "remote"):
        completion = client.chat.completions.create(
            model=MODEL, temperature=0, max_tokens=48,
            messages=[{"role": "user", "content": "What is 2 plus 3? Use the tool."}],
            tool_choice={"type": "function", "function": {"name": f"{server_name}__get-sum"}},
            extra_body={"mcp_servers": [server_name]})
        exchange = completion.model_extra["messages"]
        call = exchange[0]["tool_calls"][0]
        assert call["function"]["name"] == f"{server_name}__get-sum"
        arguments = json.loads(call["function"]["arguments"])
        assert set(arguments) == {"a", "b"} and all(isinstance(value, (int, float)) for value in arguments.values())
        found = SUM.fullmatch(exchange[1]["content"])
        assert found, exchange[1]
        a, b, total = (float(group) for group in found.groups())
        assert (a, b) == (arguments["a"], arguments["b"]) and total == a + b


def test_smollm2_answers_tools_in_text_or_a_valid_call_on_api_chat(mcp_daemon):
    """`tools` on a model without a tool format is no longer a 400: a plain request with the
    caller's own tools gets text or a call that matches the schema, never a broken call."""
    client = ollama.Client(host=mcp_daemon.url)
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}}}
    response = client.chat(MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                           tools=[weather], options={"temperature": 0, "num_predict": 40})
    if response.message.tool_calls:
        call = response.message.tool_calls[0]
        assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    else:
        assert response.message.content and not response.message.content.lstrip().startswith("{")


def test_the_tool_loop_runs_here_for_a_remote_model(mcp_daemon):
    """A remote model decides, the daemon runs the tools: the replica is a plain modeld with
    the programmed agent and no MCP servers of its own."""
    binary = os.environ["MODELD_BIN"]
    maker = os.path.join(os.path.dirname(binary), "make-tiny-model")
    with tempfile.TemporaryDirectory() as home:
        replica = Daemon(binary, home)
        try:
            agent_gguf = os.path.join(home, "mcp-agent.gguf")
            subprocess.run([maker, "mcp-agent", agent_gguf], check=True)
            replica.import_gguf(AGENT, agent_gguf)
            modelfile = os.path.join(home, "Modelfile.remote")
            with open(modelfile, "w") as file:
                file.write(f"FROM {AGENT}\nENDPOINT {replica.url} ollama\n")
            created = mcp_daemon.cli("create", "remote-agent", "-f", modelfile)
            assert "success" in created.stderr, created.stderr
            response = mcp_daemon.post("/api/chat", {
                "model": "remote-agent", "messages": [{"role": "user", "content": "Go"}], "stream": False,
                "mcp_servers": ["everything"], "options": {"temperature": 0}})
            assert response["message"]["content"] == AGENT_ANSWER
            assert response["remote_host"] == replica.url
            exchange = response["messages"]
            assert [message["role"] for message in exchange] == ["assistant", "tool", "tool", "assistant"]
            assert exchange[1]["content"] == "Echo: hello from tiny"

            async def body(session):
                answer = await session.call_tool("chat", {"model": "remote-agent", "prompt": "Go", "max_tokens": 24,
                                                          "temperature": 0})
                assert not answer.is_error, answer
                return answer.structured_content["model"]
            assert run(with_http_session(mcp_daemon, body)) == "remote-agent"
        finally:
            mcp_daemon.request("DELETE", "/api/delete", {"model": "remote-agent"})
            replica.stop()


# The daemon as an MCP server.

def run(coroutine):
    return asyncio.run(coroutine)


async def with_http_session(daemon, body, **session_arguments):
    async with streamable_http_client(daemon.url + "/mcp") as streams:
        async with ClientSession(streams[0], streams[1], **session_arguments) as session:
            await session.initialize()
            return await body(session)


def test_agents_see_local_models_as_tools_over_http(mcp_daemon):
    async def body(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"chat", "generate", "complete_code", "embed", "list_models", "show_model"}
        assert set(tools["chat"].input_schema["properties"]["model"]["enum"]) >= {MODEL, f"{AGENT}:latest"}
        assert tools["chat"].output_schema["required"] == ["model", "content", "done_reason"]
        listed = await session.call_tool("list_models", {})
        names = [model["name"] for model in listed.structured_content["models"]]
        assert MODEL in names
        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        answer = await session.call_tool("chat", {"model": MODEL, "prompt": "Say hello.", "max_tokens": 24,
                                                  "temperature": 0}, progress_callback=on_progress)
        assert not answer.is_error, answer
        assert answer.structured_content["content"] and answer.structured_content["model"] == MODEL
        assert answer.content[0].text == answer.structured_content["content"]
        assert progress and progress == sorted(progress)
        shown = await session.call_tool("show_model", {"model": AGENT})
        assert shown.structured_content["capabilities"] == ["completion", "tools", "thinking"]
        missing = await session.call_tool("show_model", {"model": "nope"})
        assert missing.is_error and "not found" in missing.content[0].text
        resources = await session.list_resources()
        assert f"modeld://models/{MODEL}" in [str(resource.uri) for resource in resources.resources]
    run(with_http_session(mcp_daemon, body))


def test_a_cancelled_call_stops_the_generation(mcp_daemon):
    async def body(session):
        started = time.time()
        with pytest.raises(BaseException):
            async with asyncio.timeout(2):
                # Greedy and counting far: unsampled, the story could end within the two seconds.
                await session.call_tool("generate", {"model": MODEL, "temperature": 0, "max_tokens": 4000,
                                                     "prompt": "Count from 1 to 10000: 1, 2, 3, 4, 5,"})
        return started
    run(with_http_session(mcp_daemon, body))
    # The engine stopped: the next request is served at once, not after 4000 tokens.
    started = time.time()
    reply = mcp_daemon.post("/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False,
                                              "options": {"num_predict": 4}})
    assert reply["done"]
    assert time.time() - started < 30
    log = open(os.path.join(os.path.dirname(mcp_daemon.env["OLLAMA_MODELS"]), "serve.log"), errors="replace").read()
    assert "MCP call cancelled; generation stopped" in log


def test_clients_hear_that_the_tools_changed_when_models_come_and_go(mcp_daemon):
    async def body(session):
        changed = asyncio.Event()
        original = session._message_handler

        async def handler(message):
            if isinstance(message, types.ServerNotification) and isinstance(
                    message.root if hasattr(message, "root") else message, types.ToolListChangedNotification):
                changed.set()
            elif isinstance(message, types.ToolListChangedNotification):
                changed.set()
            if original:
                await original(message)
        session._message_handler = handler
        # Server notifications travel on the client's GET stream, which the client opens after
        # `initialize` returns; the transport drops what is sent before it is open. A real client is
        # connected long before models change, so let the stream open first, and keep the event loop
        # free (the copy runs on a thread) so that it can.
        await session.list_tools()
        await asyncio.sleep(1)
        copied = await asyncio.to_thread(
            mcp_daemon.request, "POST", "/api/copy", {"source": MODEL, "destination": "copied:1"})
        assert copied[0] == 200
        try:
            await asyncio.wait_for(changed.wait(), 15)
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert "copied:1" in tools["chat"].input_schema["properties"]["model"]["enum"]
        finally:
            mcp_daemon.request("DELETE", "/api/delete", {"model": "copied:1"})
    run(with_http_session(mcp_daemon, body))


def test_web_pages_cannot_reach_the_mcp_endpoint(mcp_daemon):
    initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    for extra in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
        request = urllib.request.Request(mcp_daemon.url + "/mcp", data=initialize, method="POST",
                                         headers={**headers, **extra})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, extra
    request = urllib.request.Request(mcp_daemon.url + "/mcp", data=initialize, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["mcp-session-id"]


def test_modeld_mcp_serves_stdio_clients_through_the_daemon(mcp_daemon):
    async def body():
        parameters = StdioServerParameters(command=mcp_daemon.binary, args=["mcp"],
                                           env={**mcp_daemon.env, "MODELD_MCP_NO_AUTOSTART": "1"})
        async with stdio_client(parameters) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                info = await session.initialize()
                assert info.server_info.name == "modeld"
                tools = [tool.name for tool in (await session.list_tools()).tools]
                assert "complete_code" in tools
                answer = await session.call_tool("generate", {"model": AGENT, "prompt": "Go", "max_tokens": 8})
                assert not answer.is_error and answer.structured_content["model"] == AGENT
    run(body())


def inspector(*arguments):
    node_bin = os.path.dirname(os.path.realpath(mcp_tool("node")))
    environment = dict(os.environ, PATH=node_bin + os.pathsep + os.environ["PATH"])
    return subprocess.run([mcp_tool("mcp-inspector"), "--cli", *arguments], env=environment, capture_output=True,
                          text=True, timeout=180)


def test_the_mcp_inspector_lists_and_calls_tools(mcp_daemon):
    listed = inspector("--transport", "http", "--server-url", mcp_daemon.url + "/mcp", "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    assert "complete_code" in listed.stdout
    called = inspector(mcp_daemon.binary, "mcp", "-e", f"OLLAMA_HOST={mcp_daemon.host}", "-e",
                       "MODELD_MCP_NO_AUTOSTART=1", "--method", "tools/call", "--tool-name", "list_models")
    assert called.returncode == 0, called.stderr
    assert MODEL in called.stdout


# The conformance suite's server scenarios that apply to a server of models (the others call
# the suite's own reference tools, prompts and resources, or deprecated logging).
CONFORMANCE_SCENARIOS = ["server-initialize", "ping", "tools-list", "resources-list", "dns-rebinding-protection",
                         "server-sse-multiple-streams"]


@pytest.mark.parametrize("scenario", CONFORMANCE_SCENARIOS)
def test_conformance_scenarios_pass(mcp_daemon, scenario):
    node_bin = os.path.dirname(os.path.realpath(mcp_tool("node")))
    environment = dict(os.environ, PATH=node_bin + os.pathsep + os.environ["PATH"])
    # dns-rebinding-protection needs the server named `localhost`.
    result = subprocess.run([mcp_tool("conformance"), "server", "--url", f"http://localhost:{mcp_daemon.port}/mcp",
                             "--scenario", scenario], env=environment, capture_output=True, text=True, timeout=180)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode == 0, output[-2000:]
    assert re.search(r"Passed: (\d+)/\1, 0 failed", output), output[-2000:]


def test_hostile_bodies_at_the_mcp_endpoint_are_refused_and_it_keeps_serving(mcp_daemon):
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def post(body):
        request = urllib.request.Request(mcp_daemon.url + "/mcp", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x" * (5 << 20), "version": "1"}}}
    assert post(json.dumps(initialize).encode()) == 413
    assert 400 <= post(b'{"jsonrpc": "2.0", "id": 1, "method": "initia') < 500
    assert 400 <= post(b"[" * 100_000 + b"]" * 100_000) < 500
    assert post(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()) in (400, 404)
    # Still serving.
    listed = inspector("--transport", "http", "--server-url", mcp_daemon.url + "/mcp", "--method", "tools/list")
    assert listed.returncode == 0 and "list_models" in listed.stdout, listed.stderr
