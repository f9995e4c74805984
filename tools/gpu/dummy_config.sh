#!/usr/bin/env bash
# Writes a Llama config.json of a named shape for --load-format dummy runs (no weights).
#   usage: bash tools/gpu/dummy_config.sh 1b|8b|70b DIR
set -euo pipefail
shape=${1:?shape: 1b, 8b or 70b}
dir=${2:?output directory}
case "$shape" in
  1b)  h=2048 i=8192  l=16 a=32 kv=8 ;;
  8b)  h=4096 i=14336 l=32 a=32 kv=8 ;;
  70b) h=8192 i=28672 l=80 a=64 kv=8 ;;
  *) echo "dummy_config.sh: unknown shape '$shape' (1b, 8b, 70b)" >&2; exit 2 ;;
esac
mkdir -p "$dir"
cat >"$dir/config.json" <<JSON
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": $h,
  "intermediate_size": $i,
  "num_hidden_layers": $l,
  "num_attention_heads": $a,
  "num_key_value_heads": $kv,
  "vocab_size": 128256,
  "max_position_embeddings": 8192,
  "rms_norm_eps": 1e-5,
  "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "tie_word_embeddings": false,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128009],
  "torch_dtype": "bfloat16"
}
JSON
echo "$dir/config.json: ${shape} shape (hidden $h, $l layers, $a heads, $kv KV heads)"
