#!/usr/bin/env bash
# Training 4 epochs straight, and 2 epochs then --resume for the rest, give
# bitwise identical parameters, optimizer state and non-trainable state; so
# does resuming from a mid-epoch checkpoint (checkpoint_steps); for a dense
# config and for a conv config with batch norm and a corruption layer.
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
# conv + batch norm (running statistics in the non-trainable state) + masking noise, on 12x12 images
make_data "$WORK/cdata" 300 60 12
cat > "$WORK/c.ini" <<EOC
[model]
encoder = mask(0.2), conv(4, 3, bias=0), bn(act=relu, sync=1), maxpool(2), conv(4, 3, relu, name=code)
decoder = upsample(2), conv(1, 3, sigmoid)
[loss]
kind = bce
[train]
batch = 40
epochs = 4
validation = 60
probe = false
keep = 100
[data]
dataset = $WORK/cdata
[run]
dir = $WORK/runs
EOC
mpi 2 "$AETRAIN" train "$WORK/c.ini" --run cstraight --quiet
mpi 2 "$AETRAIN" train "$WORK/c.ini" --run csplit --quiet --set train.checkpoint_steps=4 --set train.max_steps=10
mpi 2 "$AETRAIN" train "$WORK/c.ini" --run csplit --quiet --resume auto
if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/cstraight")" "$(newest_ckpt "$WORK/runs/csplit")"); then
  ok "conv + bn mid-epoch resume: $out"; else bad "conv + bn mid-epoch resume: $out"; fi
finish
