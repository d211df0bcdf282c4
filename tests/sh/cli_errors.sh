#!/usr/bin/env bash
# Bad input ends every rank with a clear message and the documented exit
# code, never a hang (each run has a time limit).
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 300 100
cat > "$WORK/ok.ini" <<EOC
[model]
encoder = dense(16, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 32
epochs = 1
validation = 50
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
# config errors name file:line
printf '[optim]\nlrate = 0.1\n' > "$WORK/badkey.ini"
expect_fail 3 "badkey.ini:2: .*lrate" "$AETRAIN" check "$WORK/badkey.ini"
printf 'include = ok.ini\n[train]\nbatch = 0\n' > "$WORK/badval.ini"
expect_fail 3 "badval.ini:3: .*batch" mpi 2 "$AETRAIN" train "$WORK/badval.ini"
printf 'include = ok.ini\n[model]\ndecoder = dense(500, sigmoid)\n' > "$WORK/badshape.ini"
expect_fail 6 "badshape.ini:3: .*500.*784" mpi 2 "$AETRAIN" train "$WORK/badshape.ini"
expect_fail 2 "unknown option" "$AETRAIN" train "$WORK/ok.ini" --bogus

# a build for another CPU (-march=native on a login node) stops before main on every rank with what
# is missing, not SIGILL (AE_CPU_TEST_MISSING pretends this CPU lacks instruction sets it has)
expect_fail 10 "instructions this CPU lacks \(sse2\).*AE_NATIVE=OFF" env AE_CPU_TEST_MISSING=sse2 "$AETRAIN" --version
expect_fail 10 "lacks \(sse2\)" mpi 2 -x AE_CPU_TEST_MISSING=sse2 "$AETRAIN" train "$WORK/ok.ini"
if out=$(AE_CPU_TEST_MISSING=bogus "$AETRAIN" --version 2>&1); then ok "a feature not in the build is not checked: $out"
else bad "AE_CPU_TEST_MISSING=bogus: $out"; fi

# data errors on every rank: missing file, truncated file, wrong magic
mkdir -p "$WORK/missing"
expect_fail 4 "t10k-images-idx3-ubyte" mpi 2 "$AETRAIN" train "$WORK/ok.ini" --set "data.dataset=$WORK/missing"
cp -r "$WORK/data" "$WORK/trunc"
truncate -s 5000 "$WORK/trunc/train-images-idx3-ubyte"
expect_fail 5 "trunc/train-images-idx3-ubyte.*truncated" mpi 2 "$AETRAIN" train "$WORK/ok.ini" \
  --set "data.dataset=$WORK/trunc"
cp -r "$WORK/data" "$WORK/magic"
printf '\x00\x00\x0d\x03' | dd of="$WORK/magic/t10k-images-idx3-ubyte" bs=1 conv=notrunc status=none
expect_fail 5 "magic/t10k-images-idx3-ubyte" mpi 2 "$AETRAIN" train "$WORK/ok.ini" --set "data.dataset=$WORK/magic"

# checkpoints: a good run, then a truncated one and another model's refused
mpi 2 "$AETRAIN" train "$WORK/ok.ini" --run good --quiet
good=$(newest_ckpt "$WORK/runs/good")
head -c 100 "$good" > "$WORK/short.aeck"
expect_fail 5 "short.aeck" mpi 2 "$AETRAIN" train "$WORK/ok.ini" --resume "$WORK/short.aeck" --run r1
expect_fail 5 "short.aeck" "$AETRAIN" eval "$WORK/short.aeck"
expect_fail 6 "another model" mpi 2 "$AETRAIN" train "$WORK/ok.ini" --set 'model.encoder=dense(8, relu)' \
  --resume "$good" --run r2
# eval of the good checkpoint works with any rank count
if out=$(mpi 2 "$AETRAIN" eval "$good" 2>&1) && grep -q "mse" <<<"$out"; then ok "eval: $(grep mse <<<"$out")"
else bad "eval failed: $out"; fi
finish
