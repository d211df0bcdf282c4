#!/usr/bin/env bash
# The whole test suite: install, build (Release), run ctest (the CUnit
# runner, then the MPI / CLI shell tests one at a time); then the same suite
# in an AddressSanitizer + UndefinedBehaviorSanitizer build: the unit tests
# with leak checking, the MPI tests without it (Open MPI's own allocations
# outlive MPI_Finalize in components it unloads; aetrain's leaks are covered
# by the unit tests and by tests/sh/valgrind_train.sh; the Slurm and
# multi-host tests, which check daemons and networking rather than aetrain's
# memory, run once, in the release suite); then each fuzz target
# (IDX reader, config parser, checkpoint reader) for AE_FUZZ_SECONDS (60).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh --test
. scripts/mpienv.sh
t0=$SECONDS
ctest --test-dir build --output-on-failure --timeout 900
echo "test: release suite took $((SECONDS - t0)) s"

echo "test: sanitizer build (ASan + UBSan)"
t0=$SECONDS
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAE_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$(nproc)" >/dev/null
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ASAN_OPTIONS=detect_leaks=1 build-asan/tests/test_ae
ASAN_OPTIONS=detect_leaks=0 AE_TEST_MPI_TIMEOUT=900 ctest --test-dir build-asan --output-on-failure --timeout 1200 \
  -E '^(unit|valgrind_train|slurm|multihost)$'
echo "test: sanitizer suite took $((SECONDS - t0)) s"

echo "test: fuzzing (libFuzzer, ${AE_FUZZ_SECONDS:-60} s per target)"
t0=$SECONDS
bash tests/fuzz/run.sh "${AE_FUZZ_SECONDS:-60}"
echo "test: fuzzing took $((SECONDS - t0)) s"
