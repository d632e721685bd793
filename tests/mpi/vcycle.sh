#!/usr/bin/env bash
# The V-cycle under mpirun (ctest label mpi): a 3-phase width cycle trained tensor-parallel
# (tp2) and expert-parallel (ep2, MoE) equals the single-process cycle, phase by phase: the
# per-step losses and every tensor of each phase's boundary checkpoint (compare_runs.py, the
# layouts' criterion). The operators act on full tensors gathered from the shards, so the
# heads the halves pairing joins may live on different tp ranks.
# usage: tests/mpi/vcycle.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d /tmp/sparta-vc.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
. "$src/tests/common/checks.sh"

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$work" || exit 1
# 60 steps: 12 on the full model, 24 on the half-width one (2 heads of 4), 24 back; eps 1e-6 as
# in layouts.sh. lr 3e-3 and lr_scale 1: at the tiny model's lr 1e-2, times 4 in the coarse
# phase, training amplifies summation-order rounding to ~1e-3 of a tensor in 24 steps (and flips
# near-tied MoE choices), which would hide real differences.
base=(--config "$src/configs/tiny.toml" --set "data.dir=$work/data" --set model.n_heads=4
      --set train.steps=60 --set optim.eps=1e-6 --set train.eval_every=0 --set train.eval_batches=4
      --set train.threads=1 --set checkpoint.keep_last=0 --set multilevel.enabled=true
      --set multilevel.mode=width --set multilevel.down_fraction=0.2
      --set multilevel.coarse_fraction=0.4 --set optim.lr=3e-3 --set multilevel.lr_scale=1)
moe=(--set moe.experts=4 --set moe.top_k=2 --set moe.expert_ffn=32 --set moe.aux_loss_coef=0.1)
phases=(phase-1-level-0 phase-2-level-1 phase-3-level-0)
run() {  # run NAME NP PER_RANK_BATCH [args...]
  local name=$1 np=$2 b=$3
  shift 3
  local cmd=("$bin/sparta-train" "${base[@]}" --set train.batch_size="$b" --run-dir "$work/$name" "$@")
  [ "$np" -gt 1 ] && cmd=(mpirun -np "$np" "${cmd[@]}")
  timeout 300 "${cmd[@]}" > "$work/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "--- $name (rc $rc)"; tail -20 "$work/$name.log"; }
  return $rc
}
same_phases() {  # A B TOL
  local p
  for p in "${phases[@]}"; do
    check "$1 $p vs $2" python3 "$src/tests/common/compare_runs.py" "$work/$1/$p" "$work/$2/$p" "$3"
  done
}

run ref 1 8 || bad "reference cycle"
run tp2 2 8 --set parallel.tp=2 && same_phases tp2 ref 3e-5
run ref_moe 1 8 "${moe[@]}" || bad "MoE reference cycle"
run ep2 2 4 "${moe[@]}" --set parallel.ep=2 && same_phases ep2 ref_moe 3e-5

echo "vcycle (mpi): $pass passed, $fail failed"
[ "$fail" -eq 0 ]
