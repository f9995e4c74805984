#!/usr/bin/env bash
# Regenerates augur's own draft/target pair: corpus -> tokenizer -> target -> draft ->
# export (models/target, models/draft). Run on the GPU machine from the repository root:
#
#   bash tools/train/regenerate.sh            # the shipped pair (about 6 minutes on an H100)
#   bash tools/train/regenerate.sh --smoke    # a tiny run that tests the whole pipeline
#
# The corpus comes from the Debian package linux-source-6.1. The GPU machine has no
# network, so tools/corpus/make_corpus.py runs first on a Debian machine (it is run here
# when .carry/corpus/ is missing and the package's tarball is installed) and .carry/corpus/
# travels with the working tree (device tool: carry [".carry/corpus"]).
# Where $OUT is set (the device tool), the results are also packed into $OUT as a tar in
# 15 MB parts plus the log; unpack them here with tools/train/unpack.sh FOLDER.
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=.carry/corpus
work=${TRAIN_OUT:-.carry/train-out}
if [ ! -f "$corpus/train.txt.xz" ]; then
  if [ -f /usr/src/linux-source-6.1.tar.xz ]; then
    /usr/bin/python3 tools/corpus/make_corpus.py --out "$corpus"
  else
    echo "regenerate: $corpus/train.txt.xz is missing; run tools/corpus/make_corpus.py on a" \
         "Debian machine with linux-source-6.1 installed and carry .carry/corpus" >&2
    exit 2
  fi
fi
rm -rf "$work"
mkdir -p "$work"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
log="$work/train.log"
rc=0
python3 tools/train/train_pair.py --corpus "$corpus" --out "$work" "$@" 2>&1 | tee "$log" || rc=$?
if [ -n "${OUT:-}" ]; then
  cp "$log" "$OUT/train.log"
  if [ -d "$work/models" ]; then
    tar -C "$work" -cf - models metrics.json hf_greedy.json tok_goldens.json.xz tokenizer.json \
      | split -b 15000000 -d - "$OUT/result.tar.part-"
  fi
fi
[ "$rc" = 0 ] || exit "$rc"
if [ "${1:-}" != "--smoke" ]; then
  rm -rf models/target models/draft
  mkdir -p models
  cp -r "$work/models/target" "$work/models/draft" models/
  cp "$corpus/prompts.txt" models/heldout_prompts.txt
  mkdir -p models/goldens models/training
  cp "$work/hf_greedy.json" models/goldens/hf_greedy.json
  cp "$work/metrics.json" "$work/train.log" models/training/
  echo "regenerate: wrote models/target and models/draft"
fi
