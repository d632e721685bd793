#!/usr/bin/env bash
# The V-cycle inside sparta-train ([multilevel], trainer/multilevel/vcycle.h): the phases run
# in their directories with the planned models, steps and learning rates, each boundary leaves a
# checkpoint, the cycle's records and FLOPs land in multilevel.jsonl; a cycle stopped inside its
# coarse phase resumes (--resume auto) to per-step losses bit-identical to an uninterrupted one;
# width+depth on a Mix-LN model; bad [multilevel] settings exit 2 naming the key.
# usage: vcycle_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
W=$(mktemp -d /tmp/vcycle.XXXXXX)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$W" || exit 1
# tiny: 2 layers, d_model 32; 4 heads so that the coarse model keeps 2.
base=(--config "$src/configs/tiny.toml" --set "data.dir=$W/data" --set model.n_heads=4
      --set train.steps=300 --set train.eval_every=50 --set train.eval_batches=2
      --set train.threads=1 --set multilevel.enabled=true --set multilevel.mode=width
      --set multilevel.down_fraction=0.1 --set multilevel.coarse_fraction=0.5)
phases=(phase-1-level-0 phase-2-level-1 phase-3-level-0)

"$bin/sparta-train" "${base[@]}" --run-dir "$W/ref" > "$W/ref.log" 2>&1
check "ref: exit 0 (got $?)" [ $? -eq 0 ]
check "ref: the plan" grep -q "multilevel: 3 phases over 300 steps" "$W/ref.log"
check "ref: coarse phase planned" grep -q "phase 2 level 1: steps 31..180 at lr 4.00e-02 (2 layers x d_model 16, 2 heads, FFN 32)" "$W/ref.log"
check "ref: coalesced" grep -q "phase 2 of 3: level 1 .* coalesced from the last phase" "$W/ref.log"
check "ref: interpolated" grep -q "phase 3 of 3: level 0 .* de-coalesced and interpolated (alpha 0.5)" "$W/ref.log"
steps=(30 150 120)
for i in 0 1 2; do
  d="$W/ref/${phases[$i]}"
  check "ref: ${phases[$i]} status" [ "$(cat "$d/status" 2> /dev/null)" = "exited 0 ${steps[$i]}" ]
  check "ref: ${phases[$i]} boundary checkpoint" \
    test -f "$d/checkpoints/step_$(printf %08d "${steps[$i]}")/manifest.json"
done
check "ref: run status" [ "$(cat "$W/ref/status")" = "exited 0 300" ]
check "ref: multilevel.jsonl records" python3 - "$W/ref/multilevel.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [x["level"] for x in r] == [0, 1, 0], r
assert [x["steps"] for x in r] == [30, 150, 120], r
assert r[0]["flops"] == r[0]["full_model_flops"] > 0, r[0]
assert r[1]["params"] < r[0]["params"] and r[1]["flops"] < r[1]["full_model_flops"], r[1]
assert r[2]["full_model_flops"] > r[2]["flops"] > r[1]["flops"], r[2]
PY
check "ref: the coarse phase's model is half as wide" grep -q "d_model = 16" "$W/ref/phase-2-level-1/config.toml"

# Stopped inside the coarse phase (the trigger file at the top of the run directory), resumed.
"$bin/sparta-train" "${base[@]}" --run-dir "$W/stop" > "$W/stop.log" 2>&1 &
pid=$!
wait_steps "$W/stop/phase-2-level-1" 20 || bad "stop: no progress in the coarse phase"
echo stop > "$W/stop/control.request"
wait $pid
rc=$?
check "stop: exit 0 (got $rc)" [ $rc -eq 0 ]
check "stop: the run's status says where" grep -q "^exited 0 " "$W/stop/status"
check "stop: the last phase never started" [ ! -d "$W/stop/phase-3-level-0" ]
"$bin/sparta-train" "${base[@]}" --run-dir "$W/stop" --resume auto > "$W/stop2.log" 2>&1
check "stop: resume exit 0 (got $?)" [ $? -eq 0 ]
check "stop: phase 1 skipped" grep -q "multilevel: phase 1 (level 0) is done" "$W/stop2.log"
check "stop: phase 2 resumed" grep -q "resume: loaded .*phase-2-level-1" "$W/stop2.log"
for p in "${phases[@]}"; do
  check "stop: $p losses bit-identical" same_losses "$W/ref/$p" "$W/stop/$p"
done
check "stop: same final FLOPs" [ "$(tail -1 "$W/ref/multilevel.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["flops"])')" = \
  "$(tail -1 "$W/stop/multilevel.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["flops"])')" ]

# Width and depth on a Mix-LN model: 4 layers, 2 Post-LN (the pairs (0,1) and (2,3) stay whole).
"$bin/sparta-train" "${base[@]}" --set model.n_layers=4 --set model.mixln_post_layers=2 \
  --set multilevel.mode=both --set train.steps=60 --set multilevel.warmup_steps=7 \
  --run-dir "$W/both" > "$W/both.log" 2>&1
check "both: exit 0 (got $?)" [ $? -eq 0 ]
warmups() { python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["optim"]["warmup_steps"])' "$1"; }
check "both: phase 1 warms up for optim.warmup_steps (2 in tiny.toml)" \
  [ "$(warmups "$W/both/phase-1-level-0/config.toml")" = 2 ]
check "both: the later phases for multilevel.warmup_steps" \
  [ "$(warmups "$W/both/phase-2-level-1/config.toml") $(warmups "$W/both/phase-3-level-0/config.toml")" = "7 7" ]
check "both: 2 layers x d_model 16" grep -q "phase 2 level 1: .*(2 layers x d_model 16" "$W/both.log"
check "both: 1 Post-LN + 1 Pre-LN" grep -q "1 Post-LN + 1 Pre-LN layers" "$W/both.log"

# Bad settings: exit 2, naming the key.
expect 2 "multilevel.levels = 4: level 3 cannot be made" \
  "$bin/sparta-train" "${base[@]}" --set multilevel.levels=4 --run-dir "$W/bad"
expect 2 "model.mixln_post_layers = 1" \
  "$bin/sparta-train" "${base[@]}" --set multilevel.mode=depth --run-dir "$W/bad"
expect 2 "model.d_ff = 63 is odd" \
  "$bin/sparta-train" "${base[@]}" --set model.d_ff=63 --run-dir "$W/bad"
expect 2 "raise multilevel.down_fraction" \
  "$bin/sparta-train" "${base[@]}" --set multilevel.down_fraction=0.001 --run-dir "$W/bad"
expect 2 "leave nothing" "$bin/sparta-train" "${base[@]}" --set multilevel.coarse_fraction=0.9 \
  --run-dir "$W/bad"
expect 2 "multilevel.enabled needs --run-dir" "$bin/sparta-train" "${base[@]}"
expect 2 "resumes with --resume auto" "$bin/sparta-train" "${base[@]}" --run-dir "$W/bad" \
  --resume "$W/ref/phase-1-level-0/checkpoints"
expect 2 "multilevel.mode" "$bin/sparta-train" "${base[@]}" --set multilevel.mode=sideways
expect 2 "multilevel.alpha" "$bin/sparta-train" "${base[@]}" --set multilevel.alpha=1.5

echo "vcycle_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
