#!/usr/bin/env bash
# Tokens/s against gamma for each draft rule at synthetic acceptances (dummy weights), on
# CPU or GPU: the GPU speed issue's benchmark deliverable. One target-only run, then one
# speculative run per (rule, A, gamma) with `generate --synthetic-acceptance A
# --stats-json`; writes OUT/cells/*.json, OUT/sweep.json (every record, with its speedup),
# OUT/sweep.md (a table), and OUT/sweep.png (tok/s against gamma, a line per rule and A)
# where gnuplot is installed, else says so. Benchmark, not a test: it fails only when a
# run fails or its record cannot be read.
#
#   usage: tools/bench/sweep.sh [options] OUT
#   --augur BIN          default build/launcher/augur
#   --target DIR --draft DIR   config.json directories (dummy weights are made from them;
#                        default models/target, models/draft)
#   --rules LIST         default fixed,heuristic (heuristic: gamma is its start and cap)
#   --alphas LIST        default 0.5,0.7,0.9
#   --gammas LIST        default 1,2,4,8
#   --max-tokens N       default 128
#   --prompt-len N       prompt of N token ids (default 32)
#   --device D           cpu | cuda (default: $AUGUR_DEVICE, else auto)
#   --threads N          per rank (default 1)
#   --plot-only          draw OUT/sweep.png from an existing OUT/sweep.json (e.g. one a GPU
#                        machine without gnuplot wrote), running nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
augur="$root/build/launcher/augur" target="$root/models/target" draft="$root/models/draft"
rules=fixed,heuristic alphas=0.5,0.7,0.9 gammas=1,2,4,8 max_tokens=128 prompt_len=32 device=${AUGUR_DEVICE:-auto}
threads=1 out="" plot_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --augur) augur=$2; shift ;;
    --target) target=$2; shift ;;
    --draft) draft=$2; shift ;;
    --rules) rules=$2; shift ;;
    --alphas) alphas=$2; shift ;;
    --gammas) gammas=$2; shift ;;
    --max-tokens) max_tokens=$2; shift ;;
    --prompt-len) prompt_len=$2; shift ;;
    --device) device=$2; shift ;;
    --threads) threads=$2; shift ;;
    --plot-only) plot_only=1 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "sweep.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "sweep.sh: give an output directory (see --help)" >&2; exit 2; }
command -v jq >/dev/null || { echo "sweep.sh: needs jq (apt-get install jq)" >&2; exit 2; }
[ "$plot_only" = 1 ] || [ -x "$augur" ] || { echo "sweep.sh: no augur binary at $augur (--augur BIN)" >&2; exit 2; }
mkdir -p "$out/cells"
split() { tr ',' ' ' <<<"$1"; }
if [ "$plot_only" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
  read -r -a mpirun_extra <<<"${MPIRUN_ARGS:---oversubscribe --mca mpi_yield_when_idle 1 --bind-to none}"
  ids=$(seq -s, 1 "$prompt_len")

  # run NAME FLAGS...: one generate job, its record in cells/NAME.json
  run() {
    local name=$1
    shift
    mpirun "${mpirun_extra[@]}" -np 2 "$augur" generate --device "$device" --load-format dummy --target "$target" \
      --prompt-ids "$ids" --max-tokens "$max_tokens" --threads "$threads" --ids-only \
      --stats-json "$out/cells/$name.json" "$@" >/dev/null 2>"$out/cells/$name.log" ||
      { echo "sweep.sh: run $name failed:" >&2; tail -n 20 "$out/cells/$name.log" >&2; exit 1; }
  }
  n=0
  for r in $(split "$rules"); do for a in $(split "$alphas"); do for g in $(split "$gammas"); do n=$((n + 1)); done; done; done
  echo "sweep.sh: target-only, then $n speculative runs ($max_tokens tokens each, device $device)" >&2
  run base --no-speculation
  i=0
  for r in $(split "$rules"); do
    for a in $(split "$alphas"); do
      for g in $(split "$gammas"); do
        i=$((i + 1))
        echo "sweep.sh: [run $i/$n] rule $r, A $a, gamma $g" >&2
        run "$r-a$a-g$g" --draft "$draft" --draft-rule "$r" --gamma "$g" --synthetic-acceptance "$a"
      done
    done
  done

  base_tps=$(jq '.runs[0].tokens_per_s' "$out/cells/base.json")
  jq -s --argjson base "$base_tps" '
    map(select(.speculative)) | map({rule: .draft_rule, alpha: (.synthetic_acceptance * 10000 | round / 10000), gamma: .gamma,
      tokens_per_s: .runs[0].tokens_per_s, speedup: (.runs[0].tokens_per_s / $base),
      tokens_per_round: .runs[0].tokens_per_round, time: .runs[0].time, rounds: .runs[0].rounds,
      device: .device}) as $cells | {target_only_tokens_per_s: $base, cells: $cells}' \
    "$out"/cells/*-a*-g*.json >"$out/sweep.json"
  {
    echo "target-only: $base_tps tok/s ($device)"
    echo
    echo "| rule | A | γ | tok/s | vs target-only | tokens/round | draft wait ms/round | verify ms/round |"
    echo "| --- | --: | --: | --: | --: | --: | --: | --: |"
    jq -r '.cells | sort_by(.rule, .alpha, .gamma)[] | "| \(.rule) | \(.alpha) | \(.gamma) | \(.tokens_per_s * 10 | round / 10) | \(.speedup * 100 | round / 100)x | \(.tokens_per_round * 100 | round / 100) | \(.time.draft_wait_ms / .rounds * 100 | round / 100) | \(.time.verify_ms / .rounds * 100 | round / 100) |"' "$out/sweep.json"
  } >"$out/sweep.md"
  cat "$out/sweep.md"
fi
[ -s "$out/sweep.json" ] || { echo "sweep.sh: no $out/sweep.json" >&2; exit 1; }
base_tps=$(jq '.target_only_tokens_per_s' "$out/sweep.json")
device=$(jq -r '.cells[0].device // "?"' "$out/sweep.json")
rules=$(jq -r '[.cells[].rule] | unique | join(",")' "$out/sweep.json")
alphas=$(jq -r '[.cells[].alpha] | unique | map(tostring) | join(",")' "$out/sweep.json")
if ! command -v gnuplot >/dev/null; then
  echo "sweep.sh: gnuplot not installed: no sweep.png (apt-get install gnuplot-nox); sweep.json holds the data" >&2
  exit 0
fi
plots=""
for r in $(split "$rules"); do
  for a in $(split "$alphas"); do
    jq -r --arg r "$r" --argjson a "$a" '.cells[] | select(.rule == $r and .alpha == $a) | "\(.gamma) \(.tokens_per_s)"' \
      "$out/sweep.json" | sort -n >"$out/cells/plot-$r-$a.dat"
    plots+="${plots:+, }'$out/cells/plot-$r-$a.dat' using 1:2 with linespoints title '$r, A=$a'"
  done
done
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "$out/sweep.png"
set title "tokens/s against gamma, synthetic acceptance A ($device; target-only $(printf %.1f "$base_tps") tok/s, dashed)"
set xlabel "gamma"
set ylabel "tokens/s"
set key outside right
set grid
set arrow from graph 0, first $base_tps to graph 1, first $base_tps nohead dashtype 2
plot $plots
GP
echo "sweep.sh: wrote $out/sweep.png" >&2
