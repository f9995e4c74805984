#!/usr/bin/env bash
# The one flag parser of every subcommand (launcher/args.c): --help lists every flag and
# every listed flag is accepted; counts are pluralised ("1 thread"); --config reports a
# file it cannot open by errno and gives a line number only for a parse error; and under
# mpirun a bad flag is reported once (rank 0), while every rank still exits 2.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A="$AUGUR_BIN"

# ---- --help lists every flag ----
declare -A flags=(
  [generate]="--config --model --target --draft --draft-layers --tp --replicas --draft-placement --tokenizer --max-context --device --gpu
              --load-format --gpu-memory-fraction --tp-comm --simulate-hosts --prompt --prompt-ids --prompts-file --max-tokens
              --temperature --top-k --top-p --seed --threads --draft-rule --gamma --tau --lambda --window
              --no-overlap --overlap --synthetic-acceptance --measure-comm --no-speculation --compare-baseline --trace --stats-json --repeat --ids-only --timeout --startup-timeout
              --debug-acceptance --debug-draft-exit-after --help"
  [bench]="--model --load-format --device --gpu --threads --tp-size --tp-rank --layers --positions --context
           --warmup --iters --csv --help"
  [logits]="--model --prompt-ids --out --device --gpu --load-format --threads --chunk --help"
  [simulate]="--rule --td --tt --tt-slope --gamma --tau --lambda --window --top --help"
  [tokenize]="--model --tokenizer --no-special --decode --help"
  [convert]="--llama2c --out --help"
  [trace]="--csv --output --help"
  [launch]="--hostfile --dry-run --help"
  [project]="--profile --suite --tp --nodes --alpha --gamma --intra-latency-us --inter-latency-us --csv
             --no-projection --help"
)
for cmd in "${!flags[@]}"; do
  help=$("$A" "$cmd" --help) || fail "$cmd --help failed"
  for flag in ${flags[$cmd]}; do
    grep -Eq -- "^  (-[a-z], )?$flag( |\$)" <<<"$help" || fail "$cmd --help does not list $flag"
  done
  # and nothing else (help and getopt come from one table, so a listed flag is a known one)
  listed=$(grep -Eo -- '^  (-[a-z], )?--[a-z0-9-]+' <<<"$help" | grep -Eo -- '--[a-z0-9-]+' | sort | tr '\n' ' ')
  expected=$(tr -s ' \n' '\n\n' <<<"${flags[$cmd]}" | grep . | sort | tr '\n' ' ')
  [ "$listed" = "$expected" ] || fail "$cmd --help lists '$listed', expected '$expected'"
  [ "$(grep -c -- '-h, --help' <<<"$help")" -eq 1 ] || fail "$cmd --help: not one -h, --help line"
done
echo "ok: every subcommand's --help lists exactly its flags"

# ---- one parser, one behaviour ----
expect_fail 2 "--top needs a value" -- "$A" simulate "$tmp/t.bin" --top
expect_fail 2 "-o needs a value" -- "$A" trace -o
expect_fail 2 "--no-overlap takes no value" -- "$A" generate --model x --prompt hi --no-overlap=1
expect_fail 2 "--overlap and --no-overlap contradict each other" -- "$A" generate --target x --draft y --prompt hi \
  --overlap --no-overlap
expect_fail 2 "unknown option '--bogus' (see augur convert --help)" -- "$A" convert --bogus
expect_fail 2 "unexpected argument 'extra' (see augur convert --help)" -- "$A" convert --llama2c a --out b extra
expect_fail 2 "--gamma: more than 64 values" -- "$A" simulate "$tmp/t.bin" --gamma "$(seq -s, 1 65 | sed 's/[0-9]*/1/g')"

# ---- counts are pluralised ----
m="$tmp/tiny"
"$MAKE_TINY" --out "$m" --dim 32 --layers 1 --heads 2 --kv-heads 1 --vocab 64 --seed 5
"$A" generate --model "$m" --prompt-ids "7" --max-tokens 1 --ids-only --threads 1 >/dev/null 2>"$tmp/err" ||
  fail "generate: $(cat "$tmp/err")"
grep -q "augur: prompt 1 token, generated 1 token, .*(1 thread)$" "$tmp/err" || fail "singular counts: $(cat "$tmp/err")"
"$A" generate --model "$m" --prompt-ids "7 8" --max-tokens 3 --ids-only --threads 2 >/dev/null 2>"$tmp/err" ||
  fail "generate: $(cat "$tmp/err")"
grep -q "augur: prompt 2 tokens, generated 3 tokens, .*(2 threads)$" "$tmp/err" || fail "plural counts: $(cat "$tmp/err")"
"$A" bench --model "$m" --device cpu --threads 1 --positions 1 --iters 1 --warmup 0 --context 4 >"$tmp/out" 2>"$tmp/err" ||
  fail "bench: $(cat "$tmp/err")"
grep -q "cpu, 1 thread | llama: 1 layer, hidden 32, 2 heads, 1 kv head, " "$tmp/out" || fail "bench header: $(cat "$tmp/out")"
grep -q "; 1 timed forward per row" "$tmp/out" || fail "bench: 1 timed forward: $(cat "$tmp/out")"
! grep -Eq '(^|[^0-9])1 [a-z ]*(threads|tokens|layers|heads|positions|forwards)' "$tmp/out" "$tmp/err" ||
  fail "a singular count with a plural noun: $(cat "$tmp/out" "$tmp/err")"
echo "ok: counts pluralised"

# ---- --config ----
printf '{"model": "%s", "prompt-ids": "7 8", "max-tokens": 4, "ids-only": true, "threads": 1}\n' "$m" >"$tmp/c.json"
want=$("$A" generate --model "$m" --prompt-ids "7 8" --max-tokens 4 --ids-only --threads 1 2>/dev/null)
got=$("$A" generate --config "$tmp/c.json" 2>/dev/null) || fail "--config run failed"
[ "$got" = "$want" ] || fail "--config gave '$got', the same flags on the command line '$want'"
got=$("$A" generate --config="$tmp/c.json" --max-tokens 2 2>/dev/null) || fail "--config= with an override failed"
[ "$(wc -w <<<"$got")" -eq 2 ] || fail "--max-tokens 2 did not override the config: '$got'"
echo "ok: --config runs and command-line flags override it"
err=$("$A" generate --config "$tmp/missing.json" 2>&1 >/dev/null) && fail "a missing config ran"
[ "$err" = "augur: --config: $tmp/missing.json: cannot open: No such file or directory" ] ||
  fail "missing config: '$err'"
printf '{"model": "x",\n "gamma": }\n' >"$tmp/bad.json"
expect_fail 2 "--config: $tmp/bad.json: .*(line 2)" -- "$A" generate --config "$tmp/bad.json"
printf '[1, 2]' >"$tmp/list.json"
expect_fail 2 "is not a JSON object of flags" -- "$A" generate --config "$tmp/list.json"
: >"$tmp/empty.json"
err=$("$A" generate --config "$tmp/empty.json" 2>&1 >/dev/null) && fail "an empty config ran"
! grep -q "line -1" <<<"$err" || fail "empty config: '$err'"
printf '{"bogus": 1}' >"$tmp/bogus.json"
expect_fail 2 "unknown option '--bogus'" -- "$A" generate --config "$tmp/bogus.json"
expect_fail 2 "--config: only one config file may be given" -- \
  "$A" generate --config "$tmp/c.json" --config "$tmp/c.json"
echo "ok: --config errors"

# ---- under mpirun, a flag error is printed once and every rank exits 2 ----
mpi_once() { # PATTERN -- augur arguments...
  local pattern=$1; shift 2
  local out rc=0
  out=$(mpirun_n 3 "$A" "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 2 ] || fail "mpirun -np 3 augur $*: exit $rc, expected 2: $out"
  [ "$(grep -c '^augur: ' <<<"$out")" -eq 1 ] || fail "mpirun -np 3 augur $*: not one error line: $out"
  grep -q -- "^augur: .*$pattern" <<<"$out" || fail "mpirun -np 3 augur $*: no '$pattern': $out"
  echo "ok: one line under mpirun: $(grep '^augur: ' <<<"$out")"
}
gen=(generate --target "$m" --draft "$m" --prompt-ids "1 2" --threads 1)
mpi_once "unknown option '--bogus'" -- "${gen[@]}" --bogus
mpi_once "needs --draft" -- generate --target "$m" --prompt-ids "1 2"
mpi_once "cannot open: No such file" -- generate --config "$tmp/missing.json"
echo "PASS"
