"""The `modeld` command line against the daemon: run, list, ps, show, cp, rm, stop."""

from conftest import MODEL


def test_run_one_shot_and_piped(daemon, tmp_path):
    # A sampled answer from a 135M model can ramble to the end of the context; a model with a
    # cap on its answers keeps the test short.
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {MODEL}\nPARAMETER num_predict 48\n")
    daemon.cli("create", "smollm2-short", "-f", str(modelfile))
    try:
        answer = daemon.cli("run", "smollm2-short", "What is the capital of France.")
        assert answer.stdout.strip()
        piped = daemon.cli("run", "smollm2-short", input="What is the capital of France.\n")
        assert piped.stdout.strip()
    finally:
        daemon.cli("rm", "smollm2-short")


def test_list_ps_show(daemon):
    listing = daemon.cli("list").stdout.splitlines()
    assert listing[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert any(line.startswith(MODEL) for line in listing[1:])
    daemon.cli("run", MODEL, "Hi")
    ps = daemon.cli("ps").stdout.splitlines()
    assert ps[0].split()[:4] == ["NAME", "ID", "SIZE", "PROCESSOR"]
    assert any(line.startswith(MODEL) for line in ps[1:])
    show = daemon.cli("show", MODEL).stdout
    assert "architecture" in show and "llama" in show and "Q4_1" in show
    assert "{% for message in messages %}" in daemon.cli("show", MODEL, "--template").stdout
    daemon.cli("stop", MODEL)
    assert len(daemon.cli("ps").stdout.splitlines()) == 1


def test_cp_and_rm(daemon):
    assert daemon.cli("cp", MODEL, "cli-copy").stdout.strip() == f"copied '{MODEL}' to 'cli-copy'"
    assert "cli-copy:latest" in daemon.cli("list").stdout
    assert daemon.cli("rm", "cli-copy").stdout.strip() == "deleted 'cli-copy'"
    assert "cli-copy" not in daemon.cli("list").stdout
    missing = daemon.cli("stop", "no-such-model", check=False)
    assert missing.returncode != 0 and "couldn't find model" in missing.stderr
