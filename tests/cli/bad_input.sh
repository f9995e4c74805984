#!/usr/bin/env bash
# Bad input: one clear line on stderr naming what is wrong, exit code 2, no crash
# (the sanitizer build runs this too).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_stories
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A="$AUGUR_BIN"
gen=("$A" generate --tokenizer "$STORIES_TOK" --threads 1)

expect_fail 2 "no such file" -- "${gen[@]}" --model "$tmp/missing.bin" --prompt hi
mkdir "$tmp/empty"
expect_fail 2 "no config.json" -- "$A" generate --model "$tmp/empty" --prompt hi
"$MAKE_TINY" --out "$tmp/bert" --vocab 64
sed -i 's/"llama"/"bert"/' "$tmp/bert/config.json"
expect_fail 2 "model_type 'bert' is not supported" -- "$A" generate --model "$tmp/bert" --prompt hi --tokenizer "$STORIES_TOK"
expect_fail 2 "must not be empty" -- "${gen[@]}" --model "$STORIES_BIN" --prompt ""
expect_fail 2 "exceeds the context of 512" -- "${gen[@]}" --model "$STORIES_BIN" --prompt hi --max-tokens 600
expect_fail 2 "'abc' is not an integer" -- "${gen[@]}" --model "$STORIES_BIN" --prompt hi --max-tokens abc
expect_fail 2 "'2x' is not a number" -- "${gen[@]}" --model "$STORIES_BIN" --prompt hi --temperature 2x
expect_fail 2 "--threads: '0.5' is not an integer" -- "${gen[@]}" --model "$STORIES_BIN" --prompt hi --threads 0.5
expect_fail 2 "unknown option '--bogus'" -- "${gen[@]}" --model "$STORIES_BIN" --prompt hi --bogus
expect_fail 2 "pass its tokenizer.bin with --tokenizer" -- "$A" generate --model "$STORIES_BIN" --prompt hi
# a tokenizer.json of another model type
printf '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}' >"$tmp/wp.json"
expect_fail 2 "WordPiece" -- "$A" generate --model "$STORIES_BIN" --tokenizer "$tmp/wp.json" --prompt hi
# truncated checkpoint and corrupt safetensors
head -c 100000 "$STORIES_BIN" >"$tmp/trunc.bin"
expect_fail 2 "truncated" -- "${gen[@]}" --model "$tmp/trunc.bin" --prompt hi
"$MAKE_TINY" --out "$tmp/tiny" --vocab 512
head -c 2000 "$tmp/tiny/model.safetensors" >"$tmp/tiny/cut" && mv "$tmp/tiny/cut" "$tmp/tiny/model.safetensors"
expect_fail 2 "model.safetensors" -- "${gen[@]}" --model "$tmp/tiny" --prompt hi
printf 'garbage!' >"$tmp/tiny/model.safetensors"
expect_fail 2 "header length" -- "${gen[@]}" --model "$tmp/tiny" --prompt hi
expect_fail 2 "no TEXT" -- "$A" tokenize --tokenizer "$STORIES_TOK"
expect_fail 2 "is not an integer" -- "$A" tokenize --tokenizer "$STORIES_TOK" --decode 1 x
expect_fail 2 "unknown command" -- "$A" frobnicate
echo "PASS"
