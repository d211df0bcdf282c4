#!/usr/bin/env bash
# Training 4 epochs straight, and 2 epochs then --resume for the rest, give
# bitwise identical parameters and optimizer state; so does resuming from a
# mid-epoch checkpoint (checkpoint_steps).
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 500 100
cat > "$WORK/r.ini" <<EOC
[model]
encoder = dense(32, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
l1_activity = 1e-5
[train]
batch = 50
epochs = 4
validation = 100
probe = false
keep = 100
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
mpi 2 "$AETRAIN" train "$WORK/r.ini" --run straight --quiet
mpi 2 "$AETRAIN" train "$WORK/r.ini" --run split --quiet --set train.epochs=2
mpi 2 "$AETRAIN" train "$WORK/r.ini" --run split --quiet --resume auto
if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/straight")" "$(newest_ckpt "$WORK/runs/split")"); then
  ok "epoch resume: $out"; else bad "epoch resume: $out"; fi
# mid-epoch: checkpoint every 3 steps; resume from the one at step 9 (epoch 2, step 1 of 8)
mpi 2 "$AETRAIN" train "$WORK/r.ini" --run mid --quiet --set train.checkpoint_steps=3 --set train.max_steps=9
mpi 2 "$AETRAIN" train "$WORK/r.ini" --run mid --quiet --resume auto
if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/straight")" "$(newest_ckpt "$WORK/runs/mid")"); then
  ok "mid-epoch resume: $out"; else bad "mid-epoch resume: $out"; fi
finish
