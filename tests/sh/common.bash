# Shared set-up of the shell tests: tests/sh/<name>.sh AETRAIN TESTTOOL SRCDIR
set -euo pipefail
AETRAIN=$1
TOOL=$2
SRC=$3
. "$SRC/scripts/mpienv.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aetest-sh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILS=0
PASSES=0

# mpi NP CMD...: run under mpirun with a hard time limit (a hang is a failure): 300 s, or
# AE_TEST_MPI_TIMEOUT (scripts/test.sh gives the sanitizer build more)
mpi() {
  local np=$1; shift
  timeout -k 5 "${AE_TEST_MPI_TIMEOUT:-300}" mpirun -n "$np" --oversubscribe "$@"
}

ok() { PASSES=$((PASSES + 1)); echo "ok: $*"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }

# expect_fail CODE PATTERN CMD...: the command exits with CODE and its output matches PATTERN
expect_fail() {
  local code=$1 pattern=$2; shift 2
  local out rc
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -eq "$code" ] && grep -qE -- "$pattern" <<<"$out"; then
    ok "exit $rc, '$pattern': $*"
  else
    bad "expected exit $code and /$pattern/, got exit $rc: $*"
    echo "$out" | tail -n 20
  fi
}

# For parameters compared across P: SGD with momentum, linear in the gradient. Adam's first steps
# move every parameter by about lr * sign(g), so a gradient near 0 turns the float association of
# P slices' sums into differences of up to lr (seen: 1.2e-5 of the largest parameter between P = 1
# and 3 in balance.sh, and between P = 1 and 2 with KL sparsity in accum.sh; 1.4e-7 with SGD)
SGD_OPT=(--set optim.kind=sgd --set optim.lr=0.5 --set optim.momentum=0.9)

# json_num FILE KEY: the number after "KEY": in a one-line JSON file (result.json)
json_num() { sed -nE "s/.*\"$2\": *([-0-9.eE+]+).*/\1/p" "$1"; }

# newest numbered checkpoint of a run folder
newest_ckpt() { ls "$1"/ckpt/ckpt-s*.aeck | sort | tail -n 1; }

finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

make_data() { # make_data DIR NTRAIN NTEST [SIDE]
  mkdir -p "$1"
  "$TOOL" mkdata "$@"
}

# write_cfg NAME [EXTRA_OPTIM] < model-and-loss sections: WORK/NAME.ini, 20 steps of Adam (lr 2e-3,
# batch 25, seed 7; EXTRA_OPTIM: more [optim] lines) on WORK/data, run folders in WORK/runs
write_cfg() {
  { cat; cat <<EOC
[optim]
kind = adam
lr = 2e-3
${2:-}
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

# WORK/tied.ini and WORK/bnsync.ini (12 x 12 images) for the gradient-sum tests: a dense
# autoencoder with tied weights and L2 (a decoder layer adds into an encoder layer's gradient), and
# a conv autoencoder with synchronized batch norm (its batch statistics ride in the summed buffer)
write_tied_bnsync() {
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
}

compare() { # compare LABEL RUN_A RUN_B: the newest checkpoints' params and state within TOL
  local out
  if out=$("$TOOL" compare "$(newest_ckpt "$WORK/runs/$2")" "$(newest_ckpt "$WORK/runs/$3")" "$TOL"); then
    ok "$1: $out"
  else
    bad "$1: $out"
  fi
}

bitequal() { # bitequal LABEL RUN_A RUN_B: the newest checkpoints bitwise equal
  local out
  if out=$("$TOOL" bitequal "$(newest_ckpt "$WORK/runs/$2")" "$(newest_ckpt "$WORK/runs/$3")"); then
    ok "$1: $out"
  else
    bad "$1: $out"
  fi
}

# stalled LABEL PATTERN [ARGS...]: with rank 1 stalled at step 5 (AE_FAULT), training WORK/stall.ini
# (which sets a short [train] watchdog) at P = 2 exits non-zero, the other rank reporting that it
# waited in the collective PATTERN at step 5
stalled() {
  local label=$1 pattern=$2 out rc
  shift 2
  set +e
  out=$(AE_FAULT=stall:1:5 mpi 2 -x AE_FAULT "$AETRAIN" train "$WORK/stall.ini" --run "stall-$label" --quiet "$@" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -ne 0 ] && grep -qE "waited [0-9]+ s in $pattern at step 5" <<<"$out"; then
    ok "stalled rank, $label: exit $rc: $(grep -E -m1 waited <<<"$out")"
  else
    bad "stalled rank, $label: exit $rc: $out"
  fi
}
