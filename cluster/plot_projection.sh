#!/usr/bin/env bash
# The projection plot of docs/scaling.md: tokens/s against nodes for T = 8 and 16 at each
# acceptance, from `augur project --csv` (gnuplot).
#   usage: bash cluster/plot_projection.sh AUGUR_BIN PROFILE OUT.png [augur project flags...]
set -euo pipefail
bin=${1:?augur binary} profile=${2:?profile} png=${3:?output png}
shift 3
command -v gnuplot >/dev/null || { echo "plot_projection.sh: needs gnuplot (apt-get install gnuplot-nox)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" project --profile "$profile" --csv "$tmp/p.csv" "$@" >/dev/null
# one data file per (T, alpha): nodes, tokens/s; plus target-only per T
awk -F, -v d="$tmp" 'NR > 1 && $5 > 0 && $4 > 0 {
  f = d "/t" $1 "-a" $6 ".dat"; print $2, $10 >> f
  g = d "/t" $1 "-base.dat"; if (!seen[$1 "," $2]++) print $2, $11 >> g }' "$tmp/p.csv"
plots=""
for f in "$tmp"/t*.dat; do
  name=$(basename "$f" .dat)
  label=$(sed -e 's/^t\([0-9]*\)-a\(.*\)/T=\1, α=\2/' -e 's/^t\([0-9]*\)-base/T=\1, target-only/' <<<"$name")
  plots+="${plots:+, }'$f' using 1:2 with linespoints title '$label'"
done
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "$png"
set title "Projected tokens/s, Llama-3-70B on H200 nodes of 8 GPUs (augur project)"
set xlabel "nodes"
set ylabel "tokens/s (all replicas)"
set logscale xy 2
set key left top
set grid
plot $plots
GP
echo "plot_projection.sh: wrote $png" >&2
