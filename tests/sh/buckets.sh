#!/usr/bin/env bash
# The bucketed gradient allreduce (train.bucket_mb > 0: buckets of whole
# layers started during backward, the rest after it) computes the same sums
# as the one allreduce after backward (bucket_mb = 0), up to float
# association: the checkpoints after 20 steps agree within 1e-5 at P = 2
# and 3, for a dense autoencoder with tied weights (a decoder layer adds
# into an encoder layer's gradient, so that bucket may start only after the
# encoder layer), and a conv autoencoder with synchronized batch norm
# (blocking reductions in forward and backward between the nonblocking
# ones; batch statistics in the aux floats). Bucket sizes: one float (a
# bucket per layer) and 0.01 MB (several layers per bucket). Also a global
# batch of 2 over 3 ranks (an empty slice still starts every bucket).
# Each bucketed case runs twice: the sums driven by MPI_Testall between
# layers (train.comm_thread = false), and queued for a communication thread
# that runs them with blocking MPI_Allreduce (true; the log says which mode
# ran). The per-bucket optimizer step gives the bits of one step after
# every sum. A stalled rank ends the job through the watchdog in both modes.
. "$(dirname "$0")/common.bash"
TOL=1e-5
mkdir -p "$WORK/data"
"$TOOL" mkdata "$WORK/data" 300 60 12

write_tied_bnsync

# the mode a bucketed run used, from its log line
MODE_TESTALL='buckets of >= .* MB started during backward, driven by MPI_Testall between layers$'
MODE_THREAD='buckets of >= .* MB started during backward, summed on a communication thread$'
check_mode() { # check_mode RUN PATTERN
  if grep -qE "gradient allreduce: [0-9]+ $2" "$WORK/runs/$1/log.txt"; then
    ok "$1: $(grep -m1 'gradient allreduce' "$WORK/runs/$1/log.txt")"
  else
    bad "$1: no log line /$2/: $(grep 'gradient allreduce' "$WORK/runs/$1/log.txt" || true)"
  fi
}

# bucketed CFG P MB RUN B0 [--set ...]: a bucketed run in both modes (RUN-t the thread's), each
# checked for its mode and compared with the run B0 (bucket_mb = 0)
bucketed() {
  local cfg=$1 p=$2 mb=$3 run=$4 b0=$5
  shift 5
  mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$run" --quiet "$@" --set train.bucket_mb=$mb \
    --set train.comm_thread=false
  mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$run-t" --quiet "$@" --set train.bucket_mb=$mb \
    --set train.comm_thread=true
  check_mode "$run" "$MODE_TESTALL"
  check_mode "$run-t" "$MODE_THREAD"
  compare "$run: bucket_mb $mb vs 0" "$b0" "$run"
  compare "$run-t: bucket_mb $mb on the communication thread vs 0" "$b0" "$run-t"
}

for cfg in tied bnsync; do
  for p in 2 3; do
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p-b0" --quiet --set train.bucket_mb=0
    for mb in 1e-6 0.01; do
      bucketed "$cfg" "$p" "$mb" "$cfg-p$p-b$mb" "$cfg-p$p-b0"
    done
  done
done

tiny=(--set train.batch=2 --set train.max_steps=12)
mpi 3 "$AETRAIN" train "$WORK/tied.ini" --run tiny-b0 --quiet "${tiny[@]}" --set train.bucket_mb=0
bucketed tied 3 1e-6 tiny-b1e-6 tiny-b0 "${tiny[@]}" # an empty slice

# train.bucket_step (default true): each bucket's parameters are stepped as soon as its sum is in,
# while the later buckets are summed; false: one optimizer step after every sum. The same sums and
# elementwise updates: the checkpoints (parameters, optimizer state, batch-norm state) are bitwise
# equal, with L2 and tied weights, and with synchronized batch norm. Only on the communication
# thread: with MPI_Testall the sums do not move while the optimizer steps, and the log says so.
STEP_ON='optimizer: each bucket.s parameters stepped as soon as its sum is in'
STEP_OFF='optimizer: one step after every sum is in \(optim.clip_norm'
STEP_TESTALL='optimizer: one step after every sum is in \(train.bucket_step needs the communication thread'
for cfg in tied bnsync; do
  for p in 2 3; do
    run="$cfg-p$p-b1e-6"
    if grep -qE "$STEP_TESTALL" "$WORK/runs/$run/log.txt"; then
      ok "$run (MPI_Testall): $(grep -m1 optimizer: "$WORK/runs/$run/log.txt")"
    else
      bad "$run (MPI_Testall): optimizer log lines: $(grep optimizer: "$WORK/runs/$run/log.txt" || true)"
    fi
    run="$cfg-p$p-b1e-6-t"
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$run-whole" --quiet --set train.bucket_mb=1e-6 \
      --set train.comm_thread=true --set train.bucket_step=false
    if grep -qE "$STEP_ON" "$WORK/runs/$run/log.txt" && ! grep -q "optimizer:" "$WORK/runs/$run-whole/log.txt"; then
      ok "$run: the log says the optimizer steps each bucket; bucket_step = false says nothing"
    else
      bad "$run: optimizer log lines: $(grep -h optimizer: "$WORK/runs/$run/log.txt" "$WORK/runs/$run-whole/log.txt")"
    fi
    bitequal "$run: each bucket stepped as its sum arrives vs one step after every sum" "$run-whole" "$run"
  done
done
# clipping by the global norm needs every gradient: one step after every sum, and the log says why
mpi 2 "$AETRAIN" train "$WORK/tied.ini" --run clip-b1e-6 --quiet --set train.bucket_mb=1e-6 --set optim.clip_norm=0.5 \
  --set train.comm_thread=true
if grep -qE "$STEP_OFF" "$WORK/runs/clip-b1e-6/log.txt"; then
  ok "clip_norm: $(grep -m1 optimizer: "$WORK/runs/clip-b1e-6/log.txt")"
else
  bad "clip_norm: optimizer log lines: $(grep optimizer: "$WORK/runs/clip-b1e-6/log.txt" || true)"
fi

# a stalled rank: the others wait in the bucketed allreduce and the watchdog ends the job
cat "$WORK/tied.ini" > "$WORK/stall.ini"
printf '[train]\nwatchdog = 3\nbucket_mb = 1e-6\n' >> "$WORK/stall.ini"
stalled MPI_Testall 'MPI_(Waitall|Testall|Iallreduce)\(sum\)' --set train.comm_thread=false
stalled thread "the wait for the communication thread's MPI_Allreduce\(sum\)" --set train.comm_thread=true

# the per-step breakdown: total and exposed (after backward) allreduce shares; with the thread the
# total is the thread's time in MPI_Allreduce before the wait plus the wait
for run in tied-p2-b1e-6 tied-p2-b1e-6-t; do
  csv="$WORK/runs/$run/metrics.csv"
  if head -n 1 "$csv" | grep -q ',allreduce_frac,.*,allreduce_exposed_frac,wait_frac$' &&
    awk -F, 'NR > 1 && ($12 < 0 || $14 < 0 || $14 > $12 + 1e-4) { exit 1 }' "$csv"; then
    ok "$run: metrics.csv has allreduce_frac >= allreduce_exposed_frac >= 0"
  else
    bad "$run: metrics.csv allreduce columns: $(cat "$csv")"
  fi
done
finish
