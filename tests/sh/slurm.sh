#!/usr/bin/env bash
# cluster/slurm/train.sbatch under a real Slurm on this machine: a scratch
# munged (own key and socket), slurmctld and slurmd (own slurm.conf, ports and
# state folders; one node named after `hostname`, CPUs=2, addressed as
# 127.0.0.1), all started and stopped by this test, by pid. Asserted:
#   1. a small job (60 steps) run with sbatch completes (JobState COMPLETED,
#      ExitCode 0:0) and leaves runs/<job name>/ with its checkpoints,
#      result.json and a single run record;
#   2. a longer job (2000 steps) gets SIGUSR1 through
#      `scancel --signal=USR1 --batch` once its log shows it is training: the
#      batch script's trap forwards it to mpirun, aetrain checkpoints and exits
#      75, the script runs `scontrol requeue`, the job starts again (Restarts
#      1) with --resume auto, continues from the checkpoint of the step it
#      stopped at, and completes with exit 0;
#   3. its final checkpoint is bitwise equal to that of an uninterrupted run
#      of the same config (same ranks, 1 thread per rank).
# Slurm delays a requeued job by AuthInfo cred_expire (120 s by default); the
# scratch slurm.conf sets it to 10 s and the scheduling intervals to 2 s.
# Needs root and the Debian packages slurm-wlm and munge; FAILS without them.
. "$(dirname "$0")/common.bash"

SBATCH_SCRIPT=$SRC/cluster/slurm/train.sbatch
AETRAIN=$(readlink -f "$AETRAIN")
TOOL=$(readlink -f "$TOOL")
pids=()     # daemons we started, newest last
jobs_sub=() # jobs we submitted

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
}

cleanup() {
  set +e
  local j p i
  if [ ${#jobs_sub[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    for j in "${jobs_sub[@]}"; do scancel --full "$j" 2>/dev/null; done
    for ((i = 0; i < 50; i++)); do
      [ -z "$(squeue -h -t R,CG -j "$(IFS=,; echo "${jobs_sub[*]}")" 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  # job processes (slurmstepd, the batch script, mpirun, aetrain) inherit
  # SLURM_CONF=<our scratch conf>: any still alive are ours
  if [ -n "${SLURM_CONF:-}" ]; then
    local conf=$SLURM_CONF
    export -n SLURM_CONF
    for p in $(grep -lsaF "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
      [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail_setup() {
  bad "$*"
  finish || true
  exit 1
}

missing=()
for c in munged slurmctld slurmd sbatch scontrol scancel squeue sinfo srun setpriv ss; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] ||
  fail_setup "missing ${missing[*]}: install the Debian packages slurm-wlm and munge (apt-get install slurm-wlm munge)"
[ "$(id -u)" -eq 0 ] || fail_setup "needs root (starts munged as munge and the Slurm daemons as root)"
id munge >/dev/null 2>&1 || fail_setup "no user 'munge' (apt-get install munge)"
[ -f "$SBATCH_SCRIPT" ] || fail_setup "no $SBATCH_SCRIPT"

# ---- munged: own key, socket, pid, log and seed in the scratch folder ------
t_setup=$(now)
chmod 755 "$WORK" # munged (user munge) must reach its folders
M=$WORK/munge
MR=$WORK/munge-run
mkdir -p "$M" "$MR"
dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$M" "$MR"
chmod 700 "$M"
chmod 755 "$MR"
chmod 400 "$M/munge.key"
setpriv --reuid=munge --regid=munge --init-groups \
  munged -F --socket="$MR/munge.sock" --key-file="$M/munge.key" --pid-file="$MR/munged.pid" \
  --log-file="$M/munged.log" --seed-file="$M/munged.seed" >"$WORK/munged.out" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do [ -S "$MR/munge.sock" ] && break; sleep 0.1; done
[ -S "$MR/munge.sock" ] || fail_setup "munged did not start: $(tail -n 3 "$WORK/munged.out")"

# ---- Slurm: scratch slurm.conf, two free ports ---------------------------
free_port() { # free_port FROM: the first port >= FROM that nothing listens on
  local p=$1
  while [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; do p=$((p + 1)); done
  echo "$p"
}
base=$((20000 + ($$ % 20000)))
CTLD_PORT=$(free_port "$base")
SLURMD_PORT=$(free_port $((CTLD_PORT + 1)))
H=$(hostname)
SL=$WORK/slurm
mkdir -p "$SL/state" "$SL/spool" "$SL/log" "$WORK/jobs"
cat >"$SL/slurm.conf" <<EOC
ClusterName=aetest
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MR/munge.sock,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=10
MailProg=/bin/true
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/log/slurmctld.log
SlurmdLogFile=$SL/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$H NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=aetest Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOC
export SLURM_CONF=$SL/slurm.conf
slurmctld -D -f "$SLURM_CONF" >"$WORK/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$H" >"$WORK/slurmd.out" 2>&1 &
pids+=($!)
state=
for ((i = 0; i < 300; i++)); do
  state=$(sinfo -h -n "$H" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
  sleep 0.1
done
if [ "$state" != idle ]; then
  tail -n 5 "$WORK/slurmctld.out" "$WORK/slurmd.out"
  fail_setup "Slurm did not come up (node state '$state')"
fi
ok "munged, slurmctld (port $CTLD_PORT), slurmd (port $SLURMD_PORT) up, node $H idle, in $(since "$t_setup") s"
echo "info: srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n\t' '  ' | tr -s ' ')"

# ---- data and config -------------------------------------------------------
make_data "$WORK/data" 600 100
cat >"$WORK/t.ini" <<EOC
[model]
encoder = dense(32, sigmoid)
decoder = dense(784, sigmoid)
[loss]
kind = bce
[train]
batch = 20
epochs = 200
max_steps = 60
validation = 100
probe = false
threads = 1
[data]
dataset = $WORK/data
[run]
dir = $WORK/runs
EOC
LONG=2000

job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# wait_job ID SECONDS: until the job has ended (COMPLETED, FAILED, ...); prints its state
wait_job() {
  local j=$1 t=$2 st i
  for ((i = 0; i < t * 5; i++)); do
    st=$(job_field "$j" JobState)
    case $st in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
      echo "$st"; return 0 ;;
    esac
    sleep 0.2
  done
  echo "${st:-unknown}(timeout)"
}
submit() { # submit NAME VAR=VALUE...: sbatch the script from $WORK/jobs; prints the job id
  local name=$1; shift
  (cd "$WORK/jobs" && env "$@" AETRAIN="$AETRAIN" AETRAIN_DIR="$WORK/jobs" CONFIG="$WORK/t.ini" \
    sbatch --parsable -J "$name" "$SBATCH_SCRIPT")
}

# ---- 1. a job to completion -------------------------------------------------
t0=$(now)
J1=$(submit small AETRAIN_ARGS=--quiet) || fail_setup "sbatch failed"
jobs_sub+=("$J1")
st=$(wait_job "$J1" 90)
ec=$(job_field "$J1" ExitCode)
out1=$WORK/jobs/small-$J1.out
if [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] && grep -q "training finished (exit 0)" "$out1"; then
  ok "sbatch train.sbatch (60 steps): job $J1 $st, exit $ec, $(since "$t0") s from sbatch to the end"
else
  bad "job $J1: state $st, exit $ec"
  tail -n 20 "$out1" 2>/dev/null || true
fi
r=$WORK/runs/small
last=$(newest_ckpt "$r" 2>/dev/null || true)
if [ -f "$r/run.json" ] && [ ! -e "$r/run-1.json" ] && [ -f "$r/result.json" ] && [ -f "$r/ckpt/best.aeck" ] &&
  [ -n "$last" ] && "$TOOL" info "$last" | grep -q " step 60 " && [ "$(ls "$WORK/runs")" = small ]; then
  ok "run folder runs/small (named after the job): run.json, result.json, best.aeck, $(basename "$last")"
else
  bad "run folder of job $J1: $(ls "$WORK/runs" "$r" "$r/ckpt" 2>&1 | tr '\n' ' ')"
fi

# ---- 2. the uninterrupted reference, outside Slurm ---------------------------
t0=$(now)
mpi 2 --map-by slot:PE=1 --bind-to core "$AETRAIN" train "$WORK/t.ini" --run straight --quiet --set train.max_steps=$LONG
t_straight=$(since "$t0")
echo "info: uninterrupted $LONG steps with mpirun -n 2: $t_straight s"

# ---- 3. SIGUSR1 mid-run, checkpoint, requeue, resume ---------------------------
t0=$(now)
J2=$(submit preempt AETRAIN_ARGS="--quiet --set train.max_steps=$LONG") || fail_setup "sbatch failed"
jobs_sub+=("$J2")
log=$WORK/runs/preempt/log.txt
out2=$WORK/jobs/preempt-$J2.out
for ((i = 0; i < 600; i++)); do # training: the first epoch line (at most 120 s)
  grep -q '^epoch ' "$log" 2>/dev/null && break
  sleep 0.2
done
if grep -q '^epoch ' "$log" 2>/dev/null; then
  scancel --signal=USR1 --batch "$J2"
  t_sig=$(now)
  echo "info: job $J2 training after $(since "$t0") s: sent SIGUSR1 to its batch shell"
else
  bad "job $J2 never showed an epoch line (state $(job_field "$J2" JobState))"
fi
# wait for the requeue (Restarts=1), then for the end
t_req=
for ((i = 0; i < 300; i++)); do
  if [ "$(job_field "$J2" Restarts)" = 1 ]; then t_req=$(now); break; fi
  case $(job_field "$J2" JobState) in COMPLETED | FAILED | CANCELLED) break ;; esac
  sleep 0.2
done
t_start2=
if [ -n "$t_req" ]; then
  for ((i = 0; i < 600; i++)); do
    grep -q 'restart 1,' "$out2" 2>/dev/null && { t_start2=$(now); break; }
    sleep 0.2
  done
fi
st=$(wait_job "$J2" 120)
ec=$(job_field "$J2" ExitCode)
restarts=$(job_field "$J2" Restarts)
stopped=$(sed -n 's/.*stopped by signal after step \([0-9]*\): checkpoint written in .*/\1/p' "$log" | head -n 1)
if grep -q "got SIGUSR1" "$out2" && grep -q "aetrain checkpointed and stopped (exit 75)" "$out2" &&
  grep -q "requeueing job $J2" "$out2" && [ -n "$stopped" ] && [ "$stopped" -lt "$LONG" ]; then
  ok "USR1 to the batch shell: forwarded to mpirun, stopped after step $stopped of $LONG, exit 75, scontrol requeue"
else
  bad "job $J2 was not stopped and requeued (stopped at '${stopped}')"
  cat "$out2" 2>/dev/null | tail -n 30 || true
fi
if [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] && [ "$restarts" = 1 ] && grep -q "training finished (exit 0)" "$out2" &&
  grep -q "resumed from .*ckpt-s0*$stopped-.* step $stopped\$" "$log" && [ -f "$WORK/runs/preempt/run-1.json" ]; then
  ok "requeued job $J2 resumed from step $stopped and completed: $st, exit $ec, Restarts $restarts"
else
  bad "requeued job $J2: state $st, exit $ec, Restarts '$restarts'"
  tail -n 30 "$out2" 2>/dev/null || true
  grep -E "resumed|no checkpoint" "$log" 2>/dev/null || true
fi
if [ -n "$t_sig" ] && [ -n "$t_req" ] && [ -n "$t_start2" ]; then
  echo "info: signal to requeue $(awk -v a="$t_sig" -v b="$t_req" 'BEGIN { printf "%.1f", b - a }') s," \
    "requeue to restart $(awk -v a="$t_req" -v b="$t_start2" 'BEGIN { printf "%.1f", b - a }') s (cred_expire 10 s)," \
    "sbatch to the end $(since "$t0") s"
fi
a=$(newest_ckpt "$WORK/runs/straight" 2>/dev/null || true)
b=$(newest_ckpt "$WORK/runs/preempt" 2>/dev/null || true)
if [ -n "$a" ] && [ -n "$b" ] && out=$("$TOOL" bitequal "$a" "$b"); then
  ok "signalled + requeued + resumed vs uninterrupted: $out"
else
  bad "signalled + requeued + resumed vs uninterrupted: ${out:-no checkpoint} ('$a' vs '$b')"
  [ -n "$a" ] && [ -n "$b" ] && "$TOOL" compare "$a" "$b" 1 || true
fi
finish
