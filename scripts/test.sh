#!/usr/bin/env bash
# The whole test suite: install, build (Release), run ctest (unit tests,
# then the MPI/CLI tests one at a time), then the unit tests again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/mpienv.sh
ctest --test-dir build --output-on-failure --timeout 900

echo "test: sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAE_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$(nproc)" --target test_ae >/dev/null
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/tests/test_ae
