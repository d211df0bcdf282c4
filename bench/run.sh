#!/usr/bin/env bash
# Speed and scaling of aetrain, measured side by side on this machine in one
# run: for each model, the roofline (the step's sgemm calls alone,
# bench/roofline.c), aetrain's whole-step throughput at P = 1 (2 threads),
# P = 1 (1 thread) and P = 2 (1 thread each), two independent P = 1 runs side by side (the
# machine's own ceiling of weak scaling), PyTorch 1.13 on the same model
# (bench/torch_step.py: 1 thread, 2 threads, DDP gloo 2 x 1), and weak
# scaling at P = 2 (batch per rank fixed) for aetrain (also with train.balance: the
# ranks' shares by their speed) and DDP. Prints tables
# of samples/s and of ratios; writes bench/results/{roofline,aetrain,torch,
# summary}.csv and summary.txt. See docs/performance.md.
#
# Usage: bench/run.sh [--quick] [--models LIST|all] [--seconds S] [--rounds R] [--bind core|none]
#   --quick     smoke run of about a minute (simple32 and conv, ~1 s per setting)
#   --models    comma-separated from simple32,stacked,hinton,conv,deepconv (default: all five)
#   --seconds   timed seconds per setting (default 8; quick 1)
#   --rounds    measure every aetrain layout and PyTorch setting R times, the models interleaved
#               round by round; the tables give medians (default 1)
#   --bind      core: every process of 1 thread on a core of its own, a 2-thread one on two
#               (aetrain: mpirun --map-by slot:PE=T --bind-to core; the roofline: taskset;
#               PyTorch: sched_setaffinity), the same for all three; none: the OS places them
#               (default core)
# Environment: AETRAIN (default build/aetrain, built when missing), OPENBLAS_CORETYPE (when set,
# everything runs with it: aetrain keeps a user's setting), MPIRUN_ARGS (more mpirun arguments).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3 # Debian's, with python3-torch; never the first python3 on PATH
all=simple32,stacked,hinton,conv,deepconv
quick=0 models="" secs="" rounds=1 bind=core
usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "$1"; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --models) [ $# -ge 2 ] || usage 2; models=$2; shift ;;
    --seconds) [ $# -ge 2 ] || usage 2; secs=$2; shift ;;
    --rounds) [ $# -ge 2 ] || usage 2; rounds=$2; shift ;;
    --bind) [ $# -ge 2 ] || usage 2; bind=$2; shift ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  models=${models:-simple32,conv} secs=${secs:-1} warm=0.3 roof_s=0.5 cal_s=0.2
else
  models=${models:-$all} secs=${secs:-8} warm=1 roof_s=3 cal_s=0.5
fi
[ "$models" = all ] && models=$all
case $rounds in '' | *[!0-9]* | 0) echo "run.sh: --rounds wants a positive integer, not '$rounds'" >&2; exit 2 ;; esac
case $bind in core | none) ;; *) echo "run.sh: --bind wants core or none, not '$bind'" >&2; exit 2 ;; esac
for m in ${models//,/ }; do
  case $m in simple32 | stacked | hinton | conv | deepconv) ;; *) echo "run.sh: unknown model $m" >&2; exit 2 ;; esac
done
config_of() {
  case $1 in
    hinton) echo "$root/bench/hinton.ini" ;;
    *) echo "$root/configs/mnist_$1.ini" ;;
  esac
}

. "$root/scripts/mpienv.sh"
t_start=$(date +%s)
aetrain=${AETRAIN:-$root/build/aetrain}
if [ ! -x "$aetrain" ]; then
  echo "run.sh: building $aetrain"
  cmake -S "$root" -B "$(dirname "$aetrain")" >/dev/null && cmake --build "$(dirname "$aetrain")" -j"$(nproc)" --target aetrain >/dev/null
fi
work=$(mktemp -d /tmp/aetrain-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
res=$root/bench/results
mkdir -p "$res"
gcc -O2 -std=c11 "$root/bench/roofline.c" -o "$work/roofline" -lopenblas
"$py" "$root/bench/perfutil.py" mkdata "$work/data"
have_torch=1
if ! "$py" -c 'import torch' 2>/dev/null; then
  have_torch=0
  echo "run.sh: no PyTorch for $py (apt-get install -y python3-torch): the PyTorch columns stay empty" >&2
fi

# The aetrain command of one timed run: NAME CONFIG BATCH STEPS THREADS -> the array train_cmd (many
# epochs of the 60000 random training images, max_steps ends the run; no validation split, test
# evaluation only at the end and on 512 images, no checkpoints but the last, no probe)
set_train_cmd() {
  train_cmd=("$aetrain" train "$2" --quiet --run "$1" --set "run.dir=$work/runs" --set "data.dataset=$work/data"
    --set train.epochs=1000000 --set "train.max_steps=$4" --set "train.batch=$3" --set "train.threads=$5"
    --set train.probe=false --set train.checkpoint_epochs=0 --set train.validation=0 --set train.eval_every=0
    --set train.knn=0 ${6:+--set "$6"})
}

# aetrain, whole training steps: NAME CONFIG RANKS THREADS GLOBAL_BATCH STEPS [KEY=VALUE]
#   -> "samples/s allreduce_share core"
ae_run() {
  local tag=$1 cfg=$2 p=$3 t=$4 b=$5 n=$6 placement="--bind-to none"
  [ "$bind" = core ] && placement="--map-by slot:PE=$t --bind-to core"
  set_train_cmd "$tag" "$cfg" "$b" "$n" "$t" "${7:-}"
  # shellcheck disable=SC2086
  if ! mpirun -n "$p" $placement ${MPIRUN_ARGS:-} "${train_cmd[@]}" >"$work/$tag.out" 2>&1; then
    cat "$work/$tag.out" >&2
    echo "run.sh: aetrain failed: $tag" >&2
    return 1
  fi
  "$py" "$root/bench/perfutil.py" run "$work/runs/$tag"
  cp "$work/runs/$tag/run.json" "$work/$tag.run.json"
  rm -rf "$work/runs/$tag"
}

# Two independent aetrain runs at P = 1 x 1 thread side by side, one per core (bound: taskset), no
# MPI between them: NAME CONFIG BATCH STEPS -> "samples/s of both together". With nothing to wait for,
# what they lose against one run alone is what the two cores lose to each other (shared caches,
# memory bandwidth, the host): the ceiling of weak scaling on this machine.
ae_pair() {
  local tag=$1 cfg=$2 b=$3 n=$4 k pin=() pids=()
  for k in 0 1; do
    [ "$bind" = core ] && pin=(taskset -c "$k")
    set_train_cmd "$tag-$k" "$cfg" "$b" "$n" 1
    "${pin[@]}" "${train_cmd[@]}" >"$work/$tag-$k.out" 2>&1 &
    pids+=($!)
  done
  if ! wait "${pids[0]}" || ! wait "${pids[1]}"; then
    cat "$work/$tag-0.out" "$work/$tag-1.out" >&2
    echo "run.sh: aetrain failed: $tag" >&2
    return 1
  fi
  local a b2
  a=$("$py" "$root/bench/perfutil.py" run "$work/runs/$tag-0" | cut -d' ' -f1)
  b2=$("$py" "$root/bench/perfutil.py" run "$work/runs/$tag-1" | cut -d' ' -f1)
  rm -rf "$work/runs/$tag-0" "$work/runs/$tag-1"
  "$py" -c "print('%.6g' % ($a + $b2))"
}

# The OpenBLAS core aetrain runs with (its own choice, or the user's OPENBLAS_CORETYPE); the roofline
# and PyTorch get the same one so that all three use the same sgemm kernels.
core=$(ae_run coreprobe "$(config_of simple32)" 1 1 256 1 | cut -d' ' -f3)
[ -n "$core" ] || exit 1
note=$("$py" -c "import json, sys; print(json.load(open(sys.argv[1])).get('openblas_note', ''))" "$work/coreprobe.run.json")
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  why="OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE set by the user"
  if [ -n "$note" ]; then echo "run.sh: warning: aetrain says: $note" >&2; fi
elif [ -n "$note" ]; then why=$note
else why="OpenBLAS' own choice, which aetrain keeps on this CPU"; fi
echo "OpenBLAS core: aetrain runs with $core ($why); the roofline and PyTorch run with OPENBLAS_CORETYPE=$core"
load=$(cut -d' ' -f1 /proc/loadavg)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $load at the start"
if "$py" -c "import sys; sys.exit(0 if float('$load') > 0.5 else 1)"; then
  echo "run.sh: warning: other jobs are running (load $load): the numbers will be noisy" >&2
fi
nmodels=$(echo "${models//,/ }" | wc -w)
# per model: 3 roofline runs and a calibration once; per round 6 aetrain layouts (~1.3 x secs each:
# P = 1 x 2 threads can be slower) and 4 PyTorch settings (secs + warm-up); ~18 s a round of process
# start-up, data loading and final evaluations
echo "models: $models; $secs s per setting, $rounds round(s), processes bound: $bind; expect about $("$py" -c "print(round($nmodels * ($rounds * (11.5 * $secs + 4 * $warm + 16) + 3.6 * $roof_s + 4) / 60 + 0.1, 1))") min"

echo "model,layout,ranks,threads,batch,core,step_gflop,step_ms,gflops,samples_per_s_bound,peak_n,peak_gflops" >"$res/roofline.csv"
echo "model,layout,ranks,threads_per_rank,batch_per_rank,global_batch,steps,samples_per_s,allreduce_share,openblas_core,round" >"$res/aetrain.csv"
echo "model,setting,procs,threads,batch_per_proc,global_batch,steps,seconds,samples_per_s,coretype,round" >"$res/torch.csv"
# roof CPUS ARGS...: the roofline on the cores CPUS (a taskset list) when processes are bound
roof() {
  local pin=()
  [ "$bind" = core ] && pin=(taskset -c "$1")
  shift
  OPENBLAS_CORETYPE=$core "${pin[@]}" "$work/roofline" -c -s "$roof_s" "$@"
}

# the plain sgemm peak at 1 and 2 threads
roof 0 -t 1 -n peak -p 2048 | awk -F, -v OFS=, '{print $1, "peak", 1, $2, 0, $4, 0, 0, 0, 0, $9, $10}' >>"$res/roofline.csv"
roof 0,1 -t 2 -n peak -p 2048 | awk -F, -v OFS=, '{print $1, "peak", 1, $2, 0, $4, 0, 0, 0, 0, $9, $10}' >>"$res/roofline.csv"

declare -A steps_of batch_of
for r in $(seq 1 "$rounds"); do
  for m in ${models//,/ }; do
    cfg=$(config_of "$m")
    if [ "$r" = 1 ]; then
      B=$(grep -E '^[[:space:]]*batch[[:space:]]*=' "$cfg" | head -1 | sed 's/.*=[[:space:]]*//; s/[[:space:]].*//')
      layers=$("$aetrain" check "$cfg" | "$py" "$root/bench/perfutil.py" layers)
      echo "== $m: batch $B, roofline layers $layers"

      # roofline: P = 1 at 2 and 1 threads on the whole batch; P = 2: two processes at once, 1 thread,
      # half each
      # shellcheck disable=SC2086
      r1=$(roof 0 -t 1 -b "$B" -p 0 -n "$m" $layers)
      # shellcheck disable=SC2086
      r2=$(roof 0,1 -t 2 -b "$B" -p 0 -n "$m" $layers)
      b0=$((B / 2)) b1=$((B - B / 2))
      # shellcheck disable=SC2086
      { roof 0 -t 1 -b "$b0" -p 0 -n "$m" $layers >"$work/ra" & roof 1 -t 1 -b "$b1" -p 0 -n "$m" $layers >"$work/rb" & wait; }
      echo "$r2" | awk -F, -v OFS=, '{print $1, "p1t2", 1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' >>"$res/roofline.csv"
      echo "$r1" | awk -F, -v OFS=, '{print $1, "p1t1", 1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' >>"$res/roofline.csv"
      # the pair's step takes as long as its slower process; the bound is the global batch over that time
      paste -d, "$work/ra" "$work/rb" | awk -F, -v OFS=, -v B="$B" '{ms = $6 > $16 ? $6 : $16;
        print $1, "p2t1", 2, 1, B, $4, $5 + $15, ms, ($5 + $15) / ms * 1e3, B / ms * 1e3, 0, 0}' >>"$res/roofline.csv"
      bound=$(echo "$r1" | cut -d, -f8)

      # aetrain: a short calibration run at P = 1 x 1 thread fixes the step count of every layout
      n0=$("$py" -c "print(max(3, int($cal_s * $bound / $B)))")
      cal=$(ae_run "$m-cal" "$cfg" 1 1 "$B" "$n0" | cut -d' ' -f1)
      [ -n "$cal" ] || exit 1
      steps_of[$m]=$("$py" -c "print(max(5, int($secs * $cal / $B)))")
      batch_of[$m]=$B
    else
      echo "== $m: round $r"
    fi
    B=${batch_of[$m]} n=${steps_of[$m]}
    # p2t1wb: weak, the ranks' shares of each batch by their speed (train.balance)
    for lay in p1t2:1:2:$B p1t1:1:1:$B p2t1:2:1:$B p2t1w:2:1:$((2 * B)) p2t1wb:2:1:$((2 * B)):train.balance=true; do
      IFS=: read -r name p t gb kv <<<"$lay"
      out=$(ae_run "$m-$name" "$cfg" "$p" "$t" "$gb" "$n" "$kv")
      read -r sps share c <<<"$out"
      echo "$m,$name,$p,$t,$((gb / p)),$gb,$n,$sps,$share,$c,$r" >>"$res/aetrain.csv"
      printf '   aetrain %-9s %6d steps  %10.0f samples/s  allreduce %4.1f%%\n' "$name" "$n" "$sps" "$("$py" -c "print(100 * $share)")"
    done
    sps=$(ae_pair "$m-p1t1x2" "$cfg" "$B" "$n")
    [ -n "$sps" ] || exit 1
    echo "$m,p1t1x2,1,1,$B,$B,$n,$sps,0,$core,$r" >>"$res/aetrain.csv"
    printf '   aetrain %-9s %6d steps  %10.0f samples/s  (two independent P = 1 runs side by side)\n' p1t1x2 "$n" "$sps"

    # PyTorch: 1 thread, 2 threads, DDP 2 x 1 (global batch B), DDP 2 x 1 with B per process (weak)
    if [ "$have_torch" = 1 ]; then
      "$py" "$root/bench/torch_step.py" --model "$m" --settings t1,t2,ddp2,ddp2w --seconds "$secs" \
        --warmup "$warm" --coretype "$core" --bind "$bind" 2>"$work/torch.err" | sed "s/\$/,$r/" |
        tee -a "$res/torch.csv" |
        awk -F, '{printf "   pytorch %-9s %6d steps  %10.0f samples/s\n", $2, $7, $9}' || { cat "$work/torch.err" >&2; exit 1; }
    fi
  done
done

{
  echo "aetrain bench/run.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "OpenBLAS core $core ($why) for aetrain, the roofline and PyTorch; load average $load at the start, $(cut -d' ' -f1 /proc/loadavg) at the end"
  echo "$rounds round(s) of $secs s per setting (medians over the rounds); processes bound: $bind"
  "$py" "$root/bench/perfutil.py" summary "$res"
  echo
  echo "took $(($(date +%s) - t_start)) s; CSV files in $res"
} | tee "$res/summary.txt"
