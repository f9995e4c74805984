#!/usr/bin/env bash
# Builds augur and runs its main job: a real generation on the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target augur
model=../shared/models/stories260K
./build/launcher/augur generate --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" \
  --prompt "Once upon a time" --max-tokens 200 "$@"
