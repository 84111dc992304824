"""Embeddings on real weights: all-MiniLM-L6-v2 imported from its sentence-transformers folder
with `modeld create`, served through `/api/embed`, `/api/embeddings` and `/v1/embeddings` to
the official `ollama` and `openai` clients, and compared with sentence-transformers' own
vectors (tests/fixtures/embeddings, written by scripts/embedding-reference.py)."""

import asyncio
import base64
import json
import math
import os
import struct
import tempfile

import ollama
import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import MODEL, Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "embeddings")
EMBEDDER = "all-minilm"


def load_fixture(name):
    with open(os.path.join(FIXTURES, name)) as file:
        return json.load(file)


def cosine(left, right):
    dot = sum(a * b for a, b in zip(left, right))
    return dot / (math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right)))


@pytest.fixture(scope="module")
def embed_daemon():
    """A daemon of its own (the session's lists exactly SmolLM2) with all-minilm imported from
    its folder, and SmolLM2 for the errors of a model that does not embed."""
    binary, gguf, folder = (os.environ.get(name) for name in ("MODELD_BIN", "SMOLLM2_GGUF", "MINILM_DIR"))
    assert binary and gguf, "set MODELD_BIN and SMOLLM2_GGUF (scripts/test.sh does)"
    assert folder and os.path.exists(os.path.join(folder, "model.safetensors")), \
        "set MINILM_DIR to the unpacked all-MiniLM-L6-v2 folder (scripts/test.sh does)"
    with tempfile.TemporaryDirectory() as home:
        running = Daemon(binary, home)
        try:
            running.import_gguf(MODEL, gguf)
            modelfile = os.path.join(home, "Modelfile.minilm")
            with open(modelfile, "w") as file:
                file.write(f"FROM {folder}\n")
            created = running.cli("create", EMBEDDER, "-f", modelfile)
            assert "success" in created.stderr, created.stderr
            yield running
        finally:
            running.stop()


def test_vectors_match_sentence_transformers(embed_daemon):
    sentences = load_fixture("sentences.json")["sentences"]
    reference = load_fixture("reference.json")
    response = ollama.Client(host=embed_daemon.url).embed(model=EMBEDDER, input=sentences)
    assert len(response.embeddings) == len(sentences) >= 50
    similarities = [cosine(mine, theirs) for mine, theirs in zip(response.embeddings, reference["vectors"])]
    worst = min(range(len(similarities)), key=similarities.__getitem__)
    assert similarities[worst] >= 0.999, (similarities[worst], sentences[worst][:80])
    for vector in response.embeddings:
        assert abs(math.sqrt(sum(value * value for value in vector)) - 1) < 1e-4
    # The same tokens as sentence-transformers: the 1,000-word text cut at 256.
    assert response.prompt_eval_count == sum(reference["tokens"])
    assert response.total_duration > 0


def test_one_input_alone_gives_what_it_gives_in_a_batch(embed_daemon):
    client = ollama.Client(host=embed_daemon.url)
    batch = client.embed(model=EMBEDDER, input=["short", "a somewhat longer sentence about vectors", "x"])
    alone = client.embed(model=EMBEDDER, input="a somewhat longer sentence about vectors")
    assert cosine(batch.embeddings[1], alone.embeddings[0]) > 0.99999


def test_legacy_embeddings_are_not_normalised(embed_daemon):
    client = ollama.Client(host=embed_daemon.url)
    legacy = client.embeddings(model=EMBEDDER, prompt="The cat sits on the mat.")["embedding"]
    normalised = client.embed(model=EMBEDDER, input="The cat sits on the mat.").embeddings[0]
    assert len(legacy) == 384
    assert abs(math.sqrt(sum(value * value for value in legacy)) - 1) > 1e-3
    assert cosine(legacy, normalised) > 0.99999


def test_dimensions_and_truncation(embed_daemon):
    client = ollama.Client(host=embed_daemon.url)
    short = client.embed(model=EMBEDDER, input="The cat sits on the mat.", dimensions=64).embeddings[0]
    assert len(short) == 64 and abs(sum(value * value for value in short) - 1) < 1e-4
    long_text = load_fixture("sentences.json")["sentences"][-1]
    with pytest.raises(ollama.ResponseError) as error:
        client.embed(model=EMBEDDER, input=long_text, truncate=False)
    assert error.value.status_code == 400
    assert error.value.error == "the input length exceeds the context length"


def test_openai_client_gets_floats_and_base64(embed_daemon):
    client = openai.OpenAI(base_url=embed_daemon.url + "/v1", api_key="unused")
    reference = load_fixture("reference.json")["vectors"]
    sentences = load_fixture("sentences.json")["sentences"][:3]
    floats = client.embeddings.create(model=EMBEDDER, input=sentences, encoding_format="float")
    assert [item.index for item in floats.data] == [0, 1, 2]
    assert cosine(floats.data[0].embedding, reference[0]) >= 0.999
    assert floats.usage.prompt_tokens > 0
    status, raw = embed_daemon.request("POST", "/v1/embeddings",
                                       {"model": EMBEDDER, "input": sentences[0], "encoding_format": "base64"})
    assert status == 200, raw
    decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert cosine(decoded, reference[0]) >= 0.999
    # Token ids, as OpenAI's clients may send them.
    status, by_tokens = embed_daemon.request("POST", "/v1/embeddings", {"model": EMBEDDER, "input": [101, 7592, 102]})
    assert status == 200 and len(by_tokens["data"][0]["embedding"]) == 384, by_tokens
    # An id outside the vocabulary is the client's error, not the engine's.
    status, error = embed_daemon.request("POST", "/v1/embeddings", {"model": EMBEDDER, "input": [999999]})
    assert status == 400 and "outside the vocabulary of 30522" in error["error"]["message"], error
    status, error = embed_daemon.request("POST", "/v1/embeddings",
                                         {"model": EMBEDDER, "input": "x", "encoding_format": "hex"})
    assert status == 400 and "Supported values: ['float', 'base64']" in error["error"]["message"]


def test_wrong_model_kinds_get_ollamas_errors(embed_daemon):
    client = ollama.Client(host=embed_daemon.url)
    with pytest.raises(ollama.ResponseError) as error:
        client.chat(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])
    assert (error.value.status_code, error.value.error) == (400, f'"{EMBEDDER}" does not support chat')
    with pytest.raises(ollama.ResponseError) as error:
        client.generate(model=EMBEDDER, prompt="hi")
    assert (error.value.status_code, error.value.error) == (400, f'"{EMBEDDER}" does not support generate')
    with pytest.raises(ollama.ResponseError) as error:
        client.embed(model=MODEL, input="hi")
    assert (error.value.status_code, error.value.error) == (400, f'"{MODEL}" does not support embeddings')
    status, body = embed_daemon.request("POST", "/api/embed", {"model": EMBEDDER, "input": [1, 2]})
    assert (status, body) == (400, {"error": "invalid input type"})
    status, body = embed_daemon.request("POST", "/api/embed", {"model": "nothing-here", "input": "x"})
    assert (status, body) == (404, {"error": 'model "nothing-here" not found, try pulling it first'})
    status, body = embed_daemon.request("POST", "/api/embed", {"model": "", "input": "x"})
    assert (status, body) == (404, {"error": "model '' not found"})
    status, body = embed_daemon.request("POST", "/api/embeddings", {"prompt": "x"})
    assert (status, body) == (400, {"error": "model is required"})


def test_show_and_ps_describe_the_embedding_model(embed_daemon):
    client = ollama.Client(host=embed_daemon.url)
    shown = client.show(EMBEDDER)
    assert shown.capabilities == ["embedding"]
    assert shown.details.family == "bert"
    client.embed(model=EMBEDDER, input="load it")
    assert any(model.model.startswith(EMBEDDER) for model in client.ps().models)
    # An empty input with a zero keep-alive unloads it.
    client.embed(model=EMBEDDER, input="", keep_alive=0)
    assert not any(model.model.startswith(EMBEDDER) for model in client.ps().models)


def test_run_prints_the_vector_of_an_embedding_model(embed_daemon):
    printed = embed_daemon.cli("run", EMBEDDER, "The cat sits on the mat.")
    vector = json.loads(printed.stdout)
    assert len(vector) == 384 and abs(sum(value * value for value in vector) - 1) < 1e-4
    reference = load_fixture("reference.json")["vectors"][0]
    assert cosine(vector, reference) >= 0.999
    empty = embed_daemon.cli("run", EMBEDDER, "", check=False)
    assert empty.returncode != 0 and "embedding model" in empty.stderr


def test_mcp_agents_embed_through_the_embed_tool(embed_daemon):
    sentences = ["How do I reverse a list in Python?", "Paris is the capital of France."]
    expected = ollama.Client(host=embed_daemon.url).embed(model=EMBEDDER, input=sentences).embeddings

    async def body(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert f"{EMBEDDER}:latest" in tools["embed"].input_schema["properties"]["model"]["enum"]
        # No model given: the first installed model that embeds, not the chat model.
        answer = await session.call_tool("embed", {"input": sentences})
        assert not answer.is_error, answer
        vectors = answer.structured_content["embeddings"]
        assert len(vectors) == 2 and answer.structured_content["prompt_eval_count"] > 10
        for mine, served in zip(vectors, expected):
            assert cosine(mine, served) > 0.999999
        assert json.loads(answer.content[0].text)["embeddings"] == vectors
        cut = await session.call_tool("embed", {"model": EMBEDDER, "input": "one text", "dimensions": 8})
        assert len(cut.structured_content["embeddings"][0]) == 8
        assert abs(math.sqrt(sum(v * v for v in cut.structured_content["embeddings"][0])) - 1) < 1e-4
        refused = await session.call_tool("embed", {"model": MODEL, "input": "hello"})
        assert refused.is_error and "does not support embeddings" in refused.content[0].text
        wrong = await session.call_tool("embed", {"input": 42})
        assert wrong.is_error and "input must be a string or a list of strings" in wrong.content[0].text

    async def session():
        async with streamable_http_client(embed_daemon.url + "/mcp") as streams:
            async with ClientSession(streams[0], streams[1]) as client:
                await client.initialize()
                await body(client)

    asyncio.run(session())
