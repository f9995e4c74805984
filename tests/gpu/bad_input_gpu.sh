#!/usr/bin/env bash
# GPU failure modes end with a non-zero exit and a message that says what is wrong,
# never a hang (every run is under a 120 s timeout): no GPU visible, more target ranks
# than GPUs, weights that do not fit, a KV cache that does not fit, NCCL that cannot
# start (>= 2 GPUs). Also a positive run of a dummy-weight 1B-shape model.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
A="$AUGUR_BIN"
G=$(gpu_count)
total_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 | tr -dc '0-9')
echo "GPUs visible: $G, GPU 0 total memory: ${total_mib} MiB"

# must_fail LABEL PATTERN -- command...: a non-zero exit that is not the 120 s timeout,
# and PATTERN (extended regex, any case) in what it printed.
must_fail() {
  local label=$1 pattern=$2; shift 3
  local out rc=0
  out=$("$@" 2>&1 </dev/null) || rc=$?
  [ "$rc" -ne 0 ] || fail "$label: exited 0; output: $out"
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$label: hung (killed by the 120 s timeout); output: $out"
  grep -Eqi -- "$pattern" <<<"$out" || fail "$label: expected /$pattern/ in the output; got: $out"
  printf '%-26s exit %-3d %s\n' "$label" "$rc" "$(grep -Ei -- "$pattern" <<<"$out" | head -n 1 | cut -c1-160)"
}

# llama_config DIR HIDDEN INTERMEDIATE LAYERS HEADS KV_HEADS MAX_POS
llama_config() {
  mkdir -p "$1"
  cat >"$1/config.json" <<JSON
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": $2,
  "intermediate_size": $3,
  "num_hidden_layers": $4,
  "num_attention_heads": $5,
  "num_key_value_heads": $6,
  "vocab_size": 128256,
  "max_position_embeddings": $7,
  "rope_theta": 500000.0,
  "rms_norm_eps": 1e-05,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16"
}
JSON
}

echo
printf '%-26s %-8s %s\n' case exit message
# 1. no GPU visible
must_fail "no GPU visible" "no GPU is visible" -- \
  env CUDA_VISIBLE_DEVICES= timeout 120 "$A" generate --device cuda --model "$MODELS/target" --prompt hi

# 2. more target ranks on the node than GPUs
must_fail "$((G + 1)) targets on $G GPU(s)" "target ranks but has" -- \
  mpirun_n $((G + 2)) "$A" generate --device cuda --target "$MODELS/target" --draft "$MODELS/draft" \
  --tp $((G + 1)) --prompt hi

# 3a. weights that do not fit: the 70B shape (131 GiB of bf16 weights); on a GPU with more
# memory than that, as many more layers (1.59 GiB each) as make them exceed it
layers=$(awk -v mib="$total_mib" 'BEGIN { emb = 2 * 128256 * 8192 * 2; per = (2 * 8192 * 8192 + 2 * 1024 * 8192 + 3 * 8192 * 28672) * 2;
   need = mib * 1048576 * 1.05; n = int((need - emb) / per) + 1; print (n > 80 ? n : 80) }')
[ "$layers" -eq 80 ] || echo "(GPU 0 holds ${total_mib} MiB: the 70B shape gets $layers layers instead of 80 so that its weights do not fit)"
llama_config "$tmp/big" 8192 28672 "$layers" 64 8 8192
must_fail "70B-shape weights" "weights need" -- \
  timeout 120 "$A" generate --device cuda --load-format dummy --model "$tmp/big" --prompt-ids "1 2 3" --max-tokens 4

# 3b. a KV cache that does not fit: 1B shape, 131072 positions (8 GiB of fp32 K/V) in 5% of the GPU
llama_config "$tmp/1b" 2048 8192 16 32 8 131072
must_fail "KV cache too large" "KV cache" -- \
  timeout 120 "$A" generate --device cuda --load-format dummy --model "$tmp/1b" --prompt-ids "1 2 3" --max-tokens 4 \
  --max-context 131072 --gpu-memory-fraction 0.05

# 4. NCCL that cannot start (needs two target GPUs)
if [ "$G" -ge 2 ]; then
  must_fail "NCCL init failure" "nccl" -- \
    mpirun_n 3 -x NCCL_SOCKET_IFNAME=nonexistent0 -x NCCL_P2P_DISABLE=1 -x NCCL_SHM_DISABLE=1 \
    "$A" generate --device cuda --target "$MODELS/target" --draft "$MODELS/draft" --prompt hi
else
  echo "SKIP part 4: needs 2 GPUs"
fi

# positive: the dummy 1B shape runs and prints 8 ids
out=$(timeout 120 "$A" generate --device cuda --load-format dummy --model "$tmp/1b" --prompt-ids "1 2 3" \
  --max-tokens 8 --ids-only --max-context 2048 2>"$tmp/err" </dev/null) ||
  fail "dummy 1B run failed (exit $?): $(cat "$tmp/err")"
n=$(wc -w <<<"$out")
printf '%-26s exit %-3d %s\n' "dummy 1B, 8 tokens" 0 "ids: $out"
[ "$n" -eq 8 ] || fail "dummy 1B run printed $n ids, expected 8: $out"
grep -Eq '^[0-9]+( [0-9]+){7}$' <<<"$out" || fail "dummy 1B run printed something other than 8 ids: $out"
awk -v ids="$out" 'BEGIN { n = split(ids, x, " "); for (i = 1; i <= n; i++) if (x[i] + 0 >= 128256) exit 1 }' ||
  fail "dummy 1B run printed an id outside the vocabulary: $out"
grep -q 'GPU [0-9]' "$tmp/err" || fail "dummy 1B run printed no GPU memory plan: $(cat "$tmp/err")"
echo "PASS"
