#!/usr/bin/env bash
# MPI collectives, layout and messaging across 3 ranks (2 target + 1 draft), and a
# wrong world size failing cleanly on every rank. Runs from <build>/tests, where the
# test_collectives cmocka program lives. `timeout` turns any hang into a failure.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin="$PWD/test_collectives"
if [ ! -x "$bin" ]; then
    echo "collectives.sh: test_collectives not found in $PWD" >&2
    exit 1
fi
mpirun_cmd=(timeout 60 mpirun --oversubscribe --mca mpi_yield_when_idle 1 -np 3)

echo "== collectives, layout and messaging on 3 ranks"
if ! "${mpirun_cmd[@]}" "$bin"; then
    echo "FAIL: test_collectives on 3 ranks" >&2
    exit 1
fi

echo "== a layout of 2 targets + 1 draft on 3 ranks is accepted"
if ! out=$("${mpirun_cmd[@]}" "$bin" --layout-check 2 2>&1); then
    echo "$out" >&2
    echo "FAIL: --layout-check 2 on 3 ranks" >&2
    exit 1
fi
[ "$(grep -c 'layout ok' <<<"$out")" -eq 3 ] || { echo "$out" >&2; echo "FAIL: not every rank reported ok" >&2; exit 1; }

echo "== a layout of 3 targets + 1 draft on 3 ranks fails on every rank, quickly"
start=$SECONDS
out=$("${mpirun_cmd[@]}" "$bin" --layout-check 3 2>&1)
rc=$?
echo "$out"
if [ "$rc" -eq 0 ]; then
    echo "FAIL: wrong world size exited 0" >&2
    exit 1
fi
if [ "$rc" -eq 124 ]; then
    echo "FAIL: wrong world size hung until the timeout" >&2
    exit 1
fi
for r in 0 1 2; do
    if ! grep -q "^rank $r: layout needs 4 ranks (3 target + 1 draft), mpirun started 3" <<<"$out"; then
        echo "FAIL: rank $r did not report the layout error" >&2
        exit 1
    fi
done
if [ $((SECONDS - start)) -gt 30 ]; then
    echo "FAIL: the layout error took $((SECONDS - start)) s" >&2
    exit 1
fi
echo "PASS"
