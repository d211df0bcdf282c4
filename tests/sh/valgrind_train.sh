#!/usr/bin/env bash
# A short training (1 rank, singleton: no mpirun; 20 steps of a tiny dense
# AE, checkpoints, evaluation) under valgrind memcheck with Open MPI's
# suppressions: no memory error and no definite leak in aetrain's own code.
# Open MPI leaks on its own (MPI_Init/MPI_Finalize, components unloaded at
# exit show as ???): a report counts as aetrain's when, walking its stack
# from the top, a frame in $SRC/src/ comes before any frame of Open MPI,
# hwloc, libevent, OpenBLAS or an unloaded library (libc, zlib, zstd are
# looked through). valgrind cannot run AVX-512 code, which -march=native
# emits on such hosts, so the test builds its own aetrain with
# AE_NATIVE=OFF and -g (file:line in the reports) in
# $(dirname AETRAIN)/valgrind-build (AE_VG_BUILD overrides; incremental).
. "$(dirname "$0")/common.bash"
if ! command -v valgrind >/dev/null; then
  bad "valgrind is not installed (apt-get install valgrind)"
  finish
  exit 1
fi
SUPP=/usr/share/openmpi/openmpi-valgrind.supp
VGB=${AE_VG_BUILD:-$(dirname "$AETRAIN")/valgrind-build}
if ! { cmake -S "$SRC" -B "$VGB" -DAE_NATIVE=OFF -DCMAKE_C_FLAGS=-g >"$WORK/cmake.log" 2>&1 &&
  cmake --build "$VGB" -j 2 --target aetrain >>"$WORK/cmake.log" 2>&1; }; then
  bad "cannot build aetrain for valgrind in $VGB"
  tail -n 30 "$WORK/cmake.log"
  finish
  exit 1
fi
make_data "$WORK/data" 120 40
cat > "$WORK/v.ini" <<EOC
[model]
encoder = dense(16, relu)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 20
epochs = 4
max_steps = 20
validation = 20
probe = false
threads = 1
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
supp=()
[ -f "$SUPP" ] && supp=(--suppressions="$SUPP")
t0=$SECONDS
set +e
timeout -k 5 300 valgrind --leak-check=full --error-exitcode=99 "${supp[@]}" --num-callers=40 --fullpath-after= \
  --log-file="$WORK/vg.log" "$VGB/aetrain" train "$WORK/v.ini" --run v --quiet >"$WORK/out.txt" 2>&1
rc=$?
set -e
secs=$((SECONDS - t0))
ck=$(newest_ckpt "$WORK/runs/v" 2>/dev/null || true)
if { [ "$rc" -eq 0 ] || [ "$rc" -eq 99 ]; } && grep -q 'ERROR SUMMARY' "$WORK/vg.log" && [ -n "$ck" ] &&
  "$TOOL" info "$ck" | grep -q ' step 20 '; then
  ok "training under valgrind ran to the end in ${secs}s (valgrind exit $rc)"
else
  bad "training under valgrind: exit $rc after ${secs}s"
  tail -n 20 "$WORK/out.txt" "$WORK/vg.log"
fi

# one line per error and per definite leak: OURS or FOREIGN, the headline, the deciding frame
# (classified.txt); the whole records of ours in ours.txt
awk -v src="$SRC/src/" -v full="$WORK/ours.txt" '
  function flush() {
    if (head != "" && head !~ /(possibly|indirectly) lost in|still reachable|SUMMARY|in use at exit|total heap usage/ &&
        (head ~ /definitely lost in loss record/ || decided != "")) {
      print (decided == "ours" ? "OURS" : "FOREIGN") "\t" head "\t" frame
      if (decided == "ours") print record > full
    }
    head = ""; decided = ""; frame = ""; done = 0; record = ""
  }
  { sub(/^==[0-9]+== ?/, ""); record = record $0 "\n" }
  /^$/ { flush(); next }
  head == "" { head = $0; next }
  /^ *(at|by) 0x/ && !done {
    if (index($0, src)) { decided = "ours"; frame = $0; done = 1 }
    else if ($0 ~ /libmpi|libopen-(pal|rte)|pmix|hwloc|libevent|mca_|\?\?\?|openblas|gfortran|ld-linux|dl-[a-z]/) {
      decided = "foreign"; frame = $0; done = 1
    }
    next
  }
  /Address 0x|Block was alloc|block of size/ { done = 1 }
  END { flush() }' "$WORK/vg.log" >"$WORK/classified.txt"
ours=$(grep -c '^OURS' "$WORK/classified.txt" || true)
foreign=$(grep -c '^FOREIGN' "$WORK/classified.txt" || true)
echo "valgrind: $ours report(s) in aetrain's code, $foreign in Open MPI and other libraries (ignored)"
if [ "$ours" -eq 0 ]; then
  ok "no memory error or definite leak in aetrain's code"
else
  bad "$ours memory error(s) or definite leak(s) in aetrain's code:"
  head -n 60 "$WORK/ours.txt"
fi
finish
