#!/usr/bin/env bash
# How well `augur simulate` predicts a recorded run's own speedup. For each setting it
# records a distributed run with --trace and --compare-baseline (the measured speedup),
# replays the trace under the same rule and gamma, and prints the predictions next to the
# measurement: t_t(n) fitted from the trace alone, anchored at a separately measured
# target-only t_t(1), anchored at the run's own baseline, and the old one-cost model (mean
# verify time for every round, no slope). A benchmark: it exits non-zero only when a run
# fails or its output cannot be read, never on a prediction that misses.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tools/bench/simulate_accuracy.sh [options]

  --build DIR        build directory holding launcher/augur (default: <repo>/build)
  --target PATH      target model (default: <repo>/models/target)
  --draft PATH       draft model (default: <repo>/models/draft)
  --prompts N        first N lines of models/heldout_prompts.txt (default 5)
  --prompts-file F   prompts, one a line, instead of the held-out ones
  --max-tokens N     tokens per request (default 64)
  --threads N        CPU threads per rank (default 1)
  --settings LIST    rule:gamma pairs (default "fixed:1 fixed:2 fixed:4 fixed:8 heuristic:4")
  --overlap          also record every setting with overlap (information only: the cost
                     model charges every drafted token, which overlap partly hides)
  --out DIR          keep traces and logs in DIR (default: a temporary folder, removed)
  -h, --help         show this help

Environment: MPIRUN (default mpirun), MPIRUN_FLAGS (default "--oversubscribe --mca
mpi_yield_when_idle 1 --bind-to none"). Error % is (predicted - measured) / measured.
EOF
}

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build target=$root/models/target draft=$root/models/draft n_prompts=5 prompts_file="" max_tokens=64 threads=1
settings="fixed:1 fixed:2 fixed:4 fixed:8 heuristic:4" overlap=0 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --draft) draft=$2; shift 2 ;;
    --prompts) n_prompts=$2; shift 2 ;;
    --prompts-file) prompts_file=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --overlap) overlap=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "simulate_accuracy: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "simulate_accuracy: $*" >&2; exit 1; }

A="$build/launcher/augur"
[ -x "$A" ] || die "$A not found: build first (cmake --build $build)"
if [ -n "$out" ]; then
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
if [ -z "$prompts_file" ]; then
  prompts_file="$out/prompts.txt"
  head -n "$n_prompts" "$root/models/heldout_prompts.txt" >"$prompts_file"
fi
[ -s "$prompts_file" ] || die "no prompts in $prompts_file"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
read -r -a mpi_flags <<<"${MPIRUN_FLAGS:---oversubscribe --mca mpi_yield_when_idle 1 --bind-to none}"

# gen NAME ARGS...: one 2-rank generate run; stderr kept in $out/NAME.err.
gen() {
  local name=$1; shift
  "${MPIRUN:-mpirun}" "${mpi_flags[@]}" -np 2 "$A" generate --target "$target" --prompts-file "$prompts_file" \
    --max-tokens "$max_tokens" --threads "$threads" "$@" >"$out/$name.out" 2>"$out/$name.err" ||
    die "$name: generate failed: $(grep -m 3 '^augur' "$out/$name.err" || tail -n 5 "$out/$name.err")"
}

# run_line FILE LABEL: "TOKENS MS PREFILL_MS" from "LABEL: R requests, N tokens in M ms (prefill P ms)".
run_line() {
  local v
  v=$(sed -n "s/^augur: $2: [0-9]* requests\{0,1\}, \([0-9]*\) tokens in \([0-9.]*\) ms (prefill \([0-9.]*\) ms).*/\1 \2 \3/p" "$1")
  [ -n "$v" ] || die "$1: no '$2: ... tokens in ... ms (prefill ... ms)' line"
  echo "$v"
}

# ms_per_token FILE LABEL: decode ms per generated token (wall time less prefill, as the tok/s
# that generate prints).
ms_per_token() { run_line "$1" "$2" | awk '$1 > 0 { printf "%.4f", ($2 - $3) / $1 }'; }

# time_field FILE LABEL WORDS: the number after WORDS on the "LABEL: time:" line (e.g. "verify").
time_field() {
  local v
  v=$(grep "^augur: $2: .*time:" "$1" | sed -n "s/.*$3 \([0-9.]*\) ms.*/\1/p" | head -n 1)
  [ -n "$v" ] || die "$1: no '$3 ... ms' on the '$2: time:' line"
  echo "$v"
}

# simulate LABEL TRACE RULE GAMMA ARGS...: the predicted speedup. Only the fitted variant may
# be declined (a trace whose widths cannot fit t_t(1)): it is "n/a", with simulate's reason
# in TRACE's .why file; any other failure stops the benchmark.
simulate() {
  local label=$1 trace=$2 rule=$3 gamma=$4 o; shift 4
  if ! o=$("$A" simulate "$trace" --rule "$rule" --gamma "$gamma" "$@" 2>&1); then
    [ "$label" = fitted ] || die "$trace: simulate ($label) failed: $o"
    echo "  $label n/a: ${o#"augur: $trace: "}" >>"${trace%.trace}.why"
    echo "n/a"
    return
  fi
  echo "$o" | sed -n "s/^cost model: /  $label: /p" >>"${trace%.trace}.model"
  echo "$o" | sed -n 's/^best: .* \([0-9.]*\)x over target-only$/\1/p' | grep . ||
    die "$trace: no 'best: ... x over target-only' line from simulate"
}

# hits VARIANT PRED MEASURED: counts, per variant, the rows within 15% (no-overlap rows only:
# the model charges every drafted token, which overlap partly hides).
declare -A hit=() tried=()
hits() {
  [ "$mode" = no-overlap ] && [ "$2" != n/a ] || return 0
  tried[$1]=$((${tried[$1]:-0} + 1))
  if awk -v p="$2" -v m="$3" 'BEGIN { d = (p - m) / m; exit !(d <= 0.15 && d >= -0.15) }'; then
    hit[$1]=$((${hit[$1]:-0} + 1))
  fi
}

err_pct() { awk -v p="$1" -v m="$2" 'BEGIN { if (p == "n/a") print "n/a"; else printf "%+.0f%%", 100 * (p - m) / m }'; }

echo "simulate_accuracy: $(wc -l <"$prompts_file") prompts x $max_tokens tokens, $threads thread(s)/rank," \
  "traces and logs in $out" >&2
echo "simulate_accuracy: target-only run (t_t(1))" >&2
gen baseline --no-speculation
tt1=$(ms_per_token "$out/baseline.err" target-only)

rows=() details=()
runs=()
for s in $settings; do runs+=("$s:no-overlap"); done
if [ "$overlap" = 1 ]; then for s in $settings; do runs+=("$s:overlap"); done; fi
for r in "${runs[@]}"; do
  IFS=: read -r rule gamma mode <<<"$r"
  name="${rule}-g$gamma-$mode"
  flags=(--draft "$draft" --draft-rule "$rule" --gamma "$gamma" --trace "$out/$name.trace" --compare-baseline)
  [ "$mode" = overlap ] || flags+=(--no-overlap)
  echo "simulate_accuracy: $name" >&2
  gen "$name" "${flags[@]}"
  e="$out/$name.err"
  spec=$(ms_per_token "$e" speculative)
  base=$(ms_per_token "$e" "baseline (target-only)")
  measured=$(awk -v s="$spec" -v b="$base" 'BEGIN { printf "%.3f", b / s }')
  rounds=$(sed -n 's/^augur: speculative: \([0-9]*\) rounds.*/\1/p' "$e")
  [ -n "$rounds" ] || die "$e: no 'speculative: N rounds' line"
  # Decode time per round that no variant charges: all but drafting after verdicts and
  # verify (whose total includes the prefill), i.e. messaging, waiting for the other rank
  # to wake, sampling and acceptance.
  read -r _ wall _ <<<"$(run_line "$e" speculative)"
  other=$(awk -v w="$wall" -v r="$rounds" -v d="$(time_field "$e" speculative drafting)" \
    -v v="$(time_field "$e" speculative verify)" 'BEGIN { printf "%.1f", (w - d - v) / r }')
  mean_verify=$("$A" trace "$out/$name.trace" | sed -n 's/^target time: *\([0-9.]*\) ms per round.*/\1/p')
  [ -n "$mean_verify" ] || die "$name: no 'target time' in augur trace's summary"
  fitted=$(simulate fitted "$out/$name.trace" "$rule" "$gamma")
  anchored=$(simulate anchored "$out/$name.trace" "$rule" "$gamma" --tt "$tt1")
  own=$(simulate "own base" "$out/$name.trace" "$rule" "$gamma" --tt "$base")
  old=$(simulate one-cost "$out/$name.trace" "$rule" "$gamma" --tt "$mean_verify" --tt-slope 0)
  hits fitted "$fitted" "$measured"
  hits anchored "$anchored" "$measured"
  hits "own base" "$own" "$measured"
  hits one-cost "$old" "$measured"
  rows+=("$(printf '| %-23s | %6s | %6s | %8s | %5s | %8s | %5s | %8s | %5s | %8s | %5s | %6s |' \
    "$name" "$rounds" "$measured" "$fitted" "$(err_pct "$fitted" "$measured")" \
    "$anchored" "$(err_pct "$anchored" "$measured")" "$own" "$(err_pct "$own" "$measured")" \
    "$old" "$(err_pct "$old" "$measured")" "$other")")
  details+=("$name: baseline $base ms/token, speculative $spec ms/token, mean verify $mean_verify ms/round")
  for f in "$out/$name.model" "$out/$name.why"; do
    if [ -f "$f" ]; then while IFS= read -r l; do details+=("$l"); done <"$f"; fi
  done
done

echo "t_t(1) from the target-only run: $tt1 ms/token"
echo
echo "| setting                 | rounds | meas.  | fitted   | err   | anchored | err   | own base | err   | one-cost | err   | other  |"
echo "|-------------------------|--------|--------|----------|-------|----------|-------|----------|-------|----------|-------|--------|"
printf '%s\n' "${rows[@]}"
echo
echo "meas.: measured speedup (baseline / speculative decode ms per token); fitted: t_t(n) from the"
echo "trace alone; anchored: --tt t_t(1) of the target-only run; own base: --tt of the run's own"
echo "baseline; one-cost: --tt <mean verify> --tt-slope 0 (the old model); other: decode ms per"
echo "round outside drafting and verify (messaging, waiting, sampling), which no variant charges."
echo -n "within 15% (no-overlap settings):"
for v in fitted anchored "own base" one-cost; do echo -n " $v ${hit[$v]:-0}/${tried[$v]:-0};"; done
echo
echo
printf '%s\n' "${details[@]}"
