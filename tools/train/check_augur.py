#!/usr/bin/python3
"""Checks augur against what the training run recorded with Hugging Face libraries.

1. Tokenizer: every held-out chunk (corpus_io.heldout_chunks of heldout.txt.xz) encoded by
   `augur tokenize --no-special` must equal the ids that `tokenizers` produced
   (tok_goldens.json.xz); and the ten greedy prompts encoded with the BOS that the
   post-processor adds must equal the ids transformers was given.
2. Greedy: for the target and the draft, augur's CPU greedy generation (fp32 arithmetic
   over the bf16 weights) of 64 tokens from each of the ten prompts must equal transformers'
   float32 greedy generation (hf_greedy.json, made on the GPU machine's CPU).

Usage: /usr/bin/python3 tools/train/check_augur.py [--augur build-train/launcher/augur]
           [--work .carry/train-out] [--corpus .carry/corpus] [--models models]
Prints one line per check and a summary; writes WORK/check_augur.json; exits 1 on any
mismatch.
"""
import argparse
import json
import lzma
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_io import heldout_chunks, read_docs  # noqa: E402


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_augur: {' '.join(cmd[:4])} ... failed: {r.stderr.strip()}")
    return r.stdout


def ids_of(text):
    return [int(t) for t in text.split()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--augur", default="build-train/launcher/augur")
    ap.add_argument("--work", default=".carry/train-out")
    ap.add_argument("--corpus", default=".carry/corpus")
    ap.add_argument("--models", default="models")
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    report = {"tokenizer": {}, "greedy": {}}
    bad = 0

    # 1. tokenizer on held-out text
    chunks = heldout_chunks(read_docs(os.path.join(args.corpus, "heldout.txt.xz")))
    with lzma.open(os.path.join(args.work, "tok_goldens.json.xz"), "rt") as f:
        gold = json.load(f)
    assert len(gold) == len(chunks), (len(gold), len(chunks))
    tdir = os.path.join(args.models, "target")
    diff = []
    ntok = 0
    for i, (c, g) in enumerate(zip(chunks, gold)):
        got = ids_of(run([args.augur, "tokenize", "--model", tdir, "--no-special", "--", c]))
        ntok += len(g)
        if got != g:
            k = next((j for j, (a, b) in enumerate(zip(got, g)) if a != b), min(len(got), len(g)))
            diff.append({"chunk": i, "first_difference": k, "augur": got[k:k + 8],
                         "tokenizers": g[k:k + 8]})
    report["tokenizer"] = {"chunks": len(chunks), "tokens": ntok,
                           "bytes": sum(len(c.encode()) for c in chunks),
                           "chunks_equal": len(chunks) - len(diff), "differences": diff[:20]}
    print(f"tokenizer: {len(chunks) - len(diff)} of {len(chunks)} held-out chunks "
          f"({ntok} tokens) encode identically")
    bad += len(diff)

    # 2. greedy generations
    hf = json.load(open(os.path.join(args.work, "hf_greedy.json")))
    prompts = hf["prompts"]
    pbad = 0
    for p in prompts:
        got = ids_of(run([args.augur, "tokenize", "--model", tdir, "--", p["text"]]))
        if got != p["ids"]:
            pbad += 1
            print(f"prompt ids differ: {p['text']!r}: augur {got} vs {p['ids']}")
    report["tokenizer"]["prompts_equal"] = len(prompts) - pbad
    bad += pbad
    for name, m in hf["models"].items():
        rows = []
        for p, want in zip(prompts, m["ids"]):
            out = run([args.augur, "generate", "--model", os.path.join(args.models, name),
                       "--prompt-ids", " ".join(map(str, p["ids"])), "--max-tokens", "64", "--ids-only",
                       "--threads", args.threads])
            got = ids_of(out.strip().split("\n")[-1])
            first = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), None)
            if first is None and len(got) != len(want):
                first = min(len(got), len(want))
            rows.append({"prompt": p["text"], "equal": first is None, "first_difference": first,
                         "augur": got, "transformers": want})
            print(f"{name}: {'EQUAL ' if first is None else f'DIFFER at {first}'} "
                  f"({len(want)} tokens) {p['text'][:60]!r}")
            if first is not None:
                bad += 1
        report["greedy"][name] = rows
    json.dump(report, open(os.path.join(args.work, "check_augur.json"), "w"), indent=1)
    print("all equal" if bad == 0 else f"{bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
