#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for
# SECONDS (default 60); fails on any crash, leak, sanitizer report or
# timeout. Every file of tests/fuzz/corpus/<target>/ (the seeds and the
# regress-* reproducers of bugs found before) is run first, so a fixed bug
# that comes back fails at once.
#   tests/fuzz/run.sh [SECONDS]
#   AE_FUZZ_BUILD  build directory (default: build-fuzz in the source tree)
#   AE_FUZZ_JOBS   parallel compile jobs (default 2)
#   AE_FUZZ_TARGETS  which targets (default "idx config ckpt")
# New inputs found go to BUILD/fuzz-out/<target>/corpus (not checked in);
# crash reproducers to BUILD/fuzz-out/<target>/crash-*: copy one to
# tests/fuzz/corpus/<target>/regress-<name> once the bug is fixed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECS=${1:-60}
BUILD=${AE_FUZZ_BUILD:-$ROOT/build-fuzz}
TARGETS=${AE_FUZZ_TARGETS:-idx config ckpt}
CLANG=${CLANG:-clang}
if ! command -v "$CLANG" >/dev/null; then
  echo "run.sh: $CLANG not found (apt-get install clang)" >&2
  exit 1
fi
CC=$CLANG cmake -S "$ROOT" -B "$BUILD" -DAE_FUZZ=ON >"$BUILD.cmake.log" 2>&1 || {
  cat "$BUILD.cmake.log" >&2
  exit 1
}
rm -f "$BUILD.cmake.log"
cmake --build "$BUILD" -j "${AE_FUZZ_JOBS:-2}" --target ae_fuzz >/dev/null
export AE_FUZZ_SRC=$ROOT
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0 failed=0
for t in $TARGETS; do
  out=$BUILD/fuzz-out/$t
  mkdir -p "$out/corpus"
  dict=()
  [ -f "$HERE/$t.dict" ] && dict=(-dict="$HERE/$t.dict")
  echo "== fuzz_$t: $SECS s"
  set +e
  "$BUILD/tests/fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$out/" "${dict[@]}" "$out/corpus" "$HERE/corpus/$t" \
    >"$out/log.txt" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log.txt" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok: fuzz_$t: ${runs:-?} executions, no crash"
  else
    failed=$((failed + 1))
    echo "FAIL: fuzz_$t: exit $rc after ${runs:-?} executions; reproducer in $out/ (log $out/log.txt)"
    grep -E -A 25 '^==[0-9]+==ERROR|runtime error|^fuzz_|deadly signal|ERROR: libFuzzer' "$out/log.txt" | head -n 40
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
