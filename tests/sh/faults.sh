#!/usr/bin/env bash
# A fault on one rank ends the whole job within seconds with a message,
# never a hang (faults injected with AE_FAULT, see src/train.c).
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 400 100
cat > "$WORK/f.ini" <<EOC
[model]
encoder = dense(16, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 20
epochs = 2
validation = 50
probe = false
watchdog = 3
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
AE_FAULT_ARGS=() # more aetrain arguments of a case
# within LIMIT seconds, exit CODE (or any non-zero code when CODE is 'nz'), output matching PATTERN
fault_case() {
  local fault=$1 code=$2 limit=$3 pattern=$4
  local t0=$SECONDS out rc
  set +e
  out=$(AE_FAULT=$fault mpi 2 -x AE_FAULT "$AETRAIN" train "$WORK/f.ini" --quiet "${AE_FAULT_ARGS[@]}" 2>&1)
  rc=$?
  set -e
  local took=$((SECONDS - t0))
  if { [ "$code" = nz ] && [ "$rc" -ne 0 ] || [ "$rc" = "$code" ]; } && [ "$took" -le "$limit" ] &&
     grep -qE -- "$pattern" <<<"$out"; then
    ok "$fault: exit $rc after ${took}s: $(grep -E -m1 -- "$pattern" <<<"$out")"
  else
    bad "$fault: exit $rc after ${took}s (want $code within ${limit}s and /$pattern/)"
    echo "$out" | tail -n 15
  fi
}
fault_case loadfail:1 4 20 "rank 1: injected fault: rank 1 cannot read its data"
fault_case nan:1:7 8 20 "non-finite loss at epoch 1, step 7"
# the other rank waits in the gradient sum: the node's barrier (train.allreduce = node, the default)
# or MPI_Allreduce
fault_case stall:1:5 nz 30 "waited [0-9]+ s in MPI_Barrier\(node gradient sum\) at step 5"
AE_FAULT_ARGS=(--set train.allreduce=mpi)
fault_case stall:1:5 nz 30 "waited [0-9]+ s in MPI_Allreduce\(sum\) at step 5"
AE_FAULT_ARGS=()
fault_case exit:0:5 nz 30 "."
AE_FAULT_ARGS=(--set train.allreduce=mpi)
fault_case exit:0:5 nz 30 "."
finish
