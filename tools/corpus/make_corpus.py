#!/usr/bin/python3
"""Builds the training corpus of augur's own draft/target pair from a Debian package.

Source: the Debian package linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz), i.e. the
Linux kernel 6.1 source with Debian's patches. Two kinds of text are taken from it:

  prose  Documentation/**/*.rst and *.txt (English only: Documentation/translations/ is
         left out)
  code   *.c and *.h under kernel/ mm/ lib/ block/ ipc/ init/ fs/ext4/ net/core/ include/linux/

Every file must be valid UTF-8, hold no NUL byte, and be between 200 bytes and 256 KiB
(the largest files are generated tables, not prose or code). Files are deduplicated by the
SHA-256 of their content (the first path in sorted order is kept), and split by file into
train and held-out parts deterministically: a file is held out when the first 8 hex digits
of its SHA-256, read as a number, are below 2% of 2^32. Nothing depends on randomness or
the order of the tarball.

Output (OUT, default .carry/corpus/ in the repository root; the folder is git-ignored and
travels to the GPU machine as a carried path):
  train.txt.xz     training documents in path order, each followed by one NUL byte
  heldout.txt.xz   held-out documents, likewise
  manifest.tsv.xz  path, kind, bytes, sha256, split of every file kept (and duplicates)
  prompts.txt      200 held-out prompts, one a line: single lines of held-out documents,
                   alternately prose and code (the acceptance study and greedy checks)
  stats.json       counts and sizes

Usage (Debian 12, as root; only the standard library of /usr/bin/python3 is used):
  apt-get install -y linux-source-6.1
  /usr/bin/python3 tools/corpus/make_corpus.py [--source TARBALL] [--out DIR]
"""
import argparse
import hashlib
import json
import lzma
import os
import random
import sys
import tarfile

PROSE_EXT = (".rst", ".txt")
CODE_EXT = (".c", ".h")
CODE_DIRS = ("kernel/", "mm/", "lib/", "block/", "ipc/", "init/", "fs/ext4/", "net/core/",
             "include/linux/")
MIN_BYTES = 200
MAX_BYTES = 256 * 1024
HELDOUT_PERCENT = 2
N_PROMPTS = 200


def classify(rel):
    """'prose', 'code' or None for a path relative to the source tree's root."""
    if rel.startswith("Documentation/"):
        if rel.startswith("Documentation/translations/"):
            return None
        return "prose" if rel.endswith(PROSE_EXT) else None
    if rel.endswith(CODE_EXT) and rel.startswith(CODE_DIRS):
        return "code"
    return None


def is_heldout(sha):
    return int(sha[:8], 16) < (HELDOUT_PERCENT * (1 << 32)) // 100


def prompt_candidates(text, kind):
    """Single lines of 40-120 characters that read as a sentence (prose) or a statement
    or declaration (code); leading and trailing white space removed."""
    out = []
    for line in text.split("\n"):
        s = line.strip()
        if not 40 <= len(s) <= 120:
            continue
        if s[0] in "-=*~^#+|`.:" or s.startswith(("/*", "*", "//")):
            continue  # rule lines, comment continuations, preprocessor, rst directives
        letters = sum(ch.isalpha() for ch in s)
        if kind == "prose":
            if not (s[0].isupper() and s.count(" ") >= 6 and letters >= 0.75 * len(s)
                    and not any(ch in s for ch in "=;{}<>_|\t")):
                continue
        elif not (letters >= len(s) // 2 and any(ch in s for ch in "(=;")):
            continue
        out.append(s)
    return out


def pick_prompts(docs):
    """docs: list of (path, kind, text) held out. Returns N_PROMPTS lines, alternately
    prose and code, at most one per document while documents last."""
    rng = random.Random(20251123)
    pools = {}
    for kind in ("prose", "code"):
        cands = [(p, prompt_candidates(t, kind)) for p, k, t in docs if k == kind]
        cands = [(p, c) for p, c in cands if c]
        rng.shuffle(cands)
        lines = []
        rnd = 0
        while len(lines) < N_PROMPTS // 2 and any(len(c) > rnd for _, c in cands):
            for _, c in cands:
                if len(c) > rnd:
                    lines.append(c[rng.randrange(len(c))] if rnd == 0 else c[rnd])
                    if len(lines) == N_PROMPTS // 2:
                        break
            rnd += 1
        pools[kind] = lines
    out = []
    for a, b in zip(pools["prose"], pools["code"]):
        out += [a, b]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="/usr/src/linux-source-6.1.tar.xz")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, ".carry", "corpus"))
    args = ap.parse_args()
    if not os.path.exists(args.source):
        sys.exit(f"make_corpus: {args.source} is missing: apt-get install linux-source-6.1")
    os.makedirs(args.out, exist_ok=True)

    files = {}  # rel path -> (kind, bytes)
    skipped = {"not_utf8": 0, "nul": 0, "too_small": 0, "too_large": 0}
    with tarfile.open(args.source, "r|xz") as tar:
        for m in tar:
            if not m.isfile():
                continue
            rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
            kind = classify(rel)
            if kind is None:
                continue
            if m.size < MIN_BYTES:
                skipped["too_small"] += 1
                continue
            if m.size > MAX_BYTES:
                skipped["too_large"] += 1
                continue
            data = tar.extractfile(m).read()
            if b"\0" in data:
                skipped["nul"] += 1
                continue
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                skipped["not_utf8"] += 1
                continue
            files[rel] = (kind, data)

    seen = {}
    manifest = []
    parts = {"train": [], "heldout": []}
    for rel in sorted(files):
        kind, data = files[rel]
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen:
            manifest.append((rel, kind, len(data), sha, "duplicate-of:" + seen[sha]))
            continue
        seen[sha] = rel
        split = "heldout" if is_heldout(sha) else "train"
        manifest.append((rel, kind, len(data), sha, split))
        parts[split].append((rel, kind, data))

    stats = {"source": os.path.basename(args.source), "skipped": skipped,
             "duplicates": sum(1 for m in manifest if m[4].startswith("duplicate"))}
    for split, docs in parts.items():
        path = os.path.join(args.out, f"{split}.txt.xz")
        with lzma.open(path, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
            for _, _, data in docs:
                f.write(data)
                f.write(b"\0")
        stats[split] = {
            "files": len(docs),
            "bytes": sum(len(d) for _, _, d in docs),
            "prose_files": sum(1 for _, k, _ in docs if k == "prose"),
            "prose_bytes": sum(len(d) for _, k, d in docs if k == "prose"),
            "code_files": sum(1 for _, k, _ in docs if k == "code"),
            "code_bytes": sum(len(d) for _, k, d in docs if k == "code"),
            "xz_bytes": os.path.getsize(path),
        }
    with lzma.open(os.path.join(args.out, "manifest.tsv.xz"), "wt", encoding="utf-8") as f:
        f.write("path\tkind\tbytes\tsha256\tsplit\n")
        for row in manifest:
            f.write("\t".join(map(str, row)) + "\n")
    prompts = pick_prompts([(p, k, d.decode("utf-8")) for p, k, d in parts["heldout"]])
    with open(os.path.join(args.out, "prompts.txt"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in prompts))
    stats["prompts"] = len(prompts)
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
