"""The `modeld` command line against the daemon: run, list, ps, show, cp, rm, stop."""

import re

from conftest import MODEL

# SmolLM2-135M answers this question (with a full stop, not a question mark) with Paris when greedy.
QUESTION = "What is the capital of France."


def rows(output):
    """The header's columns and each following line's, split on runs of spaces."""
    header, *lines = output.splitlines()
    return header.split(), [line.split() for line in lines]


def check_id_and_size(row, models):
    """A `list` or `ps` row shows the ID (12 characters of the digest) and the size (in whole
    megabytes, rounded either way) that /api/tags or /api/ps give for its model."""
    [model] = [model for model in models if model["name"] == row[0]]
    assert row[1] == model["digest"][:12], (row, model)
    megabytes = model["size"] / 1_000_000
    assert row[2] in (str(int(megabytes)), str(round(megabytes))) and row[3] == "MB", (row, model)


def test_run_one_shot_and_piped(daemon, tmp_path):
    # Greedy and capped, so that the answer is the same every time and a ramble ends soon.
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {MODEL}\nPARAMETER temperature 0\nPARAMETER num_predict 48\n")
    assert "success" in daemon.cli("create", "smollm2-short", "-f", str(modelfile)).stderr
    try:
        answer = daemon.cli("run", "smollm2-short", QUESTION)
        assert "Paris" in answer.stdout, answer.stdout
        # `run` prints what /api/generate answers to the same prompt, with the model's
        # parameters, and a newline after it.
        generated = daemon.post("/api/generate", {"model": "smollm2-short", "prompt": QUESTION, "stream": False})
        assert generated["eval_count"] <= 48
        assert answer.stdout == generated["response"] + "\n"
        # Piped text is the prompt as it is (a trailing newline would be part of it, and changes
        # this model's answer), so the same text piped gives the same answer.
        piped = daemon.cli("run", "smollm2-short", input=QUESTION)
        assert piped.stdout == answer.stdout
    finally:
        daemon.cli("rm", "smollm2-short")


def test_list_ps_show(daemon):
    header, listing = rows(daemon.cli("list").stdout)
    assert header == ["NAME", "ID", "SIZE", "MODIFIED"]
    [row] = [row for row in listing if row[0] == MODEL]
    check_id_and_size(row, daemon.request("GET", "/api/tags")[1]["models"])
    assert row[2] == "98", "the size of the stored SmolLM2-135M Q4_1 weights"

    # An empty prompt only loads the model.
    loaded = daemon.cli("run", MODEL, "", "--keepalive", "10m")
    assert loaded.stdout == "\n"
    header, running = rows(daemon.cli("ps").stdout)
    assert header == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    [row] = [row for row in running if row[0] == MODEL]
    check_id_and_size(row, daemon.request("GET", "/api/ps")[1]["models"])
    assert row[4:7] == ["100%", "CPU", "4096"], row
    assert re.fullmatch(r"(9|10) minutes from now", " ".join(row[7:])), row

    show = daemon.cli("show", MODEL).stdout
    lines = [line.split() for line in show.splitlines()]
    for expected in (["architecture", "llama"], ["parameters", "134.52M"], ["context", "length", "8192"],
                     ["embedding", "length", "576"], ["quantization", "Q4_1"], ["Capabilities"], ["completion"]):
        assert expected in lines, (expected, show)
    assert "{% for message in messages %}" in daemon.cli("show", MODEL, "--template").stdout
    daemon.cli("stop", MODEL)
    assert rows(daemon.cli("ps").stdout)[1] == []


def test_cp_and_rm(daemon):
    assert daemon.cli("cp", MODEL, "cli-copy").stdout.strip() == f"copied '{MODEL}' to 'cli-copy'"
    listed = {row[0]: row for row in rows(daemon.cli("list").stdout)[1]}
    assert listed["cli-copy:latest"][1:4] == listed[MODEL][1:4], "the copy has the original's ID and size"
    assert daemon.cli("rm", "cli-copy").stdout.strip() == "deleted 'cli-copy'"
    assert "cli-copy" not in daemon.cli("list").stdout
    assert MODEL in daemon.cli("list").stdout
    missing = daemon.cli("stop", "no-such-model", check=False)
    assert missing.returncode != 0 and "couldn't find model" in missing.stderr


FULL_MODELFILE = '''# Every instruction, in mixed case, with values that need quoting.
from {gguf}
TEMPLATE """{{{{- range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
"""
system "You answer in one
short line, with "quotes" kept."
PARAMETER temperature 0.25
PARAMETER num_ctx 1024
parameter stop <|im_end|>
PARAMETER stop "

"
PARAMETER stop " User:"
MESSAGE user Hello
Message assistant """Hi! "How" can I help?"""
LICENSE MIT
LICENSE """Second license
with two lines"""
REQUIRES 0.14.0
'''


def manifest_layers(daemon, name):
    _, shown = daemon.request("POST", "/api/show", {"model": name})
    models = {model["name"]: model for model in daemon.request("GET", "/api/tags")[1]["models"]}
    return shown, models[f"{name}:latest" if ":" not in name else name]["digest"]


def test_modelfile_round_trips_through_show(daemon, tmp_path):
    """Every Modelfile instruction, read by `modeld create`, shown by `modeld show --modelfile`,
    and created again from that text: the second model is the same model (same manifest)."""
    import os
    gguf = os.environ["SMOLLM2_GGUF"]
    first = tmp_path / "Modelfile"
    first.write_text(FULL_MODELFILE.format(gguf=gguf))
    created = daemon.cli("create", "round-trip-one", "-f", str(first))
    assert "success" in created.stderr, created.stderr
    try:
        shown, first_digest = manifest_layers(daemon, "round-trip-one")
        assert shown["system"] == 'You answer in one\nshort line, with "quotes" kept.'
        assert shown["requires"] == "0.14.0"
        assert shown["license"] == "MIT\nSecond license\nwith two lines"
        assert [message["content"] for message in shown["messages"]] == ["Hello", 'Hi! "How" can I help?']
        parameters = {line.split()[0] for line in shown["parameters"].splitlines()}
        assert parameters == {"temperature", "num_ctx", "stop"}

        text = daemon.cli("show", "round-trip-one", "--modelfile").stdout
        second = tmp_path / "Modelfile.shown"
        second.write_text(text)
        created = daemon.cli("create", "round-trip-two", "-f", str(second))
        assert "success" in created.stderr, (created.stderr, text)
        _, second_digest = manifest_layers(daemon, "round-trip-two")
        assert second_digest == first_digest, text
    finally:
        daemon.cli("rm", "round-trip-one", "round-trip-two", check=False)


def test_modelfile_errors_name_the_line(daemon, tmp_path):
    cases = {
        "FROM x\nPARAMETER temprature 0.5\n": "(line 2): unknown parameter 'temprature'",
        "FROM x\n\nSYSTEM \"\"\"never closed\n": "(line 3): unterminated \"\"\" string",
        "FROM x\nREQUIRES someday\n": "(line 2): requires must be a valid semver (e.g. 0.14.0)",
        "PARAMETER temperature 1\n": "no FROM line",
        "FROM x\nDRAFT ./small.gguf\n": "DRAFT (speculative decoding) is not supported by modeld yet",
    }
    for text, expected in cases.items():
        modelfile = tmp_path / "Modelfile.bad"
        modelfile.write_text(text)
        failed = daemon.cli("create", "never-created", "-f", str(modelfile), check=False)
        assert failed.returncode != 0 and expected in failed.stderr, (text, failed.stderr)
    assert daemon.request("POST", "/api/show", {"model": "never-created"})[0] == 404
