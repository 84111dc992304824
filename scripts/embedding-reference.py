#!/usr/bin/env python3
"""Writes the reference vectors the embedding tests compare modeld's with: sentence-transformers'
output for all-MiniLM-L6-v2 on tests/fixtures/embeddings/sentences.json, rounded to 6 decimals.

Run once, in a virtual environment with `sentence-transformers` (and the torch it brings):

    python scripts/embedding-reference.py ~/.cache/modeld/models/all-MiniLM-L6-v2

It is not part of the test run: the tests read the committed reference file."""

import json
import os
import sys

from sentence_transformers import SentenceTransformer  # the reference implementation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "embeddings")


def main():
    folder = sys.argv[1]
    with open(os.path.join(FIXTURES, "sentences.json")) as file:
        sentences = json.load(file)["sentences"]
    model = SentenceTransformer(folder, device="cpu")
    vectors = model.encode(sentences, normalize_embeddings=True, convert_to_numpy=True)
    tokens = [len(model.tokenizer(sentence, truncation=True, max_length=model.max_seq_length)["input_ids"])
              for sentence in sentences]
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_seq_length": model.max_seq_length,
        "tokens": tokens,
        "vectors": [[round(float(value), 6) for value in vector] for vector in vectors],
    }
    with open(os.path.join(FIXTURES, "reference.json"), "w") as file:
        json.dump(reference, file, separators=(",", ":"))
    print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions, tokens {min(tokens)}..{max(tokens)}")


if __name__ == "__main__":
    main()
