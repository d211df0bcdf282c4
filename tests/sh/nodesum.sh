#!/usr/bin/env bash
# The gradient sum through node-shared memory (train.allreduce = node, the
# default with bucket_mb = 0): each rank's gradient buffer lives in one
# MPI-3 shared window of its node, rank q of the node adds chunk q of every
# buffer in the node's rank order and writes the sum into every buffer.
#   - `ae_testtool nodesum` at P = 2, 3, 4 (oversubscribed), buffers of 1,
#     15, 17 (shorter than the chunks' 16-float alignment), 100003 and
#     1000000 floats: every rank's result is bitwise ((b0 + b1) + b2) + ...
#     in rank order (values over 2^-8 .. 2^8, so another order gives other
#     bits: a reversed order fails this check);
#     ae_testtool also checks the owned sum of the sharded step (each rank's
#     own chunk and the step's scalars in every buffer) and its gather;
#   - training: the log names the path; at P = 2 the checkpoints of node and
#     mpi (one MPI_Allreduce) are bitwise equal (b0 + b1 either way); at P = 3
#     within 1e-5 (another association), and node twice gives the same bits;
#     synchronized batch norm (its batch statistics ride in the same buffer);
#     a global batch of 2 over 3 ranks (an empty slice still joins the sum);
#   - train.shard_optimizer (true; auto, the default, only from 4 MB of
#     parameters, bigger than these models): the node holds the parameters and
#     the optimizer state once and each rank steps its chunk: bitwise the
#     checkpoints of every rank stepping all (P = 2, 3: L2 on chunks that cut
#     layers, tied weights, batch norm, a frozen layer, SGD with momentum);
#     resuming from a mid-run checkpoint gives the bits of the run straight;
#     with clip_norm every rank steps all and the log says why;
#   - with `ulimit -f` below the window's size the node cannot hold it: the
#     log says so and MPI_Allreduce sums, with the same result;
#   - a stalled rank: the others wait in the node barrier and the watchdog
#     ends the job naming it.
# The path across nodes (an allreduce of each chunk between the ranks of one
# local index) is checked in tests/sh/multihost.sh.
. "$(dirname "$0")/common.bash"
TOL=1e-5

for p in 2 3 4; do
  if out=$(mpi "$p" "$TOOL" nodesum 1 15 17 100003 1000000 2>&1); then
    ok "ae_testtool nodesum at P = $p: $(grep -c ': ok$' <<<"$out") checks bitwise the ordered sum"
  else
    bad "ae_testtool nodesum at P = $p: $out"
  fi
done

mkdir -p "$WORK/data"
"$TOOL" mkdata "$WORK/data" 300 60 12
write_cfg dense <<EOC
[model]
encoder = dense(40, elu), dense(8, tanh, name=code)
decoder = dense(40, relu), dense(144, sigmoid)
[loss]
kind = bce
l2 = 1e-4
EOC
write_tied_bnsync

NODE_LINE='gradient allreduce: the [0-9]+ ranks of each node sum through shared memory$'
MPI_LINE='gradient allreduce: MPI_Allreduce \(train.allreduce = node: '
logline() { # logline RUN PATTERN
  if grep -qE "$2" "$WORK/runs/$1/log.txt"; then
    ok "$1: $(grep -m1 -E "$2" "$WORK/runs/$1/log.txt")"
  else
    bad "$1: no log line /$2/: $(grep 'gradient allreduce' "$WORK/runs/$1/log.txt" || echo none)"
  fi
}
SHARD_LINE='optimizer: the node holds the parameters and optimizer state once; each of its [0-9]+ ranks steps'
for cfg in dense bnsync tied; do
  for p in 2 3; do
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p-node" --quiet --set train.shard_optimizer=true
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p-whole" --quiet
    mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p-mpi" --quiet --set train.allreduce=mpi
    logline "$cfg-p$p-node" "$NODE_LINE"
    logline "$cfg-p$p-node" "$SHARD_LINE 1/$p of them"
    if ! grep -qE 'gradient allreduce|optimizer:' "$WORK/runs/$cfg-p$p-mpi/log.txt" &&
       grep -q 'optimizer: every rank steps all parameters (train.shard_optimizer = auto: 0.0[0-9] MB of parameters, below 4 MB)' \
         "$WORK/runs/$cfg-p$p-whole/log.txt"; then
      ok "$cfg-p$p: train.allreduce = mpi logs no node sum; auto steps all of these few parameters on every rank"
    else
      bad "$cfg-p$p: $(grep -hE 'gradient allreduce|optimizer:' "$WORK/runs/$cfg-p$p-mpi/log.txt" "$WORK/runs/$cfg-p$p-whole/log.txt")"
    fi
    bitequal "$cfg P = $p: each rank stepping its chunk vs every rank stepping all" "$cfg-p$p-whole" "$cfg-p$p-node"
    if [ "$p" = 2 ]; then
      bitequal "$cfg P = 2: node vs mpi" "$cfg-p2-mpi" "$cfg-p2-node"
    else
      compare "$cfg P = 3: node vs mpi" "$cfg-p3-mpi" "$cfg-p3-node"
    fi
  done
done
# a frozen first layer, SGD with momentum (one state block), L2 on chunks that cut layers
mpi 3 "$AETRAIN" train "$WORK/dense.ini" --run frozen --quiet --set model.freeze=1 --set optim.kind=sgd \
  --set optim.momentum=0.9 --set optim.lr=0.05 --set train.shard_optimizer=true
mpi 3 "$AETRAIN" train "$WORK/dense.ini" --run frozen-whole --quiet --set model.freeze=1 --set optim.kind=sgd \
  --set optim.momentum=0.9 --set optim.lr=0.05 --set train.shard_optimizer=false
bitequal "frozen layer, SGD momentum, P = 3: chunks vs all" frozen-whole frozen
# clipping by the global norm needs every gradient: every rank steps all, and the log says why
mpi 2 "$AETRAIN" train "$WORK/dense.ini" --run clip --quiet --set optim.clip_norm=0.5 --set train.shard_optimizer=true
logline clip 'optimizer: every rank steps all parameters \(train.shard_optimizer: optim.clip_norm'
mpi 3 "$AETRAIN" train "$WORK/dense.ini" --run dense-p3-node2 --quiet --set train.shard_optimizer=true
# resuming a sharded run from a mid-run checkpoint: the node's copy is filled from the checkpoint
mpi 2 "$AETRAIN" train "$WORK/bnsync.ini" --run resumed --quiet --set train.shard_optimizer=true \
  --set train.checkpoint_steps=7 --set train.max_steps=7 2>/dev/null
mpi 2 "$AETRAIN" train "$WORK/bnsync.ini" --run resumed --quiet --set train.shard_optimizer=true --resume auto \
  2>/dev/null
bitequal "bnsync P = 2, sharded: 7 steps + resume vs 20 straight" bnsync-p2-node resumed
bitequal "dense P = 3: node twice" dense-p3-node dense-p3-node2

tiny=(--set train.batch=2 --set train.max_steps=12)
mpi 3 "$AETRAIN" train "$WORK/dense.ini" --run tiny-node --quiet "${tiny[@]}"
mpi 3 "$AETRAIN" train "$WORK/dense.ini" --run tiny-mpi --quiet "${tiny[@]}" --set train.allreduce=mpi
compare "a global batch of 2 over 3 ranks: node vs mpi" tiny-mpi tiny-node

# no room for the window (a file-size limit of 64 KB, below the node's 2 x 52 KB): MPI_Allreduce
# sums, with the same bits (the checkpoints do not fit under the limit either: the test losses,
# from the final parameters, printed to 9 digits, are compared; TCP, as vader's own segment would
# not fit)
mpi 2 --mca btl self,tcp bash -c 'ulimit -f 64; exec "$@"' _ "$AETRAIN" train "$WORK/dense.ini" --run nofit \
  --quiet --set data.shared=false --set train.on_checkpoint_error=continue 2>"$WORK/nofit.err"
logline nofit "${MPI_LINE}the file-size limit"
test_loss() { sed -n 's/.*"test_loss": \([^,]*\),.*/\1/p' "$WORK/runs/$1/result.json"; }
if [ -n "$(test_loss nofit)" ] && [ "$(test_loss nofit)" = "$(test_loss dense-p2-node)" ]; then
  ok "no room, MPI_Allreduce vs the node sum: test loss $(test_loss nofit) both"
else
  bad "no room, MPI_Allreduce vs the node sum: test loss '$(test_loss nofit)' vs '$(test_loss dense-p2-node)'"
fi

# a stalled rank: the other waits in the node barrier until the watchdog ends the job
printf '[train]\nwatchdog = 3\n' | cat "$WORK/dense.ini" - > "$WORK/stall.ini"
stalled node 'MPI_Barrier\(node gradient sum\)'
finish
