#!/usr/bin/env bash
# The per-epoch breakdown of the step in metrics.csv (means over the ranks): allreduce_frac >=
# allreduce_exposed_frac >= wait_frac >= 0, and wait_frac (the waiting for slower ranks) is large when one rank is
# made slower (AE_FAULT=slow:1:MS sleeps MS ms in each of its steps) and 0 with one rank.
. "$(dirname "$0")/common.bash"
make_data "$WORK/data" 600 100
cat >"$WORK/b.ini" <<EOC
[model]
encoder = dense(32, relu), dense(8, tanh, name=code)
decoder = dense(32, relu), dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 50
epochs = 2
validation = 100
probe = false
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
# col RUN NAME: the column NAME of the last row of RUN's metrics.csv
col() { awk -F, -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i } END { print $k }' \
  "$WORK/runs/$1/metrics.csv"; }
mpi 1 "$AETRAIN" train "$WORK/b.ini" --run p1 --quiet
mpi 2 "$AETRAIN" train "$WORK/b.ini" --run p2 --quiet
AE_FAULT=slow:1:150 mpi 2 -x AE_FAULT "$AETRAIN" train "$WORK/b.ini" --run slow --quiet
if head -n 1 "$WORK/runs/p2/metrics.csv" | grep -q ',allreduce_exposed_frac,wait_frac$' &&
  grep -q '"wait_frac"' "$WORK/runs/p2/metrics.jsonl"; then
  ok "metrics.csv and metrics.jsonl have wait_frac"
else
  bad "no wait_frac column: $(head -n 1 "$WORK/runs/p2/metrics.csv")"
fi
for r in p1 p2 slow; do
  a=$(col $r allreduce_frac) e=$(col $r allreduce_exposed_frac) w=$(col $r wait_frac)
  if awk -v a="$a" -v e="$e" -v w="$w" 'BEGIN { exit !(a + 1e-4 >= e && e + 1e-4 >= w && w >= 0) }'; then
    ok "$r: allreduce $a >= exposed $e >= waiting $w >= 0"
  else
    bad "$r: allreduce '$a' exposed '$e' waiting '$w'"
  fi
done
[ "$(col p1 wait_frac)" = 0.0000 ] && ok "one rank: no waiting" || bad "one rank: wait_frac $(col p1 wait_frac)"
# rank 1 sleeps 150 ms a step, far longer than the step itself (a few ms, ~20 ms in the sanitizer build
# on a loaded machine): rank 0 waits nearly all its step and rank 1 not at all, so the mean over the two
# ranks is near 1/2 (S / 2(T + S) for a step of T ms: 0.44 even at T = 20)
w=$(col slow wait_frac)
if awk -v w="$w" 'BEGIN { exit !(w > 0.35 && w <= 0.5) }'; then
  ok "a rank 150 ms slower a step: waiting $w of the step"
else
  bad "a rank 150 ms slower a step: waiting only $w"
fi
grep -qE 'allreduce [0-9.]+% \(waiting [0-9.]+%\)' "$WORK/runs/slow/log.txt" && ok "the epoch line shows the waiting" ||
  bad "no waiting in the epoch line"
finish
