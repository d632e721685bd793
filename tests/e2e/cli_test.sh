#!/usr/bin/env bash
# End-to-end checks of the command-line contract: every bad input gets its message and exit code
# (README "Exit codes"), and a tiny run writes the documented progress lines and metrics.
# usage: cli_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$src/tests/common/checks.sh"

# A small data directory from generated text.
python3 - "$work/text.txt" <<'PY'
import sys, random
random.seed(3)
words = "the king said unto them and went into house of bread light water stone river came".split()
with open(sys.argv[1], "w") as f:
    for _ in range(600):
        f.write(" ".join(random.choice(words) for _ in range(12)) + ".\n")
PY
expect 0 "wrote $work/data" "$bin/sparta-prep" --out "$work/data" --input "$work/text.txt" --vocab-size 64 --val-fraction 0.1
expect 0 "up to date" "$bin/sparta-prep" --out "$work/data" --input "$work/text.txt" --vocab-size 64
tiny=(--config "$src/configs/tiny.toml" --set "data.dir=$work/data")

# Usage and config errors: exit 2.
expect 2 "unknown config key 'model.n_layer'" "$bin/sparta-train" "${tiny[@]}" --set model.n_layer=3
expect 2 "model.n_layers=abc is not an integer" "$bin/sparta-train" "${tiny[@]}" --set model.n_layers=abc
expect 2 "optim.beta1 = 2 is not allowed" "$bin/sparta-train" "${tiny[@]}" --set optim.beta1=2
expect 2 "one of \"pre\", \"post\", \"mix\"" "$bin/sparta-train" "${tiny[@]}" --set model.norm_placement=middle
expect 2 "train.recompute must be one of \"none\", \"attention\", \"block\"" "$bin/sparta-train" "${tiny[@]}" --set train.recompute=full
printf '[train]\nsteps = "many"\n' > "$work/bad_type.toml"
expect 2 "train.steps = 'many' has the wrong type: train.steps must be an integer in [1, " "$bin/sparta-train" --config "$work/bad_type.toml"
printf '[train]\nsteps = 10\nspeed = 3\n' > "$work/bad_key.toml"
expect 2 "(line 3): unknown config key 'train.speed'" "$bin/sparta-train" --config "$work/bad_key.toml"
expect 2 "File does not exist: $work/none.toml" "$bin/sparta-train" --config "$work/none.toml"
expect 2 "Run with --help" "$bin/sparta-train" --no-such-flag
expect 2 "Run with --help" "$bin/sparta-prep" --out "$work/x" --input "$work/missing.txt"
expect 2 "--vocab-size 70000 out of range" "$bin/sparta-prep" --out "$work/v" --input "$work/text.txt" --vocab-size 70000

# Data errors: exit 3.
expect 3 "no $work/nodata/meta.json" "$bin/sparta-train" "${tiny[@]}" --set "data.dir=$work/nodata"
expect 3 "default corpus not found in '$work/nocorpus'" "$bin/sparta-prep" --out "$work/d2" --corpus-dir "$work/nocorpus"
cp -r "$work/data" "$work/bad_magic"
printf 'ZZZZ' | dd of="$work/bad_magic/train_000.bin" bs=1 conv=notrunc status=none
expect 3 "train_000.bin: not a token shard: magic" "$bin/sparta-train" "${tiny[@]}" --set "data.dir=$work/bad_magic"
cp -r "$work/data" "$work/truncated"
truncate -s -3 "$work/truncated/val_000.bin"
expect 3 "val_000.bin: truncated or padded token shard" "$bin/sparta-train" "${tiny[@]}" --set "data.dir=$work/truncated"
cp -r "$work/data" "$work/big_token"
printf '\xff\xff' | dd of="$work/big_token/train_000.bin" bs=1 seek=1030 conv=notrunc status=none
expect 3 "token 65535 at byte offset 1030 is >= the vocabulary size 64" "$bin/sparta-train" "${tiny[@]}" --set "data.dir=$work/big_token"

# Help and config printing: exit 0; the printed config loads back unchanged.
expect 0 "--config" "$bin/sparta-train" --help
"$bin/sparta-train" "${tiny[@]}" --print-config > "$work/effective.toml"
expect 0 "n_layers = 2" "$bin/sparta-train" --config "$work/effective.toml" --print-config
expect 0 "| \`model.mixln_alpha\` |" "$bin/sparta-train" --print-config-reference
# The README's config reference is the program's own table, line for line.
missing=$("$bin/sparta-train" --print-config-reference | while IFS= read -r line; do
  grep -qxF -- "$line" "$src/README.md" || echo "$line"
done)
if [ -z "$missing" ]; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL: README.md config reference is stale; regenerate with --print-config-reference:"; echo "$missing"
fi

# A tiny run: progress lines, eval lines, summary, metrics JSONL, saved config.
expect 0 "done: 8 steps" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/run" --metrics-out "$work/m.jsonl"
# Recompute says what it saved (the losses are unchanged: tests/unit/test_recompute.cpp).
expect 0 "MB (recompute block: 0.2 MB saved)" "$bin/sparta-train" "${tiny[@]}" --set train.steps=1 \
  --set train.recompute=block --run-dir "$work/recompute"
out=$("$bin/sparta-train" "${tiny[@]}" --run-dir "$work/run2" 2>&1)
for needle in "unigram baseline" "step 8/8 | loss" "tok/s" "ETA" "eval  step 4 | val loss" "bits/byte"; do
  if grep -qF -- "$needle" <<<"$out"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: run output lacks '$needle'"; fi
done
if python3 - "$work/m.jsonl" "$work/run2/metrics.jsonl" "$work/run/config.toml" <<'PY'
import json, sys
for path in sys.argv[1:3]:
    lines = [json.loads(l) for l in open(path)]
    train = [l for l in lines if "loss" in l]
    evals = [l for l in lines if "val_loss" in l]
    assert len(train) == 8, (path, len(train))
    for l in train:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s", "step_ms"} <= set(l), l
    assert [e["step"] for e in evals] == [4, 8], evals
    assert all(e["val_bpb"] > 0 for e in evals)
assert "[model]" in open(sys.argv[3]).read()
PY
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: metrics JSONL / config.toml content"; fi

# Checkpoints through the CLI: stop at step 4, resume, and the metrics match a straight run.
expect 0 "stopped after step 4 as asked" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/ra" --stop-at-step 4
expect 0 "resume: loaded $work/ra/checkpoints/step_00000004" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/ra" --resume auto
expect 0 "resume: no complete checkpoint" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/rb" --resume auto --set train.steps=2
expect 2 "--stop-at-step 9 must be" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/rc" --stop-at-step 9
expect 3 "checkpoint $work/none does not exist" "$bin/sparta-train" "${tiny[@]}" --run-dir "$work/rd" --resume "$work/none"
if python3 - "$work/m.jsonl" "$work/ra/metrics.jsonl" <<'PY'
import json, sys
straight = [json.loads(l) for l in open(sys.argv[1])]
resumed = [json.loads(l) for l in open(sys.argv[2])]
a = {l["step"]: l["loss"] for l in straight if "loss" in l}
b = {l["step"]: l["loss"] for l in resumed if "loss" in l}
assert sorted(b) == list(range(1, 9)), sorted(b)
assert all(a[s] == b[s] for s in a), (a, b)
PY
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: resumed run's losses differ from the straight run's"; fi

# Sampling: deterministic for a seed; bad arguments and a missing checkpoint are refused.
s1=$("$bin/sparta-sample" --checkpoint "$work/ra/checkpoints" --prompt "the king" --tokens 12 --seed 5 2>&1)
s2=$("$bin/sparta-sample" --checkpoint "$work/ra/checkpoints/step_00000008" --prompt "the king" --tokens 12 --seed 5 2>&1)
s3=$("$bin/sparta-sample" --checkpoint "$work/ra/checkpoints" --prompt "the king" --tokens 12 --seed 6 --temperature 2 --top-k 0 2>&1)
if [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s1" != "$s3" ] && grep -q "^the king" <<<"$s1"; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL: sampling not deterministic per seed: '$s1' / '$s2' / '$s3'"; fi
expect 3 "no checkpoint in $work/nothing" "$bin/sparta-sample" --checkpoint "$work/nothing"
expect 2 "--temperature -1 must be >= 0" "$bin/sparta-sample" --checkpoint "$work/ra/checkpoints" --temperature -1

# MoE through the CLI: router statistics in the progress line and the metrics; bad MoE keys.
expect 0 "| balance " "$bin/sparta-train" "${tiny[@]}" --set moe.experts=4 --set moe.top_k=2 --set moe.capacity_factor=1.0 --metrics-out "$work/moe.jsonl"
if python3 - "$work/moe.jsonl" <<'PY'
import json, sys
lines = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l]
m = lines[-1]["moe"]
assert [x["layer"] for x in m] == [0, 1], m
# batch 4 x seq 16 tokens, 2 experts each: 128 assignments per layer before capacity
assert all(sum(x["expert_tokens"]) == 128 for x in m), m
assert all(0 <= x["dropped"] <= 128 and x["router_entropy"] > 0 and x["load_balance_loss"] > 0 for x in m)
PY
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: MoE metrics"; fi
expect 2 "moe.top_k = 5 exceeds moe.experts = 4" "$bin/sparta-train" "${tiny[@]}" --set moe.experts=4 --set moe.top_k=5
expect 2 "moe.layers = \"0,7\": '7' is not a layer index in [0, 2)" "$bin/sparta-train" "${tiny[@]}" --set moe.experts=4 --set moe.layers=0,7

# UoE through the CLI: per-block router statistics and checkpointed frozen routers; bad UoE keys.
expect 0 "| balance " "$bin/sparta-train" "${tiny[@]}" --set uoe.enabled=true --metrics-out "$work/uoe.jsonl" --run-dir "$work/uoe"
if python3 - "$work/uoe.jsonl" "$work/uoe/checkpoints" <<'PY'
import json, os, struct, sys
lines = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l]
m = lines[-1]["moe"]
assert [(x["layer"], x["block"]) for x in m] == [(0, "uoe.attn"), (0, "uoe.mlp"), (1, "uoe.attn"), (1, "uoe.mlp")], m
# 64 tokens: attention top-1 of 2 experts, MLP top-2 of 4
assert [sum(x["expert_tokens"]) for x in m] == [64, 128, 64, 128], m
latest = open(os.path.join(sys.argv[2], "latest")).read().strip()
raw = open(os.path.join(sys.argv[2], latest, "model.safetensors"), "rb").read()
names = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]]).keys()
assert "layers.1.mlp.router.weight" in names and "layers.0.attn.experts.qkv.bias" in names, names
PY
then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: UoE metrics / checkpoint"; fi
expect 2 "uoe.attn_experts = 3 must divide model.n_heads = 2" "$bin/sparta-train" "${tiny[@]}" --set uoe.enabled=true --set uoe.attn_experts=3
expect 2 "uoe.mlp_experts = 5 must divide model.d_ff = 64" "$bin/sparta-train" "${tiny[@]}" --set uoe.enabled=true --set uoe.mlp_experts=5
expect 2 "uoe.mlp_top_k = 5 exceeds uoe.mlp_experts = 4" "$bin/sparta-train" "${tiny[@]}" --set uoe.enabled=true --set uoe.mlp_top_k=5
expect 2 "uoe.enabled and moe.experts = 4 exclude each other" "$bin/sparta-train" "${tiny[@]}" --set uoe.enabled=true --set moe.experts=4
expect 2 "one of \"clean\", \"paper\"" "$bin/sparta-train" "${tiny[@]}" --set uoe.mode=faithful

echo "cli_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
