#!/usr/bin/env bash
# A rank stopped (SIGSTOP) or killed mid-run ends the whole job within --timeout + 5 s,
# with a non-zero exit, no rank left behind, and a message naming the rank at fault
# (DESIGN §8: never a hang). Runs the shipped pair; each job carries a marker in its
# environment, so the ranks are found by OMPI_COMM_WORLD_RANK among this test's own
# processes only.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

models="$AUGUR_SOURCE_DIR/models"
timeout_s=3
tmp=$(mktemp -d)
marker="augur-faults-$$-$RANDOM"
export AUGUR_FAULTS_MARKER=$marker

# PIDs of this test's ranks (all, or those of world rank $1).
ranks() {
  local want=${1:-} p env rank
  for p in $(pgrep -f -- "$AUGUR_BIN generate" || true); do
    env=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null) || continue
    grep -qx "AUGUR_FAULTS_MARKER=$marker" <<<"$env" || continue
    rank=$(sed -n 's/^OMPI_COMM_WORLD_RANK=//p' <<<"$env")
    [ -z "$want" ] || [ "$rank" = "$want" ] && echo "$p"
  done
  return 0
}
cleanup() {
  local p
  for p in $(ranks); do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# fault NAME RANKS SIGNAL RANK PATTERN -- augur generate arguments...
# PATTERN (an extended regex) must name the rank at fault on stderr.
# Starts the job, waits until the leader has printed text, signals world rank RANK,
# and checks how the job ends. A job that finishes before the signal is run again
# with more repeats of the prompt.
fault() {
  local name=$1 np=$2 sig=$3 rank=$4 pattern=$5
  shift 6
  echo "-- $name"
  local repeat
  for repeat in 2 8 32; do
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
      timeout 30 mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none -x AUGUR_FAULTS_MARKER \
      -np "$np" "$AUGUR_BIN" generate --target "$models/target" --prompt "Once upon a time" --max-tokens 400 \
      --repeat "$repeat" --threads 1 --timeout "$timeout_s" "$@" >"$tmp/out" 2>"$tmp/err" &
    local job=$! waited=0
    # progress: the leader streams text (the prompt alone is 16 bytes)
    while [ "$(stat -c %s "$tmp/out")" -lt 64 ] && kill -0 "$job" 2>/dev/null && ((waited < 200)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    local pid
    pid=$(ranks "$rank")
    if [ -z "$pid" ] || ! kill -0 "$job" 2>/dev/null; then
      wait "$job" || true
      echo "job ended before the signal (repeat $repeat): running longer"
      continue
    fi
    kill "-$sig" "$pid"
    local start=$SECONDS rc=0
    wait "$job" || rc=$?
    local took=$((SECONDS - start))
    local left
    sleep 0.5
    left=$(ranks)
    [ -z "$left" ] || fail "$name: ranks left behind: $left"
    [ "$rc" -ne 0 ] || fail "$name: the job exited 0 after SIG$sig to rank $rank"
    [ "$rc" -ne 124 ] || fail "$name: the job hung (killed by the 30 s guard)"
    ((took <= timeout_s + 5)) || fail "$name: the job took $took s to end (limit $((timeout_s + 5)) s)"
    grep -Eq -- "$pattern" "$tmp/err" || fail "$name: no '$pattern' on stderr: $(grep -v '^\[' "$tmp/err")"
    echo "ok: exit $rc within $took s: $(grep -Em1 -- "$pattern" "$tmp/err")"
    return 0
  done
  fail "$name: the job always ended before the signal"
}

fault "target rank 1 stopped, target-only (2 targets + idle draft)" 3 STOP 1 "rank 1 silent" -- --no-speculation
fault "leader stopped, speculative (1 target + draft)" 2 STOP 0 "leader rank 0 " -- --draft "$models/draft"
# sampling: proposals carry distributions, too large to go out before the leader takes them
fault "leader stopped, speculative sampling (1 target + draft)" 2 STOP 0 "leader rank 0 " -- --draft "$models/draft" \
  --temperature 0.8 --seed 1
fault "leader stopped, target-only (follower and idle draft wait)" 3 STOP 0 "leader rank 0 |rank 0 silent" -- --no-speculation
fault "target rank 1 killed, speculative (2 targets + draft)" 3 KILL 1 "process rank 1 |rank 1 silent" -- --draft "$models/draft"
fault "idle draft rank 2 stopped, target-only" 3 STOP 2 "rank 2 silent" -- --no-speculation
echo "PASS"
