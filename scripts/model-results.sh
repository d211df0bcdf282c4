#!/usr/bin/env bash
# Train configs with several seeds (full schedules, NP ranks) and tabulate the
# final test numbers: the table of docs/models.md.
# Usage: scripts/model-results.sh [-n NP] [-s "0 1 2"] [-o OUTDIR] [-t TAG] [-a "ARGS"] CONFIG...
#   -t TAG   name the rows CONFIG-TAG (a variant of a config)
#   -a ARGS  extra trainer arguments, e.g. "--set model.freeze=2"; {seed} and
#            {out} are replaced by the seed and OUTDIR (a pretrained checkpoint
#            of the same seed: "--set model.pretrained={out}/mnist_stacked-seed{seed}-np2/ckpt/best.aeck")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
np=2 seeds="0 1 2" out="$root/runs/model-results" tag="" extra=""
while getopts "n:s:o:t:a:" opt; do
  case $opt in n) np=$OPTARG ;; s) seeds=$OPTARG ;; o) out=$OPTARG ;; t) tag=-$OPTARG ;; a) extra=$OPTARG ;;
  *) exit 2 ;; esac
done
shift $((OPTIND - 1))
. "$root/scripts/mpienv.sh"
aetrain=${AETRAIN:-$root/build/aetrain}
mkdir -p "$out"
csv="$out/results.csv"
[ -f "$csv" ] || echo "config,seed,ranks,test_loss,test_mse,test_bce,test_acc,probe_acc,knn_acc,code_mean,test_penalty,samples_per_s,steps,seconds" >"$csv"
for cfg in "$@"; do
  name=$(basename "$cfg" .ini)$tag
  for seed in $seeds; do
    run="$name-seed$seed-np$np"
    args=${extra//\{seed\}/$seed}
    args=${args//\{out\}/$out}
    t0=$(date +%s)
    # shellcheck disable=SC2086 # ARGS is split on purpose
    mpirun -n "$np" "$aetrain" train "$cfg" --run "$run" --set "train.seed=$seed" --set "run.dir=$out" --quiet $args
    t1=$(date +%s)
    r="$out/$run/result.json"
    python3 - "$r" "$name" "$seed" "$np" "$((t1 - t0))" >>"$csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda k: "" if r.get(k, -1) == -1 else "%.6g" % r[k]
print(",".join([sys.argv[2], sys.argv[3], sys.argv[4], f("test_loss"), f("test_mse"), f("test_bce"),
                f("test_acc"), f("probe_acc"), f("knn_acc"), f("code_mean"), f("test_penalty"),
                "%.0f" % r["samples_per_s"], str(r["steps"]), sys.argv[5]]))
PY
    tail -n 1 "$csv"
  done
done
python3 - "$csv" <<'PY'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
print("\n| config | seeds | test loss | test MSE | test BCE | accuracy | probe accuracy | 5-NN | code mean | KL | samples/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name in dict.fromkeys(r["config"] for r in rows):
    rs = [r for r in rows if r["config"] == name]
    def m(k, scale=1.0, fmt="%.4f"):
        v = [float(r[k]) * scale for r in rs if r.get(k)]
        return (fmt % st.mean(v)) + (" ± " + fmt % st.stdev(v) if len(v) > 1 else "") if v else "—"
    print(f"| {name} | {len(rs)} | {m('test_loss')} | {m('test_mse')} | {m('test_bce')} | {m('test_acc', 100, '%.2f')} "
          f"| {m('probe_acc', 100, '%.2f')} | {m('knn_acc', 100, '%.2f')} | {m('code_mean')} | {m('test_penalty', 1, '%.2f')} "
          f"| {m('samples_per_s', 1, '%.0f')} |")
PY
