#!/usr/bin/env bash
# The calibrated scaling model of a config (docs/performance.md, "Projected scaling"), in one
# command: measures its inputs on this machine, fits and projects (bench/scaling_model.py), and
# draws the picture.
#
# Usage: bench/scaling-model.sh [-o OUT] [-S "STAGES"] [--rates "1gbit 200mbit"] [CONFIG]
#   CONFIG   default bench/hinton.ini
#   -o OUT   output folder (default bench/results/scaling-model)
#   -S       the stages to run, of: layertime allreduce gap study overlap model (default all; "model"
#            alone refits and redraws from the CSVs already in OUT)
#   --rates  tc tbf rates of the two namespace hosts' links (default "1gbit 200mbit")
# Environment: RUNNER, a command prefix for every timed measurement (e.g. a wrapper that pauses
# other jobs; each measurement is one such call, at most a few minutes); PNG (default
# docs/images/scaling_projection.png); MODEL_ARGS (more arguments of scaling_model.py).
#
# Stages (each writes into OUT):
#   layertime  build/layertime CONFIG -> layertime.csv (per-layer forward/backward per sample and
#              the optimizer, 1 thread, the config's batch), and layertime-b<B>.csv at 50, 25, 12
#              and 6 samples (the model's per-sample times by batch)
#   allreduce  build/allreduce_bench at P = 2 on this host (shared memory) and across 2 network-
#              namespace hosts (cluster/netns-hosts.sh) whose root-side veths are shaped with
#              tc tbf to each rate -> allreduce.csv (label local, netns2-<rate>): back to back,
#              4 KB - 64 MB, and bucketed in 1 MB MPI_Iallreduce
#   gap        the same setups, 256 KB - 16 MB and the step's buffer size, with a step's compute
#              (from layertime.csv) before each call and no other MPI call, as in training
#              (mode allreduce_gap<G>ms; scaling_model.py fits these where they exist)
#              and on this host also aetrain's node-shared sum (allreduce_bench -N, mode nodesum_gap<G>ms),
#              which the one-host training runs (train.allreduce = node): the model fits the local
#              setup to those rows and gives each rank 1/P of the optimizer
#   study      cluster/scaling-study -r "1 2" (strong and weak) on this host and on the shaped
#              namespace hosts (as a hostfile with their mpirun arguments) -> study/scaling.csv
#   overlap    aetrain at P = 2 across the hosts at the first rate with bucket_mb = 1 on the
#              communication thread (weak, the config's batch per rank) -> overlap.csv
#   model      bench/scaling_model.py: fits, validation table, projections.csv, the PNG
# Needs root for the namespace hosts and tc, Open MPI, python3, and build/ (built when missing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
me=scaling-model
out=$root/bench/results/scaling-model stages="layertime allreduce gap study overlap model" rates="1gbit 200mbit"
config=$root/bench/hinton.ini
while [ $# -gt 0 ]; do
  case $1 in
    -o) out=$2; shift ;;
    -S) stages=$2; shift ;;
    --rates) rates=$2; shift ;;
    -h | --help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$me: unknown option $1" >&2; exit 2 ;;
    *) config=$1 ;;
  esac
  shift
done
[ -f "$config" ] || { echo "$me: no config $config" >&2; exit 2; }
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root" # the configs' data paths are relative to the source tree
read -r -a runner <<<"${RUNNER:-}"
png=${PNG:-$root/docs/images/scaling_projection.png}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
has() { [[ " $stages " == *" $1 "* ]]; }
log() { echo "$me: $*" >&2; }

if has layertime || has allreduce || has gap || has overlap; then
  if [ ! -x "$root/build/layertime" ] || [ ! -x "$root/build/allreduce_bench" ] || [ ! -x "$root/build/aetrain" ]; then
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$root/build" -j2 >/dev/null
  fi
fi
. "$root/scripts/mpienv.sh"

# the namespace hosts, made once for the stages that need them
hosts=""
cleanup() {
  set +e # a holder that is already gone must not fail the run
  if [ -n "$hosts" ]; then netns_down "$hosts"; rm -rf "$hosts"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
hosts_up() {
  [ -z "$hosts" ] || return 0
  . "$root/cluster/netns-hosts.sh"
  hosts=$(mktemp -d "${TMPDIR:-/tmp}/aetrain-model-hosts.XXXXXX")
  netns_up 2 "$hosts" "aesm$(($$ % 10000))" || { echo "$me: cannot make the namespace hosts" >&2; exit 1; }
}
# shape RATE: tbf on both root-side veths (each direction of each host's link limited to RATE)
shape() {
  local v
  for v in "${NETNS_VETHS[@]}"; do tc qdisc replace dev "$v" root tbf rate "$1" burst 64kb latency 50ms; done
}
# mpirun arguments of the hosts without the hostfile (scaling-study takes it with -H)
host_xargs() { printf '%s ' "${NETNS_MPIRUN_ARGS[@]:2}"; echo "--map-by node --bind-to none"; }

if has layertime; then
  log "layertime: $config"
  "${runner[@]}" "$root/build/layertime" -s 3 -o "$out/layertime.csv" "$config"
  # the same at the smaller batches per rank of the strong points and projections: sgemm is slower
  # per sample on fewer rows, which the model interpolates
  for b in 50 25 12 6; do
    "${runner[@]}" "$root/build/layertime" -b "$b" -s 2 -o "$out/layertime-b$b.csv" "$config" >/dev/null
  done
fi

if has allreduce || has gap; then
  # the gap: a step's compute between the calls (from layertime.csv's step row), as in training;
  # and the step's buffer size (gradients + the step's 4 scalars)
  gap=20 gbytes=11349272
  if [ -f "$out/layertime.csv" ]; then
    gap=$(awk -F, '$2 == "step" { printf "%.0f", 1e3 * ($4 + $5) * $7 }' "$out/layertime.csv")
    gbytes=$(awk -F, '$2 == "step" { print $6 + 16 }' "$out/layertime.csv")
  fi
  if has allreduce; then
    log "allreduce: P = 2 on this host"
    "${runner[@]}" mpirun -n 2 --bind-to none "$root/build/allreduce_bench" -s 0.5 -i -k 1048576 -l local \
      -o "$out/allreduce.csv" >/dev/null
  fi
  if has gap; then
    log "allreduce: P = 2 on this host, ${gap} ms of compute before each call"
    "${runner[@]}" mpirun -n 2 --bind-to none "$root/build/allreduce_bench" -s 1 -m 262144 -M 16777216 \
      -x "$gbytes" -g "$gap" -l local -o "$out/allreduce.csv" -a >/dev/null
    # what training on this host runs: the node-shared sum of the sharded step (train.allreduce = node)
    log "node sum: P = 2 on this host, ${gap} ms of compute before each call"
    "${runner[@]}" mpirun -n 2 --bind-to none "$root/build/allreduce_bench" -N -s 1 -m 262144 -M 16777216 \
      -x "$gbytes" -g "$gap" -l local -o "$out/allreduce.csv" -a >/dev/null
  fi
  hosts_up
  for r in $rates; do
    shape "$r"
    max=67108864
    [ "$r" != 200mbit ] || max=33554432
    if has allreduce; then
      log "allreduce: P = 2 across 2 namespace hosts, tbf $r"
      "${runner[@]}" mpirun -n 2 "${NETNS_MPIRUN_ARGS[@]}" --map-by node --bind-to none \
        "$root/build/allreduce_bench" -s 1.5 -M "$max" -i -k 1048576 -l "netns2-$r" -o "$out/allreduce.csv" -a \
        >/dev/null
    fi
    if has gap; then
      log "allreduce: P = 2 across 2 namespace hosts, tbf $r, ${gap} ms of compute before each call"
      "${runner[@]}" mpirun -n 2 "${NETNS_MPIRUN_ARGS[@]}" --map-by node --bind-to none \
        "$root/build/allreduce_bench" -s 2 -m 262144 -M 16777216 -x "$gbytes" -g "$gap" -l "netns2-$r" \
        -o "$out/allreduce.csv" -a >/dev/null
    fi
  done
fi

if has study; then
  rm -rf "$out/study"
  log "study: this host"
  "${runner[@]}" "$root/cluster/scaling-study" -c "$config" -r "1 2" -s 2 -l local -o "$out/study" >/dev/null
  hosts_up
  for r in $rates; do
    shape "$r"
    steps=()
    [ "$r" != 200mbit ] || steps=(-n 24)
    log "study: 2 namespace hosts, tbf $r"
    "${runner[@]}" "$root/cluster/scaling-study" -c "$config" -r "1 2" -s 2 "${steps[@]}" -H "$hosts/hostfile" \
      -x "$(host_xargs)" -l "netns2-$r" -a -o "$out/study" >/dev/null
  done
fi

if has overlap; then
  hosts_up
  r=${rates%% *}
  shape "$r"
  B=$(awk -F= '/^\[/ { s = $0 } s == "[train]" && $1 ~ /^batch[[:space:]]*$/ { gsub(/[[:space:]]/, "", $2); print $2; exit }' "$config")
  B=${B:-128}
  echo "setup,bucket_mb,comm_thread,global_batch,steps,samples_per_s,allreduce_frac,allreduce_exposed_frac" >"$out/overlap.csv"
  for mb in 1 4; do
    log "overlap: 2 namespace hosts, tbf $r, bucket_mb = $mb on the communication thread"
    rm -rf "$hosts/runs"
    "${runner[@]}" mpirun -n 2 "${NETNS_MPIRUN_ARGS[@]}" --map-by node --bind-to none "$root/build/aetrain" train \
      "$config" --quiet --run ov --set run.dir="$hosts/runs" --set train.batch=$((2 * B)) --set train.epochs=1000000 \
      --set train.max_steps=60 --set train.train_limit=$((20 * 2 * B)) --set train.threads=1 --set train.probe=false \
      --set train.checkpoint_epochs=0 --set train.validation=0 --set train.eval_every=0 --set train.knn=0 \
      --set train.patience=0 --set train.bucket_mb=$mb --set train.comm_thread=true >/dev/null
    "$py" - "$hosts/runs/ov/metrics.csv" "netns2-$r" "$mb" $((2 * B)) >>"$out/overlap.csv" <<'EOP'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
b = int(sys.argv[4])
steps, t, w, e = 0, 0.0, 0.0, 0.0
for a, r in zip(rows, rows[1:]):  # the first epoch is the warm-up; weighted by each epoch's time
    n = int(r["step"]) - int(a["step"])
    dt = n * b / float(r["samples_per_s"])
    steps += n
    t += dt
    w += dt * float(r["allreduce_frac"])
    e += dt * float(r["allreduce_exposed_frac"])
print("%s,%s,true,%d,%d,%.6g,%.4f,%.4f" % (sys.argv[2], sys.argv[3], b, steps, steps * b / t, w / t, e / t))
EOP
  done
fi

if has model; then
  args=(--layertime "$out/layertime.csv" --allreduce "$out/allreduce.csv" --out "$out" --png "$png")
  more_b=$(ls "$out"/layertime-b*.csv 2>/dev/null | paste -sd, -)
  [ -z "$more_b" ] || args+=(--layertime-batches "$more_b")
  [ ! -f "$out/study/scaling.csv" ] || args+=(--measured "$out/study/scaling.csv")
  [ ! -f "$out/overlap.csv" ] || args+=(--overlap-csv "$out/overlap.csv")
  read -r -a more <<<"${MODEL_ARGS:-}"
  "$py" "$root/bench/scaling_model.py" "${args[@]}" "${more[@]}"
fi
exit 0
