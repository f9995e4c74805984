#!/usr/bin/python3
"""Acceptance study of the shipped pair with augur itself (CPU, MPI, 1 target rank +
1 draft rank): for greedy decoding and temperature 0.8, and each fixed draft length
gamma in 1..8, one `augur generate --prompts-file` run over the 200 held-out prompts
(.carry/corpus/prompts.txt, also shipped as models/heldout_prompts.txt), 64 new tokens
each, with --trace. Records acceptance (accepted of proposed tokens), mean tokens per
round (accepted + the correction/bonus token), rounds, and the per-token traces (draft
entropy, accepted) from which tools/train/plot_entropy.py draws the histogram.

Usage: /usr/bin/python3 tools/train/acceptance_study.py [--augur build-train/launcher/augur]
          [--prompts models/heldout_prompts.txt] [--max-tokens 64] [--out docs/acceptance]
Writes OUT/study.json and OUT/trace_<mode>_g<gamma>.csv.xz (gamma 4 and 8).
"""
import argparse
import json
import lzma
import os
import re
import subprocess
import time

STATS = re.compile(r"speculative: (\d+) rounds, ([\d.]+) tokens/round, acceptance ([\d.]+) "
                   r"\((\d+) of (\d+) proposed\)")
SPEED = re.compile(r"(\d+) requests, (\d+) tokens in ([\d.]+) ms")
MODES = {"greedy": [], "T0.8": ["--temperature", "0.8", "--seed", "1"]}


def mpirun(args, extra):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "-np", "2",
           args.augur, "generate", "--target", args.target, "--draft", args.draft,
           "--prompts-file", args.prompts, "--max-tokens", str(args.max_tokens),
           "--threads", "1", "--ids-only"] + extra
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"acceptance_study: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout, r.stderr, time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--augur", default="build-train/launcher/augur")
    ap.add_argument("--target", default="models/target")
    ap.add_argument("--draft", default="models/draft")
    ap.add_argument("--prompts", default="models/heldout_prompts.txt")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--gammas", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--out", default="docs/acceptance")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n_prompts = sum(1 for l in open(args.prompts, encoding="utf-8") if l.strip())
    res = {"prompts": n_prompts, "max_tokens": args.max_tokens, "target": args.target,
           "draft": args.draft, "runs": []}
    outputs = {}
    for mode, extra in MODES.items():
        out, err, secs = mpirun(args, extra + ["--no-speculation"])
        m = SPEED.search(err)
        res["runs"].append({"mode": mode, "gamma": 0, "tokens": int(m.group(2)),
                            "ms": float(m.group(3)), "wall_s": round(secs, 1)})
        outputs[mode] = out
        print(mode, "baseline", res["runs"][-1], flush=True)
        for g in map(int, args.gammas.split(",")):
            trace = os.path.join(args.out, f"trace_{mode}_g{g}.bin")
            out, err, secs = mpirun(args, extra + ["--gamma", str(g), "--trace", trace])
            s = STATS.search(err)
            sp = SPEED.search(err)
            row = {"mode": mode, "gamma": g, "rounds": int(s.group(1)),
                   "tokens_per_round": float(s.group(2)), "acceptance": float(s.group(3)),
                   "accepted": int(s.group(4)), "proposed": int(s.group(5)),
                   "tokens": int(sp.group(2)), "ms": float(sp.group(3)),
                   "wall_s": round(secs, 1)}
            if mode == "greedy":
                row["output_equals_target_only"] = out == outputs["greedy"]
            res["runs"].append(row)
            print(row, flush=True)
            if g in (4, 8):
                csv = subprocess.run([args.augur, "trace", trace, "--csv"], capture_output=True,
                                     text=True, check=True).stdout
                with lzma.open(os.path.join(args.out, f"trace_{mode}_g{g}.csv.xz"), "wt") as f:
                    f.write(csv)
            os.remove(trace)
    json.dump(res, open(os.path.join(args.out, "study.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
