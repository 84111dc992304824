#!/usr/bin/env bash
# Fuzzes the light crates (parsers of untrusted input) with cargo-fuzz and libFuzzer: builds
# every target under fuzz/fuzz_targets/ and runs each for a while, then prints per target the
# executions and whether a crash was found. Exits non-zero on any crash; the crashing input is
# left under $MODELD_CACHE/fuzz-artifacts/<target>/ (replay it with
# `"$MODELD_CACHE"/fuzz-target/x86_64-unknown-linux-gnu/release/<target> <file>`).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30 seconds, all targets)
#
# Everything generated stays outside the work tree: build output in $MODELD_CACHE/fuzz-target,
# the growing corpora in $MODELD_CACHE/fuzz-corpus/<target> (the committed seeds in
# fuzz/seeds/<target> are read as a second, read-only corpus), crashes in
# $MODELD_CACHE/fuzz-artifacts/<target>.
#
# The toolchain: only stable Rust is installed, and cargo-fuzz passes `-Zsanitizer=address`,
# which stable rustc refuses ("the option `Z` is only accepted on the nightly compiler").
# RUSTC_BOOTSTRAP=1 makes stable rustc accept -Z flags, and AddressSanitizer then works as on
# nightly (x86_64 Linux needs no sanitized standard library for it). If that build fails (a
# toolchain without ASan support), the script falls back to `--sanitizer none`, which stable
# rustc builds without RUSTC_BOOTSTRAP: the coverage instrumentation (`-Cpasses=sancov-module`,
# `-Cllvm-args=-sanitizer-coverage-*`) and `-Cdebug-assertions` are stable flags. Our crates
# forbid unsafe code, so ASan mostly guards dependencies; panics, overflow checks and the
# targets' assertions are what find bugs in our code. FUZZ_SANITIZER=none skips ASan.
#
# The targets are run as built binaries rather than through `cargo fuzz run`, which would
# create fuzz/artifacts/ in the work tree.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz (a few minutes, once)" >&2
    cargo install cargo-fuzz --locked
fi

fuzz_dir="$MODELD_ROOT/fuzz"
target_dir="$MODELD_CACHE/fuzz-target"
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cd "$MODELD_ROOT" && cargo fuzz list)
fi

# libFuzzer's -max_len per target: long enough for real inputs, short enough to stay fast.
max_len_of() {
    case "$1" in
        gguf_header) echo 16384 ;;     # small GGUF headers: metadata, tokens, tensor infos
        model_name) echo 1024 ;;       # the longest valid name is about 600 bytes
        modelfile) echo 4096 ;;
        output_parser) echo 4096 ;;    # two configuration bytes, then model output
        request_bodies) echo 8192 ;;   # JSON bodies with messages, tools and options
        chat_template) echo 2048 ;;    # real chat templates are 1-10 KB; fuzzed ones stay short
        *) echo 4096 ;;
    esac
}

# Seconds one input may take before libFuzzer calls it a hang. Templates get more: a render
# may spend all its fuel (engine::render_chat) before failing.
timeout_of() {
    case "$1" in
        chat_template) echo 30 ;;
        *) echo 10 ;;
    esac
}

sanitizer="${FUZZ_SANITIZER:-address}"
build() {
    if [[ "$sanitizer" == none ]]; then
        (cd "$MODELD_ROOT" && cargo fuzz build --sanitizer none --target-dir "$target_dir" "$@")
    else
        (cd "$MODELD_ROOT" && RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" "$@")
    fi
}
# One build for all targets (a single target name would be passed to cargo-fuzz as is).
build_args=()
if (($# == 1)); then
    build_args=("$1")
fi
if ! build "${build_args[@]}"; then
    if [[ "$sanitizer" == none ]]; then
        exit 1
    fi
    echo "building with --sanitizer $sanitizer failed; falling back to --sanitizer none" >&2
    sanitizer=none
    build "${build_args[@]}"
fi
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

logs="$MODELD_CACHE/fuzz-logs"
mkdir -p "$logs"
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$MODELD_CACHE/fuzz-corpus/$target"
    artifacts="$MODELD_CACHE/fuzz-artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    corpora=("$corpus")
    if [[ -d "$fuzz_dir/seeds/$target" ]]; then
        corpora+=("$fuzz_dir/seeds/$target")
    fi
    options=(
        "-max_total_time=$seconds"
        "-rss_limit_mb=2048"
        "-max_len=$(max_len_of "$target")"
        "-timeout=$(timeout_of "$target")"
        "-print_final_stats=1"
        "-artifact_prefix=$artifacts/"
    )
    if [[ -f "$fuzz_dir/dictionaries/$target.dict" ]]; then
        options+=("-dict=$fuzz_dir/dictionaries/$target.dict")
    fi
    log="$logs/$target.log"
    before=$(find "$artifacts" -type f | sort)
    echo "fuzzing $target for ${seconds}s (log: $log)" >&2
    status=0
    "$bin_dir/$target" "${options[@]}" "${corpora[@]}" >"$log" 2>&1 || status=$?
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    new_artifacts=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | tr '\n' ' ')
    if ((status != 0)) || [[ -n "$new_artifacts" ]]; then
        failed+=("$target")
        summary+=("$(printf '%-16s %12s executions  CRASH (exit %s): %s' "$target" "${executions:-?}" "$status" "${new_artifacts:-see $log}")")
        # The panic message and the top of the stack.
        grep -m1 -A12 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" | sed 's/^/    /' >&2 || true
    else
        summary+=("$(printf '%-16s %12s executions  no crash' "$target" "${executions:-?}")")
    fi
done

echo
echo "fuzzing with sanitizer=$sanitizer, ${seconds}s per target:"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "crashes in: ${failed[*]} (inputs under $MODELD_CACHE/fuzz-artifacts/)" >&2
    exit 1
fi
