#!/usr/bin/env bash
# Throughput of deterministic mode against the default mode, side by side in
# one run, at P = 1 and P = 2 (1 OpenBLAS thread per rank in both modes, so
# that only the mode differs). Prints a table and writes bench/results/determinism.csv.
# Usage: bench/determinism.sh [-e EPOCHS] CONFIG...   (default: simple32, stacked)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
epochs=2
while getopts "e:" opt; do case $opt in e) epochs=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- "$root/configs/mnist_simple32.ini" "$root/configs/mnist_stacked.ini"
. "$root/scripts/mpienv.sh"
aetrain=${AETRAIN:-$root/build/aetrain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$root/bench/results"
csv="$root/bench/results/determinism.csv"
echo "config,ranks,default_samples_per_s,deterministic_samples_per_s,ratio" >"$csv"
sps() { python3 -c "import json,sys; print('%.0f' % json.load(open(sys.argv[1]))['samples_per_s'])" "$1"; }
for cfg in "$@"; do
  name=$(basename "$cfg" .ini)
  for p in 1 2; do
    for det in false true; do
      mpirun -n "$p" "$aetrain" train "$cfg" --quiet --run "$name-$p-$det" --set "run.dir=$work" \
        --set "train.epochs=$epochs" --set train.probe=false --set train.threads=1 \
        --set train.checkpoint_epochs=0 --set "train.deterministic=$det"
    done
    a=$(sps "$work/$name-$p-false/result.json") b=$(sps "$work/$name-$p-true/result.json")
    echo "$name,$p,$a,$b,$(python3 -c "print('%.2f' % ($b / $a))")" >>"$csv"
  done
done
column -s, -t "$csv"
