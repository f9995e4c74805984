#!/usr/bin/python3
"""Draws the histogram of draft entropy for accepted vs rejected draft tokens (the
thesis's Figure 5.4) from the traces that tools/train/acceptance_study.py recorded with
augur (docs/acceptance/trace_<mode>_g<gamma>.csv.xz, from `augur trace FILE --csv`).

A trace holds every proposed token up to and including the first rejected one of each
round; tokens after a rejection were never judged and are not in it. Entropy is the
draft's, in nats, of its processed next-token distribution (after temperature).

Usage (Debian: apt-get install python3-matplotlib):
  /usr/bin/python3 tools/train/plot_entropy.py [--dir docs/acceptance]
      [--out docs/entropy_histogram.png]
"""
import argparse
import csv
import io
import lzma
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with lzma.open(path, "rt") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    acc = [float(r["draft_entropy"]) for r in rows if r["accepted"] == "1"]
    rej = [float(r["draft_entropy"]) for r in rows if r["accepted"] != "1"]
    return acc, rej


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="docs/acceptance")
    ap.add_argument("--out", default="docs/entropy_histogram.png")
    ap.add_argument("--gammas", default="4,8")
    args = ap.parse_args()
    gammas = [int(g) for g in args.gammas.split(",")]
    modes = [("greedy", "greedy"), ("T0.8", "temperature 0.8")]
    fig, axes = plt.subplots(len(gammas), 2, figsize=(11, 3.6 * len(gammas)), squeeze=False)
    bins = [i * 0.25 for i in range(33)]
    for r, g in enumerate(gammas):
        for c, (mode, title) in enumerate(modes):
            ax = axes[r][c]
            path = os.path.join(args.dir, f"trace_{mode}_g{g}.csv.xz")
            acc, rej = load(path)
            ax.hist(acc, bins=bins, alpha=0.6, color="tab:green",
                    label=f"accepted ({len(acc)})")
            ax.hist(rej, bins=bins, alpha=0.6, color="tab:red", label=f"rejected ({len(rej)})")
            ax.set_title(f"{title}, γ = {g}: acceptance of judged tokens "
                         f"{len(acc) / max(1, len(acc) + len(rej)):.2f}", fontsize=10)
            ax.set_xlabel("draft entropy (nats)")
            ax.set_ylabel("tokens")
            ax.set_xlim(0, 8)
            ax2 = ax.twinx()
            xs, ys = [], []
            for lo, hi in zip(bins[:-1], bins[1:]):
                a = sum(lo <= e < hi for e in acc)
                n = a + sum(lo <= e < hi for e in rej)
                if n >= 20:
                    xs.append((lo + hi) / 2)
                    ys.append(a / n)
            ax2.plot(xs, ys, "k.-", lw=1, ms=3, label="P(accepted) per bin (n ≥ 20)")
            ax2.set_ylim(0, 1.02)
            ax2.set_ylabel("P(accepted)")
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.suptitle("augur's shipped pair (models/target 15.7M, models/draft 2.8M): draft entropy "
                 "of accepted vs rejected draft tokens\n200 held-out prompts × 64 tokens, "
                 "augur CPU, fixed γ", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
