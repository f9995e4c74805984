#!/usr/bin/env bash
# augur serve on the shipped pair (2 ranks, CPU): every endpoint, the streaming format,
# greedy answers equal to augur generate's, stop strings, every bad-input case, a full
# queue, clients leaving (queued and mid-stream), a short request overtaking a long one
# (batched: both in the same rounds) with both answers unchanged, then a SIGTERM drain after which every
# rank exits 0. The checks are in tests/tools/serve_api_check.py.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
PY="$AUGUR_SOURCE_DIR/tests/tools/serve_api_check.py"
PROMPT="static int"
N=24
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=12

# the reference: augur generate on the same ranks and models, greedy
run_to "$tmp/gen" mpirun_n 2 "$AUGUR_BIN" generate --target "$MODELS/target" --draft "$MODELS/draft" \
  --prompt "$PROMPT" --max-tokens "$N" --threads 1
python3 - "$tmp/gen" "$PROMPT" "$tmp/expected" <<'PYEOF'
import sys
out = open(sys.argv[1], encoding="utf-8").read()
prompt = sys.argv[2]
assert out.startswith(prompt) and out.endswith("\n"), f"unexpected augur generate output: {out!r}"
open(sys.argv[3], "w", encoding="utf-8").write(out[len(prompt):-1])
PYEOF

# start_server NAME FLAGS...: serve_start (tests/lib.sh) with the hold file of the queue tests
start_server() {
  local name=$1; shift
  serve_start "$name" --debug-hold-file "$tmp/hold" "$@"
}

start_server api --max-queue 3 --max-body-kib 8 --max-running 4
python3 "$PY" api --port "$port" --prompt "$PROMPT" --expected-file "$tmp/expected" --max-tokens "$N" \
  --max-body 8192 --max-queue 3 --hold-file "$tmp/hold" --interleave || { kill "$pid" || true; cat "$tmp/api.err" >&2; fail "API checks"; }
# SIGTERM drain with one request admitted and waiting
python3 "$PY" drain --port "$port" --prompt "$PROMPT" --expected-file "$tmp/expected" --max-tokens "$N" \
  --hold-file "$tmp/hold" --pid "$pid" || { kill "$pid" || true; cat "$tmp/api.err" >&2; fail "drain checks"; }
rc=0
wait "$mpirun" || rc=$?
[ "$rc" -eq 0 ] || fail "after the drain mpirun exited $rc: $(tail -n 20 "$tmp/api.err")"
grep -q "drained, stopping" "$tmp/api.err" || fail "no drain message: $(tail -n 5 "$tmp/api.err")"
echo "ok: drained; every rank exited 0"

# bad server flags fail before serving, on every rank
expect_fail 2 "needs --draft" -- mpirun_n 2 "$AUGUR_BIN" serve --target "$MODELS/target" --port 0
expect_fail 2 "not an IPv4 address" -- mpirun_n 2 "$AUGUR_BIN" serve --target "$MODELS/target" \
  --draft "$MODELS/draft" --threads 1 --host nowhere --port 0
echo "PASS"
