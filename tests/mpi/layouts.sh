#!/usr/bin/env bash
# Distributed-runtime tests under mpirun (ctest label mpi): each layout's per-step losses and
# final parameters against the single-process run of the same model, data and seed; checkpoints
# saved under one layout resumed under another; the failure protocol (a rank that throws, a rank
# that hangs: the job ends within a bound, with a message naming the failing rank); layout errors.
# usage: tests/mpi/layouts.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d /tmp/sparta-mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Large message buffers reused instead of re-mmapped (../shared/notes/environment.md 2.2).
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$work" || exit 1  # $work/data

# tiny model, 10 steps, every step logged; global batch 8 = dp x per-rank batch. AdamW's eps is
# 1e-6 (default 1e-8): with 1e-8, an element whose gradient is at rounding level (a vocabulary
# row no target hit, a bias of a rarely used slot) moves by ~lr in a direction set by rounding,
# which hides real differences among ~1e-5 ones; at 1e-6 such elements move by O(gradient). The
# largest parameter differences left (~2e-5 of a tensor's largest value, tensor parallel) sit in
# near-dead FFN units whose first moment is a cancellation of +- gradients (|m| << sqrt(v)), so
# summation-order rounding is amplified there; with eps = 1e-4 they fall to ~3e-7.
base=(--config "$src/configs/tiny.toml" --set "data.dir=$work/data" --set train.steps=10 --set optim.eps=1e-6
      --set train.eval_every=0 --set train.eval_batches=4 --set train.log_every=1 --set train.threads=1
      --set checkpoint.keep_last=0)
train() {  # train NAME NP PER_RANK_BATCH [args...]
  local name=$1 np=$2 b=$3
  shift 3
  local cmd=("$bin/sparta-train" "${base[@]}" --set train.batch_size="$b" --run-dir "$work/$name" "$@")
  if [ "$np" -gt 1 ]; then cmd=(mpirun -np "$np" "${cmd[@]}"); fi
  timeout 300 "${cmd[@]}" > "$work/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "--- $name (rc $rc)"; tail -20 "$work/$name.log"; }
  return $rc
}
# compare A B TOL: per-step losses and the final checkpoint's every tensor (compare_runs.py)
compare() {
  python3 "$src/tests/common/compare_runs.py" "$work/$1" "$work/$2" "$3"
}
check() {  # check NAME REF TOL
  if compare "$1" "$2" "$3"; then ok; else bad "$1 differs from $2 beyond $3"; fi
}

# Single-process references: global batch 8, plain and with gradient noise.
train ref 1 8 || bad "reference run"
train ref_noise 1 8 --set noise.enabled=true --set noise.eta=0.01 || bad "noise reference run"
# Layouts.
train dp2 2 4 && check dp2 ref 3e-5
# The metrics carry each communicator's cumulative traffic: 10 gradient all-reduces and 10 loss
# all-reduces of the dp communicator by step 10.
if python3 - "$work/dp2/metrics.jsonl" <<'PY'
import json, sys
last = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l][-1]
ar = [c for c in last["comm"] if c["comm"] == "dp" and c["kind"] == "all_reduce"]
assert ar and ar[0]["calls"] >= 20 and ar[0]["bytes"] > 0 and ar[0]["seconds"] > 0, last["comm"]
PY
then ok; else bad "comm statistics in the metrics"; fi
train dp2_overlap 2 4 --set parallel.overlap_grad_reduce=true && check dp2_overlap ref 3e-5
train dp2_zero1 2 4 --set parallel.zero=1 && check dp2_zero1 ref 3e-5
train dp2_zero1_noise 2 4 --set parallel.zero=1 --set noise.enabled=true --set noise.eta=0.01 &&
  check dp2_zero1_noise ref_noise 3e-5
train dp4_zero1 4 2 --set parallel.zero=1 && check dp4_zero1 ref 3e-5
train dp2_accum 2 2 --set train.grad_accum=2 && check dp2_accum ref 3e-5
# MoE and RMoE (dropless): the load-balance loss sees the global batch's expert fractions.
moe=(--set moe.experts=4 --set moe.top_k=2 --set moe.aux_loss_coef=0.1)
rmoe=("${moe[@]}" --set moe.router=gru --set moe.gru_dim=8)
train ref_moe 1 8 "${moe[@]}" || bad "MoE reference run"
train dp2_moe 2 4 "${moe[@]}" && check dp2_moe ref_moe 3e-5
train ref_rmoe 1 8 "${rmoe[@]}" || bad "RMoE reference run"
train dp2_rmoe_zero1 2 4 "${rmoe[@]}" --set parallel.zero=1 && check dp2_rmoe_zero1 ref_rmoe 3e-5
# Expert parallel: experts sharded over the ep group, tokens dispatched with all_to_all_v.
train ep2_moe 2 4 "${moe[@]}" --set parallel.ep=2 && check ep2_moe ref_moe 3e-5
noise=(--set noise.enabled=true --set noise.eta=0.01)
train ref_rmoe_noise 1 8 "${rmoe[@]}" "${noise[@]}" || bad "RMoE + noise reference run"
train ep2_rmoe_noise 2 4 "${rmoe[@]}" "${noise[@]}" --set parallel.ep=2 &&
  check ep2_rmoe_noise ref_rmoe_noise 3e-5
train dp2xep2_moe 4 2 "${moe[@]}" --set parallel.ep=2 --set parallel.overlap_grad_reduce=true &&
  check dp2xep2_moe ref_moe 3e-5
# Capacity mode drops per source rank under data and expert parallelism alike, so ep2 equals dp2.
cap=("${moe[@]}" --set moe.capacity_factor=1.0)
train dp2_cap 2 4 "${cap[@]}" || bad "dp2 capacity run"
train ep2_cap 2 4 "${cap[@]}" --set parallel.ep=2 && check ep2_cap dp2_cap 3e-5
if grep -q "dropped [1-9]" "$work/ep2_cap.log"; then ok; else bad "capacity run dropped nothing"; fi
# Tensor parallel: heads, FFN columns, vocabulary (embedding and cross-entropy) and UoE experts
# split over tp ranks, which see the same data.
train tp2 2 8 --set parallel.tp=2 && check tp2 ref 3e-5
var=(--set model.norm=layernorm --set model.pos=learned --set model.ffn=gelu --set model.tie_embeddings=true)
train ref_var_noise 1 8 "${var[@]}" "${noise[@]}" || bad "variant + noise reference run"
train tp2_var_noise 2 8 "${var[@]}" "${noise[@]}" --set parallel.tp=2 && check tp2_var_noise ref_var_noise 3e-5
uoe=(--set uoe.enabled=true --set uoe.attn_experts=2 --set uoe.attn_top_k=1 --set uoe.mlp_experts=4 --set uoe.mlp_top_k=2)
for mode in clean paper; do
  train "ref_uoe_$mode" 1 8 "${uoe[@]}" --set uoe.mode=$mode || bad "UoE $mode reference run"
  train "tp2_uoe_$mode" 2 8 "${uoe[@]}" --set uoe.mode=$mode --set parallel.tp=2 &&
    check "tp2_uoe_$mode" "ref_uoe_$mode" 3e-5
done
train dp2xtp2 4 4 --set parallel.tp=2 && check dp2xtp2 ref 3e-5
# Resharding through tp: save at dp2 x tp2, resume at world 1 and at tp2.
train stop_tp 4 4 --set parallel.tp=2 --stop-at-step 5 || bad "stop at dp2 x tp2"
for to in 1 2; do
  rm -rf "$work/resume_tp_$to"
  cp -r "$work/stop_tp" "$work/resume_tp_$to"
  train "resume_tp_$to" "$to" 8 --set parallel.tp="$to" --resume auto && check "resume_tp_$to" ref 3e-5
done
# Context parallel: each rank holds a part of every sequence; attention swaps tokens for heads
# (all-to-all) and attends over whole sequences. Alone, with tensor, data (+ ZeRO-1) and
# expert parallelism, and with the learned-position variant + noise.
train cp2 2 8 --set parallel.cp=2 && check cp2 ref 3e-5
train cp2_var_noise 2 8 "${var[@]}" "${noise[@]}" --set parallel.cp=2 && check cp2_var_noise ref_var_noise 3e-5
train cp2_rmoe 2 8 "${rmoe[@]}" --set parallel.cp=2 && check cp2_rmoe ref_rmoe 3e-5
train dp2xcp2_zero1 4 4 --set parallel.cp=2 --set parallel.zero=1 && check dp2xcp2_zero1 ref 3e-5
train cp2xep2_moe 4 4 "${moe[@]}" --set parallel.cp=2 --set parallel.ep=2 && check cp2xep2_moe ref_moe 3e-5
h4=(--set model.n_heads=4)
train ref_h4 1 8 "${h4[@]}" || bad "4-head reference run"
train tp2xcp2 4 8 "${h4[@]}" --set parallel.tp=2 --set parallel.cp=2 && check tp2xcp2 ref_h4 3e-5
# Ring context parallelism (parallel.cp_algo = "ring"): zigzag chunks, K/V round the cp ring,
# RoPE at the chunks' global positions; alone, at cp4, with data (+ ZeRO-1), tensor and expert
# parallelism, and RMoE. A checkpoint saved under ring resumes under Ulysses and on one process.
ring=(--set parallel.cp_algo=ring)
train ring_cp2 2 8 "${ring[@]}" --set parallel.cp=2 && check ring_cp2 ref 3e-5
train ring_cp4 4 8 "${ring[@]}" --set parallel.cp=4 && check ring_cp4 ref 3e-5
train ring_cp2xdp2_zero1 4 4 "${ring[@]}" --set parallel.cp=2 --set parallel.zero=1 &&
  check ring_cp2xdp2_zero1 ref 3e-5
train ring_cp2_rmoe 2 8 "${ring[@]}" "${rmoe[@]}" --set parallel.cp=2 && check ring_cp2_rmoe ref_rmoe 3e-5
train ring_cp2xep2_moe 4 4 "${ring[@]}" "${moe[@]}" --set parallel.cp=2 --set parallel.ep=2 &&
  check ring_cp2xep2_moe ref_moe 3e-5
train ring_tp2xcp2 4 8 "${ring[@]}" "${h4[@]}" --set parallel.tp=2 --set parallel.cp=2 &&
  check ring_tp2xcp2 ref_h4 3e-5
# Activation recomputation (train.recompute): bit-identical to keeping everything on one process
# (tolerance 0), and across ranks where the recomputed forward communicates again: the ring's
# passes, expert dispatch beside overlapped gradient buckets, RMoE's state under data parallel.
train ref_block 1 8 --set train.recompute=block && check ref_block ref 0
train ref_moe_attn 1 8 "${moe[@]}" --set train.recompute=attention && check ref_moe_attn ref_moe 0
train ring_cp2_block 2 8 "${ring[@]}" --set parallel.cp=2 --set train.recompute=block &&
  check ring_cp2_block ring_cp2 0
train ep2_moe_block 2 4 "${moe[@]}" --set parallel.ep=2 --set parallel.overlap_grad_reduce=true \
  --set train.recompute=block && check ep2_moe_block ref_moe 3e-5
train dp2_rmoe_attn 2 4 "${rmoe[@]}" --set train.recompute=attention && check dp2_rmoe_attn ref_rmoe 3e-5
# Hybrid (USP): Ulysses inside pairs of cp ranks, the ring across the two pairs.
train hybrid_2x2 4 8 "${h4[@]}" --set parallel.cp_algo=hybrid --set parallel.cp=4 --set parallel.cp_ulysses=2 &&
  check hybrid_2x2 ref_h4 3e-5
# Both parts ran: all-to-alls inside the Ulysses pairs and passes round the ring of two.
if python3 - "$work/hybrid_2x2/metrics.jsonl" <<'PY'
import json, sys
last = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l][-1]
calls = {(c["comm"], c["kind"]): c["calls"] for c in last["comm"]}
sys.exit(0 if calls.get(("cp_a2a", "all_to_all_v"), 0) > 0 and
         calls.get(("cp_ring", "sendrecv"), 0) > 0 else 1)
PY
then ok; else bad "hybrid: no traffic on cp_a2a and cp_ring"; fi
train stop_ring 2 8 "${ring[@]}" --set parallel.cp=2 --stop-at-step 5 || bad "stop at ring cp2"
for to in 1 2; do
  rm -rf "$work/resume_ring_$to"
  cp -r "$work/stop_ring" "$work/resume_ring_$to"
  train "resume_ring_$to" "$to" 8 --set parallel.cp="$to" --resume auto && check "resume_ring_$to" ref 3e-5
done
# Expert checkpoints are saved whole: save at dp2 x ep2, resume at world 1 and at ep2.
train stop_ep 4 2 "${moe[@]}" --set parallel.ep=2 --stop-at-step 5 || bad "stop at dp2 x ep2"
for to in 1 2; do
  rm -rf "$work/resume_ep_$to"
  cp -r "$work/stop_ep" "$work/resume_ep_$to"
  train "resume_ep_$to" "$to" $((8 / to)) "${moe[@]}" --set parallel.ep="$to" --resume auto &&
    check "resume_ep_$to" ref_moe 3e-5
done
# Resharding: save at dp2 + ZeRO-1 (sharded moments), resume at world 1 and at dp4 + ZeRO-1.
train stop_dp2 2 4 --set parallel.zero=1 --stop-at-step 5 || bad "stop at dp2"
for to in 1 4; do
  rm -rf "$work/resume_$to"
  cp -r "$work/stop_dp2" "$work/resume_$to"
  train "resume_$to" "$to" $((8 / to)) --set parallel.zero=$((to > 1 ? 1 : 0)) --resume auto &&
    check "resume_$to" ref 3e-5
done

# The failure protocol: rank 1 throws at step 3; rank 0 (waiting in a collective) must say so.
t0=$(date +%s)
timeout 120 mpirun -np 2 -x SPARTA_TEST_FAIL=1:3 "$bin/sparta-train" "${base[@]}" --set train.batch_size=4 \
  > "$work/throw.log" 2>&1
rc=$?
took=$(($(date +%s) - t0))
if [ $rc -eq 1 ] && grep -q "sparta: rank 1 failed: .*injected failure at step 3" "$work/throw.log" &&
   grep -q "sparta: rank 0: stopping because rank 1 failed: .*injected failure at step 3" "$work/throw.log" &&
   grep -q "flight recorder of communicator 'dp'" "$work/throw.log" && [ $took -lt 60 ]; then ok
else bad "throwing rank: rc $rc after ${took}s"; cat "$work/throw.log"; fi
# A rank that stops responding: the others end the job after parallel.timeout_s.
t0=$(date +%s)
timeout 120 mpirun -np 2 -x SPARTA_TEST_FAIL=1:3:hang "$bin/sparta-train" "${base[@]}" --set train.batch_size=4 \
  --set parallel.timeout_s=3 > "$work/hang.log" 2>&1
rc=$?
took=$(($(date +%s) - t0))
if [ $rc -eq 1 ] && grep -q "sparta: rank 0: all_reduce of .* on communicator 'dp' (collective #[0-9]*) made no progress for 3 s" "$work/hang.log" &&
   grep -q "IN FLIGHT" "$work/hang.log" && [ $took -lt 60 ]; then ok
else bad "hanging rank: rc $rc after ${took}s"; cat "$work/hang.log"; fi

# Layout errors: exit 2 with what to change.
expect_layout() {  # expect_layout NP MESSAGE ARGS...
  local np=$1 msg=$2
  shift 2
  timeout 60 mpirun -np "$np" "$bin/sparta-train" "${base[@]}" "$@" > "$work/layout.log" 2>&1
  local rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$msg" "$work/layout.log"; then ok
  else bad "layout $*: rc $rc, wanted 2 and '$msg'"; head -5 "$work/layout.log"; fi
}
expect_layout 2 "tp x cp x ep x dp = 1 x 1 x 1 x 3 = 3, but the job has 2 ranks: set parallel.dp = 2" --set parallel.dp=3
expect_layout 2 "tp x cp x ep = 1 x 1 x 3 = 3 does not divide the world size 2" --set parallel.ep=3 --set moe.experts=3
expect_layout 2 "parallel.tp = 2 must divide model.n_heads = 3" --set parallel.tp=2 --set model.n_heads=3 --set model.d_model=48
expect_layout 2 "parallel.ep = 2 must divide moe.experts = 3" --set parallel.ep=2 --set moe.experts=3
expect_layout 2 "parallel.ep = 2 needs an MoE model" --set parallel.ep=2
expect_layout 2 "parallel.tp = 2 with moe.experts = 4: MoE layers are split by expert parallelism" \
  --set parallel.tp=2 --set moe.experts=4
expect_layout 2 "parallel.cp = 2 with uoe.enabled: UoE assigns slots over whole sequences" \
  --set parallel.cp=2 "${uoe[@]}"
expect_layout 4 "parallel.tp x cp = 2 x 2 must divide model.n_heads = 2" --set parallel.tp=2 --set parallel.cp=2
expect_layout 2 "parallel.order = \"tp-dp\" must name tp, cp, ep and dp once each" --set parallel.order=tp-dp
expect_layout 3 "parallel.cp_algo = \"ring\" with parallel.cp = 3: 2 x cp = 6 must divide model.seq_len = 16" \
  --set parallel.cp_algo=ring --set parallel.cp=3
expect_layout 2 "parallel.cp_algo = \"ring\" with model.pos = \"learned\"" --set parallel.cp_algo=ring \
  --set parallel.cp=2 --set model.pos=learned
expect_layout 4 "parallel.cp_algo = \"hybrid\": parallel.cp_ulysses = 3 must be >= 1 and divide parallel.cp = 4" \
  --set parallel.cp_algo=hybrid --set parallel.cp=4 --set parallel.cp_ulysses=3
expect_layout 4 "parallel.cp_algo = \"hybrid\": parallel.cp_ulysses = 4 must divide the heads per tensor-parallel rank, model.n_heads / tp = 2 / 1" \
  --set parallel.cp_algo=hybrid --set parallel.cp=4 --set parallel.cp_ulysses=4
expect_layout 2 "parallel.zero = 1 with tp = 1 and ep = 2: ZeRO-1 shards the optimizer over data parallelism only" \
  --set parallel.ep=2 --set moe.experts=4 --set parallel.zero=1

echo "mpi layouts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
