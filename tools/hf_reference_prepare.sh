#!/usr/bin/env bash
# Prepares .carry/ for tools/check_hf_greedy.py on the GPU machine: the stories260K
# checkpoint converted to Hugging Face format, tiny random llama (GQA, llama3 rope
# scaling), qwen2 (biases, tied, bf16) and mistral (f16) models, and cases.json with
# augur's greedy ids for each. Run from the repository root after building into build/.
set -euo pipefail
A=./build/launcher/augur
T=./build/tests/augur_make_tiny_model
S=../shared/models/stories260K
rm -rf .carry && mkdir -p .carry
$T --out .carry/tiny_llama3 --dim 64 --layers 2 --heads 8 --kv-heads 2 --vocab 128 --seed 5 --rope-llama3
$T --out .carry/tiny_qwen2 --dim 64 --layers 2 --heads 4 --kv-heads 2 --vocab 128 --seed 6 --qwen2 --tie --dtype bf16
$T --out .carry/tiny_mistral --dim 64 --layers 2 --heads 4 --kv-heads 4 --vocab 128 --seed 7 --mistral --dtype f16
$A convert --llama2c $S/stories260K.bin --out .carry/stories_hf
{
  echo "["
  sep=""
  while IFS=$'\t' read -r _prompt ids out; do
    printf '%s{"model": ".carry/stories_hf", "prompt_ids": [%s], "augur_ids": [%s]}\n' "$sep" \
      "$(tr ' ' , <<<"$ids")" "$(tr ' ' , <<<"$out")"
    sep=","
  done <tests/fixtures/stories260K/greedy.tsv
  for m in tiny_llama3 tiny_qwen2 tiny_mistral; do
    for prompt in "1 2 3 4" "5 6 7" "9"; do
      out=$($A generate --model .carry/$m --prompt-ids "$prompt" --ids-only --max-tokens 32 --threads 1 2>/dev/null)
      printf ',{"model": ".carry/%s", "prompt_ids": [%s], "augur_ids": [%s]}\n' "$m" "$(tr ' ' , <<<"$prompt")" \
        "$(tr ' ' , <<<"$out")"
    done
  done
  echo "]"
} >.carry/cases.json
echo "wrote .carry/cases.json; on the GPU machine: python3 tools/check_hf_greedy.py .carry/cases.json"
