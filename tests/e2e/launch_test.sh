#!/usr/bin/env bash
# sparta-launch without Slurm: the scripts it writes (both launchers, shell syntax, the
# preemption protocol's lines, the warning's lead from an earlier run's measurements) and every
# bad input's message and exit code. tests/slurm/requeue_test.sh runs the scripts on a real Slurm.
# usage: launch_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"
has() {  # has FILE NEEDLE
  if grep -qF -- "$2" "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 lacks '$2'"; fi
}
L=("$bin/sparta-launch" slurm --nodes 2 --tasks-per-node 4 --time 01:00:00)

expect 0 "USR1 150 s before the end" "${L[@]}" --gpus-per-node 4 --partition gpu --run-dir "$W/a" -- --set 'train.steps=10' --set "x=it's"
s=$W/a/sparta.sbatch
for line in "#SBATCH --nodes=2" "#SBATCH --ntasks-per-node=4" "#SBATCH --gpus-per-node=4" \
  "#SBATCH --partition=gpu" "#SBATCH --requeue" "#SBATCH --open-mode=append" \
  "#SBATCH --signal=USR1@150" "#SBATCH --output=$W/a/slurm-%j.out" "srun --mpi=pmix -K1 " \
  "--resume auto" "RUN_DIR=$W/a" "scontrol requeue" "'x=it'\\''s'" '[ "$rc" -eq 75 ]'; do
  has "$s" "$line"
done
bash -n "$s" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: $s is not valid bash"; }
expect 0 "wrote $W/b.sbatch" "${L[@]}" --launcher mpirun --run-dir "$W/b" --output "$W/b.sbatch"
has "$W/b.sbatch" "#SBATCH --signal=B:USR1@150"
has "$W/b.sbatch" 'mpirun -np "$SLURM_NTASKS"'
has "$W/b.sbatch" "kill -USR1"
bash -n "$W/b.sbatch" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: b.sbatch"; }
# The lead from an earlier run: checkpoint 100 s + step 10 s + margin 60 s.
mkdir -p "$W/c"
printf '%s\n' '{"step":1,"loss":5,"step_ms":10000}' '{"step":1,"checkpoint_seconds":100,"checkpoint_bytes":1}' > "$W/c/metrics.jsonl"
expect 0 "USR1 170 s before the end: checkpoint 100.0 s and step 10.00 s measured" "${L[@]}" --run-dir "$W/c"

expect 2 "--time '1h': expected HH:MM:SS" "${L[@]/01:00:00/1h}" --run-dir "$W/d"
expect 2 "--time '00:00:00' must be longer than 0 s" "${L[@]/01:00:00/00:00:00}" --run-dir "$W/d"
expect 2 "--time allows only 120 s: ask for more time" "${L[@]/01:00:00/00:02:00}" --run-dir "$W/d"
expect 2 "--nodes 0 must be at least 1" "$bin/sparta-launch" slurm --nodes 0 --tasks-per-node 1 --time 1:00:00 --run-dir "$W/d"
expect 2 "--launcher 'torchrun': expected srun or mpirun" "${L[@]}" --launcher torchrun --run-dir "$W/d"
expect 2 "the script sets --run-dir" "${L[@]}" --run-dir "$W/d" -- --run-dir /elsewhere
expect 2 "the script sets --run-dir" "${L[@]}" --run-dir "$W/d" -- --resume auto
expect 2 "--job-name 'a b'" "${L[@]}" --run-dir "$W/d" --job-name "a b"
expect 2 "--run-dir is required" "$bin/sparta-launch" slurm --nodes 1 --tasks-per-node 1 --time 1:00:00
expect 2 "A subcommand is required" "$bin/sparta-launch"
expect 3 "sbatch" env PATH=/nonexistent "${L[@]}" --run-dir "$W/e" --submit

echo "launch: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
