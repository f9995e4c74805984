#!/usr/bin/env bash
# augur serve with verification rounds wider than one forward: every rank cuts them into
# several forwards of whole requests, and no answer changes.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
TOGETHER="$AUGUR_SOURCE_DIR/tests/tools/serve_together_check.py"

N=40
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=24

# Rounds wider than one forward: gamma 16 fixed, six speculative requests at once verify up
# to 6 x 17 = 102 rows a round, which every rank cuts into forwards of at most 72 rows of
# whole requests (SPEC_FORWARD_TOKENS); each answer must still equal the request alone.
serve_start wide --max-running 8 --gamma 16 --draft-rule fixed
timeout 600 python3 "$TOGETHER" --port "$port" --max-tokens "$N" --what "at gamma 16 (rounds of up to 102 rows, cut at 72)" \
  "static int" "void" "struct" "int main" "for (" "return" ||
  { kill "$pid" || true; cat "$tmp/wide.err" >&2; fail "rounds cut into several forwards"; }
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (wide) exited $? after SIGTERM: $(tail -n 20 "$tmp/wide.err")"
echo "PASS"
