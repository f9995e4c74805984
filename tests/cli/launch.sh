#!/usr/bin/env bash
# augur launch without running mpirun: --dry-run's layout table, rankfile, hostfile and
# command for the shipped configs and odd layouts, and the config, hostfile and model
# errors, each naming the file, key (or line) and problem with exit code 2.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
A="$AUGUR_BIN"
cd "$AUGUR_SOURCE_DIR" # the configs name models/ relative to the checkout

# dry FILE args...: --dry-run into FILE (stdout) and FILE.err, which must succeed
dry() { local out=$1; shift; run_to "$out" "$A" launch --dry-run "$@"; }
has() { grep -qF -- "$2" "$1" || fail "expected '$2' in $1:
$(cat "$1")"; }

# The shipped CPU pair: 2 ranks on this host, target then draft, one core each at most.
dry "$tmp/tiny" configs/tiny-cpu.json
has "$tmp/tiny" "configs/tiny-cpu.json: 1 replica x (1 target + 1 draft) = 2 ranks on 1 of 1 host (localhost), device cpu"
has "$tmp/tiny" "rank | host | gpu | cores | role | replica"
grep -Eq '^   0 \| localhost \| - \| [0-9-]+ \| target 0 \(leader\) \| 0$' "$tmp/tiny" || fail "rank 0 row: $(cat "$tmp/tiny")"
grep -Eq '^   1 \| localhost \| - \| [0-9-]+ \| draft \| 0$' "$tmp/tiny" || fail "rank 1 row: $(cat "$tmp/tiny")"
has "$tmp/tiny" "rank 0=localhost slot="
cmdline=$(sed -n '/^command:$/{n;p}' "$tmp/tiny")
for w in "mpirun" "--hostfile HOSTFILE --rankfile RANKFILE -np 2" "-x NCCL_NVLS_ENABLE=0" \
         "launcher/augur generate --target models/target --draft models/draft --tp 1" "--device=cpu" \
         "--prompt 'The scheduler picks the next task to run'"; do
  grep -qF -- "$w" <<<"$cmdline" || fail "command lacks '$w': $cmdline"
done
[ "$(id -u)" = 0 ] && { grep -qF -- "--allow-run-as-root" <<<"$cmdline" || fail "root, yet no --allow-run-as-root: $cmdline"; }
echo "ok: tiny-cpu dry run"

# Flags after -- go last, so they override the config's.
dry "$tmp/extra" configs/tiny-cpu.json -- --max-tokens 7 --prompt "it's"
tail -n 1 "$tmp/extra" | grep -qF -- "--max-tokens 128 --threads 1 --prompt 'The scheduler picks the next task to run' --device=cpu --max-tokens 7 --prompt 'it'\''s'" ||
  fail "extra flags not last or not quoted: $(tail -n 1 "$tmp/extra")"

# Two replicas on this host: 4 ranks in replica order; more ranks than cores oversubscribe.
cat >"$tmp/rep.json" <<JSON
{"target": "models/target", "draft": "models/draft", "replicas": 2, "max-tokens": 8, "prompt": "static int"}
JSON
dry "$tmp/rep" "$tmp/rep.json"
has "$tmp/rep" "2 replicas x (1 target + 1 draft) = 4 ranks"
grep -Eq '^   2 \| localhost \| - \| [0-9-]+ \| target 0 \(leader\) \| 1$' "$tmp/rep" || fail "replica 1 leader: $(cat "$tmp/rep")"
grep -Eq '^   3 \| localhost \| - \| [0-9-]+ \| draft \| 1$' "$tmp/rep" || fail "replica 1 draft: $(cat "$tmp/rep")"
if [ "$(nproc)" -lt 4 ]; then
  has "$tmp/rep" "oversubscribed"
  has "$tmp/rep" "--oversubscribe --mca mpi_yield_when_idle 1"
fi
has "$tmp/rep" "--replicas 2"
echo "ok: replicas dry run"

# A cluster layout from a hostfile, away from its models (dry run only notes them).
cat >"$tmp/hosts" <<'H'
# 70B at TP=8, draft on its own node
node-a slots=8 gpus=8 cores=64
node-b slots=1 # gpus=1
H
cat >"$tmp/own.json" <<'JSON'
{"target": "/nonexistent/70b", "draft": "/nonexistent/1b", "tp": 8, "draft-placement": "own-node",
 "device": "cuda", "prompt": "hi"}
JSON
dry "$tmp/own" "$tmp/own.json" --hostfile "$tmp/hosts"
has "$tmp/own.err" "key \"target\": /nonexistent/70b does not exist here; its checks are skipped"
has "$tmp/own" "9 ranks on 2 of 2 hosts ($tmp/hosts), device cuda, draft-placement own-node"
has "$tmp/own" "   7 | node-a | 7 | 56-63 | target 7 | 0"
has "$tmp/own" "   8 | node-b | 0 | 0 | draft | 0"
has "$tmp/own" "rank 7=node-a slot=56-63"
has "$tmp/own" "node-b slots=1"
# the shipped 70B config checks out the same way against the template hostfile
dry "$tmp/c70" configs/llama3-70b-tp8.json --hostfile cluster/hostfile.example -- --device cuda --prompt hi
has "$tmp/c70" "1 replica x (8 target + 1 draft) = 9 ranks on 2 of 2 hosts"
echo "ok: hostfile dry run"

# command bench: one rank timing shard 0 of tp
echo '{"command": "bench", "model": "models/target", "tp": 2, "iters": 2}' >"$tmp/bench.json"
dry "$tmp/bench" "$tmp/bench.json"
has "$tmp/bench" "bench of shard 0 of 2: 1 rank on 1 of 1 host (localhost), device cpu"
has "$tmp/bench" "-np 1 -x NCCL_NVLS_ENABLE=0"
has "$tmp/bench" "launcher/augur bench --model models/target --tp-size 2 --iters 2 --device=cpu"
echo "ok: bench dry run"

# ---- errors: exit 2, one line naming the file, key or line, and the problem ----
bad() { echo "$1" >"$tmp/bad.json"; shift; expect_fail 2 "$1" -- "$A" launch "$tmp/bad.json" --dry-run "${@:2}"; }
P='"target": "models/target", "draft": "models/draft", "prompt": "x"'
bad "{$P, \"tp\": 4}" "bad.json: key \"tp\": 4 target ranks do not divide num_attention_heads 6 of models/target"
bad "{$P, \"tp\": \"2\"}" "bad.json: key \"tp\": must be an integer in 1..4096, got '\"2\"'"
bad "{$P, \"replicas\": 0}" "bad.json: key \"replicas\": must be an integer in 1..4096, got '0'"
bad "{$P, \"draft-placement\": \"far\"}" "bad.json: key \"draft-placement\": must be own-gpu, shared or own-node, got 'far'"
bad "{$P, \"gama\": 4}" "bad.json: key \"gama\": not a flag of augur generate"
bad "{$P, \"gamma\": \"four\"}" "bad.json: key \"gamma\": --gamma: 'four' is not an integer"
bad "{$P, \"no-overlap\": \"yes\"}" "bad.json: key \"no-overlap\": --no-overlap takes no value"
bad "{$P, \"command\": \"train\"}" "bad.json: key \"command\": must be generate, bench or serve, got 'train'"
bad "{\"draft\": \"models/draft\"}" "bad.json: key \"target\" is missing"
bad "{$P, \"device\": \"tpu\"}" "bad.json: key \"device\": must be auto, cpu or cuda, got 'tpu'"
"$MAKE_TINY" --out "$tmp/v256" --dim 64 --layers 1 --heads 4 --kv-heads 2 --vocab 256 --seed 1 >/dev/null
bad "{\"target\": \"models/target\", \"prompt\": \"x\", \"draft\": \"$tmp/v256\"}" "key \"draft\": the draft $tmp/v256 has a vocabulary of 256 tokens, the target models/target 8192"
# a real run (no --dry-run) insists on the models; it fails before starting mpirun
echo '{"target": "models/nope", "draft": "models/draft", "prompt": "x"}' >"$tmp/bad.json"
expect_fail 2 "bad.json: key \"target\": models/nope does not exist" -- "$A" launch "$tmp/bad.json"
printf 'a slots=1\nb slots=two\n' >"$tmp/badhosts"
expect_fail 2 "$tmp/badhosts line 2: slots='two' is not a count" -- "$A" launch configs/tiny-cpu.json --hostfile "$tmp/badhosts" --dry-run
printf 'a slots=1\n' >"$tmp/onehost"
expect_fail 2 "$tmp/onehost: the layout needs 2 ranks (1 replica x (1 target + 1 draft)) but the 1 host offers 1 slot" \
  -- "$A" launch configs/tiny-cpu.json --hostfile "$tmp/onehost" --dry-run
echo "{$P, \"device\": \"cuda\", \"tp\": 2}" >"$tmp/gpu.json"
printf 'a slots=4 gpus=1\n' >"$tmp/gpuhosts"
expect_fail 2 "line 1: host a runs 2 target ranks but has 1 GPU" -- "$A" launch "$tmp/gpu.json" --hostfile "$tmp/gpuhosts" --dry-run
expect_fail 2 "--gamma: 'x' is not an integer" -- "$A" launch configs/tiny-cpu.json --dry-run -- --gamma x
expect_fail 2 "--replicas after --: the layout comes from the config; set \"replicas\" in configs/tiny-cpu.json" -- \
  "$A" launch configs/tiny-cpu.json --dry-run -- --replicas 2
echo '{"target": "models/target", "draft": "models/draft"}' >"$tmp/noprompt.json"
expect_fail 2 "in the flags of augur generate from $tmp/noprompt.json" -- "$A" launch "$tmp/noprompt.json" --dry-run
# augur generate --config reads a launch config, skipping the keys only launch reads
echo '{"target": "models/target", "hostfile": "h", "oversubscribe": true, "mpirun": "m", "command": "generate"}' \
  >"$tmp/gen.json"
"$A" generate --config "$tmp/gen.json" --help >/dev/null || fail "generate --config rejects launch-only keys"
expect_fail 2 "CONFIG is required" -- "$A" launch --dry-run
expect_fail 2 "configs/none.json: cannot open" -- "$A" launch configs/none.json --dry-run
"$A" launch --help | grep -q "usage: augur launch CONFIG" || fail "launch --help"
"$A" --help | grep -q "  launch " || fail "augur --help does not list launch"
echo "PASS"
