# Shared set-up of the shell tests: tests/sh/<name>.sh AETRAIN TESTTOOL SRCDIR
set -euo pipefail
AETRAIN=$1
TOOL=$2
SRC=$3
. "$SRC/scripts/mpienv.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aetest-sh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=0
PASSES=0

# mpi NP CMD...: run under mpirun with a hard time limit (a hang is a failure): 300 s, or
# AE_TEST_MPI_TIMEOUT (scripts/test.sh gives the sanitizer build more)
mpi() {
  local np=$1; shift
  timeout -k 5 "${AE_TEST_MPI_TIMEOUT:-300}" mpirun -n "$np" --oversubscribe "$@"
}

ok() { PASSES=$((PASSES + 1)); echo "ok: $*"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }

# expect_fail CODE PATTERN CMD...: the command exits with CODE and its output matches PATTERN
expect_fail() {
  local code=$1 pattern=$2; shift 2
  local out rc
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -eq "$code" ] && grep -qE -- "$pattern" <<<"$out"; then
    ok "exit $rc, '$pattern': $*"
  else
    bad "expected exit $code and /$pattern/, got exit $rc: $*"
    echo "$out" | tail -n 20
  fi
}

# newest numbered checkpoint of a run folder
newest_ckpt() { ls "$1"/ckpt/ckpt-s*.aeck | sort | tail -n 1; }

finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

make_data() { # make_data DIR NTRAIN NTEST [SIDE]
  mkdir -p "$1"
  "$TOOL" mkdata "$@"
}
