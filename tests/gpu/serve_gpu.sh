#!/usr/bin/env bash
# augur serve on the GPU (shipped pair, target and draft ranks sharing it): four greedy
# requests started in one round each answer what they answer alone, and the draft rank
# reports forwards it ran for several requests together (the draft's batched forward on
# the CUDA backend); then 4 concurrent streams with and without speculation, every answer
# equal to the same request run alone (tools/bench/serve_load.py).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp

serve_start together --device cuda --max-running 4 --gamma 4 --draft-rule fixed --debug-hold-file "$tmp/hold"
timeout 600 python3 "$AUGUR_SOURCE_DIR/tests/tools/serve_together_check.py" --port "$port" --max-tokens 16 \
  --hold "$tmp/hold" --what "started in one round on the GPU" "static int" "void" "struct" "int main" ||
  { kill "$pid" || true; cat "$tmp/together.err" >&2; fail "requests drafted together on the GPU"; }
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/together.err")"
for r in "rank 0 (target): GPU " "rank 1 (draft): GPU "; do
  grep -q "$r" "$tmp/together.err" || fail "no '$r' line: $(head -n 5 "$tmp/together.err")"
done
line=$(grep "forwards drafted for several requests at once" "$tmp/together.err") ||
  fail "the draft rank printed no drafting summary: $(tail -n 20 "$tmp/together.err")"
n=$(sed -n 's/.*proposals; \([0-9]*\) forwards drafted.*/\1/p' <<<"$line")
[ "${n:-0}" -ge 1 ] || fail "no forward drafted for several requests at once on the GPU: $line"
echo "ok: $line"

serve_start load --device cuda --max-running 4
rc=0
timeout 600 python3 "$AUGUR_SOURCE_DIR/tools/bench/serve_load.py" --port "$port" \
  --prompts "$MODELS/heldout_prompts.txt" --n-prompts 4 --requests 12 --concurrency 1,4 --max-tokens 24 \
  --speculation both || rc=$?
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/load.err")"
[ "$rc" -eq 0 ] || fail "wrong or lost answers under load on the GPU (see above)"
echo "PASS"
