#!/usr/bin/env bash
# A real two-host run on one machine: two network namespaces, each a "host"
# with its own host name (a UTS namespace made by the rsh agent), joined by a
# bridge on a private /24 picked from 10.77.0.0/16 among the ones no
# interface or route of this machine uses; made and removed by
# cluster/netns-hosts.sh (the code the scaling study uses too). mpirun runs
# in the root namespace (the bridge's .1 address), starts one orted per
# namespace through the rsh agent (`--mca plm_rsh_agent`), and the ranks
# talk TCP over the veths only (`btl tcp,self`, `btl_tcp_if_include` /
# `oob_tcp_if_include` = the test subnet). The hostfile names the hosts by
# IP, so /etc/hosts is not touched. Asserted:
#   - the 2-host run (20 steps, one rank per host) exits 0; its run.json
#     lists the two namespace host names and ranks_per_node 1;
#   - the same training with mpirun -n 2 on this host (run.json: one host,
#     ranks_per_node 2) gives the same final checkpoint within 1e-5
#     (`ae_testtool compare`; both at 1 thread per rank, so it is bitwise
#     equal in practice: printed too);
#   - the allreduce really crossed the veths: each host's veth carried at
#     least 20 steps x the gradient's bytes in each direction;
#   - with two ranks per host (4 ranks), the node-shared gradient sum and the
#     allreduce of each chunk between the hosts: `ae_testtool nodesum` is
#     bitwise exact, the training logs that path and ends within 1e-5 of
#     4 ranks on this host with one MPI_Allreduce;
#   - no process is left in the namespaces after mpirun returns.
# Needs root (unshare, nsenter, ip). It FAILS when the hosts cannot be made.
# The namespaces are held by a sleeping process each (unshare --net) and
# entered by pid with nsenter: no named /run/netns mounts, so this works in a
# chroot too.
# Everything it makes (namespaces, veths, bridge, processes in the
# namespaces, the temporary folder) is removed on exit, by name / pid.
. "$(dirname "$0")/common.bash"
. "$SRC/cluster/netns-hosts.sh"

HOSTS=$WORK/hosts
cleanup() {
  set +e
  netns_down "$HOSTS"
  rm -rf "$WORK"
}
trap cleanup EXIT

setup_failed() {
  bad "cannot make the two hosts: $*"
  finish || true
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(now)
netns_up 2 "$HOSTS" "aemh$(($$ % 100000))" 2>"$WORK/setup.err" || setup_failed "$(tr '\n' ' ' <"$WORK/setup.err")"
NSA=${NETNS_NAMES[0]} NSB=${NETNS_NAMES[1]} IPA=${NETNS_IPS[0]} IPB=${NETNS_IPS[1]}
PIDA=${NETNS_PIDS[0]} PIDB=${NETNS_PIDS[1]} VA=${NETNS_VETHS[0]} VB=${NETNS_VETHS[1]}
BR=$NETNS_BRIDGE NET=$NETNS_NET
ok "two hosts: namespaces $NSA ($IPA) and $NSB ($IPB) on bridge $BR ($NET.1/24), $(since "$t0") s to make"

make_data "$WORK/data" 600 200
cat >"$WORK/m.ini" <<EOC
[model]
encoder = dense(64, relu), dense(16, tanh, name=code)
decoder = dense(64, elu), dense(784, sigmoid)
[loss]
kind = bce
l1_activity = 1e-4
[optim]
kind = adam
lr = 1e-3
[train]
batch = 64
epochs = 3
max_steps = 20
validation = 100
probe = false
threads = 1
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
STEPS=20

stat_bytes() { cat "/sys/class/net/$1/statistics/$2"; }
ta0=$(stat_bytes "$VA" tx_bytes) ra0=$(stat_bytes "$VA" rx_bytes)
tb0=$(stat_bytes "$VB" tx_bytes) rb0=$(stat_bytes "$VB" rx_bytes)

t0=$(now)
set +e
timeout -k 5 180 mpirun -n 2 --map-by node --bind-to none "${NETNS_MPIRUN_ARGS[@]}" \
  "$AETRAIN" train "$WORK/m.ini" --run multi >"$WORK/multi.out" 2>&1
rc=$?
set -e
t_multi=$(since "$t0")
ta=$(( $(stat_bytes "$VA" tx_bytes) - ta0 )) ra=$(( $(stat_bytes "$VA" rx_bytes) - ra0 ))
tb=$(( $(stat_bytes "$VB" tx_bytes) - tb0 )) rb=$(( $(stat_bytes "$VB" rx_bytes) - rb0 ))
if [ "$rc" -eq 0 ]; then
  ok "mpirun -n 2 over $NSA + $NSB: exit 0 in $t_multi s"
else
  bad "mpirun -n 2 over $NSA + $NSB: exit $rc"
  tail -n 30 "$WORK/multi.out"
  cat "$HOSTS/agent.log" 2>/dev/null || true
fi

# json_field FILE KEY: the value of a top-level key of run.json (without quotes)
json_field() { sed -n "s/^  \"$2\": //p" "$1" | sed 's/,$//; s/^"//; s/"$//'; }
mj=$WORK/runs/multi/run.json
mhosts=$(json_field "$mj" hosts 2>/dev/null || true)
mrpn=$(json_field "$mj" ranks_per_node 2>/dev/null || true)
if [ "$mhosts" = "$NSA,$NSB" ] || [ "$mhosts" = "$NSB,$NSA" ]; then
  ok "run.json hosts of the 2-host run: \"$mhosts\" (two distinct host names, one per namespace)"
else
  bad "run.json hosts of the 2-host run: '$mhosts', expected $NSA and $NSB"
fi
if [ "$mrpn" = 1 ]; then ok "run.json ranks_per_node of the 2-host run: 1"
else bad "run.json ranks_per_node of the 2-host run: '$mrpn', expected 1"; fi

# the same training on this host alone
t0=$(now)
mpi 2 "$AETRAIN" train "$WORK/m.ini" --run local --quiet
t_local=$(since "$t0")
lj=$WORK/runs/local/run.json
lhosts=$(json_field "$lj" hosts)
lrpn=$(json_field "$lj" ranks_per_node)
if [ "$lrpn" = 2 ] && [ -n "$lhosts" ] && [ "${lhosts#*,}" = "$lhosts" ]; then
  ok "local mpirun -n 2: exit 0 in $t_local s, run.json hosts \"$lhosts\", ranks_per_node 2"
else
  bad "local mpirun -n 2: run.json hosts '$lhosts', ranks_per_node '$lrpn'"
fi

cm=$(newest_ckpt "$WORK/runs/multi" 2>/dev/null || true)
cl=$(newest_ckpt "$WORK/runs/local" 2>/dev/null || true)
if [ -n "$cm" ] && [ -n "$cl" ] && out=$("$TOOL" compare "$cl" "$cm" 1e-5); then
  ok "2 hosts vs 1 host, final checkpoints within 1e-5: $out"
  echo "info: bitwise: $("$TOOL" bitequal "$cl" "$cm" || true)"
else
  bad "2 hosts vs 1 host: ${out:-no checkpoint} ('$cm' vs '$cl')"
fi

# the gradient allreduce went over the veths: at least one gradient per step each way
nparams=$(sed -n 's/^model: .* \([0-9]*\) parameters.*/\1/p' "$WORK/runs/multi/log.txt" | head -n 1)
need=$(( STEPS * ${nparams:-0} * 4 ))
if [ "${nparams:-0}" -gt 0 ] && [ "$ta" -ge "$need" ] && [ "$ra" -ge "$need" ] && [ "$tb" -ge "$need" ] && [ "$rb" -ge "$need" ]; then
  ok "veth traffic: $VA tx $ta rx $ra, $VB tx $tb rx $rb bytes (>= $STEPS steps x $nparams params x 4 B = $need)"
else
  bad "veth traffic: $VA tx $ta rx $ra, $VB tx $tb rx $rb bytes; expected >= $need each ($nparams params)"
fi

# two ranks per host: each host sums through its shared memory, then each chunk is summed between the
# hosts by the ranks of one local index (mpirun maps the ranks round-robin: 0, 2 on one host, 1, 3 on
# the other); the sums are bitwise (b0 + b2) + (b1 + b3) on every rank
set +e
out=$(timeout -k 5 180 mpirun -n 4 --oversubscribe --map-by node --bind-to none "${NETNS_MPIRUN_ARGS[@]}" \
  "$TOOL" nodesum 17 100003 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] && [ "$(grep -c '4 ranks on 2 nodes, 2 per node: 0 of .*: ok$' <<<"$out")" = 6 ]; then
  ok "ae_testtool nodesum, 4 ranks on the 2 hosts: bitwise the node sums added between the hosts"
else
  bad "ae_testtool nodesum, 4 ranks on the 2 hosts: exit $rc: $out"
fi
set +e
timeout -k 5 180 mpirun -n 4 --oversubscribe --map-by node --bind-to none "${NETNS_MPIRUN_ARGS[@]}" \
  "$AETRAIN" train "$WORK/m.ini" --run multi4 --quiet >"$WORK/multi4.out" 2>&1
rc=$?
set -e
mpi 4 "$AETRAIN" train "$WORK/m.ini" --run local4 --quiet --set train.allreduce=mpi
line=$(grep -m1 'gradient allreduce' "$WORK/runs/multi4/log.txt" 2>/dev/null || true)
if [ "$rc" -eq 0 ] && [ "$line" = "gradient allreduce: the 2 ranks of each node sum through shared memory, then one allreduce between nodes" ]; then
  ok "4 ranks on the 2 hosts: $line"
else
  bad "4 ranks on the 2 hosts: exit $rc, log line '$line'"
  tail -n 20 "$WORK/multi4.out"
fi
c4=$(newest_ckpt "$WORK/runs/multi4" 2>/dev/null || true)
l4=$(newest_ckpt "$WORK/runs/local4" 2>/dev/null || true)
if [ -n "$c4" ] && [ -n "$l4" ] && out=$("$TOOL" compare "$l4" "$c4" 1e-5); then
  ok "4 ranks: 2 hosts x 2 (node sums) vs 1 host (one MPI_Allreduce), final checkpoints within 1e-5: $out"
else
  bad "4 ranks, 2 hosts x 2 vs 1 host: ${out:-no checkpoint} ('$c4' vs '$l4')"
fi

# orted and the ranks are gone from the namespaces
left=
for ((i = 0; i < 50; i++)); do
  left=$( { netns_pids "$PIDA" | grep -vx "$PIDA"; netns_pids "$PIDB" | grep -vx "$PIDB"; } || true)
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -z "$left" ]; then ok "no process left in the namespaces after mpirun"
else bad "processes left in the namespaces: $(echo $left)"; fi
finish
