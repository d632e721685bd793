#!/usr/bin/env bash
# Checkpoints written by an earlier sparta still load and resume bit-exactly, and today's code
# writes the same checkpoints: for each model kind in tests/fixtures/ (made by
# tests/fixtures/make_checkpoints.sh with the commit named in tests/fixtures/README.md)
#   1. a fresh run to step 4 writes model.safetensors and optim.safetensors byte-identical to
#      the fixture's (parameter names, order, shapes, initial values and training unchanged);
#   2. the fixture's step-4 checkpoint, resumed to step 8, gives the per-step losses the old code
#      printed, digit for digit, and step-8 files byte-identical to the old code's.
# usage: checkpoint_fixture.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
fx="$src/tests/fixtures/v1"  # the set made with commit aa6273f
# Byte-identical checkpoints need the BLAS kernel the fixtures were made with: each OpenBLAS
# kernel family sums in its own order, and sparta-train picks SkylakeX on AVX-512 CPUs and
# Haswell on AVX2 ones (kernels/blas.h). The v1 set was made with Haswell (an AMD EPYC VM), which
# every AVX2 CPU runs.
if ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo; then
  echo "SKIP: the v1 fixtures need OpenBLAS's Haswell kernel (AVX2 + FMA), which this CPU lacks"
  exit 77
fi
export OPENBLAS_CORETYPE=Haswell
work=$(mktemp -d /tmp/sparta-fixture-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() {  # check NAME WANT GOT
  if [ "$2" == "$3" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $1"
    diff <(echo "$2") <(echo "$3") | sed 's/^/    /'
  fi
}

"$src/tests/fixtures/fixture_data.sh" "$bin" "$work" "$fx/tokenizer.model" || exit 1
check "test data equals the fixtures' data" "$(cat "$fx/data.sha256")" \
  "$(cd "$work/data" && sha256sum ./*.bin)"
while read -r kind sets; do
  [ -z "$kind" ] && continue
  args=()
  for s in $(cat "$fx/fixture_common.txt") $sets; do args+=(--set "$s"); done
  args+=(--set "data.dir=$work/data")
  fresh="$work/fresh-$kind"
  if ! "$bin/sparta-train" "${args[@]}" --run-dir "$fresh" --stop-at-step 4 > "$fresh.log" 2>&1; then
    fail=$((fail + 1))
    echo "FAIL: $kind: fresh run"
    tail -5 "$fresh.log"
    continue
  fi
  check "$kind: step-4 checkpoint written today equals the fixture's" "$(cat "$fx/$kind/step4.sha256")" \
    "$(cd "$fresh/checkpoints/step_00000004" && sha256sum model.safetensors optim.safetensors)"

  run="$work/resumed-$kind"
  ckpt="$work/fixture-$kind/step_00000004"
  mkdir -p "$ckpt"
  cp "$fx/$kind/model.safetensors" "$fx/$kind/optim.safetensors" "$fx/$kind/manifest.json" \
    "$fx/tokenizer.model" "$ckpt/"
  if ! "$bin/sparta-train" "${args[@]}" --run-dir "$run" --resume "$ckpt" > "$run.log" 2>&1; then
    fail=$((fail + 1))
    echo "FAIL: $kind: resume of the fixture"
    tail -5 "$run.log"
    continue
  fi
  got=$(python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r and r["step"] > 4:
        print(r["step"], repr(r["loss"]))
PY
)
  check "$kind: losses of steps 5-8 after resuming the fixture" \
    "$(cat "$fx/$kind/losses_after_resume.txt")" "$got"
  check "$kind: step-8 checkpoint after resuming the fixture" "$(cat "$fx/$kind/step8.sha256")" \
    "$(cd "$run/checkpoints/step_00000008" && sha256sum model.safetensors optim.safetensors)"
done < "$fx/fixture_kinds.txt"
echo "checkpoint fixtures: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
