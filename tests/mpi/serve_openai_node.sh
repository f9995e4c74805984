#!/usr/bin/env bash
# The official `openai` npm client (run with node) against augur serve on the shipped
# pair, unchanged: streaming and not (tests/tools/openai_node_check.cjs). The package is
# installed once into the build tree (tests/npm-openai); the test skips (77) only when
# npm cannot reach its registry, and says so.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
command -v node >/dev/null && command -v npm >/dev/null ||
  fail "needs node and npm on PATH (tools/install-deps.sh installs Debian's nodejs and npm)"
cache="$(cd "$(dirname "$AUGUR_BIN")/.." && pwd)/tests/npm-openai"
if [ ! -f "$cache/node_modules/openai/package.json" ]; then
  mkdir -p "$cache"
  if ! (cd "$cache" && timeout 300 npm install --no-audit --no-fund --no-save --prefix "$cache" openai) \
      >"$tmp/npm.log" 2>&1; then
    if grep -qE "ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network" "$tmp/npm.log"; then
      echo "SKIP: the npm registry is unreachable (npm install openai failed): $(grep -m1 -E 'ERR|network' "$tmp/npm.log")"
      exit 77
    fi
    fail "npm install openai failed: $(tail -n 20 "$tmp/npm.log")"
  fi
fi
PROMPT="static int"
N=16
run_to "$tmp/gen" mpirun_n 2 "$AUGUR_BIN" generate --target "$MODELS/target" --draft "$MODELS/draft" \
  --prompt "$PROMPT" --max-tokens "$N" --threads 1
python3 -c 'import sys; o = open(sys.argv[1], encoding="utf-8").read(); p = sys.argv[2]
assert o.startswith(p) and o.endswith("\n"), repr(o)
open(sys.argv[3], "w", encoding="utf-8").write(o[len(p):-1])' "$tmp/gen" "$PROMPT" "$tmp/expected"
serve_start serve
rc=0
NODE_PATH="$cache/node_modules" node "$AUGUR_SOURCE_DIR/tests/tools/openai_node_check.cjs" "$port" target \
  "$PROMPT" "$N" "$tmp/expected" || rc=$?
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/serve.err")"
[ "$rc" -eq 0 ] || fail "the openai client's checks failed (see above)"
echo "PASS"
