#!/usr/bin/env bash
# The shipped draft and target (models/) generate the same 64 greedy tokens on the GPU as
# on the CPU backend for the first 10 held-out prompts: 2 models x 10 prompts, all equal.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
head -n 10 "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"

# first_diff "a b c" "a x c": index of the first differing id (or the shorter length)
first_diff() {
  awk -v a="$1" -v b="$2" 'BEGIN { na = split(a, x, " "); nb = split(b, y, " ");
    n = na < nb ? na : nb; for (i = 1; i <= n; i++) if (x[i] != y[i]) { print i - 1; exit }
    print n }'
}

equal=0 total=0
printf '%-7s %6s %6s %6s %s\n' model prompt cuda cpu result
for name in target draft; do
  i=0
  while IFS= read -r line; do
    gen=("$AUGUR_BIN" generate --model "$MODELS/$name" --prompt "$line" --max-tokens 64 --ids-only)
    "${gen[@]}" --device cuda </dev/null >"$tmp/gpu" 2>"$tmp/gpu.err" || fail "$name prompt $i (cuda): $(cat "$tmp/gpu.err")"
    "${gen[@]}" --device cpu --threads 4 </dev/null >"$tmp/cpu" 2>"$tmp/cpu.err" ||
      fail "$name prompt $i (cpu): $(cat "$tmp/cpu.err")"
    g=$(cat "$tmp/gpu") c=$(cat "$tmp/cpu")
    ng=$(wc -w <<<"$g") nc=$(wc -w <<<"$c")
    [ "$nc" -gt 0 ] || fail "$name prompt $i: the CPU run printed no ids"
    if [ "$g" = "$c" ]; then
      equal=$((equal + 1)) res="equal"
    else
      res="DIFFER at token $(first_diff "$g" "$c")"
    fi
    total=$((total + 1))
    printf '%-7s %6d %6d %6d %s\n' "$name" "$i" "$ng" "$nc" "$res"
    i=$((i + 1))
  done <"$tmp/prompts.txt"
done
echo "$equal of $total generations equal on cuda and cpu"
[ "$total" -eq 20 ] || fail "expected 20 generations, ran $total"
[ "$equal" -eq "$total" ] || fail "$((total - equal)) generation(s) differ between cuda and cpu"
echo "PASS"
