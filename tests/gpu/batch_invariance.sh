#!/usr/bin/env bash
# Batch invariance of a whole forward on the GPU (DESIGN §8): greedy speculative output
# equals target-only output at contexts of 100, 600 and 3000 positions, with gamma 8 and
# gamma 20 (verification widths 9 and 21: past the 16-row GEMV pass and the old switch to
# cuBLAS), on the Llama-3.2-1B shape with dummy weights and a 2-layer self-draft. The
# kernels' own row-by-row checks are in test_cuda_kernels (batch invariance section).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
bash "$AUGUR_SOURCE_DIR/tools/gpu/dummy_config.sh" 1b "$tmp/1b" >/dev/null
ids() { awk -v n="$1" 'BEGIN { srand(7); for (i = 0; i < n; i++) printf "%s%d", (i ? " " : ""), 1000 + int(rand() * 100000) }'; }
for ctx in 100 600 3000; do
  prompt=$(ids "$ctx")
  run=(mpirun_n 2 "$AUGUR_BIN" generate --device cuda --load-format dummy --target "$tmp/1b" --prompt-ids "$prompt"
       --max-tokens 24 --max-context 4096 --ids-only --threads 1)
  run_to "$tmp/base.$ctx" "${run[@]}" --no-speculation
  for gamma in 8 20; do
    run_to "$tmp/spec.$ctx.$gamma" "${run[@]}" --draft-layers 2 --gamma "$gamma"
    cmp -s "$tmp/base.$ctx" "$tmp/spec.$ctx.$gamma" || fail "context $ctx, gamma $gamma: speculative differs from target-only
$(diff "$tmp/base.$ctx" "$tmp/spec.$ctx.$gamma" | head -n 4)"
    echo "ok: context $ctx, gamma $gamma: speculative == target-only ($(sed -n 's/.*\(acceptance [0-9.]*\).*/\1/p' "$tmp/spec.$ctx.$gamma.err" | head -n 1))"
  done
done
echo "PASS"
