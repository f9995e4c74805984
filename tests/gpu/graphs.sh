#!/usr/bin/env bash
# Captured steps (on by default, runtime/forward.c run_captured): every step of up to 80
# rows runs once uncaptured, then as a CUDA graph replayed with its position read from
# device memory. The output must not change by a bit against AUGUR_CUDA_GRAPHS=0, which
# captures nothing (checked: it reports no captured steps): the shipped target alone, greedy, 10
# held-out prompts x 48 tokens with and without graphs; speculative (draft sharing the GPU)
# with graphs == target-only without; and a 1B-shape dummy model at context 600 and 3000
# with gamma 8 (verification width 9, chunks on both sides of a split edge). Each graph run
# must report captures and replays, so a silent fallback to uncaptured steps fails. The
# greedy draft drafts each proposal as one captured chain (forward_greedy_chain); its
# proposals must be those of one step at a time (AUGUR_CUDA_CHAINS=0): the same rounds,
# tokens a round and accepted tokens, since a wrong drafted token changes what is accepted
# though never the output. The fused draft launch (tests/gpu/fused_draft.sh) has its own
# arithmetic, so the chains compared here run with it off (AUGUR_CUDA_FUSED_DRAFT=0).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
export AUGUR_CUDA_FUSED_DRAFT=0
head -n 10 "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"
replays() { sed -n 's/.*captured steps: \([0-9]*\) captures, \([0-9]*\) replays.*/\1 \2/p' "$1" | head -n 1; }
rounds() { grep -m1 -o "[0-9]* rounds\?, [0-9.]* tokens/round, acceptance [0-9.]* ([0-9]* of [0-9]* proposed)" "$1" || true; }
same_proposals() { # CHAINED.err UNCHAINED.err WHAT
  grep -Eq "rank 1 \(draft\): captured steps: .*; [1-9][0-9]* greedy chains" "$1" ||
    fail "$3: the draft ran no greedy chain ($(grep -m1 'rank 1 (draft): captured steps' "$1" || echo 'no report'))"
  local a b
  a=$(rounds "$1") b=$(rounds "$2")
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "$3: chained drafting proposed otherwise than step by step: '$a' against '$b'"
}
uncaptured() { # ERRFILE WHAT
  ! grep -q "captured steps" "$1" || fail "$2: AUGUR_CUDA_GRAPHS=0 still captured ($(grep -m1 'captured steps' "$1"))"
}
need_replays() { # ERRFILE WHAT
  local r
  r=$(replays "$1")
  [ -n "$r" ] && [ "${r#* }" -gt 0 ] || fail "$2: no captured step was replayed ($(grep -m1 'captured steps' "$1" || echo 'no report'))"
}

# single process: one prompt a run (--prompts-file is distributed mode's)
: >"$tmp/plain"
: >"$tmp/graphs"
while IFS= read -r line; do
  one=("$AUGUR_BIN" generate --device cuda --model "$MODELS/target" --prompt "$line" --max-tokens 48 --ids-only)
  AUGUR_CUDA_GRAPHS=0 run_to "$tmp/p1" "${one[@]}"
  uncaptured "$tmp/p1.err" "single process"
  AUGUR_CUDA_GRAPHS=1 run_to "$tmp/g1" "${one[@]}"
  need_replays "$tmp/g1.err" "single process"
  cat "$tmp/p1" >>"$tmp/plain"
  cat "$tmp/g1" >>"$tmp/graphs"
done <"$tmp/prompts.txt"
cmp -s "$tmp/plain" "$tmp/graphs" || fail "single process: graphs changed the output
$(diff "$tmp/plain" "$tmp/graphs" | head -n 6)"
echo "ok: shipped target, 10 prompts x 48 tokens: graphs == no graphs ($(replays "$tmp/g1.err") captures/replays, last prompt)"

# mpirun's ranks on this host inherit its environment
dist=(mpirun_n 2 "$AUGUR_BIN" generate --device cuda --target "$MODELS/target" --prompts-file "$tmp/prompts.txt"
      --max-tokens 48 --ids-only --threads 1)
AUGUR_CUDA_GRAPHS=0 run_to "$tmp/base" "${dist[@]}" --no-speculation
uncaptured "$tmp/base.err" "target-only over MPI ranks"
AUGUR_CUDA_GRAPHS=1 run_to "$tmp/spec" "${dist[@]}" --draft "$MODELS/draft" --gamma 4
need_replays "$tmp/spec.err" "speculative"
grep -q "rank 1 (draft): captured steps" "$tmp/spec.err" || fail "the draft rank did not capture its steps"
AUGUR_CUDA_GRAPHS=1 AUGUR_CUDA_CHAINS=0 run_to "$tmp/unchained" "${dist[@]}" --draft "$MODELS/draft" --gamma 4
same_proposals "$tmp/spec.err" "$tmp/unchained.err" "shipped pair"
cmp -s "$tmp/base" "$tmp/unchained" || fail "speculative without chains differs from target-only"
cmp -s "$tmp/base" "$tmp/spec" || fail "speculative with graphs differs from target-only without
$(diff "$tmp/base" "$tmp/spec" | head -n 6)"
cmp -s "$tmp/base" "$tmp/plain" || fail "target-only over MPI ranks differs from the single process"
echo "ok: shipped pair, speculative with graphs == target-only without; chained proposals == step by step ($(rounds "$tmp/spec.err"))"

bash "$AUGUR_SOURCE_DIR/tools/gpu/dummy_config.sh" 1b "$tmp/1b" >/dev/null
ids() { awk -v n="$1" 'BEGIN { srand(11); for (i = 0; i < n; i++) printf "%s%d", (i ? " " : ""), 1000 + int(rand() * 100000) }'; }
for ctx in 600 3000; do
  run=(mpirun_n 2 "$AUGUR_BIN" generate --device cuda --load-format dummy --target "$tmp/1b" --prompt-ids "$(ids "$ctx")"
       --max-tokens 24 --max-context 4096 --ids-only --threads 1)
  AUGUR_CUDA_GRAPHS=0 run_to "$tmp/b.$ctx" "${run[@]}" --no-speculation
  uncaptured "$tmp/b.$ctx.err" "1B shape, context $ctx"
  AUGUR_CUDA_GRAPHS=1 run_to "$tmp/g.$ctx" "${run[@]}" --no-speculation
  AUGUR_CUDA_GRAPHS=1 run_to "$tmp/s.$ctx" "${run[@]}" --draft-layers 2 --gamma 8
  need_replays "$tmp/g.$ctx.err" "1B shape, context $ctx"
  AUGUR_CUDA_GRAPHS=1 AUGUR_CUDA_CHAINS=0 run_to "$tmp/u.$ctx" "${run[@]}" --draft-layers 2 --gamma 8
  same_proposals "$tmp/s.$ctx.err" "$tmp/u.$ctx.err" "1B shape, context $ctx, gamma 8"
  cmp -s "$tmp/b.$ctx" "$tmp/g.$ctx" || fail "1B shape, context $ctx: target-only with graphs differs from without"
  cmp -s "$tmp/b.$ctx" "$tmp/s.$ctx" || fail "1B shape, context $ctx: speculative (gamma 8) with graphs differs"
  echo "ok: 1B shape, context $ctx: graphs == no graphs, target-only and speculative gamma 8"
done
echo "PASS"
