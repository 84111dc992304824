"""Ollama's Go templates on real weights. SmolLM2 is given templates from Ollama's library and
chats through the official `ollama` client; each prompt must be the one Ollama renders for that
conversation (`crates/go-template/tests/ollama/expected.jsonl`, written by Ollama's own template
package). The check: the chat and a raw generate of Ollama's render evaluate the same number of
prompt tokens and give the same greedy answer."""

import json
from pathlib import Path

import ollama

from conftest import MODEL

FIXTURES = Path(__file__).resolve().parents[2] / "crates" / "go-template" / "tests" / "ollama"
OPTIONS = {"temperature": 0, "seed": 7, "num_predict": 12}


def fixture(name):
    return (FIXTURES / name).read_text()


def ollama_render(template, case):
    for line in fixture("expected.jsonl").splitlines():
        expected = json.loads(line)
        if expected["template"] == template and expected["case"] == case:
            return expected["output"]
    raise KeyError((template, case))


def conversation(case):
    found = next(item for item in json.loads(fixture("conversations.json")) if item["name"] == case)
    tools = json.loads(fixture("tools.json")).get(found.get("tools"), None)
    return found, tools


def create_with_template(daemon, name, template):
    done = daemon.post("/api/create", {"model": name, "from": MODEL, "template": fixture(f"templates/{template}.gotmpl"),
                                       "stream": False})
    assert done == {"status": "success"}, done


def test_library_templates_prompt_as_ollama_does(daemon):
    client = ollama.Client(host=daemon.url)
    cases = [
        ("smollm2", "system-user-assistant-user"),
        ("qwen2.5", "tool-call-and-result"),
        ("llama3.1", "tools-offered"),
        ("mistral", "two-calls-and-results"),
        ("gemma3", "user-assistant-user"),
        # No `.Messages`: Ollama runs it once per exchange.
        ("phi3", "system-user-assistant-user"),
    ]
    try:
        for template, case in cases:
            name = f"go-{template}"
            create_with_template(daemon, name, template)
            found, tools = conversation(case)
            chat = client.chat(model=name, messages=found["messages"], tools=tools, options=OPTIONS)
            raw = client.generate(model=name, prompt=ollama_render(template, case), raw=True, options=OPTIONS)
            what = f"{template} / {case}"
            assert chat.prompt_eval_count == raw.prompt_eval_count, what
            assert chat.eval_count > 0, what
            if not chat.message.tool_calls:
                assert chat.message.content == raw.response, what

        shown = client.show("go-qwen2.5")
        assert shown.template == fixture("templates/qwen2.5.gotmpl")
        # A Go template that names `.Tools` gives the tools capability; SmolLM2 has no FIM tokens,
        # so there is no insert without a `.Suffix` in the template.
        assert list(shown.capabilities) == ["completion", "tools"]
        assert list(client.show("go-smollm2").capabilities) == ["completion"]
    finally:
        daemon.cli("rm", *[f"go-{template}" for template, _ in cases], check=False)


def test_a_suffix_template_fills_in_the_middle_as_ollama_does(daemon):
    client = ollama.Client(host=daemon.url)
    create_with_template(daemon, "go-coder", "qwen2.5-coder")
    try:
        assert list(client.show("go-coder").capabilities) == ["completion", "tools", "insert"]
        fim, _ = conversation("suffix")
        middle = client.generate(model="go-coder", prompt=fim["prompt"], suffix=fim["suffix"], options=OPTIONS)
        raw = client.generate(model="go-coder", prompt=ollama_render("qwen2.5-coder", "suffix"), raw=True,
                              options=OPTIONS)
        assert middle.prompt_eval_count == raw.prompt_eval_count
        assert middle.response == raw.response and middle.eval_count > 0
    finally:
        daemon.cli("rm", "go-coder", check=False)


def test_bad_go_templates_are_refused_with_ollamas_errors(daemon):
    status, body = daemon.request("POST", "/api/create", {"model": "never", "from": MODEL,
                                                          "template": "{{ if .Prompt }}unclosed"})
    assert status == 400 and body["error"].startswith("template error: template: :1: unexpected EOF"), body
    status, body = daemon.request("POST", "/api/create", {"model": "never", "from": MODEL,
                                                          "template": "{{ .Prompt | nosuchfunction }}"})
    assert status == 400 and 'function "nosuchfunction" not defined' in body["error"], body
    # A request's own template that does not parse: a server error, as in Ollama.
    status, body = daemon.request("POST", "/api/generate", {"model": MODEL, "prompt": "hi", "stream": False,
                                                            "template": "{{ .Prompt "})
    assert status == 500 and "unclosed action" in body["error"], body
    # A request's own template that runs for ever is cut off, and the daemon goes on serving.
    status, body = daemon.request("POST", "/api/generate", {
        "model": MODEL, "prompt": "hi", "stream": False,
        "template": '{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}'})
    assert status == 500 and "templates called each other more than" in body["error"], body
    answer = daemon.post("/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False,
                                           "template": "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n",
                                           "options": {"num_predict": 4, "temperature": 0}})
    assert answer["eval_count"] > 0
