#!/usr/bin/env bash
# A small draft's greedy chain in one launch (kernels/cuda/cuda_fused_cluster.cu on one
# thread-block cluster, kernels/cuda/cuda_fused_step.cu on a cooperative grid) against the
# separate kernels (tests/gpu/test_fused_draft.c, built as kernels/augur_fused_draft_test
# where a CUDA toolkit exists): logits, tokens and stored K/V of the shipped draft and of
# four dummy shapes; the same bits on grids of 1, 5 and every multiprocessor, and on
# clusters of 8 and 16. Then the shipped pair with the fused draft (the cluster, then the
# grid, then drafting ahead beside the verification): speculative output equal to
# target-only, and the draft reports its fused chains.
# Exits 77 (skipped) without the program or a GPU.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cuda_test_program augur_fused_draft_test
make_tmp
"$bin" "$MODELS/draft" || fail "the fused chain against the separate kernels (table above)"

head -n 10 "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"
dist=(mpirun_n 2 "$AUGUR_BIN" generate --device cuda --target "$MODELS/target" --prompts-file "$tmp/prompts.txt"
      --max-tokens 48 --ids-only --threads 1)
run_to "$tmp/base" "${dist[@]}" --no-speculation
run_to "$tmp/fused" "${dist[@]}" --draft "$MODELS/draft" --gamma 4
grep -q "rank 1 (draft): greedy proposals as one fused launch each" "$tmp/fused.err" ||
  fail "the draft did not take the fused launch: $(grep -m1 'greedy proposals' "$tmp/fused.err" || echo 'no line')"
grep -Eq "rank 1 \(draft\): fused greedy chains: [1-9]" "$tmp/fused.err" ||
  fail "the draft ran no fused chain ($(grep -m1 'fused greedy chains' "$tmp/fused.err" || echo 'no report'))"
cmp -s "$tmp/base" "$tmp/fused" || fail "speculative with the fused draft differs from target-only
$(diff "$tmp/base" "$tmp/fused" | head -n 6)"
# the cooperative grid too (the default is the cluster where the draft's weights fit it)
export AUGUR_CUDA_FUSED_CLUSTER=0
run_to "$tmp/grid" "${dist[@]}" --draft "$MODELS/draft" --gamma 4
unset AUGUR_CUDA_FUSED_CLUSTER
cmp -s "$tmp/base" "$tmp/grid" || fail "speculative with the fused draft on the grid differs from target-only
$(diff "$tmp/base" "$tmp/grid" | head -n 6)"
# drafting ahead (--overlap) in fused chains beside the verification: the same output, and
# some proposals were drafted before their round's verdict came
run_to "$tmp/ahead" "${dist[@]}" --draft "$MODELS/draft" --gamma 4 --overlap
cmp -s "$tmp/base" "$tmp/ahead" || fail "speculative with the fused draft drafting ahead differs from target-only
$(diff "$tmp/base" "$tmp/ahead" | head -n 6)"
hidden=$(grep -m1 -o '[0-9.]* ms hidden by overlap' "$tmp/ahead.err" || true)
[[ -n $hidden && ${hidden%% *} != 0.0 ]] || fail "drafting ahead hid nothing (${hidden:-no time line})"
echo "ok: shipped pair, fused draft: speculative == target-only ($(grep -m1 -o 'fused greedy chains: .*' "$tmp/fused.err")); drafting ahead too ($hidden)"
