#!/usr/bin/env bash
# A short load test of augur serve on the shipped pair: 4 concurrent streams, with and
# without speculation, requests interleaved every 3 rounds (--slice-rounds 3); every
# answer must equal the same request run alone (none lost or corrupted). Timings are printed, never asserted (tools/bench/serve_load.py).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
REQ=12 N=24
[ "${AUGUR_SANITIZED:-0}" = 1 ] && REQ=6 N=12
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 900 mpirun --oversubscribe --mca mpi_yield_when_idle 1 \
  --bind-to none -np 2 "$AUGUR_BIN" serve --target "$MODELS/target" --draft "$MODELS/draft" --threads 1 --port 0 \
  --slice-rounds 3 >"$tmp/serve.out" 2>"$tmp/serve.err" &
mpirun=$!
while ! grep -q "listening on" "$tmp/serve.out"; do
  kill -0 "$mpirun" 2>/dev/null || fail "augur serve exited before listening: $(tail -n 20 "$tmp/serve.err")"
  sleep 0.2
done
port=$(sed -n 's/.*http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$tmp/serve.out")
pid=$(sed -n 's/.*rank 0 pid \([0-9]*\).*/\1/p' "$tmp/serve.out")
rc=0
python3 "$AUGUR_SOURCE_DIR/tools/bench/serve_load.py" --port "$port" --prompts "$MODELS/heldout_prompts.txt" \
  --n-prompts 4 --requests "$REQ" --concurrency 1,4 --max-tokens "$N" --speculation both || rc=$?
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/serve.err")"
[ "$rc" -eq 0 ] || fail "wrong or lost answers under load (see above)"
echo "PASS"
