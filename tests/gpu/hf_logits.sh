#!/usr/bin/env bash
# augur's logits on the GPU (and CPU) against Hugging Face transformers on five tiny
# random bf16 checkpoints (llama GQA + llama3 RoPE, llama tied, mistral, qwen2 with
# biases tied / untied): max relative error <= 1e-2 and the same argmax at every position
# but near-ties. tools/gpu/hf_logits_check.py does the work and prints the table.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
if ! python3 -c "import torch, transformers" >/dev/null 2>&1; then
  echo "SKIP: python3 cannot import torch and transformers"
  exit 77
fi
# Everything is local: never let transformers look for a hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
make_tmp
rc=0
python3 "$AUGUR_SOURCE_DIR/tools/gpu/hf_logits_check.py" --augur "$AUGUR_BIN" --workdir "$tmp" || rc=$?
case $rc in
  0) ;;
  77) exit 77 ;;
  *) fail "augur logits differ from transformers (or the check could not run), exit $rc" ;;
esac
