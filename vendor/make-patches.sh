#!/usr/bin/env bash
# Writes vendor/<crate>.patch: the difference between each patched copy here and the released
# crate in Cargo's registry cache (present after any `cargo fetch` or build of the workspace).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n 1)
for crate in candle-core-0.10.2 mistralrs-core-0.8.1; do
    name=${crate%-*}
    original="$registry$crate"
    [[ -d $original ]] || cargo fetch --manifest-path ../Cargo.toml >/dev/null
    (git diff --no-index "$original/src" "$name/src" || true) |
        sed -e "s#a$original/#a/$name/#g" -e "s#b$name/#b/$name/#g" > "$name.patch"
    echo "$name.patch: $(grep -c '^@@' "$name.patch") hunks"
done
