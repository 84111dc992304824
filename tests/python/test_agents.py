"""Tool calls, thinking and fill-in-the-middle on the real engine, driven by the official
`ollama` and `openai` clients. The models are made by code (`crates/tiny-models`): their
weights program the reply, so the answers are known exactly while the tokenizer, the chat
template, sampling and decoding are the real ones."""

import json

import ollama
import openai
import pytest

from conftest import MODEL

# What the programmed models say (crates/tiny-models/src/lib.rs).
THINKING = "The user wants the weather, so I call the tools."
ANSWER = "It is 18 degrees and sunny in Paris."
FIM_MIDDLE = "return left + right"

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
]
GREEDY = {"temperature": 0}


def run_tool(name, arguments):
    return {"get_weather": "18C, sunny", "get_time": "14:05"}[name] + f" in {arguments['city']}"


@pytest.fixture(scope="module")
def client(tiny_daemon):
    return ollama.Client(host=tiny_daemon.url)


@pytest.fixture(scope="module")
def smollm2(daemon):
    return ollama.Client(host=daemon.url)


def test_capabilities(client):
    agent, fim = "tiny-agent", "tiny-fim"
    assert client.show(agent).capabilities == ["completion", "tools", "thinking"]
    assert client.show(fim).capabilities == ["completion", "insert"]


def test_models_that_cannot_do_it_get_ollamas_errors(smollm2):
    # (`tools` is not one of them any more: see test_mcp.py for tools on SmolLM2.)
    assert smollm2.show(MODEL).capabilities == ["completion"]
    with pytest.raises(ollama.ResponseError) as error:
        smollm2.chat(MODEL, messages=[{"role": "user", "content": "hi"}], think=True)
    assert error.value.status_code == 400 and "does not support thinking" in error.value.error
    with pytest.raises(ollama.ResponseError) as error:
        smollm2.generate(MODEL, prompt="def f(", suffix="):")
    assert error.value.status_code == 400 and error.value.error.endswith("does not support insert")




def test_thinking_then_two_calls(client):
    response = client.chat("tiny-agent", messages=[{"role": "user", "content": "Weather and time in Paris?"}],
                           tools=TOOLS, options=GREEDY)
    message = response.message
    assert message.thinking == THINKING
    assert message.content == ""
    calls = message.tool_calls
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == {"city": "Paris", "unit": "celsius"}
    assert list(calls[0].function.arguments) == ["city", "unit"]
    assert calls[1].function.arguments == {"city": "Paris"}
    assert response.done_reason == "stop"


def test_streamed_calls_arrive_whole(client):
    chunks = list(client.chat("tiny-agent", messages=[{"role": "user", "content": "Weather?"}],
                              tools=TOOLS, options=GREEDY, stream=True))
    thinking = "".join(chunk.message.thinking or "" for chunk in chunks)
    assert thinking == THINKING
    call_chunks = [chunk for chunk in chunks if chunk.message.tool_calls]
    assert call_chunks and not any(chunk.done for chunk in call_chunks)
    # Each call arrives once, whole, as soon as it is parsed; two calls completed by the same
    # batch of tokens (a fast engine) share a chunk, as under Ollama.
    calls = [call for chunk in call_chunks for call in chunk.message.tool_calls]
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == {"city": "Paris", "unit": "celsius"}
    assert calls[1].function.arguments == {"city": "Paris"}
    # Thinking first, then the calls, then the final chunk.
    first_call = chunks.index(call_chunks[0])
    assert all(not chunk.message.tool_calls for chunk in chunks[:first_call])
    assert chunks[-1].done


def test_call_tool_reply_answer_loop(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat("tiny-agent", messages=messages, tools=TOOLS, options=GREEDY)
    assert first.message.tool_calls
    messages.append(first.message)
    for call in first.message.tool_calls:
        messages.append({"role": "tool", "tool_name": call.function.name,
                         "content": run_tool(call.function.name, call.function.arguments)})
    final = client.chat("tiny-agent", messages=messages, tools=TOOLS, options=GREEDY)
    assert final.message.content == ANSWER
    assert not final.message.tool_calls
    assert final.prompt_eval_count > first.prompt_eval_count


def test_think_false_calls_without_thinking(client):
    response = client.chat("tiny-agent", messages=[{"role": "user", "content": "Weather?"}],
                           tools=TOOLS, think=False, options=GREEDY)
    assert not response.message.thinking
    assert [call.function.name for call in response.message.tool_calls] == ["get_weather", "get_time"]
    # Without tools the call markup is only text.
    plain = client.chat("tiny-agent", messages=[{"role": "user", "content": "Weather?"}], think=False, options=GREEDY)
    assert not plain.message.tool_calls and "<tool_call>" in plain.message.content


def test_generate_reports_thinking(client):
    response = client.generate("tiny-agent", prompt="Weather?", options=GREEDY)
    assert response.thinking == THINKING
    assert "<think>" not in response.response


def test_fill_in_the_middle(client):
    prefix, suffix = "def add(left, right):\n    ", "\n\nprint(add(1, 2))\n"
    response = client.generate("tiny-fim", prompt=prefix, suffix=suffix, options=GREEDY)
    assert response.response == FIM_MIDDLE
    # Byte tokens: the three FIM markers plus every byte of prefix and suffix, nothing else.
    assert response.prompt_eval_count == 3 + len(prefix.encode()) + len(suffix.encode())
    streamed = "".join(chunk.response for chunk in client.generate("tiny-fim", prompt=prefix, suffix=suffix,
                                                                    options=GREEDY, stream=True))
    assert streamed == FIM_MIDDLE


@pytest.fixture(scope="module")
def openai_client(tiny_daemon):
    return openai.OpenAI(base_url=tiny_daemon.url + "/v1/", api_key="modeld", max_retries=0)


def test_openai_tools_whole_and_streamed(openai_client):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    whole = openai_client.chat.completions.create(model="tiny-agent", messages=messages, tools=TOOLS, temperature=0)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert all(call.id.startswith("call_") and call.type == "function" for call in calls)
    assert choice.message.model_extra.get("reasoning") == THINKING

    stream = openai_client.chat.completions.create(model="tiny-agent", messages=messages, tools=TOOLS,
                                                   temperature=0, stream=True)
    chunks = list(stream)
    streamed_calls = [call for chunk in chunks for call in (chunk.choices[0].delta.tool_calls or [])]
    assert [(call.index, call.function.name) for call in streamed_calls] == [(0, "get_weather"), (1, "get_time")]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The caller runs the tools and sends the results back in OpenAI's shape.
    messages.append(choice.message.model_dump(exclude_none=True))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": run_tool(call.function.name, json.loads(call.function.arguments))})
    final = openai_client.chat.completions.create(model="tiny-agent", messages=messages, tools=TOOLS, temperature=0)
    assert final.choices[0].message.content == ANSWER
    assert final.choices[0].finish_reason == "stop"


def test_openai_completion_with_suffix(openai_client):
    completion = openai_client.completions.create(model="tiny-fim", prompt="def add(left, right):\n    ",
                                                  suffix="\n", temperature=0)
    assert completion.choices[0].text == FIM_MIDDLE
    with pytest.raises(openai.BadRequestError) as error:
        openai_client.completions.create(model="tiny-agent", prompt="def f(", suffix="):")
    assert "does not support insert" in str(error.value)
