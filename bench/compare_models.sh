#!/usr/bin/env bash
# Trains dense, MoE and RMoE models, each with Pre-LN and Mix-LN, for the same number of steps
# (same seed, data, batch, schedule and active parameters), and prints a Markdown table of the
# final validation loss, bits per byte, wall time and tokens/s. Not a test.
# usage: bench/compare_models.sh [STEPS] [OUT_DIR]   (needs data/default from scripts/train.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-800}
out=${2:-runs/compare-$steps}
mkdir -p "$out"
printf '| model | norm | params | val loss | bits/byte | wall time | tokens/s |\n|---|---|---|---|---|---|---|\n'
for model in dense moe rmoe; do
  case $model in
    dense) cfg=() ;;
    moe) cfg=(--config configs/moe.toml) ;;
    rmoe) cfg=(--config configs/rmoe.toml) ;;
  esac
  for norm in pre mix; do
    log="$out/$model-$norm.log"
    build/bin/sparta-train "${cfg[@]}" --set train.steps="$steps" --set train.eval_every=0 \
      --set train.log_every=50 --set model.norm_placement="$norm" --run-dir "$out/$model-$norm" > "$log" 2>&1
    params=$(sed -n 's/^sparta-train: \([0-9]*\) parameters.*/\1/p' "$log")
    done_line=$(grep '^done:' "$log")
    wall=$(sed -n 's/.* tokens in \([^ ]*\) (.*/\1/p' <<<"$done_line")
    toks=$(sed -n 's/.* (\([0-9]*\) tok\/s).*/\1/p' <<<"$done_line")
    val=$(sed -n 's/.* val loss \([0-9.]*\) (\([0-9.]*\) bits\/byte).*/\1 \2/p' <<<"$done_line")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$model" "$norm" "$params" "${val% *}" "${val#* }" "$wall" "$toks"
  done
done
