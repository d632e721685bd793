#!/usr/bin/env bash
# Bounded start-up (parallel/mpi_comm.h, MpiRuntime::init): a job whose other rank never reaches
# MPI_Init ends within SPARTA_INIT_TIMEOUT_S with a message naming the waiting rank and what it
# waits for, instead of hanging; a bad SPARTA_INIT_TIMEOUT_S is a usage error (exit 2).
# usage: startup.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
W=$(mktemp -d /tmp/start.XXXXXX)
trap 'rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# Rank 1 stands for a rank whose node never started the program: it sleeps instead.
cat > "$W/rank.sh" <<SH
#!/usr/bin/env bash
if [ "\$OMPI_COMM_WORLD_RANK" = 1 ]; then sleep 60; exit 0; fi
exec "$bin/sparta-train" --print-config
SH
chmod +x "$W/rank.sh"
t0=$(date +%s)
SPARTA_INIT_TIMEOUT_S=3 timeout 50 mpirun -np 2 -x SPARTA_INIT_TIMEOUT_S "$W/rank.sh" > "$W/hang.log" 2>&1
rc=$?
t=$(($(date +%s) - t0))
check "a missing rank: the job fails (got $rc)" [ $rc -ne 0 ] && [ $rc -ne 124 ]
check "a missing rank: ends within 20 s (took $t s)" [ $t -le 20 ]
check "a missing rank: the waiting rank says why" \
  grep -q "MPI did not initialise within 3 s (SPARTA_INIT_TIMEOUT_S) on rank 0 of 2 (launched by mpirun)" "$W/hang.log"
check "a missing rank: the message names PMIx" grep -q "PMIx server" "$W/hang.log"
[ "$fail" -eq 0 ] || sed 's/^/    /' "$W/hang.log" | head -20

for v in abc -1 1e9 5s; do
  expect 2 "SPARTA_INIT_TIMEOUT_S='$v' is not a number of seconds" \
    env SPARTA_INIT_TIMEOUT_S="$v" mpirun -np 2 -x SPARTA_INIT_TIMEOUT_S "$bin/sparta-train" --print-config
done
# Within the bound, start-up is untouched.
expect 0 "[model]" env SPARTA_INIT_TIMEOUT_S=30 mpirun -np 2 -x SPARTA_INIT_TIMEOUT_S "$bin/sparta-train" --print-config

echo "startup: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
