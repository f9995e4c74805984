#!/usr/bin/env bash
# Node boundaries on one machine (cluster/netns.sh): ranks in two network namespaces joined
# by veth links, Open MPI over TCP between them. The ranks must land in the namespaces the
# layout says (checked from /proc/self/ns/net), and greedy speculative output across the
# boundary must equal the single-namespace run, for T=2 (the all-reduce crosses) and T=1
# (the draft's proposals cross). Skips (77) with the reason where namespaces are not
# permitted (not root, no iproute2, a sandbox refusing them).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$AUGUR_SOURCE_DIR/cluster/netns.sh"
need_fixture "$MODELS/target/config.json" "$MODELS/draft/config.json"
[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces need root (uid $(id -u))"; exit 77; }
if ! why=$(netns_check); then
  echo "SKIP: network namespaces are not permitted here: $why"
  exit 77
fi
make_tmp
trap 'netns_down "$tmp/ns"; rm -rf "$tmp"' EXIT
netns_up "$tmp/ns" 2 || fail "netns_up could not make 2 namespaces"
N=24
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=12
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
mpirun_ns() { # SLOTS0 SLOTS1 NP command...: ranks over the two namespaces
  netns_hostfile "$tmp/ns" "$tmp/hosts" "$1" "$2"
  local np=$3 args
  shift 3
  mapfile -t args < <(netns_mpirun_args "$tmp/ns" "$tmp/hosts")
  timeout 120 mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "${args[@]}" -np "$np" "$@"
}
root_ns=$(readlink /proc/self/ns/net)
gen=("$AUGUR_BIN" generate --target "$MODELS/target" --draft "$MODELS/draft" --prompt "static int"
     --max-tokens "$N" --gamma 4 --ids-only --threads 1 --measure-comm)
for T in 2 1; do
  # T=2: target 0 on node 0, target 1 and the draft on node 1; T=1: target on 0, draft on 1.
  s1=$T
  run_to "$tmp/where" mpirun_ns 1 "$s1" $((T + 1)) sh -c 'echo "$OMPI_COMM_WORLD_RANK $(readlink /proc/self/ns/net)"'
  sort -n "$tmp/where" >"$tmp/where.sorted"
  mapfile -t ns < <(awk '{ print $2 }' "$tmp/where.sorted")
  [ "${#ns[@]}" -eq $((T + 1)) ] || fail "T=$T: expected $((T + 1)) ranks, got: $(cat "$tmp/where")"
  [ "${ns[0]}" != "$root_ns" ] && [ "${ns[1]}" != "$root_ns" ] || fail "T=$T: a rank ran in the root namespace"
  [ "${ns[0]}" != "${ns[1]}" ] || fail "T=$T: ranks 0 and 1 share a namespace: $(cat "$tmp/where")"
  [ "${ns[T]}" = "${ns[1]}" ] || fail "T=$T: the draft is not on node 1: $(cat "$tmp/where")"
  run_to "$tmp/plain" mpirun_n $((T + 1)) "${gen[@]}"
  run_to "$tmp/split" mpirun_ns 1 "$s1" $((T + 1)) "${gen[@]}"
  [ -s "$tmp/plain" ] || fail "T=$T: the single-namespace run printed nothing"
  cmp -s "$tmp/plain" "$tmp/split" || fail "T=$T: output across namespaces differs:
one namespace: $(cat "$tmp/plain")
two:           $(cat "$tmp/split")"
  echo "ok: T=$T across two namespaces: ranks in ${ns[*]}, output equal ($(wc -w <"$tmp/split") ids)"
  grep 'all-reduce' "$tmp/split.err" || true
done
echo "PASS"
