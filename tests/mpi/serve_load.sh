#!/usr/bin/env bash
# A short load test of augur serve on the shipped pair: 4 concurrent streams, with and
# without speculation, up to 4 requests batched in every round (--max-running 4); every
# answer must equal the same request run alone (none lost or corrupted). Timings are printed, never asserted (tools/bench/serve_load.py).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
REQ=12 N=24
[ "${AUGUR_SANITIZED:-0}" = 1 ] && REQ=6 N=12
serve_start serve --max-running 4
rc=0
python3 "$AUGUR_SOURCE_DIR/tools/bench/serve_load.py" --port "$port" --prompts "$MODELS/heldout_prompts.txt" \
  --n-prompts 4 --requests "$REQ" --concurrency 1,4 --max-tokens "$N" --speculation both || rc=$?
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/serve.err")"
[ "$rc" -eq 0 ] || fail "wrong or lost answers under load (see above)"
echo "PASS"
