#!/usr/bin/env bash
# NCCL faults on one GPU with simulated nodes (T = 2, a node each, NCCL over sockets):
# a target rank killed during generation, and one that stops answering (SIGSTOP). Every
# other rank must notice (NCCL's asynchronous error, the collective's deadline, then
# ncclCommAbort and MPI_Abort), the message must say what failed, and the whole job must
# exit non-zero within 10 s of the fault, leaving no augur process behind.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
gpu_test
make_tmp
export NCCL_SOCKET_IFNAME=lo NCCL_NVLS_ENABLE=0
for i in $(seq 1 40); do cat "$MODELS/heldout_prompts.txt"; done >"$tmp/prompts.txt"

# rank_pid MPIRUN_PID RANK: the pid of that world rank among mpirun's descendants.
rank_pid() {
  local p
  for p in $(pgrep -P "$1") $(pgrep -P "$(pgrep -P "$1" | tr '\n' ',' | sed 's/,$//')" 2>/dev/null); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

fault() { # LABEL SIGNAL PATTERN
  local label=$1 sig=$2 pattern=$3
  mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none -np 3 "$AUGUR_BIN" generate --device cuda \
    --simulate-hosts 2 --target "$MODELS/target" --draft "$MODELS/draft" --prompts-file "$tmp/prompts.txt" \
    --max-tokens 200 --ids-only --threads 1 --timeout 3 >"$tmp/$label.out" 2>"$tmp/$label.err" </dev/null &
  local job=$!
  # Wait until generation runs (the first outputs are out), at most 60 s.
  local waited=0
  until [ -s "$tmp/$label.out" ]; do
    kill -0 "$job" 2>/dev/null || fail "$label: the job ended before the fault: $(tail -n 20 "$tmp/$label.err")"
    sleep 0.5
    waited=$((waited + 1))
    [ "$waited" -lt 120 ] || { kill -9 "$job"; fail "$label: no output within 60 s"; }
  done
  local victim
  victim=$(rank_pid "$job" 1) || { kill -9 "$job"; fail "$label: cannot find target rank 1's process"; }
  local t0=$SECONDS
  kill "-$sig" "$victim"
  local rc=0 ended=0
  for _ in $(seq 1 60); do # 30 s at most; the bar is 10 s
    if ! kill -0 "$job" 2>/dev/null; then ended=1; break; fi
    sleep 0.5
  done
  if [ "$ended" -eq 0 ]; then
    kill -CONT "$victim" 2>/dev/null || true
    kill -9 "$job" 2>/dev/null || true
    pkill -9 -f "$tmp/prompts.txt" 2>/dev/null || true
    fail "$label: the job still ran 30 s after the fault: $(tail -n 20 "$tmp/$label.err")"
  fi
  wait "$job" || rc=$?
  local took=$((SECONDS - t0))
  kill -CONT "$victim" 2>/dev/null || true
  sleep 1
  if pgrep -f "$tmp/prompts.txt" >/dev/null; then
    pkill -9 -f "$tmp/prompts.txt" || true
    fail "$label: augur processes were left behind"
  fi
  [ "$rc" -ne 0 ] || fail "$label: the job exited 0 after the fault"
  [ "$took" -le 10 ] || fail "$label: the job took $took s to end (bar: 10 s)"
  grep -Eq "$pattern" "$tmp/$label.err" || fail "$label: no message matching /$pattern/: $(grep augur "$tmp/$label.err" | tail -n 8)"
  echo "ok: $label: exit $rc after $took s: $(grep -E "$pattern" "$tmp/$label.err" | head -n 1 | cut -c1-200)"
}

fault killed KILL "NCCL|rank 1|peer rank|died|disconnect"
fault stopped STOP "stopped answering|not complete within|rank 1"
echo "PASS"
