#!/usr/bin/env bash
# --simulate-hosts N (DESIGN §5): ranks land on N simulated nodes, each with its own
# NCCL_HOSTID, and every rank says where it is. On CPU this checks the layout and that
# the output does not change; tests/gpu/nccl_simulated_hosts.sh runs NCCL through it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
models="$AUGUR_SOURCE_DIR/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=(mpirun_n 3 "$AUGUR_BIN" generate --target "$models/target" --draft "$models/draft" --prompt "static int"
     --max-tokens 16 --ids-only --threads 1)
"${run[@]}" >"$tmp/plain" 2>/dev/null || fail "run without --simulate-hosts failed"
# T = 2 over 2 nodes: target 0 on node 0, target 1 and the draft (rank 2) on node 1;
# over 3 nodes, one rank a node.
check_layout() { # N, then the node of ranks 0, 1, 2
  local n=$1; shift
  "${run[@]}" --simulate-hosts "$n" >"$tmp/sim" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "--simulate-hosts $n failed"; }
  cmp -s "$tmp/plain" "$tmp/sim" || fail "--simulate-hosts $n changed the output"
  local r=0
  for node in "$@"; do
    local want="rank $r: simulated node $node of $n (NCCL_HOSTID=augur-sim-node$node) on host "
    grep -qF "augur: $want" "$tmp/err" || { cat "$tmp/err" >&2; fail "missing placement line: $want"; }
    r=$((r + 1))
  done
  echo "ok: --simulate-hosts $n: ranks on nodes $*, output unchanged"
}
check_layout 2 0 1 1
check_layout 3 0 1 2
expect_fail 2 "--simulate-hosts 9: needs 1 .. 3" -- "${run[@]}" --simulate-hosts 9
expect_fail 2 "need --target" -- "$AUGUR_BIN" generate --model "$models/target" --prompt x --simulate-hosts 2
echo "PASS"
