#!/usr/bin/env bash
# sparta-train launched by Slurm (`srun --mpi=pmix`), ctest label mpi: a private single-node
# Slurm is started for the test (tests/slurm/private_slurm.sh), then 2-rank data-parallel and
# tensor-parallel runs must report the Slurm-given world and match one process step for step.
# Skips (exit 77) when Slurm or munge is not installed or when not root (slurmd must be).
# usage: tests/mpi/srun.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
. "$src/tests/slurm/private_slurm.sh"

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
