#!/usr/bin/env bash
# A checkpoint write that fails (here: over the file-size limit, `ulimit -f`,
# which the trainer must meet with EFBIG, not die of SIGXFSZ) ends the job
# with exit code 4 and an I/O error naming the checkpoint path; the
# checkpoints written before stay byte-identical and loadable, no .tmp is
# left behind, and the run resumes from them once the disk has room. With
# on_checkpoint_error = continue the run warns and trains to the end.
# The ranks run with `--mca btl self,tcp`: Open MPI's shared-memory
# transport sizes its segment with ftruncate, which the limit refuses too.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 300 100
cat > "$WORK/d.ini" <<EOC
[model]
encoder = dense(16, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 50
epochs = 1
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
CK=$WORK/runs/d/ckpt

# limited NP KBYTES ARGS...: aetrain train under `ulimit -f KBYTES` (bash counts 1024-byte blocks)
limited() {
  local np=$1 kb=$2; shift 2
  mpi "$np" --mca btl self,tcp bash -c 'ulimit -f "$0"; exec "$@"' "$kb" "$AETRAIN" train "$WORK/d.ini" "$@"
}
sums() { (cd "$CK" && md5sum -- *.aeck); }

# 1. a good run writes its checkpoints (best.aeck and ckpt-s10-e1)
mpi 2 "$AETRAIN" train "$WORK/d.ini" --run d --quiet
good=$(newest_ckpt "$WORK/runs/d")
before=$(sums)
size=$(stat -c %s "$good")
spe=$("$TOOL" info "$good" | sed -n 's/.* step \([0-9]*\) .*/\1/p') # steps per epoch
limit=$((size / 2048)) # KiB: half a checkpoint; the logs and the config stay far below
echo "checkpoint $(basename "$good"): $size bytes; limit ${limit} KiB"

# 2. the same run folder, resumed under a file-size limit half a checkpoint big
set +e
out=$(limited 2 "$limit" --run d --quiet --resume auto --set train.epochs=3 2>&1)
rc=$?
set -e
msg=$(grep 'aetrain: error:' <<<"$out" || true)
if [ "$rc" -eq 4 ] && [ "$(wc -l <<<"$msg")" -eq 1 ] &&
  grep -qE "error: $CK/(best|ckpt-s[0-9]+-e[0-9]+)\.aeck: .*File too large" <<<"$msg"; then
  ok "write over the size limit: exit 4: $msg"
else
  bad "write over the size limit: exit $rc, message '$msg' (want exit 4 and an I/O error naming the checkpoint)"
  grep -q 'signal 25' <<<"$out" && echo "a rank died of SIGXFSZ: the trainer must ignore SIGXFSZ"
  tail -n 20 <<<"$out"
fi
if [ "$(sums)" = "$before" ]; then ok "the checkpoints written before are unchanged"
else bad "the checkpoints changed: $(sums)"; fi
for f in "$CK"/*.aeck; do
  if info=$("$TOOL" info "$f"); then ok "$(basename "$f") loads: $info"; else bad "$(basename "$f") does not load"; fi
done
tmps=$(find "$CK" -name '*.tmp')
if [ -z "$tmps" ]; then ok "no .tmp left behind"; else bad "left behind: $tmps"; fi

# 3. with room again, --resume auto continues from the intact checkpoint
set +e
out=$(mpi 2 "$AETRAIN" train "$WORK/d.ini" --run d --quiet --resume auto --set train.epochs=3 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] && grep -q "resumed from $good" "$WORK/runs/d/log.txt" &&
  "$TOOL" info "$(newest_ckpt "$WORK/runs/d")" | grep -q " step $((3 * spe)) "; then
  ok "resumed from $(basename "$good") once the limit is gone: exit 0, step $((3 * spe))"
else
  bad "resume after the failure: exit $rc"
  tail -n 20 <<<"$out"
fi

# 4. on_checkpoint_error = continue: warnings naming the path, the run ends normally
before=$(sums)
set +e
out=$(limited 2 "$limit" --run d --quiet --resume auto --set train.epochs=5 \
  --set train.on_checkpoint_error=continue 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] && grep -qE "warning: $CK/ckpt-s0*$((5 * spe))-e0*5\.aeck: .*File too large.*training goes on" <<<"$out" &&
  [ "$(sums)" = "$before" ] && [ -z "$(find "$CK" -name '*.tmp')" ]; then
  ok "on_checkpoint_error = continue: exit 0, warned, old checkpoints unchanged"
else
  bad "on_checkpoint_error = continue: exit $rc"
  tail -n 20 <<<"$out"
fi
finish
