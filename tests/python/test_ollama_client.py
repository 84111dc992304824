"""The official `ollama` Python client against modeld on real weights."""

import ollama
import pytest

from conftest import MODEL


@pytest.fixture(scope="module")
def client(daemon):
    return ollama.Client(host=daemon.url)


def test_list_show_and_ps(client):
    models = client.list().models
    assert MODEL in [model.model for model in models]
    show = client.show(MODEL)
    assert show.details.family == "llama"
    assert show.details.quantization_level == "Q4_1"
    assert show.modelinfo["llama.context_length"] == 8192
    assert "completion" in show.capabilities
    client.generate(model=MODEL, prompt="", keep_alive="10m")
    running = client.ps().models
    assert [model.model for model in running] == [MODEL]
    assert running[0].context_length > 0


def test_generate_and_chat(client):
    result = client.generate(model=MODEL, prompt="Say hello.", options={"temperature": 0, "num_predict": 16})
    assert result.done and result.response.strip()
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "What is the capital of France."}],
                        options={"temperature": 0, "num_predict": 16})
    assert "Paris" in reply.message.content
    streamed = "".join(
        part.message.content
        for part in client.chat(model=MODEL, messages=[{"role": "user", "content": "What is the capital of France."}],
                                options={"temperature": 0, "num_predict": 16}, stream=True)
    )
    assert streamed == reply.message.content


def test_create_copy_delete(client):
    progress = list(client.create(model="pirate", from_=MODEL, system="You are a pirate.", stream=True))
    assert progress[-1].status == "success"
    assert "You are a pirate." in client.show("pirate").modelfile
    client.copy("pirate", "pirate2")
    names = [model.model for model in client.list().models]
    assert "pirate:latest" in names and "pirate2:latest" in names
    client.delete("pirate")
    client.delete("pirate2")
    names = [model.model for model in client.list().models]
    assert "pirate:latest" not in names and "pirate2:latest" not in names


def test_errors_raise_response_error(client):
    with pytest.raises(ollama.ResponseError) as error:
        client.chat(model="missing-model", messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 404
    assert "not found" in error.value.error
