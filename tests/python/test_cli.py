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
