#!/usr/bin/env bash
# Tensor parallelism over NCCL on ONE GPU (DESIGN §5, simulated nodes): each target rank
# sits on a simulated node of its own (--simulate-hosts), so NCCL joins ranks that share
# the GPU through its network transport over loopback sockets, running the real NCCL path.
# Greedy: speculative == target-only over NCCL, and both == the same run with
# --tp-comm mpi (both communicators sum in rank order, bit for bit). Sampling with a fixed
# seed: NCCL == MPI. T = 2 on the shipped pair, T = 4 on a tiny model with 8 heads, and
# the Llama-3-8B shape with dummy weights at T = 2 and 4 (self-draft of 2 layers).
# The --measure-comm lines of the runs show what an all-reduce across nodes costs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
head -n 4 "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"
export NCCL_SOCKET_IFNAME=lo NCCL_NVLS_ENABLE=0

"$MAKE_TINY" --out "$tmp/tiny-target" --dim 128 --layers 3 --heads 8 --kv-heads 4 --vocab 512 --seed 31 --scale 1.2 \
  --dtype bf16 >/dev/null
"$MAKE_TINY" --out "$tmp/tiny-draft" --dim 64 --layers 1 --heads 4 --kv-heads 2 --vocab 512 --seed 32 --scale 1.2 \
  --dtype bf16 >/dev/null
bash "$AUGUR_SOURCE_DIR/tools/gpu/dummy_config.sh" 8b "$tmp/8b" >/dev/null

# gen NAME T ARGS...: one generate run on T target ranks + the draft rank, each target
# on its own simulated node, outputs in $tmp/NAME and $tmp/NAME.err.
gen() {
  local name=$1 T=$2
  shift 2
  run_to "$tmp/$name" mpirun_n $((T + 1)) "$AUGUR_BIN" generate --device cuda --simulate-hosts "$T" --timeout 60 \
    --ids-only --threads 1 --measure-comm "$@" </dev/null
}
round_line() { sed -n 's/^augur: speculative: time: //p' "$tmp/$1.err" | head -n 1; }
same() { # A B WHAT
  cmp -s "$tmp/$1" "$tmp/$2" || fail "$3: $1 and $2 differ
$(diff "$tmp/$1" "$tmp/$2" | head -n 6)"
}
comm_line() { sed -n 's/^augur: [a-z-]*: all-reduce (rank 0, \([a-z]*\) over \([0-9]*\) ranks): /\1 over \2 ranks: /p' "$tmp/$1.err" | head -n 1; }

check_model() { # LABEL T TARGET DRAFT-ARGS... -- PROMPT-ARGS...
  local label=$1 T=$2 target=$3
  shift 3
  local draft=() prompt=()
  while [ "$1" != -- ]; do draft+=("$1"); shift; done
  shift
  prompt=("$@")
  local base=(--target "$target" "${prompt[@]}")
  gen "$label.nccl.base" "$T" "${base[@]}" --no-speculation
  gen "$label.nccl.spec" "$T" "${base[@]}" "${draft[@]}" --gamma 4
  gen "$label.mpi.spec" "$T" "${base[@]}" "${draft[@]}" --gamma 4 --tp-comm mpi
  grep -q "NCCL_HOSTID=augur-sim-node$((T - 1))" "$tmp/$label.nccl.spec.err" ||
    fail "$label: no rank reported simulated node $((T - 1))"
  grep -q "all-reduce (rank 0, nccl over $T ranks)" "$tmp/$label.nccl.spec.err" ||
    fail "$label: the target group did not all-reduce over NCCL: $(grep all-reduce "$tmp/$label.nccl.spec.err")"
  same "$label.nccl.base" "$label.nccl.spec" "$label T=$T greedy: speculative vs target-only over NCCL"
  same "$label.nccl.spec" "$label.mpi.spec" "$label T=$T greedy: NCCL vs MPI all-reduce"
  echo "ok: $label T=$T: greedy speculative == target-only (NCCL) == speculative (MPI)"
  printf '   NCCL: %s\n   MPI:  %s\n' "$(comm_line "$label.nccl.spec")" "$(comm_line "$label.mpi.spec")"
  # the verification round's time split on each side of the node boundary
  printf '   NCCL round: %s\n   MPI round:  %s\n' "$(round_line "$label.nccl.spec")" "$(round_line "$label.mpi.spec")"
}

check_model shipped 2 "$MODELS/target" --draft "$MODELS/draft" -- --prompts-file "$tmp/prompts.txt" --max-tokens 24
check_model tiny 4 "$tmp/tiny-target" --draft "$tmp/tiny-draft" -- --prompt-ids "1 2 3 4" --max-tokens 32
for T in 2 4; do
  check_model 8b "$T" "$tmp/8b" --draft-layers 2 -- --load-format dummy --prompt-ids "128000 791 6864 315" \
    --max-tokens 16 --max-context 256
done

# Sampling with one seed: NCCL and MPI all-reduces give the same bits, so the same samples.
for T in 2 4; do
  if [ "$T" -eq 2 ]; then m=("$MODELS/target" --draft "$MODELS/draft" --prompts-file "$tmp/prompts.txt");
  else m=("$tmp/tiny-target" --draft "$tmp/tiny-draft" --prompt-ids "1 2 3 4"); fi
  gen "sample.nccl.$T" "$T" --target "${m[@]}" --max-tokens 24 --temperature 0.8 --top-p 0.9 --seed 11
  gen "sample.mpi.$T" "$T" --target "${m[@]}" --max-tokens 24 --temperature 0.8 --top-p 0.9 --seed 11 --tp-comm mpi
  same "sample.nccl.$T" "sample.mpi.$T" "T=$T sampling with seed 11: NCCL vs MPI"
  echo "ok: T=$T sampling with a fixed seed: NCCL == MPI"
done
echo "PASS"
