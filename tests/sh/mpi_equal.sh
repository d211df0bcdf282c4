#!/usr/bin/env bash
# P = 1, 2, 3 ranks give the same parameters after 20 steps (float summation
# order is the only difference): a global batch of 64 that 3 does not
# divide, a last partial batch of 52, L1 activity and L2 penalties; and a
# classifier with SGD Nesterov, clipping, warm-up and cosine decay.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 200
cat > "$WORK/ae.ini" <<EOC
[model]
encoder = dense(64, relu), dense(16, tanh, name=code)
decoder = dense(64, elu), dense(784, sigmoid)
[loss]
kind = bce
l1_activity = 1e-4
l2 = 1e-4
[optim]
kind = adam
lr = 1e-3
[train]
batch = 64
epochs = 3
max_steps = 20
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
cat > "$WORK/cls.ini" <<EOC
[model]
type = classifier
init = he_normal
encoder = dense(48, elu), dense(24, relu)
head = dense(10, softmax)
[loss]
kind = ce
[optim]
kind = sgd
lr = 0.05
momentum = 0.9
nesterov = true
clip_norm = 1.0
[schedule]
kind = cosine
warmup_epochs = 0.5
[train]
batch = 64
epochs = 3
max_steps = 20
validation = 100
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
for cfg in ae cls; do
  for p in 1 2 3; do
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p" --quiet
  done
  for p in 2 3; do
    if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/$cfg-p1")" "$(newest_ckpt "$WORK/runs/$cfg-p$p")" 1e-5); then
      ok "$cfg P=1 vs P=$p: $out"
    else
      bad "$cfg P=1 vs P=$p: $out"
    fi
  done
done
# one process without mpirun (MPI singleton) computes the same
"$AETRAIN" train "$WORK/ae.ini" --run ae-single --quiet
if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/ae-p1")" "$(newest_ckpt "$WORK/runs/ae-single")" 1e-5); then
  ok "ae P=1 vs no mpirun: $out"
else
  bad "ae P=1 vs no mpirun: $out"
fi
# a global batch of 2 over 3 ranks: one rank has an empty slice every step and still joins the allreduce
for p in 1 3; do
  mpi "$p" "$AETRAIN" train "$WORK/ae.ini" --run tiny-p$p --quiet --set train.batch=2 --set train.max_steps=12
done
if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/tiny-p1")" "$(newest_ckpt "$WORK/runs/tiny-p3")" 1e-5); then
  ok "batch 2, P=1 vs P=3 (an empty slice): $out"
else
  bad "batch 2, P=1 vs P=3 (an empty slice): $out"
fi
finish
