#!/usr/bin/env bash
# [train] target_loss: training stops at the end of the first epoch whose validation loss (the
# training loss without a validation split) is at or below the target; result.json records the
# epoch, the step and the time to it, the same epoch for P = 1 and 2 (the watched loss is reduced
# across ranks); a target never reached trains to the end and says so.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 100
cat >"$WORK/t.ini" <<EOC
[model]
encoder = dense(32, relu), dense(8, tanh, name=code)
decoder = dense(32, relu), dense(784, sigmoid)
[loss]
kind = bce
[optim]
kind = adam
lr = 3e-3
[train]
batch = 50
epochs = 6
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
# column COL of epoch E's row of a run's metrics.csv
metric() { awk -F, -v e="$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i } $1 == e { print $k }' \
  "$WORK/runs/$1/metrics.csv"; }

mpi 1 "$AETRAIN" train "$WORK/t.ini" --run full --quiet
v2=$(metric full 2 val_loss) v3=$(metric full 3 val_loss) t2=$(metric full 2 train_loss) t3=$(metric full 3 train_loss)
target=$(awk -v a="$v2" -v b="$v3" 'BEGIN { printf "%.9g", (a + b) / 2 }')
ttarget=$(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.9g", (a + b) / 2 }')
if awk -v a="$v2" -v b="$v3" 'BEGIN { exit !(b < a) }'; then
  ok "validation loss falls from epoch 2 ($v2) to 3 ($v3): target $target"
else
  bad "validation loss does not fall from epoch 2 ($v2) to 3 ($v3)"
fi

for p in 1 2; do
  mpi "$p" "$AETRAIN" train "$WORK/t.ini" --run "t$p" --quiet --set train.target_loss="$target"
  r=$WORK/runs/t$p/result.json
  ep=$(json_num "$r" target_epoch) st=$(json_num "$r" target_step) steps=$(json_num "$r" steps)
  tt=$(json_num "$r" time_to_target_s) tr=$(json_num "$r" train_time_to_target_s)
  if [ "$ep" = 3 ] && [ "$st" = 30 ] && [ "$steps" = 30 ] &&
    awk -v a="$tt" -v b="$tr" 'BEGIN { exit !(a > 0 && b > 0 && b <= a) }' &&
    grep -q "target reached: validation loss .* <= .* at epoch 3 (step 30)" "$WORK/runs/t$p/log.txt" &&
    [ "$(tail -n 1 "$WORK/runs/t$p/metrics.csv" | cut -d, -f1)" = 3 ]; then
    ok "P=$p: stopped at epoch $ep, step $st, after $tt s ($tr s in steps)"
  else
    bad "P=$p: target_epoch '$ep' step '$st' steps '$steps' time '$tt' / '$tr'"
    cat "$r"
  fi
done

# without a validation split the training loss is watched
mpi 2 "$AETRAIN" train "$WORK/t.ini" --run tt --quiet --set train.validation=0 --set train.target_loss="$ttarget"
ep=$(json_num "$WORK/runs/tt/result.json" target_epoch)
if [ "$ep" -ge 2 ] && [ "$ep" -le 4 ] && grep -q "target reached: training loss" "$WORK/runs/tt/log.txt"; then
  ok "no validation split: the training loss reached $ttarget at epoch $ep"
else
  bad "no validation split: target_epoch '$ep'"
fi

# never reached: all epochs, target_epoch 0, times -1
mpi 2 "$AETRAIN" train "$WORK/t.ini" --run never --quiet --set train.target_loss=1e-9
r=$WORK/runs/never/result.json
if [ "$(json_num "$r" target_epoch)" = 0 ] && [ "$(json_num "$r" time_to_target_s)" = -1 ] &&
  [ "$(json_num "$r" steps)" = 60 ] && grep -q "target not reached: the validation loss stayed above 1e-09" \
  "$WORK/runs/never/log.txt"; then
  ok "an unreachable target: 60 steps, target_epoch 0, said so"
else
  bad "an unreachable target: $(cat "$r")"
fi
expect_fail 3 "target_loss" "$AETRAIN" train "$WORK/t.ini" --set train.target_loss=-1
finish
