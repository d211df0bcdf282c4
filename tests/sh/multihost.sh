#!/usr/bin/env bash
# A real two-host run on one machine: two network namespaces, each a "host"
# with its own host name (a UTS namespace made by the rsh agent), joined by a
# bridge on a private /24 that this test picks from 10.77.0.0/16 among the
# ones no interface or route of this machine uses. mpirun runs in the root
# namespace (the bridge's .1 address), starts one orted per namespace through
# the rsh agent (`--mca plm_rsh_agent`), and the ranks talk TCP over the
# veths only (`btl tcp,self`, `btl_tcp_if_include` / `oob_tcp_if_include` =
# the test subnet). The hostfile names the hosts by IP, so /etc/hosts is not
# touched. Asserted:
#   - the 2-host run (20 steps, one rank per host) exits 0; its run.json
#     lists the two namespace host names and ranks_per_node 1;
#   - the same training with mpirun -n 2 on this host (run.json: one host,
#     ranks_per_node 2) gives the same final checkpoint within 1e-5
#     (`ae_testtool compare`; both at 1 thread per rank, so it is bitwise
#     equal in practice: printed too);
#   - the allreduce really crossed the veths: each host's veth carried at
#     least 20 steps x the gradient's bytes in each direction;
#   - no process is left in the namespaces after mpirun returns.
# Needs root (unshare, nsenter, ip). It FAILS when the hosts cannot be made.
# The namespaces are held by a sleeping process each (unshare --net) and
# entered by pid with nsenter: no named /run/netns mounts, so this works in a
# chroot too.
# Everything it makes (namespaces, veths, bridge, processes in the
# namespaces, the temporary folder) is removed on exit, by name / pid.
. "$(dirname "$0")/common.bash"

id=$(( $$ % 100000 ))
NSA=aemh${id}a
NSB=aemh${id}b
BR=aemh${id}br
VA=aemh${id}va
VB=aemh${id}vb
made_ns=()   # holder pids
made_links=()
PIDA= PIDB=

# pids of the processes in the network namespace of holder pid $1 (the holder included)
ns_pids() {
  local want p
  want=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  set +e
  local h p
  for h in "${made_ns[@]}"; do # processes we started inside our namespaces (orted, ranks), then the holder
    for p in $(ns_pids "$h"); do [ "$p" != "$h" ] && kill -9 "$p" 2>/dev/null; done
    kill -9 "$h" 2>/dev/null
  done
  for l in "${made_links[@]}"; do ip link del "$l" 2>/dev/null; done
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

[ "$(id -u)" -eq 0 ] || setup_failed "needs root (unshare --net/--uts, nsenter)"
command -v ip >/dev/null || setup_failed "no 'ip' (apt-get install iproute2)"
command -v unshare >/dev/null || setup_failed "no 'unshare' (util-linux)"
command -v nsenter >/dev/null || setup_failed "no 'nsenter' (util-linux)"

# Serialize against another copy of this test (subnet choice), then pick a
# free 10.77.X.0/24: no address or route of this machine inside it.
lockdir=/run/lock
[ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
exec 9>"$lockdir/aetrain-multihost.lock"
flock -w 600 9 || setup_failed "waited 10 min for $lockdir/aetrain-multihost.lock"
used=$( { ip -4 -o addr show; ip -4 route show table all; } 2>/dev/null | grep -o '10\.77\.[0-9]*\.' | sort -u || true)
NET=
for x in $(seq 0 254); do
  if ! grep -qx "10\.77\.$x\." <<<"$used"; then NET=10.77.$x; break; fi
done
[ -n "$NET" ] || setup_failed "no free /24 in 10.77.0.0/16"
IPR=$NET.1 IPA=$NET.2 IPB=$NET.3

t0=$(now)
{
  unshare --net sleep 100000 & PIDA=$!
  disown "$PIDA"
  made_ns+=("$PIDA")
  unshare --net sleep 100000 & PIDB=$!
  disown "$PIDB"
  made_ns+=("$PIDB")
  # wait until each holder is in its own namespace
  for _ in $(seq 50); do
    [ "$(readlink /proc/$PIDA/ns/net)" != "$(readlink /proc/$$/ns/net)" ] &&
      [ "$(readlink /proc/$PIDB/ns/net)" != "$(readlink /proc/$$/ns/net)" ] && break
    sleep 0.1
  done
  [ "$(readlink /proc/$PIDA/ns/net)" != "$(readlink /proc/$$/ns/net)" ] &&
    [ "$(readlink /proc/$PIDB/ns/net)" != "$(readlink /proc/$$/ns/net)" ] &&
    ip link add "$BR" type bridge && made_links+=("$BR") &&
    ip addr add "$IPR/24" dev "$BR" && ip link set "$BR" up &&
    ip link add "$VA" type veth peer name eth0 netns "$PIDA" && made_links+=("$VA") &&
    ip link add "$VB" type veth peer name eth0 netns "$PIDB" && made_links+=("$VB") &&
    ip link set "$VA" master "$BR" up && ip link set "$VB" master "$BR" up &&
    nsenter -t "$PIDA" -n ip addr add "$IPA/24" dev eth0 && nsenter -t "$PIDA" -n ip link set eth0 up &&
    nsenter -t "$PIDA" -n ip link set lo up &&
    nsenter -t "$PIDB" -n ip addr add "$IPB/24" dev eth0 && nsenter -t "$PIDB" -n ip link set eth0 up &&
    nsenter -t "$PIDB" -n ip link set lo up
} 2>"$WORK/setup.err" || setup_failed "$(tr '\n' ' ' <"$WORK/setup.err")"
flock -u 9
# each namespace must see its own host name
for pair in "$NSA:$PIDA" "$NSB:$PIDB"; do
  name=${pair%%:*} pid=${pair##*:}
  h=$(nsenter -t "$pid" -n unshare --uts sh -c "hostname $name && hostname" 2>&1) && [ "$h" = "$name" ] ||
    setup_failed "unshare --uts in $name: '$h'"
done
ok "two hosts: namespaces $NSA ($IPA) and $NSB ($IPB) on bridge $BR ($IPR/24), $(since "$t0") s to make"

# The rsh agent: "AGENT HOST COMMAND...": run COMMAND in HOST's namespace,
# in a UTS namespace whose host name is the namespace's name.
cat >"$WORK/agent.sh" <<EOA
#!/bin/sh
host=\$1; shift
case \$host in
  $IPA|$NSA) ns=$NSA pid=$PIDA ;;
  $IPB|$NSB) ns=$NSB pid=$PIDB ;;
  *) echo "agent: unknown host '\$host'" >&2; exit 255 ;;
esac
echo "agent: \$host -> \$ns" >>"$WORK/agent.log"
exec nsenter -t "\$pid" -n unshare --uts sh -c 'hostname "\$1" && shift && exec sh -c "\$*"' agent "\$ns" "\$@"
EOA
chmod +x "$WORK/agent.sh"
printf '%s slots=1\n%s slots=1\n' "$IPA" "$IPB" >"$WORK/hostfile"

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
timeout -k 5 180 mpirun -n 2 --hostfile "$WORK/hostfile" --map-by node --bind-to none \
  --mca plm_rsh_agent "$WORK/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self --mca btl_tcp_if_include "$NET.0/24" --mca oob_tcp_if_include "$NET.0/24" \
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
  cat "$WORK/agent.log" 2>/dev/null || true
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

# orted and the ranks are gone from the namespaces
left=
for ((i = 0; i < 50; i++)); do
  left=$( { ns_pids "$PIDA" | grep -vx "$PIDA"; ns_pids "$PIDB" | grep -vx "$PIDB"; } || true)
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -z "$left" ]; then ok "no process left in the namespaces after mpirun"
else bad "processes left in the namespaces: $(echo $left)"; fi
finish
