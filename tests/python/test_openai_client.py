"""The official `openai` Python client against modeld's /v1 API on real weights."""

import openai
import pytest

from conftest import MODEL


@pytest.fixture(scope="module")
def client(daemon):
    return openai.OpenAI(base_url=daemon.url + "/v1/", api_key="modeld", max_retries=0)


def test_models(client):
    assert MODEL in [model.id for model in client.models.list().data]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_whole_and_streamed(client):
    messages = [{"role": "user", "content": "What is the capital of France."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=16, seed=1)
    answer = whole.choices[0].message.content
    assert "Paris" in answer
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0

    stream = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=16, seed=1,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == answer
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_and_limits(client):
    completion = client.completions.create(model=MODEL, prompt="Count from one to ten:", max_tokens=4, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_json_schema_response_format(client):
    import json
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = client.chat.completions.create(
        model=MODEL, temperature=0,
        messages=[{"role": "user", "content": "Which city is the capital of France? Answer as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    answer = json.loads(reply.choices[0].message.content)
    assert list(answer) == ["city"] and isinstance(answer["city"], str)
