#!/usr/bin/env bash
# Speculative decoding on GPUs with the shipped pair (models/): greedy output equals
# target-only output at T=1 and T=2, and the T=2 output equals the T=1 output. With one
# GPU, T=2 runs --tp-comm mpi (two target ranks share the GPU, all-reduce through host
# memory); with two or more, NCCL. Every model-holding rank prints its GPU memory plan.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
head -n 6 "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"
G=$(gpu_count)
echo "GPUs visible: $G"

# field FILE SED-EXPR: the first match of a stats line, or "-"
field() { local v; v=$(sed -n "$2" "$1" | head -n 1); echo "${v:--}"; }
# plan_lines FILE: memory plan lines of model-holding ranks on a GPU
# Counted as matches, not lines: mpirun forwards each rank's stderr in chunks of its own,
# so two ranks' plan lines can share a line of the merged stream.
plan_lines() { grep -o 'augur: rank [0-9]* ([a-z ]*): GPU [0-9]' "$1" | wc -l; }

printf '%-3s %-5s %-12s %12s %10s %8s %s\n' T comm mode tokens/round acceptance tok/s "GPU plans"
for T in 1 2; do
  comm=nccl extra=()
  if [ "$T" -gt 1 ] && [ "$G" -lt "$T" ]; then
    comm=mpi extra=(--tp-comm mpi)
    echo "T=$T: $G GPU(s): the $T target ranks share GPU 0 with --tp-comm mpi (all-reduce through host memory)"
  fi
  [ "$T" -eq 1 ] && comm=-
  run=(mpirun_n $((T + 1)) "$AUGUR_BIN" generate --device cuda --target "$MODELS/target"
       --prompts-file "$tmp/prompts.txt" --max-tokens 32 --ids-only --threads 1 "${extra[@]}")
  "${run[@]}" --no-speculation >"$tmp/base.$T" 2>"$tmp/base.$T.err" </dev/null ||
    fail "T=$T target-only run failed: $(tail -n 20 "$tmp/base.$T.err")"
  "${run[@]}" --draft "$MODELS/draft" --gamma 4 >"$tmp/spec.$T" 2>"$tmp/spec.$T.err" </dev/null ||
    fail "T=$T speculative run failed: $(tail -n 20 "$tmp/spec.$T.err")"
  for mode in base spec; do
    f="$tmp/$mode.$T.err"
    tpr=$(field "$f" 's/.* \([0-9.]*\) tokens\/round.*/\1/p')
    acc=$(field "$f" 's/.*acceptance \([0-9.]*\) .*/\1/p')
    tps=$(field "$f" 's/.*ms), \([0-9.]*\) tok\/s$/\1/p')
    printf '%-3s %-5s %-12s %12s %10s %8s %s\n' "$T" "$comm" "$([ $mode = base ] && echo target-only || echo speculative)" \
      "$tpr" "$acc" "$tps" "$(plan_lines "$f")"
  done
  grep 'augur: rank [0-9]* ([a-z ]*): GPU [0-9]' "$tmp/spec.$T.err" | sed 's/^/  /'
  [ "$(wc -l <"$tmp/base.$T")" -eq 6 ] || fail "T=$T: expected 6 outputs, got $(wc -l <"$tmp/base.$T")"
  cmp -s "$tmp/base.$T" "$tmp/spec.$T" || fail "T=$T: speculative output differs from target-only
$(diff "$tmp/base.$T" "$tmp/spec.$T" | head -n 8)"
  # memory plans: T target ranks (+ the draft rank when it holds a model)
  [ "$(plan_lines "$tmp/base.$T.err")" -eq "$T" ] ||
    fail "T=$T target-only: expected $T 'GPU' memory plan lines, got: $(grep 'GPU' "$tmp/base.$T.err")"
  [ "$(plan_lines "$tmp/spec.$T.err")" -eq $((T + 1)) ] ||
    fail "T=$T speculative: expected $((T + 1)) 'GPU' memory plan lines, got: $(grep 'GPU' "$tmp/spec.$T.err")"
  grep -q 'tokens/round' "$tmp/spec.$T.err" || fail "T=$T: no tokens/round stats line"
  acc=$(field "$tmp/spec.$T.err" 's/.*acceptance \([0-9.]*\) .*/\1/p')
  awk -v a="$acc" 'BEGIN { exit !(a > 0.3) }' || fail "T=$T: acceptance $acc is implausibly low for the shipped pair"
  echo "T=$T: speculative output equals target-only (6 prompts x 32 tokens)"
done
# Different T sum the row-parallel products in a different order (per-shard partial sums,
# then the all-reduce), so T=1 and T=2 may part at a near-tie: reported, not asserted; the
# contract is speculative == target-only at each T, asserted above.
same=$(paste -d '\t' "$tmp/base.1" "$tmp/base.2" | awk -F '\t' '$1 == $2' | wc -l)
echo "T=2 target-only output equals T=1 on $same of $(wc -l <"$tmp/base.1") prompts"
echo "PASS"
