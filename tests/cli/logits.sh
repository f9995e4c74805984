#!/usr/bin/env bash
# augur logits on the CPU backend: the file holds n x vocab float32, the last row's argmax
# is the token greedy generation picks first, every chunk size gives the same bytes
# (batch invariance), and bad input is one line on stderr with exit code 2.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A="$AUGUR_BIN"
V=256
N=70 # more than one 64-position chunk

# argmax of the last row of a [rows][V] float32 file (lowest index wins ties)
last_argmax() {
  od -An -v -t f4 -w$((V * 4)) "$1" | tail -n 1 |
    awk '{ best = 1; for (i = 2; i <= NF; i++) if ($i + 0 > $best + 0) best = i; print best - 1 }'
}

ids=$(awk -v n=$N -v v=$V 'BEGIN { s = 12345; for (i = 0; i < n; i++) { s = (s * 1103515245 + 12345) % 2147483648;
                                    printf "%s%d", (i ? " " : ""), s % v } }')

printf '%-28s %8s %10s %8s %8s %s\n' model positions bytes argmax greedy chunks
for kind in llama qwen2-tied-bf16; do
  case $kind in
    llama) "$MAKE_TINY" --out "$tmp/$kind" --dim 64 --layers 2 --heads 4 --kv-heads 2 --vocab $V --seed 3 --scale 1.5 ;;
    *) "$MAKE_TINY" --out "$tmp/$kind" --dim 64 --layers 2 --heads 4 --kv-heads 1 --vocab $V --seed 4 --scale 1.5 \
         --qwen2 --tie --dtype bf16 ;;
  esac
  m="$tmp/$kind"
  for chunk in 64 1 7; do
    "$A" logits --model "$m" --prompt-ids "$ids" --out "$tmp/$kind.$chunk.f32" --threads 1 --chunk "$chunk" \
      2>"$tmp/err" || fail "$kind chunk $chunk: $(cat "$tmp/err")"
  done
  grep -qF "augur: logits $N x $V (cpu, 1 thread) -> $tmp/$kind.7.f32" "$tmp/err" ||
    fail "$kind: summary line missing: $(cat "$tmp/err")"
  bytes=$(stat -c %s "$tmp/$kind.64.f32")
  [ "$bytes" -eq $((N * V * 4)) ] || fail "$kind: $bytes bytes, expected $N x $V x 4 = $((N * V * 4))"
  cmp -s "$tmp/$kind.64.f32" "$tmp/$kind.1.f32" || fail "$kind: chunk 1 and chunk 64 logits differ"
  cmp -s "$tmp/$kind.64.f32" "$tmp/$kind.7.f32" || fail "$kind: chunk 7 and chunk 64 logits differ"
  top=$(last_argmax "$tmp/$kind.64.f32")
  first=$("$A" generate --model "$m" --prompt-ids "$ids" --ids-only --max-tokens 1 --threads 1 2>/dev/null)
  printf '%-28s %8d %10d %8s %8s %s\n' "$kind" "$N" "$bytes" "$top" "$first" "1,7,64 equal"
  [ "$top" = "$first" ] || fail "$kind: argmax of the last row is $top, greedy generation's first token $first"
done

# one position (the context rounds up) works too
"$A" logits --model "$tmp/llama" --prompt-ids "5" --out "$tmp/one.f32" --threads 1 2>/dev/null
[ "$(stat -c %s "$tmp/one.f32")" -eq $((V * 4)) ] || fail "one position: wrong size"
echo "ok: one position"

"$A" logits --help | grep -q -- '--chunk' || fail "--help does not document --chunk"
m="$tmp/llama"
expect_fail 2 "--model PATH is required" -- "$A" logits --prompt-ids "1 2" --out "$tmp/x"
expect_fail 2 "--out FILE is required" -- "$A" logits --model "$m" --prompt-ids "1 2"
expect_fail 2 "--prompt-ids IDS is required" -- "$A" logits --model "$m" --out "$tmp/x"
expect_fail 2 "not a list of token ids in 0..255" -- "$A" logits --model "$m" --prompt-ids "1 256" --out "$tmp/x"
expect_fail 2 "not a list of token ids" -- "$A" logits --model "$m" --prompt-ids "1 x" --out "$tmp/x"
expect_fail 2 "unknown option '--bogus'" -- "$A" logits --model "$m" --prompt-ids "1" --out "$tmp/x" --bogus
expect_fail 2 "--chunk: 0 is outside" -- "$A" logits --model "$m" --prompt-ids "1" --out "$tmp/x" --chunk 0
expect_fail 2 "is not a device" -- "$A" logits --model "$m" --prompt-ids "1" --out "$tmp/x" --device tpu
mkdir "$tmp/empty"
expect_fail 2 "no config.json" -- "$A" logits --model "$tmp/empty" --prompt-ids "1" --out "$tmp/x"
expect_fail 2 "cannot open for writing" -- "$A" logits --model "$m" --prompt-ids "1" --out "$tmp/no/such/dir/x"
[ ! -e "$tmp/x" ] || fail "a failed run left $tmp/x behind"
echo "PASS"
