#!/usr/bin/env bash
# The run folder and the CLI around training: files written, early stopping
# with patience, keeping the last K checkpoints and the best, --resume auto
# with nothing to resume, eval / check / encode / pca on a small dataset.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 200
cat > "$WORK/r.ini" <<EOC
[model]
encoder = dense(16, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[optim]
lr = 0.05
[train]
batch = 50
epochs = 40
validation = 100
patience = 2
keep = 2
knn = 3
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
out=$(mpi 2 "$AETRAIN" train "$WORK/r.ini" --run es --resume auto 2>&1)
run="$WORK/runs/es"
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
check "resume auto without a checkpoint starts afresh" 'grep -q "no checkpoint to resume" <<<"$out"'
check "early stop before 40 epochs" 'grep -q "early stop" <<<"$out"'
epochs=$(($(wc -l <"$run/metrics.csv") - 1))
check "metrics.csv has one row per epoch ($epochs) and the header" \
  '[ "$epochs" -ge 3 ] && [ "$epochs" -lt 40 ] && head -1 "$run/metrics.csv" | grep -q "^epoch,step,train_loss,val_loss"'
check "metrics.jsonl has as many rows" '[ "$(wc -l <"$run/metrics.jsonl")" -eq "$epochs" ]'
check "keep = 2 numbered checkpoints" '[ "$(ls "$run"/ckpt/ckpt-s*.aeck | wc -l)" -eq 2 ]'
check "best.aeck kept" '[ -f "$run/ckpt/best.aeck" ]'
check "no temporary files left" '[ -z "$(ls "$run"/ckpt/ | grep tmp)" ]'
check "config.ini is the resolved config" 'grep -q "^patience = 2" "$run/config.ini" && grep -q "^kind = adam" "$run/config.ini"'
check "run.json records ranks, threads, OpenBLAS core and hosts" \
  'grep -q "\"ranks\": 2" "$run/run.json" && grep -q "threads_per_rank" "$run/run.json" && grep -q "openblas_core" "$run/run.json" && grep -q "\"hosts\"" "$run/run.json"'
check "log.txt has the epochs and the final results" 'grep -q "^epoch" "$run/log.txt" && grep -q "test reconstruction" "$run/log.txt"'
check "k-NN and probe accuracy reported" 'grep -q "3-NN on the 16-d code" <<<"$out" && grep -q "softmax probe" <<<"$out"'
check "result.json written" 'grep -q "test_bce" "$run/result.json"'
check "TensorBoard events file written (framing checked by tboard_read.sh)" \
  '[ "$(find "$run" -maxdepth 1 -name "events.out.tfevents.*" -size +1k | wc -l)" -eq 1 ]'
# the best checkpoint has the best validation loss: its epoch's val loss is the minimum in metrics.csv
best_epoch=$("$TOOL" info "$run/ckpt/best.aeck" | sed -E 's/^epoch ([0-9]+) .*/\1/')
min_epoch=$(tail -n +2 "$run/metrics.csv" | sort -t, -k4 -g | head -1 | cut -d, -f1)
check "best.aeck is from the epoch of the lowest validation loss ($best_epoch vs $min_epoch)" '[ "$best_epoch" = "$min_epoch" ]'
# CLI around it
check "eval of the best checkpoint" '"$AETRAIN" eval "$run/ckpt/best.aeck" --probe | grep -q "softmax probe"'
check "check prints the layer table and memory" \
  '"$AETRAIN" check "$WORK/r.ini" -n 3 | grep -q "memory per rank" && "$AETRAIN" check "$WORK/r.ini" | grep -q "<- code"'
"$AETRAIN" encode "$run/ckpt/best.aeck" --out "$WORK/codes.csv" >/dev/null
check "encode writes 200 rows of label + 16 codes" \
  '[ "$(wc -l <"$WORK/codes.csv")" -eq 200 ] && [ "$(head -1 "$WORK/codes.csv" | tr , "\n" | wc -l)" -eq 17 ]'
"$AETRAIN" encode "$run/ckpt/best.aeck" --out "$WORK/codes.npy" >/dev/null
check "encode .npy: header and size (200 x 16 float32)" \
  'head -c 6 "$WORK/codes.npy" | od -c | grep -q "N   U   M   P   Y" && [ "$(stat -c %s "$WORK/codes.npy")" -eq $((128 + 200 * 16 * 4)) ] && [ -f "$WORK/codes_labels.npy" ] && [ -f "$WORK/codes_enc1_W.npy" ]'
check "pca prints the test MSE for 2 and 16 components" \
  '"$AETRAIN" pca "$WORK/r.ini" -k 2,16 | grep -qE "^ +16 +0\.[0-9]+"'
out=$(env -u OPENBLAS_CORETYPE AE_CORETYPE_TEST_FROM=Prescott "$AETRAIN" train "$WORK/r.ini" --run core \
  --set train.epochs=1 --set train.probe=false --set train.knn=0 2>&1)
check "weaker OpenBLAS kernels than the CPU's: OPENBLAS_CORETYPE set, re-exec, said in the log and run.json" \
  'grep -qE "OPENBLAS_CORETYPE=(SkylakeX|Haswell|Sandybridge) set by aetrain: OpenBLAS had chosen Prescott" <<<"$out" &&
   grep -q "OpenBLAS had chosen Prescott" "$WORK/runs/core/run.json"'
best=$(sed -nE 's/.*OPENBLAS_CORETYPE=([A-Za-z]+) set by aetrain.*/\1/p' <<<"$out" | head -n 1)
# a weaker core type from the environment is kept, and said: on stderr, in the log and in run.json
out=$(OPENBLAS_CORETYPE=Prescott "$AETRAIN" train "$WORK/r.ini" --run usercore --set train.epochs=1 \
  --set train.probe=false --set train.knn=0 2>&1 >/dev/null)
check "a user's weaker OPENBLAS_CORETYPE: kept, with a warning" \
  'grep -q "^aetrain: warning: OPENBLAS_CORETYPE=Prescott from the environment: OpenBLAS runs its Prescott kernels (SSE)" <<<"$out" &&
   grep -q "OpenBLAS Prescott" "$WORK/runs/usercore/log.txt" &&
   grep -q "^warning: OPENBLAS_CORETYPE=Prescott from the environment" "$WORK/runs/usercore/log.txt" &&
   grep -q "\"openblas_note\": \"OPENBLAS_CORETYPE=Prescott from the environment" "$WORK/runs/usercore/run.json"'
# the CPU's best core, as the re-exec above chose it
out=$(OPENBLAS_CORETYPE=${best:-none} "$AETRAIN" train "$WORK/r.ini" --run usercore2 --set train.epochs=1 \
  --set train.probe=false --set train.knn=0 2>&1)
check "a user's OPENBLAS_CORETYPE=$best, the CPU's best: no warning" '[ -n "$best" ] && ! grep -q "OPENBLAS_CORETYPE" <<<"$out"'
check "--version" '"$AETRAIN" --version | grep -q "^aetrain "'
check "--help lists the commands" '"$AETRAIN" --help | grep -q "encode CKPT" && "$AETRAIN" --help | grep -q "exit codes"'
finish
