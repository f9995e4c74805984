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
python3 - "$port" <<'PYEOF' || { kill "$pid" || true; cat "$tmp/pool.err" >&2; fail "a full KV pool"; }
import json, sys, threading, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def post(prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 100, "temperature": 0}).encode()
    req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["choices"][0]["text"]
def metric(name):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise SystemExit(f"FAIL: /metrics has no {name}")
cap = metric("augur_kv_blocks_capacity")
assert cap == 21, f"FAIL: pool of {cap} blocks, --kv-blocks asked 21"
prompts = ["static int", "void", "struct"]
alone = [post(p) for p in prompts]
got = [None] * 3
threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, post(prompts[i]))) for i in range(3)]
for t in threads: t.start()
most = 0
while any(t.is_alive() for t in threads):
    most = max(most, metric("augur_kv_blocks_used"))
    assert most <= cap, f"FAIL: {most} blocks in use of {cap}"
for t in threads: t.join()
for i in range(3):
    assert got[i] == alone[i], f"FAIL: request {i} beside others waiting for room differs from it alone: {got[i]!r} vs {alone[i]!r}"
assert metric("augur_kv_blocks_used") == 0, "FAIL: pool blocks still in use after every request"
print(f"ok: 3 requests through a pool with room for one: each equals its answer alone (at most {most:.0f} of {cap:.0f} blocks seen in use)")
PYEOF
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (pool) exited $? after SIGTERM: $(tail -n 20 "$tmp/pool.err")"

# Rounds wider than one forward: gamma 16 fixed, six speculative requests at once verify up
# to 6 x 17 = 102 rows a round, which every rank cuts into forwards of at most 72 rows of
# whole requests (SPEC_FORWARD_TOKENS); each answer must still equal the request alone.
serve_start wide --max-running 8 --gamma 16 --draft-rule fixed
python3 - "$port" <<'PYEOF' || { kill "$pid" || true; cat "$tmp/wide.err" >&2; fail "rounds cut into several forwards"; }
import json, sys, threading, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
def post(prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 40, "temperature": 0}).encode()
    req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["choices"][0]["text"]
prompts = ["static int", "void", "struct", "int main", "for (", "return"]
alone = [post(p) for p in prompts]
got = [None] * len(prompts)
threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, post(prompts[i]))) for i in range(len(prompts))]
for t in threads: t.start()
for t in threads: t.join()
for i in range(len(prompts)):
    assert got[i] == alone[i], f"FAIL: request {i} in a round of several forwards differs from it alone: {got[i]!r} vs {alone[i]!r}"
print(f"ok: {len(prompts)} requests at gamma 16 (rounds of up to {len(prompts) * 17} rows, cut at 72) equal their answers alone")
PYEOF
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve (wide) exited $? after SIGTERM: $(tail -n 20 "$tmp/wide.err")"
echo "PASS"
