#!/usr/bin/env bash
# The control word end to end (trainer/control.h, README "Controlling a run"): real signals and
# the trigger file reach a running sparta-train, every rank acts at the same step, the action
# lands in metrics.jsonl, the exit code is the documented one, and a run checkpointed that way
# resumes to per-step losses bit-identical to an uninterrupted run. With mpirun: 2 ranks, USR1
# sent to mpirun (which forwards it), the agreement inside the evaluation loop.
# usage: control_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
W=$(mktemp -d /tmp/ctl.XXXXXX)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$W" || exit 1
base=(--config "$src/configs/tiny.toml" --set "data.dir=$W/data" --set train.steps=400
      --set train.eval_every=100 --set train.eval_batches=4 --set train.threads=1)

# control_record DIR KEY VALUE: the last control record has KEY == VALUE (JSON)
control_record() {
  python3 - "$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"control"' in l]
ok = bool(recs) and recs[-1].get(sys.argv[2]) == json.loads(sys.argv[3])
if not ok:
    print("  control records:", recs)
sys.exit(0 if ok else 1)
PY
}

"$bin/sparta-train" "${base[@]}" --run-dir "$W/ref" > "$W/ref.log" 2>&1 || { echo "FAIL: reference"; exit 1; }

# 1. SIGUSR1: checkpoint at the next step, exit 75, resume bit-exact.
"$bin/sparta-train" "${base[@]}" --run-dir "$W/usr1" > "$W/usr1.log" 2>&1 &
pid=$!
wait_steps "$W/usr1" 20 || bad "usr1: no progress"
kill -USR1 $pid
wait $pid
rc=$?
check "usr1: exit 75 (got $rc)" [ $rc -eq 75 ]
check "usr1: record" control_record "$W/usr1" control '["checkpoint", "stop"]'
check "usr1: source" control_record "$W/usr1" source '["SIGUSR1"]'
check "usr1: console" grep -q "checkpointed, exit 75 (requeue me" "$W/usr1.log"
step=$(python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"control\"' in l][-1]['step'])" "$W/usr1/metrics.jsonl")
check "usr1: checkpoint of step $step" [ -f "$W/usr1/checkpoints/step_$(printf %08d "$step")/manifest.json" ]
check "usr1: stopped early (step $step)" [ "$step" -lt 400 ]
check "usr1: status 'exited 75 $step'" [ "$(cat "$W/usr1/status")" = "exited 75 $step" ]
check "ref: status 'exited 0 400'" [ "$(cat "$W/ref/status")" = "exited 0 400" ]
"$bin/sparta-train" "${base[@]}" --run-dir "$W/usr1" --resume auto > "$W/usr1b.log" 2>&1
check "usr1: resume exit 0" [ $? -eq 0 ]
check "usr1: resumed at $step" grep -q "(step $step," "$W/usr1b.log"
check "usr1: losses bit-identical" same_losses "$W/ref" "$W/usr1"

# 2. SIGTERM: the same; a second SIGTERM exits at once with 143.
"$bin/sparta-train" "${base[@]}" --run-dir "$W/term" > "$W/term.log" 2>&1 &
pid=$!
wait_steps "$W/term" 10 || bad "term: no progress"
kill -TERM $pid
wait $pid
rc=$?
check "term: exit 75 (got $rc)" [ $rc -eq 75 ]
check "term: source" control_record "$W/term" source '["SIGTERM"]'
# Two SIGTERMs sent back to back may merge into one pending signal (POSIX does not queue them),
# so the second goes only after the handler has announced the first, to a model whose step
# (~0.1 s) leaves the handler's window open long enough to land in it.
"$bin/sparta-train" "${base[@]}" --set model.d_model=256 --set model.d_ff=1024 \
  --set model.n_heads=4 --set model.seq_len=64 --run-dir "$W/term2" > "$W/term2.log" 2>&1 &
pid=$!
wait_steps "$W/term2" 2 || bad "term2: no progress"
kill -TERM $pid
for _ in $(seq 400); do grep -q "SIGTERM: checkpoint at the next" "$W/term2.log" && break; sleep 0.005; done
kill -TERM $pid
wait $pid
rc=$?
check "second SIGTERM: exit 143 (got $rc)" [ $rc -eq 143 ]
check "second SIGTERM: message" grep -q "second SIGTERM: exiting at once" "$W/term2.log"
check "second SIGTERM: status still 'running'" [ "$(cat "$W/term2/status")" = running ]

# 3. The trigger file: dump + checkpoint (the run goes on), then stop (exit 0), resume bit-exact;
#    an unknown word is reported and ignored; stop_now exits 76 without saving.
"$bin/sparta-train" "${base[@]}" --run-dir "$W/file" > "$W/file.log" 2>&1 &
pid=$!
wait_steps "$W/file" 10 || bad "file: no progress"
printf 'dump\ncheckpoint\nrestart\n' > "$W/file/control.request"
for _ in $(seq 100); do [ -f "$W/file/control.request" ] || break; sleep 0.05; done
check "file: consumed" [ ! -f "$W/file/control.request" ]
wait_steps "$W/file" 60 || bad "file: no progress after the checkpoint"
echo stop > "$W/file/control.request"
wait $pid
rc=$?
check "file: stop exits 0 (got $rc)" [ $rc -eq 0 ]
check "file: unknown word reported" grep -q "unknown word 'restart' ignored" "$W/file.log"
check "file: diagnostics" bash -c "grep -q 'diagnostics: rank 0 of 1' $W/file/diagnostics/step*-rank0.txt"
check "file: two control records" [ "$(grep -c '"control"' "$W/file/metrics.jsonl")" -eq 2 ]
check "file: stop record" control_record "$W/file" source '["file"]'
check "file: two checkpoints" [ "$(ls -d "$W"/file/checkpoints/step_* | wc -l)" -eq 2 ]
"$bin/sparta-train" "${base[@]}" --run-dir "$W/file" --resume auto > "$W/fileb.log" 2>&1
check "file: resume" [ $? -eq 0 ]
check "file: losses bit-identical" same_losses "$W/ref" "$W/file"
"$bin/sparta-train" "${base[@]}" --run-dir "$W/now" > "$W/now.log" 2>&1 &
pid=$!
wait_steps "$W/now" 10 || bad "now: no progress"
echo stop_now > "$W/now/control.request"
wait $pid
rc=$?
check "stop_now: exit 76 (got $rc)" [ $rc -eq 76 ]
check "stop_now: nothing saved" [ ! -d "$W/now/checkpoints" ]

# 4. Bad input: an unknown checkpoint signal.
out=$("$bin/sparta-train" "${base[@]}" --set control.checkpoint_signal=KILL 2>&1)
rc=$?
check "bad signal: exit 2 (got $rc)" [ $rc -eq 2 ]
check "bad signal: message" grep -q "control.checkpoint_signal" <<<"$out"

# 5. Two ranks under mpirun, an evaluation after every step (so the request lands in or before
#    the evaluation's agreement): USR1 to mpirun, both ranks stop at the same step, exit 75, and
#    the resumed run equals an uninterrupted 2-rank run bit for bit.
if command -v mpirun > /dev/null; then
  mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  two=("${base[@]}" --set train.steps=120 --set train.eval_every=1 --set train.eval_batches=8
       --set train.batch_size=2)
  "${mpi[@]}" "$bin/sparta-train" "${two[@]}" --run-dir "$W/ref2" > "$W/ref2.log" 2>&1 ||
    bad "mpi reference"
  "${mpi[@]}" "$bin/sparta-train" "${two[@]}" --run-dir "$W/mpi" > "$W/mpi.log" 2>&1 &
  pid=$!
  wait_steps "$W/mpi" 10 || bad "mpi: no progress"
  kill -USR1 $pid
  wait $pid
  rc=$?
  check "mpi: exit 75 (got $rc)" [ $rc -eq 75 ]
  check "mpi: record during eval" control_record "$W/mpi" during_eval true
  "${mpi[@]}" "$bin/sparta-train" "${two[@]}" --run-dir "$W/mpi" --resume auto > "$W/mpib.log" 2>&1
  check "mpi: resume" [ $? -eq 0 ]
  check "mpi: losses bit-identical" same_losses "$W/ref2" "$W/mpi"
fi

echo "control: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
