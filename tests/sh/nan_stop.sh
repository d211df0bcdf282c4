#!/usr/bin/env bash
# Divergence to Inf/NaN ends every rank at the same step with exit code 8
# and one message naming the epoch, the step and (when a gradient is
# non-finite) the first layer at fault; no rank hangs (each run must end in
# 60 s, far below mpi()'s hard limit) and no checkpoint of the diverged
# state is written; the same with the optimizer stepping bucket by bucket,
# and with each rank of the node stepping its chunk (train.shard_optimizer).
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 300 100
cat > "$WORK/n.ini" <<EOC
[model]
encoder = dense(32, relu)
decoder = dense(784, linear)
[loss]
kind = mse
[optim]
kind = sgd
lr = 1e30
[train]
batch = 20
epochs = 5
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC

# run_nan NP NAME ARGS...: sets rc, out, secs
run_nan() {
  local np=$1 name=$2; shift 2
  local t0=$SECONDS
  set +e
  out=$(mpi "$np" "$AETRAIN" train "$WORK/n.ini" --run "$name" --quiet "$@" 2>&1)
  rc=$?
  set -e
  secs=$((SECONDS - t0))
}

# the numbered checkpoints left in a run load and are of steps before STEP
ckpts_before() {
  local run=$1 step=$2 f s
  for f in "$WORK/runs/$run"/ckpt/*.aeck; do
    [ -e "$f" ] || continue
    s=$("$TOOL" info "$f" | sed -n 's/.* step \([0-9]*\) .*/\1/p') || return 1
    [ -n "$s" ] && [ "$s" -lt "$step" ] || { echo "$f: step '${s}'"; return 1; }
  done
}

# 1. an absurd learning rate: Inf at once, in the decoder's gradient
run_nan 2 absurd
msg=$(grep 'aetrain: error:' <<<"$out" || true)
if [ "$rc" -eq 8 ] && [ "$secs" -lt 60 ] && [ "$(wc -l <<<"$msg")" -eq 1 ] &&
  grep -qE 'non-finite (loss|gradient) at epoch 1, step [0-9]+, first in layer dec1 \(lr 1e\+30\)' <<<"$msg"; then
  ok "lr 1e30, 2 ranks: exit 8 in ${secs}s: $msg"
else
  bad "lr 1e30, 2 ranks: exit $rc in ${secs}s, message '$msg'"
  tail -n 20 <<<"$out"
fi
want=$msg
# the same with the node-sharded step: each rank finds the gradient of its chunk non-finite or not,
# and the report names the layer from the whole (gathered) sum
run_nan 2 absurd-s --set train.shard_optimizer=true
msg=$(grep 'aetrain: error:' <<<"$out" || true)
if [ "$rc" -eq 8 ] && [ -n "$msg" ] && [ "$msg" = "$want" ]; then
  ok "lr 1e30, 2 ranks, sharded step: the same message"
else
  bad "lr 1e30, 2 ranks, sharded step: exit $rc, '$msg' (want '$want')"
fi

# 2. slower divergence (SGD with momentum): the same step on 1 and 2 ranks
declare -A step
for p in 1 2; do
  run_nan "$p" "mom$p" --set optim.lr=1e4 --set optim.momentum=0.9
  msg=$(grep 'aetrain: error:' <<<"$out" || true)
  step[$p]=$(sed -n 's/.*non-finite [a-z]* at epoch [0-9]*, step \([0-9]*\).*/\1/p' <<<"$msg")
  if [ "$rc" -eq 8 ] && [ "$secs" -lt 60 ] && [ -n "${step[$p]}" ] && [ "$(wc -l <<<"$msg")" -eq 1 ]; then
    ok "lr 1e4 + momentum, $p rank(s): exit 8 in ${secs}s: $msg"
  else
    bad "lr 1e4 + momentum, $p rank(s): exit $rc in ${secs}s, message '$msg'"
    tail -n 20 <<<"$out"
  fi
  if why=$(ckpts_before "mom$p" "${step[$p]:-0}"); then ok "no checkpoint of the diverged state ($p rank(s))"
  else bad "a checkpoint at or after the failing step ($p rank(s)): $why"; fi
done
if [ -n "${step[1]}" ] && [ "${step[1]}" = "${step[2]}" ]; then ok "1 and 2 ranks stop at the same step ${step[1]}"
else bad "1 rank stopped at step '${step[1]}', 2 ranks at '${step[2]}'"; fi

# 3. the same divergence with the bucketed allreduce, each bucket stepped as its sum arrives
# on the communication thread (train.bucket_step): the same step and message
run_nan 2 mom-b --set optim.lr=1e4 --set optim.momentum=0.9 --set train.bucket_mb=1e-6 --set train.comm_thread=true
msg=$(grep 'aetrain: error:' <<<"$out" || true)
s=$(sed -n 's/.*non-finite [a-z]* at epoch [0-9]*, step \([0-9]*\).*/\1/p' <<<"$msg")
if [ "$rc" -eq 8 ] && [ "$secs" -lt 60 ] && [ "$s" = "${step[2]}" ] && [ "$(wc -l <<<"$msg")" -eq 1 ] &&
  grep -q "stepped as soon as its sum is in" "$WORK/runs/mom-b/log.txt"; then
  ok "per-bucket step: exit 8 in ${secs}s at step $s: $msg"
else
  bad "per-bucket step: exit $rc in ${secs}s at step '$s' (want ${step[2]}): '$msg'"
  tail -n 20 <<<"$out"
fi
if why=$(ckpts_before mom-b "${step[2]:-0}"); then ok "no checkpoint of the diverged state (buckets)"
else bad "a checkpoint at or after the failing step (buckets): $why"; fi

# 4. the node-sharded step (train.shard_optimizer = true: each rank checks its chunk and the node
# agrees before any rank steps): the same step and message as every rank stepping all, at P = 2, 3
for p in 2 3; do
  run_nan "$p" "mom-w$p" --set optim.lr=1e4 --set optim.momentum=0.9 --set train.shard_optimizer=false
  want=$(grep 'aetrain: error:' <<<"$out" || true)
  run_nan "$p" "mom-s$p" --set optim.lr=1e4 --set optim.momentum=0.9 --set train.shard_optimizer=true
  msg=$(grep 'aetrain: error:' <<<"$out" || true)
  if [ "$rc" -eq 8 ] && [ "$secs" -lt 60 ] && [ -n "$msg" ] && [ "$msg" = "$want" ] &&
    grep -q "each of its $p ranks steps 1/$p of them" "$WORK/runs/mom-s$p/log.txt"; then
    ok "sharded step, $p ranks: exit 8 in ${secs}s, the same message: $msg"
  else
    bad "sharded step, $p ranks: exit $rc in ${secs}s: '$msg', every rank stepping all: '$want'"
    tail -n 20 <<<"$out"
  fi
done
finish
