#!/usr/bin/env bash
# Gradient accumulation ([train] accum, micro_batch): each step's global
# batch runs as k global micro-batches, one forward + backward pass each on
# every rank, then one allreduce and one optimizer step.
# - Without batch statistics the maths is that of accum = 1: a dense
#   autoencoder with input noise, dropout, L1 activity and L2 gives the same
#   parameters after 20 steps (within 1e-5) for P = 1 accum 1, P = 1
#   accum 4, P = 2 accum 2 and P = 3 accum 2 (batch 26 and the last partial
#   batch of 16 are not multiples of 3), and the same training loss (the
#   step's loss adds up over the passes).
# - micro_batch = 7 at P = 2 derives accum 2: bitwise the explicit accum 2.
# - Batch norm with sync = 1 normalizes over the pass's global micro-batch,
#   the same samples for every P: P = 1, 2, 3 at accum 2 agree (parameters
#   and running statistics), and all equal deterministic mode with
#   micro_shards = 2 on one rank (which normalizes per piece, the same
#   pieces); accum 2 differs from accum 1 (the statistics change).
# - KL sparsity (mean activations reduced over the micro-batch): P = 1 and
#   P = 2 at accum 2 agree, and equal deterministic micro_shards = 2.
# - bucket_mb > 0 with accum 3 (buckets start in the last pass only) equals
#   bucket_mb = 0.
# - aetrain check -n P reports the smaller activation memory of a pass.
# - config errors: accum 0, accum with micro_batch, accum or micro_batch
#   with deterministic; a resume with another accum warns, naming the key.
. "$(dirname "$0")/common.bash"
TOL=1e-5
mkdir -p "$WORK/data"
"$TOOL" mkdata "$WORK/data" 300 60 12

cat > "$WORK/base.ini" <<EOC
[optim]
kind = adam
lr = 1e-3
[train]
batch = 26
epochs = 3
max_steps = 20
validation = 50
probe = false
seed = 11
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
cat > "$WORK/dense.ini" <<EOC
include = base.ini
[model]
encoder = gauss(0.3), dense(40, relu), dropout(0.2), dense(12, tanh, name=code)
decoder = dense(40, elu), dense(144, sigmoid)
[loss]
kind = bce
l1_activity = 1e-4
l2 = 1e-4
EOC
cat > "$WORK/bnsync.ini" <<EOC
include = base.ini
[model]
encoder = gauss(0.1), conv(4, 3, bias=0), bn(act=relu, sync=1), maxpool(2),
          conv(3, 3, bias=0), bn(act=relu, sync=1, name=code)
decoder = conv(4, 3, bias=0), bn(act=relu, sync=1), upsample(2), conv(1, 3, sigmoid)
[loss]
kind = bce
EOC
cat > "$WORK/kl.ini" <<EOC
include = base.ini
[model]
encoder = dense(40, relu), dense(12, sigmoid, name=code)
decoder = dense(144, sigmoid)
[loss]
kind = bce
kl_sparsity = 0.05
kl_target = 0.1
EOC

# train CFG P RUN [--set ...]
train() {
  local cfg=$1 p=$2 run=$3; shift 3
  mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$run" --quiet "$@"
}
ckpt() { newest_ckpt "$WORK/runs/$1"; }

compare() { # compare LABEL RUN_A RUN_B: params and state within TOL
  local out
  if out=$("$TOOL" compare "$(ckpt "$2")" "$(ckpt "$3")" "$TOL"); then ok "$1: $out"; else bad "$1: $out"; fi
}
differ() { # differ LABEL RUN_A RUN_B: NOT within TOL (the setting changes the maths)
  local out
  if out=$("$TOOL" compare "$(ckpt "$2")" "$(ckpt "$3")" "$TOL"); then bad "$1: equal: $out"; else ok "$1: $out"; fi
}
train_loss() { awk -F, 'NR == 2 { print $3 }' "$WORK/runs/$1/metrics.csv"; }

# ---- dense: accum changes nothing but float association
train dense 1 d-p1-a1
train dense 1 d-p1-a4 --set train.accum=4
train dense 2 d-p2-a2 --set train.accum=2
train dense 3 d-p3-a2 --set train.accum=2
compare "dense P=1 accum 4 vs P=1 accum 1" d-p1-a1 d-p1-a4
compare "dense P=2 accum 2 vs P=1 accum 1" d-p1-a1 d-p2-a2
compare "dense P=3 accum 2 vs P=1 accum 1" d-p1-a1 d-p3-a2
if grep -q "gradient accumulation: accum = 4: 4 global micro-batches of <= 7 samples per step, <= 7 per rank" \
  "$WORK/runs/d-p1-a4/log.txt"; then ok "log names accum 4 and its passes"
else bad "no accumulation line in the log: $(grep -i accum "$WORK/runs/d-p1-a4/log.txt")"; fi
la=$(train_loss d-p1-a1) lb=$(train_loss d-p1-a4)
if awk -v a="$la" -v b="$lb" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-5 * a) }'; then
  ok "epoch-1 train loss: accum 1 $la, accum 4 $lb"
else bad "epoch-1 train loss: accum 1 '$la', accum 4 '$lb'"; fi

# ---- micro_batch derives accum (26 / (2 x 7) -> 2 passes of <= 7 per rank)
train dense 2 d-p2-mb7 --set train.micro_batch=7
if "$TOOL" bitequal "$(ckpt d-p2-a2)" "$(ckpt d-p2-mb7)"; then ok "P=2 micro_batch 7 is bitwise accum 2"
else bad "P=2 micro_batch 7 differs from accum 2"; fi
if grep -q "accum = 2 (micro_batch = 7)" "$WORK/runs/d-p2-mb7/log.txt"; then ok "log: accum = 2 (micro_batch = 7)"
else bad "log of micro_batch 7: $(grep -i accum "$WORK/runs/d-p2-mb7/log.txt")"; fi

# ---- batch norm, sync = 1: the micro-batch's statistics, the same for every P
for p in 1 2 3; do train bnsync "$p" b-p$p-a2 --set train.accum=2; done
train bnsync 1 b-p1-a1
train bnsync 1 b-det2 --set train.deterministic=true --set train.micro_shards=2
compare "bn sync P=2 accum 2 vs P=1 accum 2" b-p1-a2 b-p2-a2
compare "bn sync P=3 accum 2 vs P=1 accum 2" b-p1-a2 b-p3-a2
compare "bn sync P=3 accum 2 vs deterministic micro_shards 2 (P=1)" b-det2 b-p3-a2
differ "bn sync accum 2 vs accum 1 (per micro-batch statistics)" b-p1-a1 b-p1-a2

# ---- KL sparsity: the mean activations over the micro-batch, with SGD_OPT (common.bash; with Adam:
# 1e-6 to 1.2e-5 of the largest parameter between P = 1 and 2 with seed 11, depending on the
# sigmoid's last bits)
train kl 1 k-p1-a1 "${SGD_OPT[@]}"
train kl 1 k-p1-a2 --set train.accum=2 "${SGD_OPT[@]}"
train kl 2 k-p2-a2 --set train.accum=2 "${SGD_OPT[@]}"
train kl 1 k-det2 --set train.deterministic=true --set train.micro_shards=2 "${SGD_OPT[@]}"
compare "kl P=2 accum 2 vs P=1 accum 2" k-p1-a2 k-p2-a2
compare "kl P=2 accum 2 vs deterministic micro_shards 2 (P=1)" k-det2 k-p2-a2
differ "kl accum 2 vs accum 1 (per micro-batch means)" k-p1-a1 k-p1-a2

# ---- the bucketed allreduce starts its buckets in the last pass only
for mb in 0 1e-6; do
  train dense 3 d-p3-a3-b$mb --set train.accum=3 --set train.bucket_mb=$mb
  train bnsync 2 b-p2-a3-b$mb --set train.accum=3 --set train.bucket_mb=$mb
done
compare "dense P=3 accum 3: bucket_mb 1e-6 vs 0" d-p3-a3-b0 d-p3-a3-b1e-6
compare "bn sync P=2 accum 3: bucket_mb 1e-6 vs 0" b-p2-a3-b0 b-p2-a3-b1e-6
compare "dense P=3 accum 3 (buckets) vs P=1 accum 1" d-p1-a1 d-p3-a3-b1e-6

# ---- aetrain check: activations of one pass
acts() { # acts [--set ...]: the activations' MiB of check's memory line at P = 2
  "$AETRAIN" check "$WORK/bnsync.ini" -n 2 "$@" | sed -n 's/^memory per rank .* activations \([0-9.]*\),.*/\1/p'
}
a1=$(acts) a4=$(acts --set train.micro_batch=4)
line=$("$AETRAIN" check "$WORK/bnsync.ini" -n 2 --set train.micro_batch=4 | grep "^memory per rank")
if [[ $line == *"(batch 13 per rank in 4 accumulation passes of <= 4)"* ]] &&
  awk -v a="$a1" -v b="$a4" 'BEGIN { exit !(b > 0 && b < a) }'; then
  ok "check -n 2: activations $a1 MiB, with micro_batch 4 $a4 MiB: $line"
else bad "check -n 2: activations '$a1' vs '$a4' MiB: $line"; fi

# ---- config errors (exit 3, naming the keys) and a resume with another accum
expect_fail 3 "\[train\] accum: 0 is out of range" "$AETRAIN" check "$WORK/dense.ini" --set train.accum=0
expect_fail 3 "\[train\] accum: 2 together with \[train\] micro_batch = 4" \
  mpi 2 "$AETRAIN" train "$WORK/dense.ini" --set train.accum=2 --set train.micro_batch=4
expect_fail 3 "\[train\] accum: 2 does not combine with \[train\] deterministic = true: micro_shards already bounds" \
  mpi 2 "$AETRAIN" train "$WORK/dense.ini" --set train.accum=2 --set train.deterministic=true
expect_fail 3 "\[train\] micro_batch: 4 does not combine with \[train\] deterministic" \
  "$AETRAIN" check "$WORK/dense.ini" --set train.micro_batch=4 --set train.deterministic=true
expect_fail 3 "\[train\] accum: 27 is more than batch = 26" "$AETRAIN" check "$WORK/dense.ini" --set train.accum=27
train dense 2 d-p2-a2 --resume auto --set train.accum=4 --set train.max_steps=24
if grep -q "warning: resuming with settings that differ from the checkpoint's config, first train.accum" \
  "$WORK/runs/d-p2-a2/log.txt" && grep -q "resumed from" "$WORK/runs/d-p2-a2/log.txt" &&
  [ -n "$(ls "$WORK"/runs/d-p2-a2/ckpt/ckpt-s0000000024-*)" ]; then
  ok "resume with accum 4 over accum 2: a warning naming train.accum, trained on to step 24"
else bad "resume with another accum: $(grep -iE "warn|resum" "$WORK/runs/d-p2-a2/log.txt")"; fi
finish
