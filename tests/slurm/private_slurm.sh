# Sourced by the tests that need Slurm: starts a private single-node Slurm (slurmctld + slurmd +
# munge) for the test (../shared/notes/environment.md section 8: its own munge socket, state
# directory and ports; nothing in /etc changes) and stops it on exit. Sets S (its directory,
# short: the munge socket path must fit a Unix socket name) and SLURM_CONF. Exits 77 (skip)
# when Slurm or munge is missing or when not root (slurmd must be); scripts/test.sh installs them.
# SPARTA_REQUIRE_SLURM=1 (scripts/test.sh as root) turns the skip into a failure.
skip=77
[ "${SPARTA_REQUIRE_SLURM:-0}" = 1 ] && skip=1
for b in slurmctld slurmd srun sbatch sinfo scontrol scancel munged; do
  command -v "$b" > /dev/null || { echo "skip: $b is not installed (scripts/test.sh installs it)"; exit $skip; }
done
[ "$(id -u)" = 0 ] || { echo "skip: a private slurmd needs root"; exit $skip; }
S=$(mktemp -d /tmp/slm.XXXXXX)  # short: the munge socket path must fit a Unix socket name
chmod 755 "$S"
M=$S/munge
export SLURM_CONF=$S/slurm.conf
cleanup() {
  scontrol shutdown > /dev/null 2>&1
  for p in "$S/slurmctld.pid" "$S/slurmd.pid" "$M/munged.pid"; do
    [ -f "$p" ] || continue
    pid=$(cat "$p")
    for _ in $(seq 30); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill "$pid" 2> /dev/null
  done
  if [ "${SPARTA_KEEP_TMP:-0}" = 1 ]; then echo "kept $S (SPARTA_KEEP_TMP=1)"; else rm -rf "$S"; fi
}
trap cleanup EXIT
# Test scripts add their own cleanup through slurm_on_exit.
slurm_on_exit() { trap "$1; cleanup" EXIT; }
port=$((20000 + $$ % 20000))  # away from a system Slurm's 6817/6818
cat > "$SLURM_CONF" <<CONF
ClusterName=spartatest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$M/munge.socket.2
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=localhost CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$M" "$S/state" "$S/spool" "$S/log"
chown munge:munge "$M"
chmod 711 "$M"  # munged refuses 0700
runuser -u munge -- munged -F -S "$M/munge.socket.2" --pid-file="$M/munged.pid" \
  --log-file="$M/munged.log" --seed-file="$M/munged.seed" > "$M/munged.out" 2>&1 &
for _ in $(seq 50); do [ -S "$M/munge.socket.2" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" > "$S/log/slurmctld.out" 2>&1 &
slurmd -D -N localhost -f "$SLURM_CONF" > "$S/log/slurmd.out" 2>&1 &
for _ in $(seq 150); do sinfo -h -o %T 2> /dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %T | grep -q idle || {
  echo "FAIL: the private Slurm did not come up"
  tail -5 "$S/log/"*.log
  exit 1
}

