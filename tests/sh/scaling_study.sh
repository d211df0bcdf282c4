#!/usr/bin/env bash
# cluster/scaling-study on this host: a tiny config at P = 1, 2, strong and
# weak (40 timed steps a point), then one more setup appended (-a). Asserted:
#   - scaling.csv has the header and one row per (setup, mode, P), 16
#     fields each; samples/s and step time positive, the timed steps as asked;
#     global batch: strong = the config's at every P, weak = P x it;
#     ranks_per_node = P and 1 host; speedup = samples/s over P = 1's of the
#     same mode and setup, 1 at P = 1, efficiency = speedup / P (to the
#     printed 4 digits);
#   - scaling.png is a PNG of AE_PLOT_SCALING_W x _H (1180 x 440);
#   - `aetrain plot --scaling` refuses a malformed CSV naming the file and
#     line, and the study refuses a rank list that does not start at 1;
#   - --target-loss: target.csv has one row per (mode, P); strong P = 1 and
#     P = 2 reach the target at the same epoch and step with the same loss
#     (the same training, as the P-test says), weak P = 1 is that training,
#     samples_to_target = step x global batch, efficiency = speedup / P; an
#     unreachable target gives reached 0 and -1 times after --max-epochs.
# No timing is asserted: the numbers of a 2-core machine under load are noise.
. "$(dirname "$0")/common.bash"
export AETRAIN

make_data "$WORK/data" 600 100
cat >"$WORK/m.ini" <<EOC
[model]
encoder = dense(32, relu), dense(8, tanh, name=code)
decoder = dense(32, relu), dense(784, sigmoid)
[loss]
kind = bce
[optim]
kind = adam
[train]
batch = 32
[data]
dataset = $WORK/data
EOC
STUDY=$SRC/cluster/scaling-study
OUT=$WORK/out

if timeout -k 5 300 "$STUDY" -c "$WORK/m.ini" -r "1 2" -m both -n 40 -o "$OUT" >"$WORK/study.out" 2>&1; then
  ok "scaling-study -r '1 2' -m both: exit 0"
else
  bad "scaling-study -r '1 2' -m both failed"
  tail -n 30 "$WORK/study.out"
fi
if timeout -k 5 300 "$STUDY" -c "$WORK/m.ini" -r 1,2 -m strong -n 40 -l again -a -o "$OUT" \
  --set train.step_times=true >"$WORK/study2.out" 2>&1; then
  ok "scaling-study -m strong -l again -a (appended): exit 0"
else
  bad "scaling-study -a failed"
  tail -n 30 "$WORK/study2.out"
fi
# --set train.step_times=true: each point's per-step times are kept, one file a rank
st=$(ls "$OUT/steps/again-strong-2/steps" 2>/dev/null | tr '\n' ' ')
[ "$st" = "rank-00000.csv rank-00001.csv " ] && [ ! -e "$OUT/steps/local-strong-2" ] &&
  ok "step_times kept: $st" || bad "step_times: '$st' in $(ls "$OUT/steps" 2>&1)"
cat "$OUT/scaling.csv"

# the CSV, checked field by field (awk prints one line per problem)
header="setup,mode,ranks,hosts,host_names,ranks_per_node,threads_per_rank,batch_per_rank,global_batch,steps,samples_per_s,step_ms,allreduce_share,speedup,efficiency,openblas_core"
if [ "$(head -n 1 "$OUT/scaling.csv")" = "$header" ]; then ok "scaling.csv header"
else bad "scaling.csv header: $(head -n 1 "$OUT/scaling.csv")"; fi
rows=$(tail -n +2 "$OUT/scaling.csv" | cut -d, -f1-3 | tr '\n' ' ')
want="local,strong,1 local,strong,2 local,weak,1 local,weak,2 again,strong,1 again,strong,2 "
if [ "$rows" = "$want" ]; then ok "scaling.csv rows (setup,mode,ranks): $rows"
else bad "scaling.csv rows: '$rows', expected '$want'"; fi
problems=$(awk -F, 'NR == 1 { next }
  function rel(a, b) { d = a - b; if (d < 0) d = -d; return d / (b > 0 ? b : 1) }
  { key = $1 "," $2; if ($3 == 1) base[key] = $11 }
  NF != 16 { print "line " NR ": " NF " fields"; next }
  !($11 > 0) || !($12 > 0) { print "line " NR ": samples/s " $11 ", step ms " $12 }
  $10 != 40 { print "line " NR ": " $10 " timed steps, asked 40" }
  $4 != 1 || $6 != $3 { print "line " NR ": hosts " $4 ", ranks_per_node " $6 " at P = " $3 }
  $7 != 1 { print "line " NR ": threads_per_rank " $7 }
  $2 == "strong" && $9 != 32 { print "line " NR ": strong global batch " $9 }
  $2 == "weak" && $9 != 32 * $3 { print "line " NR ": weak global batch " $9 " at P = " $3 }
  rel($8 * $3, $9) > 1e-4 { print "line " NR ": batch per rank " $8 " x P != " $9 }
  $3 == 1 && ($14 != 1 || $15 != 1) { print "line " NR ": speedup, efficiency at P = 1: " $14 ", " $15 }
  !(key in base) { print "line " NR ": no P = 1 row before it for " key; next }
  rel($14, $11 / base[key]) > 2e-3 { print "line " NR ": speedup " $14 " != " $11 " / " base[key] }
  rel($15, $14 / $3) > 2e-3 { print "line " NR ": efficiency " $15 " != speedup " $14 " / " $3 }
  $13 < 0 || $13 > 1 { print "line " NR ": allreduce share " $13 }' "$OUT/scaling.csv")
if [ -z "$problems" ]; then ok "scaling.csv values: 16 fields, positive throughput, batches, speedup and efficiency = speedup / P"
else bad "scaling.csv values: $problems"; fi

# the PNG: signature and IHDR size (big-endian width, height at bytes 16..23)
sig=$(od -An -tx1 -N8 "$OUT/scaling.png" 2>/dev/null | tr -d ' \n')
size=$(od -An -tu1 -j16 -N8 "$OUT/scaling.png" 2>/dev/null |
  awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 "x" $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }')
if [ "$sig" = 89504e470d0a1a0a ] && [ "$size" = 1180x440 ]; then ok "scaling.png: a PNG of $size"
else bad "scaling.png: signature '$sig', size '$size' (expected 1180x440)"; fi

# strict CSV parsing, and the study's own argument checks
{ echo "$header"; sed -n 2p "$OUT/scaling.csv"; sed -n 3p "$OUT/scaling.csv" | awk -F, -v OFS=, '{ $11 = "fast"; print }'; } >"$WORK/bad.csv"
expect_fail 5 "bad.csv:3: samples_per_s 'fast'" "$AETRAIN" plot --scaling "$WORK/bad.csv" --out "$WORK/bad.png"
printf 'setup,mode,ranks,samples_per_s\nlocal,strong,1,5\n' >"$WORK/nocol.csv"
expect_fail 5 "nocol.csv:1: the header has no column 'efficiency'" "$AETRAIN" plot --scaling "$WORK/nocol.csv" --out "$WORK/bad.png"
{ echo "$header"; sed -n 2p "$OUT/scaling.csv" | cut -d, -f1-15; } >"$WORK/short.csv"
expect_fail 5 "short.csv:2: 15 fields, the header has 16" "$AETRAIN" plot --scaling "$WORK/short.csv" --out "$WORK/bad.png"
if [ ! -e "$WORK/bad.png" ]; then ok "no picture from a refused CSV"; else bad "bad.png written from a refused CSV"; fi
expect_fail 1 "must start at 1" "$STUDY" -c "$WORK/m.ini" -r "2 4" -o "$WORK/out3"

# time to target (training loss watched: no validation split)
TOUT=$WORK/tout
if timeout -k 5 300 "$STUDY" -c "$WORK/m.ini" -r "1 2" --target-loss 0.55 --set train.validation=0 --set train.epochs=40 \
  -o "$TOUT" >"$WORK/target.out" 2>&1; then ok "scaling-study --target-loss 0.55: exit 0"
else bad "scaling-study --target-loss failed"; tail -n 30 "$WORK/target.out"; fi
cat "$TOUT/target.csv" || true
theader="setup,mode,ranks,hosts,ranks_per_node,threads_per_rank,batch_per_rank,global_batch,target_loss,reached,target_epoch,target_step,samples_to_target,train_time_to_target_s,time_to_target_s,watched_loss,speedup,efficiency,openblas_core"
if [ "$(head -n 1 "$TOUT/target.csv")" = "$theader" ]; then ok "target.csv header"
else bad "target.csv header: $(head -n 1 "$TOUT/target.csv")"; fi
problems=$(awk -F, 'NR == 1 { next }
  function rel(a, b) { d = a - b; if (d < 0) d = -d; return d / (b > 0 ? b : 1) }
  { key = $2 "," $3; ep[key] = $11; st[key] = $12; wl[key] = $16; tt[key] = $14; n++ }
  NF != 19 { print "line " NR ": " NF " fields" }
  $10 != 1 { print "line " NR ": not reached" }
  $16 > 0.55 || $16 <= 0 { print "line " NR ": watched loss " $16 " above the target 0.55" }
  $13 != $12 * $8 { print "line " NR ": samples_to_target " $13 " != step " $12 " x batch " $8 }
  !($14 > 0) || $15 < $14 { print "line " NR ": times " $14 ", " $15 }
  rel($18, $17 / $3) > 2e-3 { print "line " NR ": efficiency " $18 " != speedup / P" }
  $2 == "weak" && $8 != 32 * $3 { print "line " NR ": weak global batch " $8 }
  $2 == "strong" && $8 != 32 { print "line " NR ": strong global batch " $8 }
  END {
    if (n != 4) print n " rows, expected 4"
    if (ep["strong,1"] != ep["strong,2"] || st["strong,1"] != st["strong,2"] || rel(wl["strong,2"], wl["strong,1"]) > 1e-4)
      print "strong P = 1 vs 2: epoch " ep["strong,1"] "/" ep["strong,2"] ", step " st["strong,1"] "/" st["strong,2"] ", loss " wl["strong,1"] "/" wl["strong,2"]
    if (ep["weak,1"] != ep["strong,1"] || tt["weak,1"] != tt["strong,1"]) print "weak P = 1 is not the strong P = 1 training"
  }' "$TOUT/target.csv")
if [ -z "$problems" ]; then ok "target.csv: reached at every point, strong P = 1 and 2 at the same epoch, step and loss"
else bad "target.csv: $problems"; fi
if timeout -k 5 300 "$STUDY" -c "$WORK/m.ini" -r 1 -m strong --target-loss 1e-6 --max-epochs 2 --set train.validation=0 \
  -o "$WORK/tout2" >"$WORK/target2.out" 2>&1 && grep -q 'did not reach' "$WORK/target2.out"; then
  row=$(sed -n 2p "$WORK/tout2/target.csv" | cut -d, -f10-15)
  if [ "$row" = "0,0,-1,-1,-1,-1" ]; then ok "unreachable target: reached 0, -1 step, samples and times"
  else bad "unreachable target row: $row"; fi
else bad "scaling-study --target-loss 1e-6 --max-epochs 2"; tail -n 20 "$WORK/target2.out"; fi
expect_fail 1 "goes with --target-loss" "$STUDY" -c "$WORK/m.ini" --max-epochs 3 -o "$WORK/out4"
expect_fail 1 "takes a number > 0" "$STUDY" -c "$WORK/m.ini" --target-loss 0 -o "$WORK/out4"
finish
