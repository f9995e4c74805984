#!/usr/bin/env bash
# A rank stuck while loading its model (here: the draft's config.json is a FIFO nobody
# writes, so its open() never returns) must not hang the job: the other ranks give up at
# the start-up handshake after --startup-timeout, say what they waited for, and the job
# exits non-zero with every rank gone (MPI_Abort), long before the harness's limit.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
models="$AUGUR_SOURCE_DIR/models"
mkdir "$tmp/stuck-draft"
cp "$models/draft/"* "$tmp/stuck-draft/"
rm "$tmp/stuck-draft/config.json"
mkfifo "$tmp/stuck-draft/config.json"

start=$(date +%s)
rc=0
mpirun_n 3 "$AUGUR_BIN" generate --target "$models/target" --draft "$tmp/stuck-draft" --prompt "Once upon a time" \
  --max-tokens 8 --threads 1 --timeout 2 --startup-timeout 3 >"$tmp/out" 2>"$tmp/err" || rc=$?
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] || fail "the job succeeded with a draft rank that never loaded"
[ "$rc" -ne 124 ] || fail "the job hung until the harness's 120 s limit; stderr: $(tail -n 20 "$tmp/err")"
grep -q "start-up handshake (after loading the models) over .* not complete within 3 s" "$tmp/err" ||
  fail "no start-up handshake message naming the stage; stderr: $(tail -n 20 "$tmp/err")"
grep -q -- "--startup-timeout" "$tmp/err" || fail "the message does not name --startup-timeout: $(cat "$tmp/err")"
# 3 s of waiting plus start-up and MPI_Abort; the harness allows 120 s
[ "$took" -lt 60 ] || fail "the job took $took s to end (start-up timeout 3 s)"
echo "ok: a rank stuck loading ends the job after the start-up timeout (exit $rc, $took s)"
grep -m1 "start-up handshake" "$tmp/err"
