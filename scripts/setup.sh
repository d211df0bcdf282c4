#!/usr/bin/env bash
# Install what aetrain needs on Debian 12 (only what is missing), fetch the
# data into data/, and build into build/. Safe to run again.
#   scripts/setup.sh          what training needs
#   scripts/setup.sh --test   also what the test suite needs (valgrind, clang's libFuzzer,
#                             iproute2 for the multi-host test, Slurm and munge)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

pkgs=(build-essential cmake pkg-config git ca-certificates libopenmpi-dev openmpi-bin libopenblas-dev
      libzstd-dev zlib1g-dev libcunit1-dev libpng-dev libcairo2-dev fonts-dejavu-core libprotobuf-c-dev protobuf-c-compiler
      dataset-fashion-mnist bsdextrautils)
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(valgrind clang libclang-rt-14-dev iproute2 slurm-wlm munge protobuf-compiler python3-protobuf)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/fetch-data.sh "$root/data"

build_type=${AE_BUILD_TYPE:-Release}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "setup: built build/aetrain ($build_type)"
