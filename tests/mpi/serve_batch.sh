#!/usr/bin/env bash
# Continuous batching in augur serve on the shipped pair, with 1 and 2 target ranks (2
# and 3 ranks): requests of different lengths running together (one target-only, one
# seeded sampling, one whose client leaves mid-stream) each answer exactly what they
# answer alone, the seeded one what augur generate --seed draws; the one that left frees
# its slot (metrics); a request joining a running one finishes first, both unchanged.
# The checks are in tests/tools/serve_batch_check.py; serve_kv_pool.sh and
# serve_wide_rounds.sh hold the pool and wide-round checks (each test its own time budget:
# together they took 230 s alone under ASan, and past 900 s beside other tests on 2 cores).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
PY="$AUGUR_SOURCE_DIR/tests/tools/serve_batch_check.py"
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
  timeout 600 python3 "$PY" --port "$port" --max-tokens "$N" --seeded-prompt "$PROMPT" --seeded-file "$tmp/seeded$np" \
    --seed "$SEED" --temperature "$TEMP" || { kill "$pid" || true; cat "$tmp/batch$np.err" >&2; fail "batch checks, $np ranks"; }
  kill -TERM "$pid"
  wait "$mpirun" || fail "augur serve ($np ranks) exited $? after SIGTERM: $(tail -n 20 "$tmp/batch$np.err")"
  echo "ok: $np ranks"
done
echo "PASS"
