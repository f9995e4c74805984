# Shared helpers for the shell tests (sourced). ctest sets AUGUR_BIN, AUGUR_SOURCE_DIR
# and AUGUR_SHARED_DIR; the tiny-model tool sits beside the tests in the build tree.
fail() { echo "FAIL: $*" >&2; exit 1; }

: "${AUGUR_BIN:?AUGUR_BIN is not set (run through ctest)}"
MAKE_TINY="$(dirname "$AUGUR_BIN")/../tests/augur_make_tiny_model"
STORIES_DIR="${AUGUR_SHARED_DIR:-}/models/stories260K"
STORIES_BIN="$STORIES_DIR/stories260K.bin"
STORIES_TOK="$STORIES_DIR/tok512.bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive

need_stories() {
  [ -f "$STORIES_BIN" ] || { echo "SKIP: $STORIES_BIN not found"; exit 77; }
}

# mpirun with as many ranks as asked on any core count; a hang fails after 120 s.
# Open MPI's plugins leak at exit from modules it has already unloaded, which
# LeakSanitizer cannot symbolise or suppress: MPI runs check memory errors only, and
# leaks are checked by the single-process tests that exercise the same runtime code.
mpirun_n() {
  local n=$1; shift
  ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
    timeout 120 mpirun --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none -np "$n" "$@"
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
