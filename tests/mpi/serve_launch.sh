#!/usr/bin/env bash
# augur serve started through augur launch (a config with "command": "serve"): the server
# listens, answers /health and a greedy completion equal to augur generate's text, drains
# on SIGTERM to rank 0 and the launch exits 0; a serve config with replicas is an error
# naming the key.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_fixture "$MODELS/target/config.json" "$MODELS/draft/config.json"
command -v curl >/dev/null || fail "curl is not installed"
make_tmp
cat >"$tmp/serve.json" <<JSON
{"command": "serve", "target": "$MODELS/target", "draft": "$MODELS/draft", "threads": 1, "port": 0, "device": "cpu"}
JSON
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 300 "$AUGUR_BIN" launch "$tmp/serve.json" \
  >"$tmp/out" 2>"$tmp/err" &
launch=$!
while ! grep -q "listening on" "$tmp/out"; do
  kill -0 "$launch" 2>/dev/null || fail "launch ended before the server listened: $(tail -n 20 "$tmp/err")"
  sleep 0.2
done
port=$(sed -n 's/.*http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$tmp/out")
pid=$(sed -n 's/.*rank 0 pid \([0-9]*\).*/\1/p' "$tmp/out")
grep -q "augur serve" "$tmp/err" || fail "launch did not print the mpirun command of augur serve: $(head -n 5 "$tmp/err")"
[ "$(curl -s "http://127.0.0.1:$port/health")" = '{"status":"ok"}' ] || fail "/health: $(curl -s "http://127.0.0.1:$port/health")"
text=$(curl -s "http://127.0.0.1:$port/v1/completions" \
  -d '{"prompt": "static int", "max_tokens": 16, "temperature": 0}' | jq -r '.choices[0].text')
kill -TERM "$pid"
rc=0
wait "$launch" || rc=$?
[ "$rc" -eq 0 ] || fail "launch exited $rc after SIGTERM to rank 0: $(tail -n 20 "$tmp/err")"
want=$(mpirun_n 2 "$AUGUR_BIN" generate --device cpu --target "$MODELS/target" --draft "$MODELS/draft" --threads 1 \
  --prompt "static int" --max-tokens 16 2>/dev/null)
[ "static int$text" = "$want" ] || fail "served text differs from generate's: '$text' vs '$want'"
echo "ok: serve through augur launch: /health, greedy text == generate's, SIGTERM drain exit 0"
echo '{"command": "serve", "target": "'"$MODELS/target"'", "draft": "'"$MODELS/draft"'", "replicas": 2}' >"$tmp/bad.json"
expect_fail 2 'key "replicas": is a layout key of command generate; command serve runs one target group' -- \
  "$AUGUR_BIN" launch "$tmp/bad.json" --dry-run
echo "PASS"
