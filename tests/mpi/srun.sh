#!/usr/bin/env bash
# sparta-train launched by Slurm (`srun --mpi=pmix`), ctest label mpi: a private single-node
# Slurm is started for the test (../shared/notes/environment.md section 8: its own munge socket,
# state directory and ports; nothing in /etc changes), then 2-rank data-parallel and
# tensor-parallel runs must report the Slurm-given world and match one process step for step.
# Skips (exit 77) when Slurm or munge is not installed or when not root (slurmd must be).
# usage: tests/mpi/srun.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
for b in slurmctld slurmd srun sinfo scontrol munged; do
  command -v "$b" > /dev/null || { echo "skip: $b is not installed"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "skip: a private slurmd needs root"; exit 77; }
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
  rm -rf "$S"
}
trap cleanup EXIT
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

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$S" || exit 1  # $S/data
base=(--config "$src/configs/tiny.toml" --set "data.dir=$S/data" --set train.steps=6
      --set train.eval_every=0 --set train.eval_batches=2 --set train.log_every=1
      --set train.threads=1 --set checkpoint.keep_last=1)
pass=0
fail=0
"$bin/sparta-train" "${base[@]}" --set train.batch_size=8 --run-dir "$S/ref" > "$S/ref.log" 2>&1 ||
  { echo "FAIL: reference run"; tail "$S/ref.log"; exit 1; }
for layout in "dp2 4" "tp2 8 --set parallel.tp=2"; do
  set -- $layout
  name=$1 b=$2
  shift 2
  timeout 120 srun -n 2 --mpi=pmix "$bin/sparta-train" "${base[@]}" --set train.batch_size="$b" \
    --run-dir "$S/$name" "$@" > "$S/$name.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q "layout: world 2 = " "$S/$name.log" &&
     python3 - "$S/ref/metrics.jsonl" "$S/$name/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return [l["loss"] for l in map(json.loads, open(p)) if "loss" in l]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) == 6, (a, b)
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"srun {sys.argv[2].split('/')[-2]}: per-step loss rel {worst:.2e}")
sys.exit(0 if worst <= 3e-6 else 1)
PY
  then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: srun $name (rc $rc)"; tail -5 "$S/$name.log"; fi
done
echo "srun: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
