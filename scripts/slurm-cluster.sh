#!/usr/bin/env bash
# A throw-away Slurm cluster on this one machine, for the launcher tests and for trying the
# Slurm launcher by hand: munged, slurmctld and three slurmd (nodes n1..n3) on 127.0.0.1,
# everything (config, keys, sockets, state, logs) under DIR, on free ports of its own.
#   scripts/slurm-cluster.sh start DIR   start it; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR    stop every daemon it started (also after a failed start)
#   scripts/slurm-cluster.sh status DIR  sinfo and squeue of that cluster
# Needs Debian's slurmctld, slurmd, slurm-client and munge (scripts/deps.sh --test).
set -euo pipefail

NODES=(n1 n2 n3)
CPUS=${SLURM_CLUSTER_CPUS:-4}          # declared per node; the machine may have fewer
START_WAIT=${SLURM_CLUSTER_WAIT:-30}   # seconds for the daemons to come up and nodes idle

die() { echo "slurm-cluster: $*" >&2; exit 1; }
usage() { die "usage: $0 start|stop|status DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
# slurmd must be root to start jobs as their user: not root, go through sudo (CI machines
# that install packages with sudo have it without a password).
if [ "$(id -u)" -ne 0 ] && [ "$cmd" != status ]; then
  command -v sudo >/dev/null 2>&1 || die "needs root (or sudo) to run slurmd"
  exec sudo -n SLURM_CLUSTER_CPUS="$CPUS" SLURM_CLUSTER_WAIT="$START_WAIT" "$0" "$@"
fi

# Ports in use, from /proc (no ss/netstat needed): "local_address" column, state 0A = LISTEN.
ports_in_use() {
  local hex
  for hex in $(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
                 awk 'NR > 1 && $4 == "0A" { n = split($2, a, ":"); print a[n] }'); do
    echo $((16#$hex))
  done
}

# Five consecutive free ports (controller, three slurmd, one spare), from a random base so that
# two clusters started at once rarely pick the same ones; a collision makes a daemon fail to
# bind, and `start` tries again with other ports.
pick_ports() {
  local used base p ok
  used=" $(ports_in_use | tr '\n' ' ') "
  for _ in $(seq 1 50); do
    base=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
    ok=1
    for p in $(seq "$base" $((base + 4))); do
      case $used in *" $p "*) ok=0 ;; esac
    done
    [ $ok = 1 ] && { echo "$base"; return 0; }
  done
  return 1
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && cat "$1" || true; }

# The pids of every process below the given ones (from /proc/*/stat's parent field).
descendants() {
  local map
  map=$(for s in /proc/[0-9]*/stat; do
          { read -r line <"$s"; } 2>/dev/null || continue
          line=${line##*) }; set -- $line
          echo "${s//[^0-9]/} $2"
        done)
  local todo=("$@") p c
  while [ ${#todo[@]} -gt 0 ]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    for c in $(printf '%s\n' "$map" | awk -v p="$p" '$2 == p { print $1 }'); do
      echo "$c"; todo+=("$c")
    done
  done
}

# The pids of the processes whose command name is $1, from /proc (a minimal Debian has no
# procps, so no pgrep).
procs_named() {
  local s c
  for s in /proc/[0-9]*/comm; do
    { read -r c <"$s"; } 2>/dev/null || continue
    [ "$c" = "$1" ] && { s=${s#/proc/}; echo "${s%/comm}"; }
  done
  return 0
}

# Stops what this cluster runs: the daemons whose pid files are under DIR, and the
# slurmstepd processes started for its jobs with their job processes (a slurmd killed by a
# test leaves them running). SIGTERM, a bounded wait, then SIGKILL. Only processes whose
# environment names this cluster's SLURM_CONF or whose pid files are under DIR are touched.
stop_cluster() {
  local pids=() p f
  [ -d "$dir" ] || return 0
  for f in "$dir"/run/slurmctld.pid "$dir"/run/slurmd.*.pid "$dir"/run/munged.pid; do
    [ -e "$f" ] || continue
    p=$(pid_of "$f")
    pid_alive "$p" && pids+=("$p")
  done
  local steps=()
  for p in $(procs_named slurmstepd); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$dir/slurm.conf" &&
      steps+=("$p")
  done
  # jobs of a throw-away cluster need no grace
  [ ${#steps[@]} -gt 0 ] && kill -KILL $(descendants "${steps[@]}") "${steps[@]}" 2>/dev/null
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local alive
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do pid_alive "$p" && ! zombie "$p" && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

zombie() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

write_config() {
  local base=$1 host
  host=$(uname -n)
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh: a throw-away cluster under $dir.
ClusterName=ftlab$(printf '%s' "$dir" | cksum | cut -c1-6)
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/run/munge.socket,cred_expire=5
CommunicationParameters=EnableIPv6
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
ReturnToService=2
# Fast: schedule at submission, end jobs quickly, forget finished jobs soon (the launcher
# must not depend on Slurm remembering them), notice a dead slurmd within seconds.
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=2
KillWait=2
WaitTime=0
MessageTimeout=5
SlurmdTimeout=6
SlurmctldTimeout=10
InactiveLimit=0
OverTimeLimit=0
JobRequeue=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=n[1-3] NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 1))-$((base + 3)) CPUs=$CPUS RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=n[1-3] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=REQUEUE LLN=YES
PartitionName=urgent Nodes=n[1-3] Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=2 PreemptMode=OFF LLN=YES
EOF
  printf '%s\n' "$base" >"$dir/ports"
}

start_daemons() {
  local n
  munged --force --key-file="$dir/munge.key" --socket="$dir/run/munge.socket" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/state/munged.seed" --num-threads=2 ||
    return 1
  SLURM_CONF=$dir/slurm.conf slurmctld -f "$dir/slurm.conf" || return 1
  for n in "${NODES[@]}"; do
    SLURM_CONF=$dir/slurm.conf slurmd -f "$dir/slurm.conf" -N "$n" || return 1
  done
}

# All three nodes idle (or the wait runs out).
wait_idle() {
  local deadline=$((SECONDS + START_WAIT)) out
  while [ $SECONDS -lt $deadline ]; do
    out=$(SLURM_CONF=$dir/slurm.conf sinfo -h -N -o '%N %t' 2>/dev/null | sort -u || true)
    if [ "$(printf '%s\n' "$out" | awk '$2 == "idle"' | wc -l)" -eq ${#NODES[@]} ]; then
      return 0
    fi
    # a daemon that died (port taken, bad config) will not come back: give up early
    for f in "$dir"/run/slurmctld.pid "$dir"/run/slurmd.n1.pid; do
      [ -s "$f" ] && ! pid_alive "$(pid_of "$f")" && return 1
    done
    sleep 0.2
  done
  return 1
}

case $cmd in
start)
  for b in munged slurmctld slurmd sinfo sbatch; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found (install with scripts/deps.sh --test)"
  done
  # slurmd (22.05) will not start without a cgroup file system, whatever the plugins; any
  # systemd machine and any container has one, a bare chroot may not
  [ -n "$(ls -A /sys/fs/cgroup 2>/dev/null)" ] ||
    die "slurmd needs a cgroup file system at /sys/fs/cgroup (in a chroot: mount --rbind /sys)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/slurm.conf" ] && stop_cluster
  rm -rf "$dir/run" "$dir/state" "$dir/spool" "$dir/log"
  mkdir -p "$dir/run" "$dir/state" "$dir/log"
  for n in "${NODES[@]}"; do mkdir -p "$dir/spool/$n"; done
  # clients of any user reach munged's socket under run/; keys and state stay private
  chmod 755 "$dir" "$dir/run" "$dir/spool"
  chmod 700 "$dir/state" "$dir/log"
  [ -s "$dir/munge.key" ] || { head -c 1024 /dev/urandom >"$dir/munge.key"; }
  chmod 600 "$dir/munge.key"
  trap 'stop_cluster' ERR
  ok=0
  for attempt in 1 2 3; do
    base=$(pick_ports) || die "no free ports"
    write_config "$base"
    if start_daemons && wait_idle; then ok=1; break; fi
    echo "slurm-cluster: attempt $attempt failed (ports $base..$((base + 3)))" >&2
    for f in "$dir"/log/*.log; do echo "== $f" >&2; tail -n 5 "$f" >&2; done
    stop_cluster
  done
  trap - ERR
  [ $ok = 1 ] || die "cluster did not come up within ${START_WAIT}s; logs in $dir/log"
  echo "export SLURM_CONF=$dir/slurm.conf"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  stop_cluster
  ;;
status)
  dir=$(cd "$dir" && pwd) || exit 1
  SLURM_CONF=$dir/slurm.conf sinfo -N
  SLURM_CONF=$dir/slurm.conf squeue
  ;;
*) usage ;;
esac
