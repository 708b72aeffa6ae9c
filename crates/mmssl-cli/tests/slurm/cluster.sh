#!/bin/bash
# Starts a single-node Slurm cluster whose state, spool, logs and munge key live under DIR:
#   cluster.sh DIR
# Writes DIR/slurm.conf and the daemons' pid files DIR/run/{munged,slurmctld,slurmd}.pid.
# Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge. The caller
# stops the daemons by those pids.
set -euo pipefail
mkdir -p "$1"
D=$(realpath "$1")
mkdir -p "$D"/{state,spool,log,munge,run}
chmod 700 "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge/munge.key"
munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
    --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed" -f
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
PORT=${SLURM_TEST_PORT:-26817}
cat > "$D/slurm.conf" <<CONF
ClusterName=mmssl-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
ReturnToService=2
MpiDefault=none
JobRequeue=1
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -f "$D/slurm.conf"
slurmd -f "$D/slurm.conf"
for _ in $(seq 1 100); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
        exit 0
    fi
    sleep 0.2
done
echo "the node did not become idle; see $D/log" >&2
exit 1
