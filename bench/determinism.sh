#!/usr/bin/env bash
# Throughput of deterministic mode against the default mode, side by side in
# one run, at P = 1 and P = 2 (1 OpenBLAS thread per rank in both modes, so
# that only the mode differs). The two modes are interleaved (default,
# deterministic, deterministic, default, ...) REPS times, so that a slow
# phase of a shared machine hits both; each pair gives a ratio and the table
# shows the median over the pairs (and the min and max). Writes
# bench/results/determinism.csv (one row per config and P) and
# bench/results/determinism-runs.csv (every run).
# Usage: bench/determinism.sh [-e EPOCHS] [-s MAX_STEPS] [-r REPS] [-p "1 2"] CONFIG...
#        (default: simple32 and stacked, 1 epoch, 3 pairs; AETRAIN=path to the binary)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
epochs=1 steps=0 reps=3 ranks="1 2"
while getopts "e:s:r:p:" opt; do
  case $opt in e) epochs=$OPTARG ;; s) steps=$OPTARG ;; r) reps=$OPTARG ;; p) ranks=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- "$root/configs/mnist_simple32.ini" "$root/configs/mnist_stacked.ini"
. "$root/scripts/mpienv.sh"
aetrain=${AETRAIN:-$root/build/aetrain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$root/bench/results"
csv="$root/bench/results/determinism.csv" runs="$root/bench/results/determinism-runs.csv"
echo "config,ranks,pairs,default_samples_per_s,deterministic_samples_per_s,ratio_median,ratio_min,ratio_max" >"$csv"
echo "config,ranks,pair,mode,samples_per_s" >"$runs"
sps() { python3 -c "import json,sys; print('%.0f' % json.load(open(sys.argv[1]))['samples_per_s'])" "$1"; }
run() { # run CFG NAME P DET -> samples/s
  mpirun -n "$3" --oversubscribe "$aetrain" train "$1" --quiet --run "$2" --set "run.dir=$work" \
    --set "train.epochs=$epochs" --set "train.max_steps=$steps" --set train.probe=false --set train.threads=1 \
    --set train.checkpoint_epochs=0 --set "train.deterministic=$4" >/dev/null
  sps "$work/$2/result.json"
}
cd "$root"
for cfg in "$@"; do
  name=$(basename "$cfg" .ini)
  for p in $ranks; do
    for ((i = 1; i <= reps; i++)); do
      if ((i % 2)); then order="false true"; else order="true false"; fi
      for det in $order; do
        s=$(run "$cfg" "$name-$p-$det-$i" "$p" "$det")
        echo "$name,$p,$i,$det,$s" >>"$runs"
      done
    done
    python3 - "$runs" "$name" "$p" >>"$csv" <<'EOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["config"] == sys.argv[2] and r["ranks"] == sys.argv[3]]
d = {(r["pair"], r["mode"]): float(r["samples_per_s"]) for r in rows}
pairs = sorted({r["pair"] for r in rows})
ratios = [d[(i, "true")] / d[(i, "false")] for i in pairs]
med = lambda mode: statistics.median(d[(i, mode)] for i in pairs)
print("%s,%s,%d,%.0f,%.0f,%.2f,%.2f,%.2f" % (sys.argv[2], sys.argv[3], len(pairs), med("false"), med("true"),
                                          statistics.median(ratios), min(ratios), max(ratios)))
EOF
  done
done
column -s, -t "$csv"
