#!/usr/bin/env python3
"""Compares two GGUF files tensor by tensor: the type of each, and whether its bytes are
identical (else how many of its blocks differ). Used to check modeld's quantization against
llama.cpp's `llama-quantize` on the same input:

    llama-quantize smol-f16.gguf llama.gguf Q4_K_M
    quantize-gguf smol-f16.gguf modeld.gguf q4_K_M      # cargo build --example quantize-gguf
    python scripts/quantize-check.py llama.gguf modeld.gguf --gguf-py PATH/llama.cpp/gguf-py

Needs numpy and llama.cpp's `gguf-py` (in its source tree).
"""

import argparse
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference")
    parser.add_argument("candidate")
    parser.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder")
    args = parser.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf
    import numpy

    reference = {tensor.name: tensor for tensor in gguf.GGUFReader(args.reference).tensors}
    candidate = {tensor.name: tensor for tensor in gguf.GGUFReader(args.candidate).tensors}
    assert reference.keys() == candidate.keys(), reference.keys() ^ candidate.keys()
    identical, other_type, differing = 0, [], []
    for name, expected in reference.items():
        actual = candidate[name]
        if expected.tensor_type != actual.tensor_type:
            other_type.append((name, expected.tensor_type.name, actual.tensor_type.name))
            continue
        a = numpy.asarray(expected.data).view(numpy.uint8).reshape(-1)
        b = numpy.asarray(actual.data).view(numpy.uint8).reshape(-1)
        if a.shape == b.shape and numpy.array_equal(a, b):
            identical += 1
            continue
        block_size, type_size = gguf.GGML_QUANT_SIZES[expected.tensor_type]
        blocks_a, blocks_b = a.reshape(-1, type_size), b.reshape(-1, type_size)
        n_differ = int((blocks_a != blocks_b).any(axis=1).sum())
        differing.append((name, expected.tensor_type.name, n_differ, len(blocks_a)))
    print(f"{len(reference)} tensors: {identical} byte-identical, {len(differing)} with differing blocks, "
          f"{len(other_type)} of another type")
    for name, expected, actual in other_type:
        print(f"  type  {name}: {expected} vs {actual}")
    for name, dtype, n_differ, n_blocks in differing:
        print(f"  bytes {name} ({dtype}): {n_differ} of {n_blocks} blocks differ")
    return 0 if not other_type and not differing else 1


if __name__ == "__main__":
    sys.exit(main())
