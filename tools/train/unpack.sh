#!/usr/bin/env bash
# Unpacks what tools/train/regenerate.sh packed into $OUT on the GPU machine (the device
# tool's files_at folder: result.tar.part-NN + train.log) into .carry/train-out/ and
# installs the models into models/target and models/draft.
#   bash tools/train/unpack.sh FOLDER [--no-install]
set -euo pipefail
src=$1
cd "$(dirname "$0")/../.."
work=.carry/train-out
rm -rf "$work"
mkdir -p "$work"
cat "$src"/result.tar.part-* | tar -C "$work" -xf -
cp "$src/train.log" "$work/train.log"
if [ "${2:-}" != "--no-install" ]; then
  rm -rf models/target models/draft
  mkdir -p models
  cp -r "$work/models/target" "$work/models/draft" models/
  [ -f .carry/corpus/prompts.txt ] && cp .carry/corpus/prompts.txt models/heldout_prompts.txt
  mkdir -p models/goldens models/training
  cp "$work/hf_greedy.json" models/goldens/hf_greedy.json
  cp "$work/metrics.json" "$work/train.log" models/training/
  chmod 644 models/training/*
  chmod 644 models/target/* models/draft/*
  du -sb models/target models/draft
fi
