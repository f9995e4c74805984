#!/usr/bin/env bash
# augur serve with a KV pool too small for its requests at once: they wait for room in
# turn, never use more blocks than the pool holds, free every block at the end, and each
# answers exactly what it answers alone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
TOGETHER="$AUGUR_SOURCE_DIR/tests/tools/serve_together_check.py"

# A KV pool with room for one request at a time (--kv-blocks 21: 336 positions, each
# request below may grow to 11 blocks): three requests sent together wait for room in
# turn instead of running the pool dry, and each answers what it answers alone.
serve_start pool --max-running 4 --max-context 256 --kv-blocks 21
timeout 600 python3 "$TOGETHER" --port "$port" --max-tokens 100 --blocks-capacity 21 \
  --what "through a pool with room for one" "static int" "void" "struct" ||
  { kill "$pid" || true; cat "$tmp/pool.err" >&2; fail "a full KV pool"; }
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (pool) exited $? after SIGTERM: $(tail -n 20 "$tmp/pool.err")"
echo "PASS"
