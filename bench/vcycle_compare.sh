#!/usr/bin/env bash
# The V-cycle's compute saving (issue 13, docs/results.md "Multi-level training"): for each seed,
# the baseline (CONFIG as is) and the same run in a V-cycle ([multilevel] from configs/vcycle.toml
# or --set overrides), back to back, evaluating every EVAL steps; then bench/vcycle_report.py
# prints the FLOPs and training wall time each needs to reach the baseline's final validation
# loss, and the V-cycle's final loss against the baseline's at equal FLOPs. Not a test.
# usage: bench/vcycle_compare.sh CONFIG OUT_DIR "SEEDS" [EVAL] [sparta-train args...]
#   e.g. bench/vcycle_compare.sh configs/rmoe.toml runs/vc-rmoe "1 2" 50
#   needs data/default (scripts/train.sh). SPARTA_TRAIN picks the binary. Further arguments
#   go to both runs, after the V-cycle's settings (so they may override them); VCYCLE_ARGS
#   (words) go to the V-cycle run only, last (e.g. "--set train.steps=1300": a longer cycle
#   that spends about the baseline's FLOPs). A run whose log ends with its done line is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=$1
out=$2
seeds=$3
every=${4:-50}
extra=("${@:5}")
bin=${SPARTA_TRAIN:-build/bin/sparta-train}
mkdir -p "$out"
ml=(--set multilevel.enabled=true --set multilevel.mode=both --set multilevel.alpha=0.5
    --set multilevel.down_fraction=0.05 --set multilevel.coarse_fraction=0.45
    --set multilevel.lr_scale=2 --set multilevel.warmup_steps=20)
for seed in $seeds; do
  common=(--config "$cfg" --set train.seed="$seed" --set train.eval_every="$every")
  if ! grep -q '^done:' "$out/base-$seed.log" 2> /dev/null; then
    echo "seed $seed: baseline"
    rm -rf "${out:?}/base-$seed"
    "$bin" "${common[@]}" "${extra[@]}" --run-dir "$out/base-$seed" > "$out/base-$seed.log" 2>&1
  fi
  if ! tail -1 "$out/vc-$seed.log" 2> /dev/null | grep -q '^multilevel: phase .* done'; then
    echo "seed $seed: V-cycle"
    rm -rf "${out:?}/vc-$seed"
    # shellcheck disable=SC2086
    "$bin" "${common[@]}" "${ml[@]}" "${extra[@]}" ${VCYCLE_ARGS:-} --run-dir "$out/vc-$seed" \
      > "$out/vc-$seed.log" 2>&1
  fi
done
python3 bench/vcycle_report.py "$out" $seeds
