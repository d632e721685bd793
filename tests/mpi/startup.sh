#!/usr/bin/env bash
# Bounded start-up (parallel/init_watchdog.h): a job whose other rank never reaches MPI_Init ends
# within SPARTA_INIT_TIMEOUT_S with a message naming the waiting rank and what it waits for,
# instead of hanging; a bad SPARTA_INIT_TIMEOUT_S is a usage error (exit 2). On a GPU machine the
# same for ncclCommInitRank, bounded by parallel.timeout_s.
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
failed_not_timeout() { [ "$1" -ne 0 ] && [ "$1" -ne 124 ]; }
check "a missing rank: the job fails (got $rc)" failed_not_timeout $rc
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

# NCCL (a CUDA build on a GPU machine; tests/gpu/run-on-device.sh runs this label): rank 1 joins
# the unique id's broadcast but never calls ncclCommInitRank; rank 0's wait ends after
# parallel.timeout_s with the message. Both ranks share the one GPU: rank 1 never touches NCCL.
if nvidia-smi -L > /dev/null 2>&1; then
  bash "$src/tests/mpi/tiny_data.sh" "$bin" "$W" || bad "tiny data"
  t0=$(date +%s)
  timeout 120 mpirun -np 2 -x SPARTA_TEST_NCCL_INIT_HANG=1 "$bin/sparta-train" \
    --config "$src/configs/tiny.toml" --set "data.dir=$W/data" --set train.device=cuda \
    --set parallel.backend=nccl --set parallel.dp=2 --set parallel.timeout_s=5 \
    > "$W/nccl.log" 2>&1
  rc=$?
  t=$(($(date +%s) - t0))
  check "nccl: a rank that never initialises: the job fails (got $rc)" failed_not_timeout $rc
  check "nccl: ends within 60 s (took $t s)" [ $t -le 60 ]
  check "nccl: rank 0 says why" grep -q "(rank 0 of 2) did not initialise within 5 s (parallel.timeout_s)" "$W/nccl.log"
  [ "$fail" -eq 0 ] || sed 's/^/    /' "$W/nccl.log" | head -20
else
  echo "startup: no GPU here: the NCCL start-up bound is checked on a GPU machine"
fi

echo "startup: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
