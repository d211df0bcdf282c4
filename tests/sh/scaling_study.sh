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
#     line, and the study refuses a rank list that does not start at 1.
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
if timeout -k 5 300 "$STUDY" -c "$WORK/m.ini" -r 1,2 -m strong -n 40 -l again -a -o "$OUT" >"$WORK/study2.out" 2>&1; then
  ok "scaling-study -m strong -l again -a (appended): exit 0"
else
  bad "scaling-study -a failed"
  tail -n 30 "$WORK/study2.out"
fi
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
finish
