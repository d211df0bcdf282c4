#!/usr/bin/env bash
# One round of the bucketed-allreduce comparison (docs/performance.md, "Bucketed,
# overlapped allreduce"): P = 2 x 1 thread, STEPS steps of CONFIG on DATA_DIR
# (random MNIST-shaped IDX files: bench/perfutil.py mkdata DIR), for
# bucket_mb = 0, then 1 and 4 MB each driven by MPI_Testall and on the
# communication thread, in an order rotated by ROUND (so that no setting always
# runs first); appends one row a run to OUT.csv:
#   round,label,config,bucket_mb,comm_thread,samples_per_s,allreduce_frac,allreduce_exposed_frac
#
# Usage: bench/buckets.sh OUT.csv LABEL CONFIG.ini DATA_DIR [MPIRUN_ARGS...]
#        bench/perfutil.py buckets OUT.csv   medians per setting, ratios to bucket_mb = 0 of the round
# Environment: AETRAIN (default build/aetrain), ROUND (default 0), STEPS (default 100).
# Across hosts pass the hosts' mpirun arguments, e.g. $(cat DIR/mpirun-args) --map-by node
# after cluster/netns-hosts.sh up 2 DIR.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$1 label=$2 config=$3 data=$4
shift 4
aetrain=${AETRAIN:-$root/build/aetrain} round=${ROUND:-0} steps=${STEPS:-100}
. "$root/scripts/mpienv.sh"
work=$(mktemp -d /tmp/aetrain-buckets.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -s "$out" ] || echo "round,label,config,bucket_mb,comm_thread,samples_per_s,allreduce_frac,allreduce_exposed_frac" >"$out"
settings=("0 false" "1 false" "1 true" "4 false" "4 true")
n=${#settings[@]}
for ((i = 0; i < n; i++)); do
  read -r mb thread <<<"${settings[(i + round) % n]}"
  run=b$mb-$thread
  mpirun -n 2 --bind-to none "$@" "$aetrain" train "$config" --quiet --run "$run" \
    --set run.dir="$work" --set data.dataset="$data" --set train.epochs=1000000 \
    --set train.max_steps="$steps" --set train.threads=1 --set train.probe=false \
    --set train.checkpoint_epochs=0 --set train.validation=0 --set train.eval_every=0 \
    --set train.knn=0 --set train.bucket_mb="$mb" --set train.comm_thread="$thread" >/dev/null
  # metrics.csv: samples_per_s is column 11, allreduce_frac 12, allreduce_exposed_frac 14
  tail -n 1 "$work/$run/metrics.csv" | awk -F, -v r="$round" -v l="${label//,/;}" -v c="$(basename "$config" .ini)" \
    -v mb="$mb" -v t="$thread" '{ print r "," l "," c "," mb "," t "," $11 "," $12 "," $14 }' >>"$out"
done
