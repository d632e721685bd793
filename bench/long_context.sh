#!/usr/bin/env bash
# Long-context memory and speed on this machine (bench/README.md): the longest sequence that
# trains within a per-rank memory budget, and the step time and collective share there, for the
# materialised-attention baseline, sparta on one rank (with and without recompute) and ring
# context parallelism over 2 and 4 ranks; then bench/long_context_report.py prints the table
# and draws memory per rank against T.
# Every configuration is also timed at one common T (TIME_AT, default 2048), for the cost of
# recompute and of the ring at equal work.
# usage: bench/long_context.sh OUT_DIR [BUDGET_MIB] [LAYERS]   (Debian python3-matplotlib for the plot)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/long_context.sh OUT_DIR [BUDGET_MIB] [LAYERS]}
budget=${2:-64}
layers=${3:-4}
mkdir -p "$out"
: > "$out/results.jsonl"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cores=$(nproc)
run() {  # run RANKS LABEL [bench args...]
  local np=$1 label=$2
  shift 2
  local threads=$((cores / np > 0 ? cores / np : 1))
  echo "== $label ($np rank(s), $threads thread(s) each)"
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    mpirun -np "$np" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS build/bin/long_context_bench \
    --budget-mib "$budget" --layers "$layers" --label "$label" --time-at "${TIME_AT:-2048}" "$@" | tee "$out/$np-${label// /_}.log" |
    grep -v '^bench_json' || true
  grep '^bench_json: ' "$out/$np-${label// /_}.log" | sed 's/^bench_json: //' >> "$out/results.jsonl"
}
run 1 "sparta 1 rank" --vanilla
run 1 "sparta 1 rank, recompute attention" --recompute attention
run 1 "sparta 1 rank, recompute block" --recompute block
run 2 "ring cp2" --cp-algo ring
run 2 "ring cp2, recompute block" --cp-algo ring --recompute block
run 4 "ring cp4" --cp-algo ring
run 4 "ring cp4, recompute block" --cp-algo ring --recompute block
/usr/bin/python3 bench/long_context_report.py "$out"  # Debian's, with python3-matplotlib
