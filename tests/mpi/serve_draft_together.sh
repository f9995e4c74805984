#!/usr/bin/env bash
# augur serve drafts for several requests at once: four greedy requests started in the
# same round (held in the queue until all four wait) each answer exactly what they answer
# alone, and the draft rank reports forwards it ran for several requests together (after
# the first round the leader's verdicts come as one burst, and the draft drafts the
# burst's proposals in shared forwards). Once with a fixed gamma, once with the entropy
# rule (each request stops at its own length inside the shared steps).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
TOGETHER="$AUGUR_SOURCE_DIR/tests/tools/serve_together_check.py"

for rule in fixed static; do
  serve_start "together-$rule" --max-running 4 --gamma 4 --draft-rule "$rule" --tau 2 --debug-hold-file "$tmp/hold"
  timeout 600 python3 "$TOGETHER" --port "$port" --max-tokens 16 --hold "$tmp/hold" \
    --what "started in one round (draft rule $rule)" "static int" "void" "struct" "int main" ||
    { kill "$pid" || true; cat "$tmp/together-$rule.err" >&2; fail "requests drafted together ($rule)"; }
  kill -TERM "$pid"
  wait "$mpirun" || fail "augur serve ($rule) exited $? after SIGTERM: $(tail -n 20 "$tmp/together-$rule.err")"
  line=$(grep "forwards drafted for several requests at once" "$tmp/together-$rule.err") ||
    fail "the draft rank printed no drafting summary: $(tail -n 20 "$tmp/together-$rule.err")"
  n=$(sed -n 's/.*proposals; \([0-9]*\) forwards drafted.*/\1/p' <<<"$line")
  [ "${n:-0}" -ge 1 ] || fail "no forward drafted for several requests at once ($rule): $line"
  echo "ok: $line"
done
echo "PASS"
