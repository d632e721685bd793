#!/usr/bin/env bash
# Pre-LN against Mix-LN at each norm's own tuned settings (issue 13, docs/results.md "Pre-LN
# against Mix-LN, each tuned"): for each placement, a grid of embedding init std x peak learning
# rate at one seed; then each placement's best cell again at every further seed. Prints one
# Markdown table of every first-seed cell in OUT_DIR (a later call with a wider grid adds to
# it), then the best cell per placement with its mean over the seeds. Not a test.
# usage: bench/norm_sweep.sh OUT_DIR STEPS "STDS" "LRS" "SEEDS" [sparta-train args...]
#   e.g. bench/norm_sweep.sh runs/norm-sweep 300 "0.02 0.2 0.632 1.0" "1e-3 3e-3" "1337 1"
#   the grid runs at the first seed; needs data/default (scripts/train.sh); SPARTA_TRAIN picks
#   the binary. Further arguments go to every run (a model: --config configs/moe.toml).
#   Runs already finished in OUT_DIR (their log has the done: line) are not run again, so
#   NORMS=mix and NORMS=pre (default "mix pre") may run side by side with --set train.threads=1
#   (two single-threaded runs get through about 20 % more than one on both cores, README
#   "Weak scaling"), and a last call with both prints the whole table.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
steps=$2
stds=$3
lrs=$4
read -r -a seeds <<<"$5"
extra=("${@:6}")
bin=${SPARTA_TRAIN:-build/bin/sparta-train}
mkdir -p "$out"

val_of() { sed -n 's/^done:.* val loss \([0-9.]*\) .*/\1/p' "$1"; }

run() {  # norm std lr seed -> prints the final val loss
  local name="$1-std$2-lr$3-seed$4"
  if [ -z "$(val_of "$out/$name.log" 2>/dev/null)" ]; then
    rm -rf "${out:?}/$name"
    "$bin" "${extra[@]}" --set train.steps="$steps" --set train.eval_every=0 \
      --set train.log_every=50 --set model.norm_placement="$1" --set model.embed_init_std="$2" \
      --set optim.lr="$3" --set train.seed="$4" --run-dir "$out/$name" > "$out/$name.log" 2>&1
  fi
  val_of "$out/$name.log"
}

for norm in ${NORMS:-mix pre}; do
  for std in $stds; do
    for lr in $lrs; do run "$norm" "$std" "$lr" "${seeds[0]}" > /dev/null; done
  done
done

# Every cell of OUT_DIR at the first seed (also those of earlier calls with other grids), and
# each placement's best of them again at the other seeds.
printf '| norm | embed_init_std | lr | seed | val loss |\n|---|---|---|---|---|\n'
declare -A best best_std best_lr
for norm in ${NORMS:-mix pre}; do
  for log in "$out/$norm"-std*-lr*-seed"${seeds[0]}".log; do
    v=$(val_of "$log")
    [ -n "$v" ] || continue
    cell=${log##*/$norm-std}
    std=${cell%%-lr*}
    lr=${cell#*-lr}
    lr=${lr%-seed*}
    printf '| %s | %s | %s | %s | %s |\n' "$norm" "$std" "$lr" "${seeds[0]}" "$v"
    if [ -z "${best[$norm]:-}" ] || python3 -c "import sys; sys.exit(0 if $v < ${best[$norm]} else 1)"; then
      best[$norm]=$v best_std[$norm]=$std best_lr[$norm]=$lr
    fi
  done
done
echo
printf '| norm | best embed_init_std | best lr | %s | mean |\n|---|---|---|%s---|\n' \
  "$(printf 'seed %s | ' "${seeds[@]}" | sed 's/ | $//')" "$(printf -- '---|%.0s' "${seeds[@]}")"
for norm in ${NORMS:-mix pre}; do
  vals=("${best[$norm]}")
  for seed in "${seeds[@]:1}"; do vals+=("$(run "$norm" "${best_std[$norm]}" "${best_lr[$norm]}" "$seed")"); done
  mean=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.4f}')" "${vals[@]}")
  printf '| %s | %s | %s | %s | %s |\n' "$norm" "${best_std[$norm]}" "${best_lr[$norm]}" \
    "$(printf '%s | ' "${vals[@]}" | sed 's/ | $//')" "$mean"
done
