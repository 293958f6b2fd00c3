#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests marked `slurm` (CI runs this as root before
# the tests). Installs slurm-wlm and munge with apt-get when they are missing, writes a minimal slurm.conf
# for localhost (no cgroups, no accounting) unless the machine already has one of its own, and starts
# munged, slurmctld and slurmd. Safe to run twice: what runs already is left running.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by mm1 .ci/slurm.sh"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi

if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm.sh: $CONF exists and is not ours; using it as it is"
else
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...
  host=$(hostname -s)
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat >"$CONF" <<EOF
$MARK
ClusterName=mm1ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire + 1 s (default 120) before it runs again; the tests requeue jobs
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=20
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
fi

mkdir -p /run/munge && chown munge:munge /run/munge
if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || /usr/sbin/create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    sinfo
    exit 0
  fi
  sleep 1
done
echo "slurm.sh: the node did not come up; see /var/log/slurm/" >&2
sinfo || true
exit 1
