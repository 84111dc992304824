"""`create --quantize` on real weights: SmolLM2 (Q4_1) requantized to Q4_K_M and Q8_0 through
the CLI and the API; the result reports its type, answers, and is the same file every time.
(Byte-for-byte agreement with llama.cpp's `llama-quantize` is checked by the Rust test
`cpu-kernels/tests/k_quants.rs` and by `scripts/quantize-check.py`.)"""

from conftest import MODEL


def model_digest(daemon, name):
    models = {model["name"]: model for model in daemon.request("GET", "/api/tags")[1]["models"]}
    return models[name]["digest"], models[name]["details"]


def test_create_quantizes_with_progress_and_the_result_answers(daemon, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {MODEL}\nPARAMETER temperature 0\n")
    created = daemon.cli("create", "smollm2-q4km", "-f", str(modelfile), "-q", "q4_K_M")
    try:
        assert "quantizing Q4_1 model to Q4_K_M 100%" in created.stderr, created.stderr
        assert "creating new layer sha256:" in created.stderr and "success" in created.stderr
        _, details = model_digest(daemon, "smollm2-q4km:latest")
        assert details["quantization_level"] == "Q4_K_M"
        assert daemon.post("/api/show", {"model": "smollm2-q4km"})["details"]["quantization_level"] == "Q4_K_M"
        answer = daemon.post("/api/generate", {"model": "smollm2-q4km", "prompt": "The capital of France is",
                                               "stream": False, "options": {"num_predict": 8, "temperature": 0}})
        assert answer["eval_count"] > 0 and answer["response"].strip(), answer

        # Through the API, streamed: Ollama's progress for the step, then the same file again.
        lines = []
        for line in daemon.stream("/api/create", {"model": "smollm2-q4km-again", "from": MODEL, "quantize": "Q4_K_M"}):
            if not lines:
                # Progress arrives while the model is made, not after: it does not exist yet.
                assert daemon.request("POST", "/api/show", {"model": "smollm2-q4km-again"})[0] == 404, line
            lines.append(line)
        steps = [line for line in lines if line["status"] == "quantizing Q4_1 model to Q4_K_M"]
        assert steps and all(line["digest"] == "0000000000000000000" for line in steps)
        assert steps[-1]["completed"] == steps[-1]["total"] > 0
        assert lines[-1] == {"status": "success"}
        # The same input makes the same weights file (the same blob) every time.
        def weights_blob(name):
            modelfile = daemon.post("/api/show", {"model": name})["modelfile"]
            return next(line for line in modelfile.splitlines() if line.startswith("FROM "))
        assert weights_blob("smollm2-q4km") == weights_blob("smollm2-q4km-again")
        assert weights_blob("smollm2-q4km") != weights_blob(MODEL)
        info = daemon.post("/api/show", {"model": "smollm2-q4km"})["model_info"]
        assert info["general.file_type"] == 15
    finally:
        daemon.cli("rm", "smollm2-q4km", "smollm2-q4km-again", check=False)


def test_quantize_to_q8_0_and_bad_types(daemon):
    status, body = daemon.request("POST", "/api/create", {"model": "never", "from": MODEL, "quantize": "q5_X"})
    assert (status, body) == (400, {"error": "unsupported quantization type q5_X"})
    done = daemon.post("/api/create", {"model": "smollm2-q8", "from": MODEL, "quantize": "q8_0", "stream": False})
    try:
        assert done == {"status": "success"}
        _, details = model_digest(daemon, "smollm2-q8:latest")
        assert details["quantization_level"] == "Q8_0"
        info = daemon.post("/api/show", {"model": "smollm2-q8"})["model_info"]
        assert info["general.file_type"] == 7 and info["general.quantization_version"] == 2
        answer = daemon.post("/api/generate", {"model": "smollm2-q8", "prompt": "Hello", "stream": False,
                                               "options": {"num_predict": 4, "temperature": 0}})
        assert answer["eval_count"] > 0
    finally:
        daemon.cli("rm", "smollm2-q8", check=False)
