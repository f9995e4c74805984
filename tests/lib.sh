# Shared helpers for the shell tests (sourced). ctest sets AUGUR_BIN, AUGUR_SOURCE_DIR
# and AUGUR_SHARED_DIR; the tiny-model tool sits beside the tests in the build tree.
fail() { echo "FAIL: $*" >&2; exit 1; }

: "${AUGUR_BIN:?AUGUR_BIN is not set (run through ctest)}"
MAKE_TINY="$(dirname "$AUGUR_BIN")/../tests/augur_make_tiny_model"
MODELS="${AUGUR_SOURCE_DIR:-}/models" # the shipped draft/target pair, in the source tree
STORIES_DIR="${AUGUR_SHARED_DIR:-}/models/stories260K"
STORIES_BIN="$STORIES_DIR/stories260K.bin"
STORIES_TOK="$STORIES_DIR/tok512.bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
# The CPU backend is the reference the unit, CLI and MPI tests assert exact text against;
# GPU tests pass --device cuda themselves. NVLink multicast stays off (DESIGN, HOPPER notes).
export AUGUR_DEVICE=cpu NCCL_NVLS_ENABLE=0

# GPU tests: skip (77) where no GPU is visible or augur was built without CUDA.
need_gpu() {
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "SKIP: no GPU visible (nvidia-smi -L)"
    exit 77
  fi
  if ! "$AUGUR_BIN" --version 2>/dev/null | grep -q 'cuda'; then
    echo "SKIP: $AUGUR_BIN was built without CUDA"
    exit 77
  fi
}
gpu_count() { nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true; }

# GPU tests: need_gpu, then ASan settings for the CUDA driver, which needs the shadow gap
# unprotected and whose allocations at exit are not leaks of ours.
gpu_test() {
  need_gpu
  export ASAN_OPTIONS="${ASAN_OPTIONS:-}:protect_shadow_gap=0:detect_leaks=0"
}

# cuda_test_program NAME: $bin becomes kernels/NAME of the build (a test program built
# only where a CUDA toolkit exists); skips (exit 77) without it or without a GPU.
cuda_test_program() {
  bin="$(dirname "$AUGUR_BIN")/../kernels/$1"
  if [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built (no CUDA toolkit at configure time)"
    exit 77
  fi
  gpu_test
}

# make_tmp: $tmp becomes a fresh directory, removed when the script exits.
make_tmp() {
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
}

# need_fixture FILE...: the one rule for fixtures (tests/unit/test_util.c's
# test_need_fixture is its C twin). A file that cannot be read skips the test (exit 77)
# with a message naming it; under CI (CI=true), where every fixture must be present, it
# fails the test with that message instead.
need_fixture() {
  local f
  for f in "$@"; do
    [ -r "$f" ] && continue
    [ "${CI:-}" = true ] && fail "fixture $f not found (CI=true: a missing fixture fails; set AUGUR_SHARED_DIR)"
    echo "SKIP: fixture $f not found"
    exit 77
  done
}

need_stories() { need_fixture "$STORIES_BIN" "$STORIES_TOK"; }

# mpirun with as many ranks as asked on any core count; a hang fails after 120 s.
# Open MPI's plugins leak at exit from modules it has already unloaded, which
# LeakSanitizer cannot symbolise or suppress: MPI runs check memory errors only, and
# leaks are checked by the single-process tests that exercise the same runtime code.
mpirun_n() {
  local n=$1; shift
  ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
    timeout 120 mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none -np "$n" "$@"
}

# run_to FILE command...: stdout to FILE, stderr to FILE.err. A non-zero exit fails the
# test with the command, its status (124: a timeout gave up on it) and its stderr's end,
# so that a failure on a busy machine still says why.
run_to() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>"$out.err" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  local why=""
  [ "$rc" -eq 124 ] && why=" (timed out)"
  fail "exit $rc$why from: $*
--- last 30 lines of its stderr ($out.err):
$(tail -n 30 "$out.err")"
}

# expect_fail CODE PATTERN -- command...: the command must exit with CODE and print PATTERN on stderr.
expect_fail() {
  local code=$1 pattern=$2; shift 3
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq "$code" ] || fail "expected exit $code, got $rc from: $* ($err)"
  grep -q -- "$pattern" <<<"$err" || fail "expected '$pattern' on stderr from: $*; got: $err"
  echo "ok: exit $code, '$pattern'"
}

# serve_start NAME FLAGS...: augur serve on the shipped pair (or SERVE_TARGET / SERVE_DRAFT) on SERVE_NP ranks
# (default 2) and a free port, in the background; outputs in $tmp/NAME.out and .err; waits until it
# listens and sets $port, $pid (rank 0, which takes SIGTERM) and $mpirun. Not mpirun_n: a server
# outlives its 120 s; this limit only ends a hang.
serve_start() {
  local name=$1; shift
  ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 900 mpirun --oversubscribe --mca mpi_yield_when_idle 1 \
    --bind-to none -np "${SERVE_NP:-2}" "$AUGUR_BIN" serve --target "${SERVE_TARGET:-$MODELS/target}" \
    --draft "${SERVE_DRAFT:-$MODELS/draft}" --threads 1 --port 0 \
    "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  mpirun=$!
  while ! grep -q "listening on" "$tmp/$name.out"; do
    kill -0 "$mpirun" 2>/dev/null || fail "augur serve exited before listening: $(tail -n 20 "$tmp/$name.err")"
    sleep 0.2
  done
  port=$(sed -n 's/.*http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$tmp/$name.out")
  pid=$(sed -n 's/.*rank 0 pid \([0-9]*\).*/\1/p' "$tmp/$name.out")
  echo "server $name on port $port (rank 0 pid $pid)"
}
