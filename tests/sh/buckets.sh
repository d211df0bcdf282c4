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
. "$(dirname "$0")/common.bash"
TOL=1e-5
mkdir -p "$WORK/data"
"$TOOL" mkdata "$WORK/data" 300 60 12

# write_cfg NAME < model-and-loss sections
write_cfg() {
  { cat; cat <<EOC
[optim]
kind = adam
lr = 2e-3
[train]
batch = 25
epochs = 3
max_steps = 20
validation = 50
probe = false
seed = 7
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
  } > "$WORK/$1.ini"
}

write_cfg tied <<EOC
[model]
encoder = dense(40, elu, name=e1), dense(20, relu, name=e2), dense(8, tanh, name=code)
decoder = dense(20, relu), dense(40, elu, tied=e2), dense(144, sigmoid, tied=e1)
[loss]
kind = bce
l2 = 1e-4
EOC
write_cfg bnsync <<EOC
[model]
encoder = conv(4, 3, bias=0), bn(act=relu, sync=1), maxpool(2),
          conv(8, 3, bias=0), bn(act=relu, sync=1, name=code)
decoder = conv(4, 3, bias=0), bn(act=relu, sync=1), upsample(2), conv(1, 3, sigmoid)
[loss]
kind = bce
EOC

compare() { # compare LABEL RUN_A RUN_B
  local out
  if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/$2")" "$(newest_ckpt "$WORK/runs/$3")" "$TOL"); then
    ok "$1: $out"
  else
    bad "$1: $out"
  fi
}

for cfg in tied bnsync; do
  for p in 2 3; do
    for mb in 0 1e-6 0.01; do
      mpi "$p" "$AETRAIN" train "$WORK/$cfg.ini" --run "$cfg-p$p-b$mb" --quiet --set train.bucket_mb=$mb
    done
    compare "$cfg P=$p: bucket_mb 1e-6 vs 0" "$cfg-p$p-b0" "$cfg-p$p-b1e-6"
    compare "$cfg P=$p: bucket_mb 0.01 vs 0" "$cfg-p$p-b0" "$cfg-p$p-b0.01"
  done
done

for mb in 0 1e-6; do
  mpi 3 "$AETRAIN" train "$WORK/tied.ini" --run "tiny-b$mb" --quiet --set train.batch=2 --set train.max_steps=12 \
    --set train.bucket_mb=$mb
done
compare "batch 2, P=3 (an empty slice): bucket_mb 1e-6 vs 0" tiny-b0 tiny-b1e-6

# a stalled rank: the others wait in the bucketed allreduce and the watchdog ends the job
cat "$WORK/tied.ini" > "$WORK/stall.ini"
printf '[train]\nwatchdog = 3\nbucket_mb = 1e-6\n' >> "$WORK/stall.ini"
set +e
out=$(AE_FAULT=stall:1:5 mpi 2 -x AE_FAULT "$AETRAIN" train "$WORK/stall.ini" --run stall --quiet 2>&1)
rc=$?
set -e
if [ "$rc" -ne 0 ] && grep -qE "waited [0-9]+ s in MPI_(Waitall|Testall|Iallreduce)\(sum\) at step 5" <<<"$out"; then
  ok "stalled rank, bucketed allreduce: exit $rc: $(grep -E -m1 waited <<<"$out")"
else
  bad "stalled rank, bucketed allreduce: exit $rc: $out"
fi

# the per-step breakdown: total and exposed (after backward) allreduce shares
csv="$WORK/runs/tied-p2-b1e-6/metrics.csv"
if head -n 1 "$csv" | grep -q ',allreduce_frac,.*,allreduce_exposed_frac$' &&
  awk -F, 'NR > 1 && ($12 < 0 || $14 < 0 || $14 > $12 + 1e-4) { exit 1 }' "$csv"; then
  ok "metrics.csv has allreduce_frac >= allreduce_exposed_frac >= 0"
else
  bad "metrics.csv allreduce columns: $(cat "$csv")"
fi
finish
