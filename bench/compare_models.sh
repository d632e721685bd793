#!/usr/bin/env bash
# Trains dense, MoE, RMoE and UoE models, each with Pre-LN and Mix-LN, for the same number of steps
# (same seed, data, batch, schedule and active parameters), and prints a Markdown table of the
# final validation loss, bits per byte, wall time and tokens/s. Not a test.
# usage: bench/compare_models.sh [STEPS] [OUT_DIR] [MODELS] [sparta-train args...]
#   needs data/default (scripts/train.sh); MODELS defaults to "dense moe rmoe uoe"; further
#   arguments go to every run (e.g. --set train.device=cuda --set train.seed=1).
#   SPARTA_TRAIN picks the binary (default build/bin/sparta-train).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-800}
out=${2:-runs/compare-$steps}
models=${3:-dense moe rmoe uoe}
extra=("${@:4}")
bin=${SPARTA_TRAIN:-build/bin/sparta-train}
mkdir -p "$out"
printf '| model | norm | params | val loss | bits/byte | wall time | tokens/s |\n|---|---|---|---|---|---|---|\n'
for model in $models; do
  case $model in
    dense) cfg=() ;;
    moe) cfg=(--config configs/moe.toml) ;;
    rmoe) cfg=(--config configs/rmoe.toml) ;;
    uoe) cfg=(--config configs/uoe.toml) ;;
  esac
  for norm in pre mix; do
    log="$out/$model-$norm.log"
    "$bin" "${cfg[@]}" "${extra[@]}" --set train.steps="$steps" --set train.eval_every=0 \
      --set train.log_every=50 --set model.norm_placement="$norm" --run-dir "$out/$model-$norm" > "$log" 2>&1
    params=$(sed -n 's/^sparta-train: \([0-9]*\) parameters.*/\1/p' "$log")
    done_line=$(grep '^done:' "$log")
    wall=$(sed -n 's/.* tokens in \([^ ]*\) (.*/\1/p' <<<"$done_line")
    toks=$(sed -n 's/.* (\([0-9]*\) tok\/s).*/\1/p' <<<"$done_line")
    val=$(sed -n 's/.* val loss \([0-9.]*\) (\([0-9.]*\) bits\/byte).*/\1 \2/p' <<<"$done_line")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$model" "$norm" "$params" "${val% *}" "${val#* }" "$wall" "$toks"
  done
done
