#!/usr/bin/env bash
# [data] shared = true keeps one copy of the data per node (an MPI-3 shared
# window filled by the node's first rank): at P = 1, 2, 3 the run reports
# one node-shared copy for all its ranks, trains bitwise the same parameters
# as with shared = false, records a plausible peak RSS per rank, and a
# missing IDX file is still a clear data error on every rank count.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 200
cat > "$WORK/ae.ini" <<EOC
[model]
encoder = dense(32, relu), dense(8, tanh, name=code)
decoder = dense(32, relu), dense(784, sigmoid)
[loss]
kind = bce
[optim]
kind = adam
lr = 1e-3
[train]
batch = 48
epochs = 2
max_steps = 12
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC

for p in 1 2 3; do
  for sh in true false; do
    mpi "$p" "$AETRAIN" train "$WORK/ae.ini" --run "p$p-$sh" --quiet --set data.shared=$sh
  done
  run="$WORK/runs/p$p-true"
  if grep -qE "data memory: [0-9.]+ MiB node-shared, one copy for $p ranks? of the node" "$run/log.txt"; then
    ok "P=$p: $(grep -m1 'data memory' "$run/log.txt")"
  else
    bad "P=$p: no node-shared data line for $p ranks"; grep 'data memory' "$run/log.txt" || true
  fi
  ranks=$(json_num "$run/result.json" data_shared_ranks)
  bytes=$(json_num "$run/result.json" data_bytes)
  bytes_priv=$(json_num "$WORK/runs/p$p-false/result.json" data_bytes)
  if [ "$ranks" = "$p" ] && [ "$(json_num "$WORK/runs/p$p-false/result.json" data_shared_ranks)" = 1 ] &&
     [ -n "$bytes" ] && [ "$bytes" = "$bytes_priv" ] && [ "$bytes" -ge $(( (400 + 200) * 784 )) ]; then
    ok "P=$p: result.json data_shared_ranks $ranks, data_bytes $bytes"
  else
    bad "P=$p: result.json data_shared_ranks '$ranks', data_bytes '$bytes' vs '$bytes_priv'"
  fi
  if out=$("$TOOL" bitequal "$(newest_ckpt "$run")" "$(newest_ckpt "$WORK/runs/p$p-false")"); then
    ok "P=$p shared vs not: $out"
  else
    bad "P=$p shared vs not: $out"
  fi
  for sh in true false; do
    r="$WORK/runs/p$p-$sh/result.json"
    hi=$(json_num "$r" peak_rss_mb) lo=$(json_num "$r" peak_rss_mb_min) budget=$(json_num "$r" memory_budget_mb)
    ar=$(json_num "$r" allreduce_bytes_per_step)
    if awk -v hi="$hi" -v lo="$lo" -v b="$budget" -v ar="$ar" -v p="$p" \
         'BEGIN { exit !(lo > 1 && lo <= hi && hi < 4096 && b > 150 && (p == 1 ? ar == 0 : ar > 0)) }'; then
      ok "P=$p shared=$sh: peak RSS $lo..$hi MiB, budget $budget MiB, allreduce $ar B/step"
    else
      bad "P=$p shared=$sh: peak_rss_mb '$hi', peak_rss_mb_min '$lo', budget '$budget', allreduce '$ar'"
    fi
  done
  grep -qE "memory per rank: peak RSS [0-9.]+ MiB \(min [0-9.]+ over $p ranks?\); budget" "$run/log.txt" &&
    ok "P=$p: memory line in the log" || bad "P=$p: no memory line in the log"
done

# a node without room for the segment (here the file-size limit; the same check covers a full
# /dev/shm): a warning, private copies, the same training as shared = false, no hang. The
# shared-memory transport is left out (`--mca btl self,tcp`): it would hit the same limit.
# 2000 images make a 1.7 MB segment, over a 1000 KiB limit that the checkpoints stay under.
make_data "$WORK/big" 2000 200
# limited KBYTES RUN ARGS...: aetrain train at P = 2 under `ulimit -f KBYTES`, on the big data
limited() {
  local kb=$1 run=$2; shift 2
  mpi 2 --mca btl self,tcp bash -c 'ulimit -f "$0"; exec "$@"' "$kb" "$AETRAIN" train "$WORK/ae.ini" \
    --run "$run" --quiet --set data.dataset="$WORK/big" "$@"
}
limited unlimited p2-big-private --set data.shared=false
set +e
out=$(limited 1000 p2-noroom 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] && grep -q "data not shared on this node (the file-size limit" <<<"$out" &&
   grep -q "data memory: [0-9.]* MiB per rank" "$WORK/runs/p2-noroom/log.txt" &&
   [ "$(json_num "$WORK/runs/p2-noroom/result.json" data_shared_ranks)" = 1 ]; then
  ok "no room for the segment: exit 0, $(grep -m1 'not shared' <<<"$out")"
else
  bad "no room for the segment: exit $rc: $out"; grep 'data memory' "$WORK/runs/p2-noroom/log.txt" || true
fi
if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/p2-noroom")" "$(newest_ckpt "$WORK/runs/p2-big-private")"); then
  ok "no room vs shared = false: $out"
else
  bad "no room vs shared = false: $out"
fi

# evaluation shares the test split the same way (no training data in the segment)
ck=$(newest_ckpt "$WORK/runs/p2-true")
a=$(mpi 2 "$AETRAIN" eval "$ck" 2>&1 | grep 'test reconstruction')
c=$("$AETRAIN" eval "$ck" 2>&1 | grep 'test reconstruction')
if [ -n "$a" ] && [ "$a" = "$c" ]; then ok "eval P=2 shared = P=1: $a"; else bad "eval: '$a' vs '$c'"; fi

# the codes of the probe and k-NN: one copy per node, each rank encoding a share of the samples
# (P = 3: uneven shares), the same numbers as every rank encoding all of them ([data] shared = false);
# codes of zeros or of the wrong samples would put the probe and the 3-NN near chance (0.1)
for p in 2 3; do
  for sh in true false; do
    mpi "$p" "$AETRAIN" train "$WORK/ae.ini" --run "codes$p-$sh" --quiet --set data.shared=$sh \
      --set train.probe=true --set train.probe_epochs=20 --set train.probe_lr=0.1 --set train.knn=3
  done
  a="$WORK/runs/codes$p-true/result.json" b="$WORK/runs/codes$p-false/result.json"
  pa=$(json_num "$a" probe_acc) ka=$(json_num "$a" knn_acc) cm=$(json_num "$a" codes_mb) cr=$(json_num "$a" peak_rss_mb_codes)
  if [ -n "$pa" ] && [ "$pa" = "$(json_num "$b" probe_acc)" ] && [ "$ka" = "$(json_num "$b" knn_acc)" ] &&
     awk -v p="$pa" -v k="$ka" -v cm="$cm" -v cr="$cr" 'BEGIN { exit !(p > 0.5 && k > 0.5 && cm > 0.02 && cm < 0.03 && cr > 1) }' &&
     grep -q "memory with the codes of the probe / k-NN" "$WORK/runs/codes$p-true/log.txt"; then
    ok "P=$p: probe $pa, 3-NN $ka from node-shared codes ($cm MiB) = from private ones"
  else
    bad "P=$p codes: probe '$pa' vs '$(json_num "$b" probe_acc)', knn '$ka' vs '$(json_num "$b" knn_acc)', codes_mb '$cm', rss '$cr'"
  fi
done

# evaluation's samples per model call: 256 where their activations are small (the dense model,
# 24 per rank at P = 2), fewer where 256 would take a rank past its memory budget, which counts the
# activations of one training pass: a 64-filter conv at 28x28 holds ~1.3 MiB per sample, so 16 MiB
# more allow about 12 more than its 24 per rank
if grep -q "evaluation in batches of 256$" "$WORK/runs/p2-true/log.txt"; then
  ok "dense: evaluation in batches of 256"
else
  bad "dense: $(grep -m1 'model:' "$WORK/runs/p2-true/log.txt")"
fi
sed -e 's/^encoder = .*/encoder = conv(64, 3, relu), maxpool(2, name=code)/' \
    -e 's/^decoder = .*/decoder = upsample(2), conv(1, 3, sigmoid)/' "$WORK/ae.ini" > "$WORK/conv.ini"
mpi 2 "$AETRAIN" train "$WORK/conv.ini" --run conv --quiet --set train.max_steps=2
eb=$(sed -nE 's/.*evaluation in batches of ([0-9]+)$/\1/p' "$WORK/runs/conv/log.txt")
r="$WORK/runs/conv/result.json"
if [ -n "$eb" ] && [ "$eb" -gt 24 ] && [ "$eb" -lt 64 ] &&
   awk -v hi="$(json_num "$r" peak_rss_mb)" -v b="$(json_num "$r" memory_budget_mb)" 'BEGIN { exit !(hi > 1 && hi <= b) }'; then
  ok "conv: evaluation in batches of $eb (24 per rank), peak RSS $(json_num "$r" peak_rss_mb) <= budget $(json_num "$r" memory_budget_mb) MiB"
else
  bad "conv: evaluation in batches of '$eb', peak RSS '$(json_num "$r" peak_rss_mb)', budget '$(json_num "$r" memory_budget_mb)'"
fi

# a missing IDX file: the node leader's error, naming the file, on every rank count, no hang
mkdir -p "$WORK/broken"
cp "$WORK/data"/* "$WORK/broken/"
rm -f "$WORK/broken"/train-images-idx3-ubyte*
for p in 1 2 3; do
  for sh in true false; do
    expect_fail 4 "train-images-idx3-ubyte not found" \
      mpi "$p" "$AETRAIN" train "$WORK/ae.ini" --quiet --set data.dataset="$WORK/broken" --set data.shared=$sh
  done
done
finish
