#!/usr/bin/env bash
# Renders a scaling suite's results.json (cluster/scale.sh) as table.md, boundary.md and,
# when gnuplot is installed and plots are wanted, plots/*.png.
# Usage: cluster/scale_report.sh OUTDIR [PLOTS (1|0)]
set -euo pipefail
out=$1 plots=${2:-1}
res="$out/results.json"
[ -r "$res" ] || { echo "scale_report.sh: $res not found" >&2; exit 2; }

# Per-round figures of a record's main run, shared by the tables and the plots. With
# replicas, tok/s and ms/token are the whole job's (.job); the round split stays that of
# replica 0's own group.
jq_lib='
def r2: . * 100 | round / 100;
def r1: . * 10 | round / 10;
def per_round(x): if .runs[0].rounds > 0 then x / .runs[0].rounds else 0 end;
def fig: (.runs[0] + (if .job then {tokens_per_s: .job.tokens_per_s, ms_per_token: .job.ms_per_token}
                      else {} end)) as $r | {
  cell: .cell, r: $r,
  round_ms: per_round($r.decode_ms),
  draft_ms: per_round($r.time.draft_wait_ms), verify_ms: per_round($r.time.verify_ms),
  allreduce_ms: per_round($r.allreduce.ms), comm_ms: per_round($r.time.comm_ms),
  sample_ms: per_round($r.time.sample_ms),
  ar_us: ($r.allreduce.mean_us // 0), speedup: (.job.speedup // .speedup) };
def net_label: .cell | (if .net == "shm" then "shm" elif .net == "sim" then "simulated hosts" else "netns tcp" end)
  + (if .delay_ms != 0 then " +\(.delay_ms) ms" else "" end) + (if .rate != "none" then " \(.rate)" else "" end);
'

{
  echo "| cell | T | replicas | nodes | network | rule | γ | α | acceptance | tokens/round | tok/s | ms/token | round ms | draft wait | verify | of which all-reduce | comm | sampling | all-reduce mean µs | speedup |"
  echo "| --- | --: | --: | --: | --- | --- | --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |"
  jq -r "$jq_lib"'.[] | (net_label) as $net | fig as $f | [
    $f.cell.name, $f.cell.tp, $f.cell.replicas, $f.cell.nodes, $net, $f.cell.rule, $f.cell.gamma,
    (if $f.cell.acceptance == "real" then "real" else "synthetic \($f.cell.acceptance)" end),
    (($f.r.acceptance // 0) * 1000 | round / 1000), ($f.r.tokens_per_round | r2), ($f.r.tokens_per_s | r1),
    ($f.r.ms_per_token | r2), ($f.round_ms | r2), ($f.draft_ms | r2), ($f.verify_ms | r2),
    ($f.allreduce_ms | r2), ($f.comm_ms | r2), ($f.sample_ms | r2), ($f.ar_us | r1),
    (if $f.speedup then "\($f.speedup | r2)x" else "" end)
    ] | "| " + (map(tostring) | join(" | ")) + " |"' "$res"
  echo
  echo "Per-round times are the leader's (rank 0), in ms: decode time / rounds; draft wait is time"
  echo "blocked on the draft's proposal, verify the target forward (its all-reduces included),"
  echo "comm the broadcasts, gathers and verdicts, sampling the acceptance test."
} >"$out/table.md"

# Node boundary: each cell against the cell of the same group (T, replicas, rule, gamma,
# acceptance) on one node over shared memory.
jq -r "$jq_lib"'
  map(select(.runs[0].rounds > 0)) | group_by([.cell.tp, .cell.replicas, .cell.rule, .cell.gamma, .cell.acceptance])
  | map(select(length > 1 and any(.[]; .cell.nodes == 1 and .cell.net == "shm")))
  | if length == 0 then empty else
    ("| T | rule | γ | α | nodes | network | verify ms/round | Δ verify | all-reduce ms/round | Δ all-reduce | all-reduce mean µs | comm ms/round | Δ comm | tok/s | vs one node |",
     "| --: | --- | --: | --- | --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |",
     (.[] | (map(select(.cell.nodes == 1 and .cell.net == "shm"))[0] | fig) as $ref
      | sort_by([.cell.nodes, .cell.net, .cell.delay_ms]) | .[] | (net_label) as $net | fig as $f
      | [$f.cell.tp, $f.cell.rule, $f.cell.gamma, $f.cell.acceptance, $f.cell.nodes, $net,
         ($f.verify_ms | r2), ($f.verify_ms - $ref.verify_ms | r2), ($f.allreduce_ms | r2),
         ($f.allreduce_ms - $ref.allreduce_ms | r2), ($f.ar_us | r1), ($f.comm_ms | r2),
         ($f.comm_ms - $ref.comm_ms | r2), ($f.r.tokens_per_s | r1),
         "\(if $ref.r.tokens_per_s > 0 then $f.r.tokens_per_s / $ref.r.tokens_per_s | r2 else 0 end)x"]
      | "| " + (map(tostring) | join(" | ")) + " |"))
    end' "$res" >"$out/boundary.tmp"
if [ -s "$out/boundary.tmp" ]; then
  {
    echo "What crossing a node boundary costs the verification round: each cell against the same"
    echo "layout on one node over shared memory (Δ = this row minus that one, ms per round)."
    echo
    cat "$out/boundary.tmp"
  } >"$out/boundary.md"
else
  rm -f "$out/boundary.md"
fi
rm -f "$out/boundary.tmp"

[ "$plots" = 1 ] || exit 0
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "scale_report.sh: gnuplot is not installed: no plots (apt-get install gnuplot-nox); the tables are in $out" >&2
  exit 0
fi
mkdir -p "$out/plots"
jq -r "$jq_lib"'.[] | fig | [.cell.name, .r.tokens_per_s, .r.ms_per_token, .draft_ms, .verify_ms - .allreduce_ms,
  .allreduce_ms, .comm_ms, .sample_ms] | @tsv' "$res" >"$out/plots/cells.tsv"
n=$(wc -l <"$out/plots/cells.tsv")
w=$((400 + 60 * n))
gnuplot <<GNUPLOT
set terminal png size $w,600 font ",10"
set datafile separator "\t"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -40 left noenhanced
set grid ytics
set key noenhanced
set bmargin 12
set rmargin 14
set output "$out/plots/tokens_per_s.png"
set title "decode tokens/s per cell"
set ylabel "tokens/s"
plot "$out/plots/cells.tsv" using 2:xtic(1) title "tokens/s"
set output "$out/plots/ms_per_token.png"
set title "latency per token (decode ms / generated tokens)"
set ylabel "ms per token"
plot "$out/plots/cells.tsv" using 3:xtic(1) title "ms/token"
set output "$out/plots/round_split.png"
set title "the verification round's time split (leader, ms per round)"
set ylabel "ms per round"
set style histogram rowstacked
plot "$out/plots/cells.tsv" using 4:xtic(1) title "draft wait", '' using 5 title "verify compute", \
     '' using 6 title "all-reduce", '' using 7 title "comm", '' using 8 title "sampling"
GNUPLOT
echo "scale_report.sh: plots in $out/plots" >&2
