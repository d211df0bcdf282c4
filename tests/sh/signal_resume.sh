#!/usr/bin/env bash
# SIGUSR1 to mpirun (which forwards it to the ranks) soon after a 1500-step
# run has started training (a 784-256-784 net: ~1 ms a step here, so the
# signal lands mid-run on a quiet machine too): every rank stops after the same step, rank 0 checkpoints,
# the job exits 75 and says so; `--resume auto` then finishes with exit 0
# and a final checkpoint bitwise equal to the uninterrupted run's. The same
# interrupted run resumed with 3 ranks instead of 2 finishes too and matches
# within 1e-5 (float summation order only). The encoder is sigmoid, not
# relu, on purpose: with relu a pre-activation near 0 flips between the two
# rank counts and P=2 vs P=3 differ by ~1e-2 after 1100 steps (4e-7 after
# 800), while sigmoid stays ~1e-6 after 1500.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 100
cat > "$WORK/s.ini" <<EOC
[model]
encoder = dense(256, sigmoid)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 20
epochs = 100
max_steps = 1500
validation = 100
probe = false
threads = 1
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
STEPS=1500

mpi 2 "$AETRAIN" train "$WORK/s.ini" --run straight --quiet

# the interrupted run: in the background, signalled once it has started training
mpi 2 "$AETRAIN" train "$WORK/s.ini" --run sig --quiet >"$WORK/sig.out" 2>&1 &
job=$!
log=$WORK/runs/sig/log.txt
for ((i = 0; i < 3000; i++)); do # wait (at most 60 s) for training to start
  grep -q '^.*model: ' "$log" 2>/dev/null && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.02
done
sleep 0.2
# $job is the subshell running mpi(), which runs timeout, which runs mpirun
mpirun_pid=
for t in $(pgrep -P "$job" || true); do
  mpirun_pid=$(pgrep -P "$t" -x mpirun || true)
  [ -n "$mpirun_pid" ] && break
done
if [ -n "$mpirun_pid" ]; then kill -USR1 "$mpirun_pid"; fi
set +e
wait "$job"
rc=$?
set -e
stopped=$(sed -n 's/.*stopped by signal after step \([0-9]*\): checkpoint written in .*/\1/p' "$log" | tail -n 1)
if [ -z "$mpirun_pid" ]; then
  bad "the run ended before it could be signalled (exit $rc)"
elif [ "$rc" -eq 75 ] && [ -n "$stopped" ] && grep -q "error: stopped by a signal at step $stopped; checkpointed in" "$WORK/sig.out"; then
  ok "SIGUSR1 to mpirun: exit 75, stopped after step $stopped of $STEPS, said so on stderr and in log.txt"
else
  bad "SIGUSR1 to mpirun: exit $rc, stopped after step '${stopped}'"
  tail -n 20 "$WORK/sig.out"
fi
ck=$(newest_ckpt "$WORK/runs/sig" 2>/dev/null || true)
if [ -n "$stopped" ] && [ "$stopped" -lt "$STEPS" ] && [ -n "$ck" ] &&
  info=$("$TOOL" info "$ck") && grep -q " step $stopped " <<<"$info"; then
  ok "the newest checkpoint is of step $stopped: $(basename "$ck")"
else
  bad "no checkpoint of the step the run stopped at ('${stopped}'): '${ck}'"
fi
cp -r "$WORK/runs/sig" "$WORK/runs/sig3"

# resume with the same rank count: bitwise the uninterrupted run
set +e
out=$(mpi 2 "$AETRAIN" train "$WORK/s.ini" --run sig --quiet --resume auto 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] && grep -q "resumed from .* step $stopped\$" "$log"; then
  ok "--resume auto (2 ranks) from step $stopped: exit 0"
else
  bad "--resume auto (2 ranks): exit $rc"
  echo "$out" | tail -n 20
fi
if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/straight")" "$(newest_ckpt "$WORK/runs/sig")"); then
  ok "signal + resume vs uninterrupted: $out"
else
  bad "signal + resume vs uninterrupted: $out"
fi

# resume with 3 ranks: same result up to summation order
set +e
out=$(mpi 3 "$AETRAIN" train "$WORK/s.ini" --run sig3 --quiet --resume auto 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ]; then ok "--resume auto with 3 ranks from a 2-rank checkpoint: exit 0"
else
  bad "--resume auto with 3 ranks: exit $rc"
  echo "$out" | tail -n 20
fi
if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/straight")" "$(newest_ckpt "$WORK/runs/sig3")" 1e-5); then
  ok "P=2 interrupted, P=3 resumed vs P=2 uninterrupted: $out"
else
  bad "P=2 interrupted, P=3 resumed vs P=2 uninterrupted: $out"
fi
finish
