#!/usr/bin/env bash
# bench/scaling_model.py on synthetic inputs whose answers are known:
#   - a layertime CSV of 2 layers (1e6 and 250000 parameters; forward 10 and 5 us,
#     backward 20 and 10 us per sample; optimizer 1 ms; batch 100: 5.5 ms a step);
#   - allreduce times of P = 2 made exactly by the ring formula with alpha = 5 us and
#     beta = 1 ns/byte: the fit must give them back (to 0.1%);
#   - a scaling.csv whose P = 2 weak step is the model's (5.5 ms + the allreduce of the
#     5000016-byte buffer): validation error ~0, and one 20% off point reported as such;
#   - the projection at 10 Gb/s, 2 us: weak efficiency at P = 64 without buckets is
#     5.5 / (5.5 + ring) = 0.4036; with 0.5 MB buckets and full overlap (the last layer's
#     bucket hidden behind the first layer's backward, the first layer's exposed) 0.4559;
#   - with a second layertime at batch 50 (1.2x per sample) and node-sum rows for the
#     host: the strong point at 50 per rank uses the batch-50 times, the host's ranks
#     the node-sum fit and half of the optimizer each;
#   - nodes of 4 ranks (--ranks-per-node): the node sum from the node-sum fit (or the node's
#     memory bandwidth), the rails between nodes, a quarter of the optimizer each;
#   - --step-times: a synthetic 2-rank trace's deviations stretch the compute by the expected
#     largest of P draws (exact at P = 64: x 1.141421);
#   - the PNGs are drawn (`aetrain plot --scaling --log`, a style column) at the
#     scaling picture's size, and a bad style is refused naming the file and line.
. "$(dirname "$0")/common.bash"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
M=$SRC/bench/scaling_model.py

cat >"$WORK/lt.csv" <<'EOF'
layer,name,params,fwd_s_per_sample,bwd_s_per_sample,grad_bytes,batch
0,a,1000000,1.0e-05,2.0e-05,4000000,100
1,b,250000,5.0e-06,1.0e-05,1000000,100
-1,optimizer,1250000,0,1.0e-05,0,100
-1,step,1250000,1.5e-05,4.0e-05,5000000,100
EOF
"$PY" - "$WORK/ar.csv" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("bytes,ranks,seconds,mode,reps,label\n")
    n = 4096
    while n <= 64 << 20:
        f.write("%d,2,%.9e,allreduce,10,synth\n" % (n, 2 * 5e-6 + n * 1e-9))
        n *= 2
EOF
step2=$("$PY" -c "print(1e3 * (5.5e-3 + 2 * 5e-6 + 4 * (1250000 + 4) * 1e-9))")
cat >"$WORK/scaling.csv" <<EOF
setup,mode,ranks,hosts,host_names,ranks_per_node,threads_per_rank,batch_per_rank,global_batch,steps,samples_per_s,step_ms,allreduce_share,speedup,efficiency,openblas_core
synth,weak,1,1,h,1,1,100,100,100,18181.8,5.5,0,1,1,x
synth,weak,2,1,h,2,1,100,200,100,19029,$step2,0.47,1.047,0.523,x
synth,strong,1,1,h,1,1,100,100,100,18181.8,5.5,0,1,1,x
synth,strong,2,1,h,2,1,50,100,100,9000,$("$PY" -c "print(1.2 * (3.25 + 5.01002))"),0.6,0.49,0.245,x
EOF
if "$PY" "$M" --layertime "$WORK/lt.csv" --allreduce "$WORK/ar.csv" --measured "$WORK/scaling.csv" \
  --links 10 --latency-us 2 --pmax 64 --bucket-mb 0.5 --overlap 0 --out "$WORK/out" --png "$WORK/p.png" \
  --aetrain "$AETRAIN" >"$WORK/model.txt" 2>&1; then
  ok "scaling_model.py ran"
else
  bad "scaling_model.py failed"
  cat "$WORK/model.txt"
fi
check() { # check NAME PYTHON-EXPRESSION-over-s (summary.json) and v (validation rows)
  if "$PY" - "$WORK/out" "$2" <<'EOF'; then ok "$1"; else bad "$1"; fi
import csv, json, sys
s = json.load(open(sys.argv[1] + "/summary.json"))
v = list(csv.DictReader(open(sys.argv[1] + "/validation.csv")))
ok = eval(sys.argv[2])
if not ok:
    print("  summary:", {k: s[k] for k in ("fits", "compute_s", "validation_max_rel_err")}, file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}
check "compute 5.5 ms" 'abs(s["compute_s"] - 5.5e-3) < 1e-9'
check "alpha fitted to 5 us" 'abs(s["fits"]["synth"]["alpha_s"] / 5e-6 - 1) < 1e-3'
check "beta fitted to 1 ns/byte" 'abs(s["fits"]["synth"]["beta_s_per_byte"] / 1e-9 - 1) < 1e-3'
check "weak P = 2 point modelled within 0.1%" \
  'abs(float([r for r in v if r["mode"] == "weak" and r["ranks"] == "2"][0]["rel_err"])) < 1e-3'
check "strong P = 2 point 20% slow: error -16.7%" \
  'abs(float([r for r in v if r["mode"] == "strong" and r["ranks"] == "2"][0]["rel_err"]) + 1 / 6) < 1e-3'
check "largest error is the strong point's" 'abs(s["validation_max_rel_err"] - 1 / 6) < 1e-3'
check "weak efficiency at P = 64, 10 Gb/s, one allreduce: 0.4036" \
  'abs(s["weak_eff"]["10G-none@64"] - 5.5 / (5.5 + 0.252 + 2 * 63 / 64 * 5000016 * 8e-10 * 1e3)) < 2e-4'
check "weak efficiency at P = 64, 10 Gb/s, 0.5 MB buckets, full overlap: 0.4559" \
  'abs(s["weak_eff"]["10G-full@64"] - 5.5 / (5.5 + 0.252 + 2 * 63 / 64 * 4e6 * 8e-10 * 1e3 + 6 * (2e-3 + 16 * 8e-7))) < 2e-4'
check "overlap 0 with buckets: no better than one allreduce" \
  's["weak_eff"]["10G-ovl0.00@64"] <= s["weak_eff"]["10G-none@64"]'
# per-sample times by batch (--layertime-batches: the same layers 1.2x slower per sample at 50)
# and a host summing through node-shared memory (nodesum rows: alpha 1 us, beta 0.1 ns/byte; each
# of the 2 ranks runs half of the optimizer): weak P = 2 = 5.5 - 0.5 + 0.502 ms, strong P = 2 at 50
# per rank = 50 x 1.2 x 45 us + 0.5 + 0.502 ms
sed 's/,100$/,50/; s/^0,a,1000000,1.0e-05,2.0e-05/0,a,1000000,1.2e-05,2.4e-05/; s/^1,b,250000,5.0e-06,1.0e-05/1,b,250000,6.0e-06,1.2e-05/; s/^-1,optimizer,1250000,0,1.0e-05/-1,optimizer,1250000,0,2.0e-05/' \
  "$WORK/lt.csv" >"$WORK/lt50.csv"
cp "$WORK/ar.csv" "$WORK/ar2.csv"
"$PY" - "$WORK/ar2.csv" <<'EOF2'
import sys
with open(sys.argv[1], "a") as f:
    n = 4096
    while n <= 64 << 20:
        f.write("%d,2,%.9e,nodesum,10,synth\n" % (n, 2 * 1e-6 + n * 1e-10))
        n *= 2
EOF2
if "$PY" "$M" --layertime "$WORK/lt.csv" --layertime-batches "$WORK/lt50.csv" --allreduce "$WORK/ar2.csv" \
  --measured "$WORK/scaling.csv" --links 10 --latency-us 2 --pmax 64 --out "$WORK/out2" >"$WORK/model2.txt" 2>&1; then
  ok "scaling_model.py ran with --layertime-batches and nodesum rows"
else
  bad "scaling_model.py with --layertime-batches and nodesum rows failed"
  cat "$WORK/model2.txt"
fi
model_ms() { # model_ms MODE P: the model's step of that validation row
  "$PY" -c "import csv,sys; print([r for r in csv.DictReader(open(sys.argv[1])) if r['mode'] == sys.argv[2] and r['ranks'] == sys.argv[3]][0]['model_ms'])" \
    "$WORK/out2/validation.csv" "$1" "$2"
}
if "$PY" -c "import sys; sys.exit(0 if abs(float(sys.argv[1]) - 5.502) < 1e-3 and abs(float(sys.argv[2]) - 3.702) < 1e-3 else 1)" \
  "$(model_ms weak 2)" "$(model_ms strong 2)"; then
  ok "node sum, sharded optimizer, per-sample times at 50: weak P = 2 $(model_ms weak 2) ms, strong $(model_ms strong 2) ms"
else
  bad "weak P = 2 $(model_ms weak 2) ms (want 5.502), strong $(model_ms strong 2) ms (want 3.702)"
fi
# nodes of 4 ranks (--ranks-per-node 4) on the same node-sum fit, 10 Gb/s at 2 us, batch 100:
#   P = 4, one node: compute 5.5 - 1 + 1/4 ms; node sum 0.1 ns/byte x S x 1.25 / 1.5 (ms: 1e-7 x S) + 2 x 1 us x 2 levels
#   P = 8, two nodes: + the rails, recursive doubling of S / 4 bytes at 4 x 0.8 ns/byte + 2 us
#   --node-gbs 50: the node moves (4 + 1) S bytes at 50 GB/s, slower than the ranks' own rate
S=5000016
want4=$("$PY" -c "print(5.5 / (4.75 + 1e-7 * $S * 1.25 / 1.5 + 0.004))")
want8=$("$PY" -c "print(5.5 / (4.75 + 1e-7 * $S * 1.25 / 1.5 + 0.004 + 0.002 + $S / 4 * 3.2e-6))")
want4bw=$("$PY" -c "print(5.5 / (4.75 + 5 * $S / 50e6 + 0.004))")
node_eff() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['weak_eff'][sys.argv[2]])" "$1/summary.json" "$2"; }
close() { "$PY" -c "import sys; sys.exit(0 if abs(float(sys.argv[1]) / float(sys.argv[2]) - 1) < 1e-4 else 1)" "$1" "$2"; }
if "$PY" "$M" --layertime "$WORK/lt.csv" --allreduce "$WORK/ar2.csv" --links 10 --latency-us 2 --pmax 64 \
  --ranks-per-node 4 --out "$WORK/out3" >"$WORK/model3.txt" 2>&1 &&
  "$PY" "$M" --layertime "$WORK/lt.csv" --allreduce "$WORK/ar2.csv" --links 10 --latency-us 2 --pmax 64 \
    --ranks-per-node 4 --node-gbs 50 --out "$WORK/out4" >"$WORK/model4.txt" 2>&1; then
  e4=$(node_eff "$WORK/out3" 10G-node4@4) e8=$(node_eff "$WORK/out3" 10G-node4@8) e4bw=$(node_eff "$WORK/out4" 10G-node4@4)
  close "$e4" "$want4" && ok "nodes of 4: one node's weak efficiency $e4 (want $want4)" || bad "nodes of 4: P = 4 $e4, want $want4"
  close "$e8" "$want8" && ok "nodes of 4: two nodes $e8 (want $want8)" || bad "nodes of 4: P = 8 $e8, want $want8"
  close "$e4bw" "$want4bw" && ok "node memory at 50 GB/s limits the node sum: $e4bw (want $want4bw)" ||
    bad "--node-gbs 50: P = 4 $e4bw, want $want4bw"
else
  bad "scaling_model.py --ranks-per-node 4 failed"
  cat "$WORK/model3.txt" "$WORK/model4.txt"
fi
# --step-times: a 2-rank run whose ranks take 1.1 and 0.9 ms in turn (deviations +-0.1 from the mean,
# +-0.1 sqrt(2) from the common value): at P = 64 some draw is +0.1414 in every step but with
# probability 2^-64, so the compute is x 1.141421; at P = 2 x 1.0707 (3/4 of the steps +0.1414)
mkdir -p "$WORK/jrun/steps"
for q in 0 1; do
  "$PY" - "$WORK/jrun/steps/rank-0000$q.csv" "$q" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("step,samples,compute_s,sum_s,after_s,step_s\n")
    for s in range(1, 201):
        c = 1.1e-3 if (s + int(sys.argv[2])) % 2 else 0.9e-3
        f.write("%d,50,%.7f,0.0001,0,%.7f\n" % (s, c, c + 1e-4))
EOF
done
if "$PY" "$M" --layertime "$WORK/lt.csv" --allreduce "$WORK/ar.csv" --links 10 --latency-us 2 --pmax 64 \
  --bucket-mb 0.5 --overlap 0 --step-times "$WORK/jrun" --out "$WORK/outj" >"$WORK/modelj.txt" 2>&1; then
  ep=$(node_eff "$WORK/outj" 10G-ovl0.00@64) ej=$(node_eff "$WORK/outj" 10G-ovl0.00+jitter@64)
  wantj=$("$PY" -c "print(5.5 / (5.5 * (1 + 0.1 * 2 ** 0.5) + 5.5 / $ep - 5.5))")
  close "$ej" "$wantj" && ok "jitter: P = 64 weak efficiency $ej (want $wantj, $ep without)" ||
    bad "jitter: P = 64 $ej, want $wantj"
  j2=$(sed -nE 's/.*x ([0-9.]+) at P = 2,.*/\1/p' "$WORK/modelj.txt")
  "$PY" -c "import sys; sys.exit(0 if abs(float(sys.argv[1]) - 1.0707) < 0.01 else 1)" "${j2:-0}" &&
    ok "jitter: x $j2 at P = 2 (want 1.0707)" || bad "jitter: '$j2' at P = 2, want 1.0707"
else
  bad "scaling_model.py --step-times failed"
  cat "$WORK/modelj.txt"
fi
expect_fail 1 "ar.csv has no nodesum rows" "$PY" "$M" --layertime "$WORK/lt.csv" --allreduce "$WORK/ar.csv" \
  --ranks-per-node 4 --out "$WORK/out5"
for png in "$WORK/p.png" "$WORK/p_strong.png"; do
  if [ "$(od -An -tx1 -N8 "$png" 2>/dev/null | tr -d ' \n')" = 89504e470d0a1a0a ] &&
    [ "$("$PY" -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print('%dx%d' % struct.unpack('>II', d[16:24]))" "$png")" = 1180x440 ]; then
    ok "$(basename "$png") is a 1180 x 440 PNG"
  else
    bad "$(basename "$png") missing or not 1180 x 440"
  fi
done
grep -q ',projected$\|,projected,' "$WORK/out/plot_weak.csv" && ok "plot CSV has projected rows" || bad "no projected rows"
printf 'setup,mode,ranks,samples_per_s,efficiency,style\nx,weak,1,10,1,dotted\n' >"$WORK/bad.csv"
expect_fail 5 "bad.csv:2: style 'dotted'" "$AETRAIN" plot --scaling "$WORK/bad.csv" --out "$WORK/bad.png" --log
finish
