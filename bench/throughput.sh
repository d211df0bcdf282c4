#!/usr/bin/env bash
# Training throughput (samples/s over whole steps: forward, backward,
# allreduce, optimizer) of configs at P ranks x T threads, measured side by
# side in one run. Prints a table and writes bench/results/throughput.csv.
# Usage: bench/throughput.sh [-e EPOCHS] CONFIG...   (default: simple32, stacked)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
epochs=3
while getopts "e:" opt; do case $opt in e) epochs=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- "$root/configs/mnist_simple32.ini" "$root/configs/mnist_stacked.ini"
. "$root/scripts/mpienv.sh"
aetrain=${AETRAIN:-$root/build/aetrain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$root/bench/results"
csv="$root/bench/results/throughput.csv"
echo "config,ranks,threads_per_rank,samples_per_s,openblas_core" >"$csv"
core=$(python3 -c "import ctypes; l=ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype=ctypes.c_char_p; print(l.openblas_get_corename().decode())")
# (ranks, threads): one process on all cores, one process on one core, one rank per core
layouts="1:$(nproc) 1:1 $(nproc):1"
for cfg in "$@"; do
  name=$(basename "$cfg" .ini)
  for lay in $layouts; do
    p=${lay%%:*} t=${lay##*:}
    mpirun -n "$p" --bind-to none "$aetrain" train "$cfg" --quiet --run "$name-$p-$t" \
      --set "run.dir=$work" --set "train.epochs=$epochs" --set train.probe=false \
      --set "train.threads=$t" --set train.checkpoint_epochs=0 --set train.validation=5000
    sps=$(python3 -c "import json,sys; print('%.0f' % json.load(open(sys.argv[1]))['samples_per_s'])" \
      "$work/$name-$p-$t/result.json")
    echo "$name,$p,$t,$sps,$core" >>"$csv"
  done
done
column -s, -t "$csv"
