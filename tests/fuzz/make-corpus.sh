#!/usr/bin/env bash
# Regenerate the seed corpus of the fuzz targets (checked in under
# tests/fuzz/corpus/<target>/seed-*; the regress-* files next to them are
# crash reproducers and are left alone):
#   tests/fuzz/make-corpus.sh BUILD_DIR     (a normal build: aetrain, tests/ae_testtool, tests/ckpt_writer)
# idx:    small IDX files of 1 to 4 dimensions, raw and gzip
# config: the shipped configs, a classifier, a canonical dump (a run folder's config.ini)
# ckpt:   checkpoints of tiny trainings (Adam, SGD without state) and of ckpt_writer
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:?usage: make-corpus.sh BUILD_DIR}
AETRAIN=$BUILD/aetrain
TOOL=$BUILD/tests/ae_testtool
WRITER=$BUILD/tests/ckpt_writer
OUT=$HERE/corpus
. "$ROOT/scripts/mpienv.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/ae-corpus.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$OUT/idx" "$OUT/config" "$OUT/ckpt" "$T/d"
rm -f "$OUT"/*/seed-*

# idx: 3 images of 4x4, 3 labels; a 2-d and a 4-d file; gzip copies
"$TOOL" mkdata "$T/d" 30 10 4
head -c $((16 + 3 * 16)) "$T/d/t10k-images-idx3-ubyte" >"$OUT/idx/seed-images3"
printf '\x00\x00\x00\x03' | dd of="$OUT/idx/seed-images3" bs=1 seek=4 conv=notrunc status=none
head -c $((8 + 3)) "$T/d/t10k-labels-idx1-ubyte" >"$OUT/idx/seed-labels1"
printf '\x00\x00\x00\x03' | dd of="$OUT/idx/seed-labels1" bs=1 seek=4 conv=notrunc status=none
printf '\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03abcdef' >"$OUT/idx/seed-matrix2"
printf '\x00\x00\x08\x04\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02wxyz' >"$OUT/idx/seed-tensor4"
for f in images3 labels1 matrix2; do gzip -9n -c "$OUT/idx/seed-$f" >"$OUT/idx/seed-$f.gz"; done

# config
for f in "$ROOT"/configs/*.ini; do cp "$f" "$OUT/config/seed-$(basename "$f")"; done
cat >"$OUT/config/seed-classifier.ini" <<'EOC'
[model]
type = classifier
init = he_normal
encoder = dense(48, elu), dense(24, relu, name=code),
  dense(12, tanh)
head = dense(10, softmax)
[loss]
kind = ce
[optim]
kind = sgd
lr = 0.05
momentum = 0.9
nesterov = true
clip_norm = 1.0
[schedule]
kind = cosine
warmup_epochs = 0.5
[train]
batch = 64
epochs = 3
EOC

# ckpt: tiny trainings on 4x4 images
cat >"$T/tiny.ini" <<EOC
[model]
encoder = dense(3, relu)
decoder = dense(16, sigmoid)
[loss]
kind = bce
[train]
batch = 10
epochs = 1
validation = 10
probe = false
[data]
dataset = $T/d
[run]
dir = $T/runs
EOC
"$AETRAIN" train "$T/tiny.ini" --run adam --quiet
"$AETRAIN" train "$T/tiny.ini" --run sgd --quiet --set optim.kind=sgd --set optim.momentum=0
cp "$(ls "$T"/runs/adam/ckpt/ckpt-s*.aeck | tail -n 1)" "$OUT/ckpt/seed-adam.aeck"
cp "$(ls "$T"/runs/sgd/ckpt/ckpt-s*.aeck | tail -n 1)" "$OUT/ckpt/seed-sgd.aeck"
sed -e 's|^dataset = .*|dataset = mnist|' -e 's|^dir = .*runs$|dir = runs|' "$T/runs/adam/config.ini" \
  >"$OUT/config/seed-dump.ini"
"$WRITER" one "$OUT/ckpt/seed-writer.aeck" 7 40
"$WRITER" one "$OUT/ckpt/seed-writer0.aeck" 0 0
ls -l "$OUT"/*/seed-* | awk '{ s += $5 } END { print NR " seed files, " s " bytes" }'
