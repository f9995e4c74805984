#!/usr/bin/env bash
# Continuous batching in augur serve on the shipped pair, with 1 and 2 target ranks (2
# and 3 ranks): requests of different lengths running together (one target-only, one
# seeded sampling, one whose client leaves mid-stream) each answer exactly what they
# answer alone, the seeded one what augur generate --seed draws; the one that left frees
# its slot (metrics); a request joining a running one finishes first, both unchanged; a
# KV pool with room for one request serves three in turn; rounds wider than 72 rows are
# cut into several forwards (gamma 16, six requests) without changing an answer.
# The checks are in tests/tools/serve_batch_check.py.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
PY="$AUGUR_SOURCE_DIR/tests/tools/serve_batch_check.py"
TOGETHER="$AUGUR_SOURCE_DIR/tests/tools/serve_together_check.py"
PROMPT="static int"
N=24 SEED=7 TEMP=0.8
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=12

for np in 2 3; do
  # the seeded reference: augur generate --seed on the same ranks
  run_to "$tmp/gen$np" mpirun_n "$np" "$AUGUR_BIN" generate --target "$MODELS/target" --draft "$MODELS/draft" \
    --prompt "$PROMPT" --max-tokens "$N" --threads 1 --temperature "$TEMP" --seed "$SEED"
  python3 - "$tmp/gen$np" "$PROMPT" "$tmp/seeded$np" <<'PYEOF'
import sys
out = open(sys.argv[1], encoding="utf-8").read()
prompt = sys.argv[2]
assert out.startswith(prompt) and out.endswith("\n"), f"unexpected augur generate output: {out!r}"
open(sys.argv[3], "w", encoding="utf-8").write(out[len(prompt):-1])
PYEOF
  SERVE_NP=$np serve_start "batch$np" --max-running 8
  python3 "$PY" --port "$port" --max-tokens "$N" --seeded-prompt "$PROMPT" --seeded-file "$tmp/seeded$np" \
    --seed "$SEED" --temperature "$TEMP" || { kill "$pid" || true; cat "$tmp/batch$np.err" >&2; fail "batch checks, $np ranks"; }
  kill -TERM "$pid"
  wait "$mpirun" || fail "augur serve ($np ranks) exited $? after SIGTERM: $(tail -n 20 "$tmp/batch$np.err")"
  echo "ok: $np ranks"
done

# A KV pool with room for one request at a time (--kv-blocks 21: 336 positions, each
# request below may grow to 11 blocks): three requests sent together wait for room in
# turn instead of running the pool dry, and each answers what it answers alone.
serve_start pool --max-running 4 --max-context 256 --kv-blocks 21
python3 "$TOGETHER" --port "$port" --max-tokens 100 --blocks-capacity 21 \
  --what "through a pool with room for one" "static int" "void" "struct" ||
  { kill "$pid" || true; cat "$tmp/pool.err" >&2; fail "a full KV pool"; }
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (pool) exited $? after SIGTERM: $(tail -n 20 "$tmp/pool.err")"

# Rounds wider than one forward: gamma 16 fixed, six speculative requests at once verify up
# to 6 x 17 = 102 rows a round, which every rank cuts into forwards of at most 72 rows of
# whole requests (SPEC_FORWARD_TOKENS); each answer must still equal the request alone.
serve_start wide --max-running 8 --gamma 16 --draft-rule fixed
python3 "$TOGETHER" --port "$port" --max-tokens 40 --what "at gamma 16 (rounds of up to 102 rows, cut at 72)" \
  "static int" "void" "struct" "int main" "for (" "return" ||
  { kill "$pid" || true; cat "$tmp/wide.err" >&2; fail "rounds cut into several forwards"; }
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (wide) exited $? after SIGTERM: $(tail -n 20 "$tmp/wide.err")"
echo "PASS"
