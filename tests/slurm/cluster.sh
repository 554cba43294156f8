#!/usr/bin/env bash
# A one-node Slurm cluster on the loopback interface, for the tests: munged, slurmctld and slurmd run as
# root (munged as user munge), without systemd, with every file under one state folder.
#
#   tests/slurm/cluster.sh start STATE   configure and start; prints KEY=VALUE lines (SLURM_CONF, ...)
#   tests/slurm/cluster.sh stop STATE    cancel every job, stop the daemons, wait until the ports are free
#
# The node declares 4 CPUs and 2 GPUs whatever the machine has (SlurmdParameters=config_overrides): the GPUs
# are fake (File=/dev/null, /dev/zero), enough for Slurm to schedule them and set CUDA_VISIBLE_DEVICES.
# Without an accounting database, clients poll job states with squeue (MinJobAge keeps finished jobs visible).
# Clients find the configuration through SLURM_CONF, except inside a job, where Snakemake's job step drops
# SLURM_* variables: there `srun` reads /run/slurm/conf/ (where a configless slurmd caches its configuration),
# which points here while the cluster runs. So the machine must have no /etc/slurm/slurm.conf of its own.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # the daemons live in sbin, which a user's PATH may lack

STATE=${2:?usage: cluster.sh start|stop STATE}
CONF="$STATE/slurm.conf"
NODE=$(hostname -s)
RUN_CONF=/run/slurm/conf

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PORT=0
next_free_port() {  # sets PORT (no subshell: each would draw the same RANDOM sequence)
  local previous=$PORT
  while PORT=$((20000 + RANDOM % 40000)); [[ $PORT == "$previous" ]] || listening "$PORT"; do :; done
}

start_munge() {
  install -d -o munge -g munge -m 0700 "$STATE/munge"
  mungekey --create --keyfile "$STATE/munge/munge.key" --force
  chown munge:munge "$STATE/munge/munge.key"
  runuser -u munge -- munged --socket "$STATE/munge/munge.socket" --key-file "$STATE/munge/munge.key" \
    --pid-file "$STATE/munge/munged.pid" --log-file "$STATE/munge/munged.log" \
    --seed-file "$STATE/munge/munged.seed" --force
}

write_conf() {
  local ctld_port=$1 slurmd_port=$2
  mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
  cat >"$CONF" <<EOF
ClusterName=wscltest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=4 RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$STATE/gres.conf" <<EOF
NodeName=$NODE Name=gpu File=/dev/null
NodeName=$NODE Name=gpu File=/dev/zero
EOF
}

wait_idle() {
  for _ in $(seq 60); do
    if sinfo -h -N -o %T 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 0.5
  done
  echo "the Slurm node did not become idle; logs in $STATE/log" >&2
  sinfo -N -l >&2 || true
  return 1
}

link_client_conf() {
  if [[ -e /etc/slurm/slurm.conf ]]; then
    echo "/etc/slurm/slurm.conf exists: this machine belongs to another Slurm cluster" >&2
    return 1
  fi
  mkdir -p "$RUN_CONF"
  ln -sfn "$CONF" "$RUN_CONF/slurm.conf"
  ln -sfn "$STATE/gres.conf" "$RUN_CONF/gres.conf"
}

unlink_client_conf() {
  local file
  for file in "$RUN_CONF/slurm.conf" "$RUN_CONF/gres.conf"; do
    if [[ $(readlink "$file" 2>/dev/null) == "$STATE"/* ]]; then rm -f "$file"; fi
  done
}

start() {
  mkdir -p "$STATE"
  chmod 0755 "$STATE"
  start_munge
  next_free_port
  local ctld_port=$PORT
  next_free_port
  write_conf "$ctld_port" "$PORT"
  link_client_conf
  export SLURM_CONF="$CONF"
  slurmctld -f "$CONF"
  slurmd -f "$CONF" -N "$NODE"
  wait_idle
  echo "SLURM_CONF=$CONF"
  echo "SLURM_NODE=$NODE"
}

kill_pidfile() {
  local file=$1
  [[ -f $file ]] || return 0
  local pid
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

port_of() {
  sed -n "s/^$1=//p" "$CONF"
}

stop() {
  export SLURM_CONF="$CONF"
  # Only while the controller runs: a client waits long for a controller that is gone.
  if [[ -f $CONF ]] && kill -0 "$(cat "$STATE/slurmctld.pid" 2>/dev/null)" 2>/dev/null; then
    scancel --user=root 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  kill_pidfile "$STATE/slurmd.pid"
  kill_pidfile "$STATE/slurmctld.pid"
  kill_pidfile "$STATE/munge/munged.pid"
  unlink_client_conf
  [[ -f $CONF ]] || return 0
  for port in $(port_of SlurmctldPort) $(port_of SlurmdPort); do
    for _ in $(seq 100); do
      listening "$port" || break
      sleep 0.1
    done
  done
}

case $1 in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop STATE" >&2; exit 2 ;;
esac
