#!/usr/bin/env bash
# netns-hosts.sh - N "hosts" on this machine for multi-host MPI runs: each a
# network namespace (held by a sleeping process, entered by pid with
# nsenter: no /run/netns mounts, so it works in a chroot too) with a veth on
# a bridge in the root namespace, on a private /24 picked from 10.77.0.0/16
# among the ones no interface or route of this machine uses (.1 the bridge,
# .2, .3, ... the hosts). An rsh agent script runs mpirun's daemons in a
# host's namespace, in a UTS namespace named after the host, so run.json
# lists N distinct host names. Needs root (unshare, nsenter, ip).
#
#   cluster/netns-hosts.sh up N DIR [PREFIX]   make the hosts; writes DIR/hostfile (IP slots=1
#                                              per host), DIR/agent.sh, DIR/mpirun-args (one
#                                              argument a line) and DIR/env (state, sourceable);
#                                              prints the mpirun arguments. Exit 1 (after
#                                              removing what it made) when it cannot.
#   cluster/netns-hosts.sh down DIR            remove them: the processes in the namespaces, the
#                                              holders, the veths and the bridge (by pid / name)
#   cluster/netns-hosts.sh args DIR            print the mpirun arguments again
#
# Use:  cluster/netns-hosts.sh up 2 /tmp/h >/dev/null
#       mpirun -n 2 --map-by node --bind-to none $(cat /tmp/h/mpirun-args) build/aetrain train ...
#       cluster/netns-hosts.sh down /tmp/h
# --bind-to none: every host's daemon binds as if it had the whole machine (docs/cluster.md).
#
# Sourced (tests/sh/multihost.sh, cluster/scaling-study), it defines
#   netns_up N DIR [PREFIX]  the same as "up", and sets in the caller's shell NETNS_NAMES,
#                            NETNS_PIDS (the holders), NETNS_IPS, NETNS_VETHS (root-side veth
#                            of each host), NETNS_BRIDGE, NETNS_NET ("10.77.X"), NETNS_SUBNET,
#                            NETNS_MPIRUN_ARGS (array); on failure returns 1 with the reason on
#                            stderr and leaves what it made for netns_down
#   netns_down DIR           the same as "down" (safe to call twice, or after a partial up)
#   netns_pids HOLDER_PID    the pids in the namespace of a holder (the holder included)
# Host names are PREFIX + a, b, c, ... (PREFIX default aens<pid>; keep it short: interface
# names are PREFIX + "br" / "v<i>", at most 15 characters).

NETNS_LOCK_NAME=aetrain-multihost.lock # shared with older copies of the multi-host test

netns_pids() {
  local want p
  want=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

_netns_err() { echo "netns-hosts: $*" >&2; }

# record STATEFILE LINE: append a line of state as soon as a thing exists, so that a failed
# or interrupted "up" can be undone
_netns_record() { echo "$2" >>"$1"; }

netns_up() {
  local n=$1 dir=$2 prefix=${3:-aens$(($$ % 100000))}
  local state i pid self lockdir lockfd used x h name ip veth letters=abcdefghijklmnopqrstuvwxyz
  NETNS_NAMES=() NETNS_PIDS=() NETNS_IPS=() NETNS_VETHS=() NETNS_BRIDGE='' NETNS_NET='' NETNS_SUBNET=''
  NETNS_MPIRUN_ARGS=()
  case $n in '' | *[!0-9]*) _netns_err "N must be a number of hosts: '$n'"; return 1 ;; esac
  if [ "$n" -lt 1 ] || [ "$n" -gt 26 ]; then _netns_err "N must be 1 to 26: $n"; return 1; fi
  if [ ${#prefix} -gt 11 ]; then _netns_err "prefix '$prefix' too long (at most 11 characters)"; return 1; fi
  [ "$(id -u)" -eq 0 ] || { _netns_err "needs root (unshare --net/--uts, nsenter, ip)"; return 1; }
  command -v ip >/dev/null || { _netns_err "no 'ip' (apt-get install iproute2)"; return 1; }
  command -v unshare >/dev/null || { _netns_err "no 'unshare' (util-linux)"; return 1; }
  command -v nsenter >/dev/null || { _netns_err "no 'nsenter' (util-linux)"; return 1; }
  mkdir -p "$dir" || { _netns_err "cannot make $dir"; return 1; }
  dir=$(cd "$dir" && pwd)
  state=$dir/env
  : >"$state" || { _netns_err "cannot write $state"; return 1; }

  # Serialize against other copies (the subnet choice), then pick a free 10.77.X.0/24.
  lockdir=/run/lock
  [ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
  exec {lockfd}>"$lockdir/$NETNS_LOCK_NAME"
  if ! flock -w 600 "$lockfd"; then
    exec {lockfd}>&-
    _netns_err "waited 10 min for $lockdir/$NETNS_LOCK_NAME"
    return 1
  fi
  used=$( { ip -4 -o addr show; ip -4 route show table all; } 2>/dev/null | grep -o '10\.77\.[0-9]*\.' | sort -u || true)
  for x in $(seq 0 254); do
    if ! grep -qx "10\.77\.$x\." <<<"$used"; then NETNS_NET=10.77.$x; break; fi
  done
  if [ -z "$NETNS_NET" ]; then
    exec {lockfd}>&-
    _netns_err "no free /24 in 10.77.0.0/16"
    return 1
  fi
  NETNS_SUBNET=$NETNS_NET.0/24
  _netns_record "$state" "NETNS_NET=$NETNS_NET NETNS_SUBNET=$NETNS_SUBNET"

  # the holders: one sleeping process per namespace (no inherited stdout: a caller's $(...)
  # must not wait for them)
  self=$(readlink /proc/$$/ns/net)
  for ((i = 0; i < n; i++)); do
    unshare --net sleep 1000000 </dev/null >/dev/null 2>&1 &
    pid=$!
    disown "$pid"
    NETNS_PIDS+=("$pid")
    _netns_record "$state" "NETNS_PIDS+=($pid)"
  done
  for pid in "${NETNS_PIDS[@]}"; do # wait until each holder is in its own namespace
    for _ in $(seq 50); do
      [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$self" ] && break
      sleep 0.1
    done
    if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$self" ] || ! [ -e "/proc/$pid" ]; then
      exec {lockfd}>&-
      _netns_err "unshare --net: holder $pid did not get its own network namespace"
      return 1
    fi
  done

  NETNS_BRIDGE=${prefix}br
  if ! { ip link add "$NETNS_BRIDGE" type bridge && _netns_record "$state" "NETNS_LINKS+=($NETNS_BRIDGE)" &&
    ip addr add "$NETNS_NET.1/24" dev "$NETNS_BRIDGE" && ip link set "$NETNS_BRIDGE" up; } 2>"$dir/setup.err"; then
    exec {lockfd}>&-
    _netns_err "bridge $NETNS_BRIDGE: $(tr '\n' ' ' <"$dir/setup.err")"
    return 1
  fi
  _netns_record "$state" "NETNS_BRIDGE=$NETNS_BRIDGE"
  for ((i = 0; i < n; i++)); do
    pid=${NETNS_PIDS[$i]} name=$prefix${letters:$i:1} ip=$NETNS_NET.$((i + 2)) veth=${prefix}v$i
    if ! { ip link add "$veth" type veth peer name eth0 netns "$pid" &&
      _netns_record "$state" "NETNS_LINKS+=($veth)" &&
      ip link set "$veth" master "$NETNS_BRIDGE" up &&
      nsenter -t "$pid" -n ip addr add "$ip/24" dev eth0 && nsenter -t "$pid" -n ip link set eth0 up &&
      nsenter -t "$pid" -n ip link set lo up; } 2>"$dir/setup.err"; then
      exec {lockfd}>&-
      _netns_err "host $name ($ip): $(tr '\n' ' ' <"$dir/setup.err")"
      return 1
    fi
    NETNS_NAMES+=("$name") NETNS_IPS+=("$ip") NETNS_VETHS+=("$veth")
    _netns_record "$state" "NETNS_NAMES+=($name) NETNS_IPS+=($ip) NETNS_VETHS+=($veth)"
  done
  exec {lockfd}>&- # the subnet is now in use: other copies see it

  # each namespace must be able to take its own host name
  for ((i = 0; i < n; i++)); do
    name=${NETNS_NAMES[$i]}
    if ! h=$(nsenter -t "${NETNS_PIDS[$i]}" -n unshare --uts sh -c "hostname $name && hostname" 2>&1) ||
      [ "$h" != "$name" ]; then
      _netns_err "unshare --uts in $name: '$h'"
      return 1
    fi
  done

  # shellcheck disable=SC2016 # the agent's own variables
  # The rsh agent: "AGENT HOST COMMAND...": run COMMAND in HOST's namespace, in a UTS
  # namespace whose host name is the host's name.
  {
    echo '#!/bin/sh'
    echo 'host=$1; shift'
    echo 'case $host in'
    for ((i = 0; i < n; i++)); do
      echo "  ${NETNS_IPS[$i]}|${NETNS_NAMES[$i]}) ns=${NETNS_NAMES[$i]} pid=${NETNS_PIDS[$i]} ;;"
    done
    echo "  *) echo \"agent: unknown host '\$host'\" >&2; exit 255 ;;"
    echo 'esac'
    echo "echo \"agent: \$host -> \$ns\" >>\"$dir/agent.log\""
    echo 'exec nsenter -t "$pid" -n unshare --uts sh -c '\''hostname "$1" && shift && exec sh -c "$*"'\'' agent "$ns" "$@"'
  } >"$dir/agent.sh" && chmod +x "$dir/agent.sh" || { _netns_err "cannot write $dir/agent.sh"; return 1; }
  for ((i = 0; i < n; i++)); do echo "${NETNS_IPS[$i]} slots=1"; done >"$dir/hostfile"
  # shellcheck disable=SC2054 # "tcp,self" is one argument
  NETNS_MPIRUN_ARGS=(--hostfile "$dir/hostfile" --mca plm_rsh_agent "$dir/agent.sh" --mca plm_rsh_no_tree_spawn 1
    --mca btl tcp,self --mca btl_tcp_if_include "$NETNS_SUBNET" --mca oob_tcp_if_include "$NETNS_SUBNET")
  printf '%s\n' "${NETNS_MPIRUN_ARGS[@]}" >"$dir/mpirun-args"
  return 0
}

netns_down() {
  local dir=$1 h p l
  [ -f "$dir/env" ] || return 0
  local NETNS_PIDS=() NETNS_LINKS=() NETNS_NAMES=() NETNS_IPS=() NETNS_VETHS=() NETNS_NET='' NETNS_SUBNET='' NETNS_BRIDGE=''
  # shellcheck disable=SC1091
  . "$dir/env"
  for h in "${NETNS_PIDS[@]}"; do # processes started in our namespaces (orted, ranks), then the holder
    for p in $(netns_pids "$h"); do [ "$p" != "$h" ] && kill -9 "$p" 2>/dev/null; done
    kill -9 "$h" 2>/dev/null
  done
  for l in "${NETNS_LINKS[@]}"; do ip link del "$l" 2>/dev/null; done
  rm -f "$dir/env"
  return 0
}

# the command-line form
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  usage() { sed -n '11,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  case ${1:-} in
    up)
      [ $# -ge 3 ] && [ $# -le 4 ] || usage
      if ! netns_up "$2" "$3" "${4:-}"; then
        netns_down "$3"
        exit 1
      fi
      echo "netns-hosts: ${#NETNS_NAMES[@]} hosts on $NETNS_SUBNET (bridge $NETNS_BRIDGE):" >&2
      for ((i = 0; i < ${#NETNS_NAMES[@]}; i++)); do
        echo "  ${NETNS_NAMES[$i]} ${NETNS_IPS[$i]} (holder pid ${NETNS_PIDS[$i]}, veth ${NETNS_VETHS[$i]})" >&2
      done
      echo "${NETNS_MPIRUN_ARGS[*]}"
      ;;
    down) [ $# -eq 2 ] || usage; netns_down "$2" ;;
    args) [ $# -eq 2 ] && [ -f "$2/mpirun-args" ] || usage; tr '\n' ' ' <"$2/mpirun-args"; echo ;;
    *) usage ;;
  esac
fi
