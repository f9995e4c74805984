#!/usr/bin/env bash
# The model beside the suite's measurements: benches the shards the suite ran (augur bench,
# one rank's forward alone at each verification width) and the draft, writes a profile of
# this machine (OUTDIR/profile.json) and runs augur project --suite on it (projection.md).
# Usage: cluster/scale_project.sh OUTDIR AUGUR TARGET DRAFT THREADS
set -euo pipefail
out=$1 augur=$2 target=$3 draft=$4 threads=$5
res="$out/results.json"
mkdir -p "$out/bench"
export AUGUR_DEVICE=${AUGUR_DEVICE:-cpu}
# Widths 1 .. the largest gamma + 1 the suite verified; a short context, as the suite's are.
max_n=$(jq '[.[].cell.gamma] | max + 1' "$res")
positions=$(seq -s, 1 "$max_n")
bench() { # NAME then augur bench flags
  local name=$1; shift
  echo "scale.sh: [bench] $name" >&2
  "$augur" bench --threads "$threads" --context 128 --positions "$positions" --csv "$out/bench/$name.csv" "$@" \
    >"$out/bench/$name.txt" 2>"$out/bench/$name.log" || { tail -n 20 "$out/bench/$name.log" >&2; exit 1; }
}
tps=$(jq -r '[.[].cell.tp] | unique | .[]' "$res")
for t in $tps; do bench "target-tp$t" --model "$target" --tp-size "$t" --tp-rank 0; done
bench draft --model "$draft"
csv_points() { # CSV TP: the rows as profile "target" points
  jq -R -s --argjson tp "$2" --arg src "augur bench $(basename "$1")" '
    split("\n") | .[1:] | map(select(length > 0) | split(",")) |
    map({tp: $tp, positions: (.[0] | tonumber), ms: (.[1] | tonumber), source: $src})' "$1"
}
points=$(for t in $tps; do csv_points "$out/bench/target-tp$t.csv" "$t"; done | jq -s 'add')
draft_ms=$(jq -R -s 'split("\n")[1] | split(",")[1] | tonumber' "$out/bench/draft.csv")
jq -n --argjson points "$points" --argjson draft "$draft_ms" \
  --argjson layers "$(jq .num_hidden_layers "$target/config.json")" --argjson hidden "$(jq .hidden_size "$target/config.json")" '
  {name: "this machine (CPU), the suite'"'"'s pair", layers: $layers, hidden: $hidden,
   allreduce_element_bytes: 4, gpus_per_node: 1,
   draft: {ms: $draft, source: "augur bench of the draft, 1 position"},
   target: $points,
   links: {intra: {latency_us: 0, bandwidth_GBps: 0, source: "unused: augur project --suite fits each link from the cells"},
           inter: {latency_us: 0, bandwidth_GBps: 0, source: "unused"}},
   alpha_measured: null}' >"$out/profile.json"
# A single T in the suite cannot extrapolate; the cells only need their own T.
"$augur" project --profile "$out/profile.json" --suite "$res" --no-projection >"$out/projection.md"
echo "scale.sh: model beside measurement in $out/projection.md" >&2
