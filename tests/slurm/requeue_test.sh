#!/usr/bin/env bash
# Preemption on a real Slurm (ctest label slurm): a private single-node Slurm
# (tests/slurm/private_slurm.sh) runs the batch scripts sparta-launch writes.
#   - srun variant (submitted by `sparta-launch --submit`) and mpirun-inside-the-allocation
#     variant: a 2-task job gets USR1 (`scancel --signal=USR1`, to the steps or the batch shell),
#     checkpoints, exits 75, the script requeues it (`scontrol requeue`), it starts again with
#     SLURM_RESTART_COUNT=1 and --resume auto, completes, and its per-step losses are
#     bit-identical to an uninterrupted 2-rank run.
#     Slurm holds a requeued job for about 2 minutes (EligibleTime = requeue + 121 s); the test
#     moves that start to now with `scontrol update StartTime=now`, its only intervention.
#   - a rank killed with SIGKILL ends the job (srun -K1) well within parallel.timeout_s, with a
#     failure state and no requeue.
# usage: requeue_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
. "$src/tests/slurm/private_slurm.sh"
. "$src/tests/common/checks.sh"
job_field() { scontrol show job "$1" 2> /dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
# wait_state JOB SECONDS STATE...: until the job is in one of the states
wait_state() {
  local job=$1 secs=$2
  shift 2
  for _ in $(seq $((secs * 5))); do
    local st
    st=$(job_field "$job" JobState)
    for want in "$@"; do [ "$st" = "$want" ] && return 0; done
    sleep 0.2
  done
  echo "  job $job is $(job_field "$job" JobState), not $* after $secs s"
  return 1
}

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$S" || exit 1
train=(--config "$src/configs/tiny.toml" --set "data.dir=$S/data" --set train.steps=400
       --set train.batch_size=2 --set train.threads=1 --set train.eval_every=100
       --set train.eval_batches=4)
# Open MPI refuses root without these (this test runs as root for slurmd); sbatch passes the
# environment on.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$S" || exit 1
timeout 120 srun -n 2 --mpi=pmix "$bin/sparta-train" "${train[@]}" --run-dir "$S/ref" \
  > "$S/ref.log" 2>&1 || { echo "FAIL: reference run"; tail "$S/ref.log"; exit 1; }

for variant in srun mpirun; do
  dir=$S/$variant
  gen=("$bin/sparta-launch" slurm --nodes 1 --tasks-per-node 2 --time 00:20:00 --run-dir "$dir"
       --launcher "$variant" --max-restarts 2 --job-name "test-$variant")
  if [ $variant = srun ]; then
    out=$("${gen[@]}" --submit -- "${train[@]}" 2>&1)
    job=$(sed -n 's/^sparta-launch: submitted job \([0-9]*\)$/\1/p' <<<"$out")
  else
    out=$("${gen[@]}" -- "${train[@]}" 2>&1)
    job=$(sbatch --parsable "$dir/sparta.sbatch")
  fi
  check "$variant: script written" grep -q "wrote $dir/sparta.sbatch" <<<"$out"
  [ -n "$job" ] || { bad "$variant: no job id: $out"; continue; }
  wait_state "$job" 60 RUNNING || { bad "$variant: job $job did not start"; continue; }
  wait_steps "$dir" 20 || bad "$variant: no progress"
  if [ $variant = srun ]; then
    scancel --signal=USR1 "$job"  # to the job steps: srun's tasks
  else
    scancel --batch --signal=USR1 "$job"  # to the batch shell, which passes it to mpirun
  fi
  wait_state "$job" 60 PENDING || bad "$variant: not requeued"
  check "$variant: restart count 1" [ "$(job_field "$job" Restarts)" = 1 ]
  # Slurm holds a requeued job about two minutes, long enough for the node to finish cleaning
  # up its first run; skipping the hold, wait for that cleanup first (a start on a node still
  # completing the previous run can fail at launch).
  for _ in $(seq 300); do [ "$(sinfo -h -o %T | sort -u)" = idle ] && break; sleep 0.2; done
  scontrol update JobId="$job" StartTime=now
  wait_state "$job" 180 COMPLETED FAILED CANCELLED TIMEOUT
  check "$variant: completed" [ "$(job_field "$job" JobState)" = COMPLETED ]
  check "$variant: exit code 0:0" [ "$(job_field "$job" ExitCode)" = 0:0 ]
  log=$dir/slurm-$job.out
  check "$variant: exited 75" grep -q "sparta-launch: the run exited 75" "$log"
  check "$variant: requeued" grep -q "requeueing job $job (restart 1 of 2)" "$log"
  check "$variant: restarted with SLURM_RESTART_COUNT=1" grep -q "SLURM_RESTART_COUNT=1" "$log"
  check "$variant: resumed" grep -q "resume: loaded $dir/checkpoints/step_" "$log"
  check "$variant: one log (appended)" [ "$(grep -c "^sparta-launch: job $job start" "$log")" -eq 2 ]
  check "$variant: stop record" grep -q '"control":\["checkpoint","stop"\],"exit_code":75' \
    "$dir/metrics.jsonl"
  check "$variant: losses bit-identical to an uninterrupted run" same_losses "$S/ref" "$dir"
  check "$variant: status 'exited 0 400'" [ "$(cat "$dir/status")" = "exited 0 400" ]
  if [ "$(job_field "$job" JobState)" != COMPLETED ]; then  # what a failure needs to be understood
    echo "--- $variant: scontrol show job $job"
    scontrol show job "$job" | sed 's/^/    /'
    echo "--- $variant: $log (tail)"
    tail -30 "$log" | sed 's/^/    /'
    echo "--- slurmctld.log and slurmd.log (tail)"
    tail -20 "$S/log/slurmctld.log" 2> /dev/null | sed 's/^/    /'
    tail -20 "$S/log/slurmd.log" 2> /dev/null | sed 's/^/    /'
  fi
done

# A rank killed with SIGKILL: srun -K1 ends the step, the job fails, no requeue.
kdir=$S/kill
"$bin/sparta-launch" slurm --nodes 1 --tasks-per-node 2 --time 00:20:00 --run-dir "$kdir" -- \
  "${train[@]}" --set train.steps=1000000 --set parallel.timeout_s=20 > /dev/null
job=$(sbatch --parsable "$kdir/sparta.sbatch")
wait_state "$job" 60 RUNNING && wait_steps "$kdir" 20 || bad "kill: no progress"
victim=$(pgrep -f "^$bin/sparta-train .*$kdir" | tail -1)
t0=$(date +%s)
kill -KILL "$victim"
wait_state "$job" 40 FAILED COMPLETED CANCELLED
took=$(($(date +%s) - t0))
echo "  SIGKILL of rank pid $victim: job $job $(job_field "$job" JobState) after ${took} s"
check "kill: job failed" [ "$(job_field "$job" JobState)" = FAILED ]
check "kill: ended within parallel.timeout_s (${took} s)" [ "$took" -le 20 ]
check "kill: not requeued" [ "$(job_field "$job" Restarts)" = 0 ]
check "kill: reported as died, no relaunch" bash -c "grep -q 'sparta-launch: the run died' $kdir/slurm-$job.out && ! grep -q 'attempt 2' $kdir/slurm-$job.out"
check "kill: no rank left" bash -c "! pgrep -f '^$bin/sparta-train .*$kdir' > /dev/null"

echo "slurm requeue: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
