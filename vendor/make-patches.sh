#!/usr/bin/env bash
# Writes vendor/<crate>.patch: the difference between each patched copy here and the released
# crate in Cargo's registry (its extracted sources, or the downloaded `.crate` file, which this
# extracts). A crate whose release is not on this machine keeps its patch file as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
registry=$(ls -d "$cargo_home"/registry/src/*/ | head -n 1)
for crate in candle-core-0.10.2 mistralrs-core-0.8.1; do
    name=${crate%-*}
    original="$registry$crate"
    if [[ ! -d $original ]]; then
        archive=$(ls "$cargo_home"/registry/cache/*/"$crate.crate" 2>/dev/null | head -n 1 || true)
        if [[ -z $archive ]]; then
            echo "$name.patch: kept (the release $crate is not in $cargo_home/registry)" >&2
            continue
        fi
        tar -xzf "$archive" -C "$registry"
    fi
    {
        git diff --no-index "$original/src" "$name/src" || true
        if [[ -f $name/build.rs ]]; then git diff --no-index "$original/build.rs" "$name/build.rs" || true; fi
        git diff --no-index "$original/Cargo.toml" "$name/Cargo.toml" || true
    } | sed -e "s#a$original/#a/$name/#g" -e "s#b$name/#b/$name/#g" > "$name.patch.partial"
    mv "$name.patch.partial" "$name.patch"
    echo "$name.patch: $(grep -c '^@@' "$name.patch") hunks"
done
