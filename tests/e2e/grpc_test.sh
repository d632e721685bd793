#!/usr/bin/env bash
# sparta.v1.Control end to end (README "Control API"): a real sparta-train serves it on loopback;
# the C++ client (control_probe) and the Python one (Debian's python3-grpcio) ask for status,
# cancel a metrics stream midway, follow the event stream to its clean end, checkpoint now and
# stop; each interrupted run resumes to per-step losses bit-identical to an uninterrupted run.
# Also: the token (refused without it or with a wrong one, logged), health NOT_SERVING while
# draining, malformed requests and bad settings (clear errors, documented exit codes, the run
# unharmed).
# usage: grpc_test.sh BIN_DIR SOURCE_DIR CONTROL_PROBE
set -uo pipefail
bin=$1
src=$2
probe=$3
W=$(mktemp -d /tmp/grpc.XXXXXX)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"
py=/usr/bin/python3  # Debian's, with python3-grpcio (not a virtualenv's)
client() { "$py" "$src/tests/common/control_client.py" "$W/gen" "$@"; }

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$W" || exit 1
mkdir -p "$W/gen"
protoc --proto_path="$src/monitoring" --python_out="$W/gen" "$src/monitoring/control.proto" &&
  protoc --proto_path="$src/tests/common" --python_out="$W/gen" "$src/tests/common/health.proto" ||
  { echo "FAIL: protoc --python_out"; exit 1; }
base=(--config "$src/configs/tiny.toml" --set "data.dir=$W/data" --set train.steps=1500
      --set train.eval_every=250 --set train.eval_batches=4 --set train.threads=1)

# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
  local n=$(($1 * 10))
  shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
# start NAME [ARGS]: a run in $W/NAME, serving; sets $pid and $addr
start() {
  local name=$1
  shift
  "$bin/sparta-train" "${base[@]}" --run-dir "$W/$name" "$@" > "$W/$name.log" 2>&1 &
  pid=$!
  wait_for 60 test -s "$W/$name/control.address" || bad "$name: no control.address"
  wait_steps "$W/$name" 20 || bad "$name: no progress"
  addr=$(cat "$W/$name/control.address")
}
not() { ! "$@"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" | head -1; }
# has_event FILE KIND STEP: FILE has "event KIND step=STEP"
has_event() { grep -q "^event $2 step=$3" "$1"; }

"$bin/sparta-train" "${base[@]}" --run-dir "$W/ref" > "$W/ref.log" 2>&1 || { echo "FAIL: ref"; exit 1; }

# 1. The C++ client: status, metrics cancelled midway, events, checkpoint now, stop, resume.
start cpp
out=$("$probe" "$addr" status)
check "cpp: status training ($out)" grep -q "state=training" <<<"$out"
check "cpp: total 1500" grep -q "total=1500" <<<"$out"
check "cpp: one heartbeat, layout" grep -q "heartbeats=1 layout=tp1 cp1 ep1 dp1 zero0" <<<"$out"
out=$("$probe" "$addr" metrics 3 sparta_loss sparta_step)
check "cpp: metrics stream, 3 samples, cancelled ($out)" grep -q "samples=3 .*series=2 cancelled=1" <<<"$out"
check "cpp: the run goes on after the cancel" grep -q "state=training" <<<"$("$probe" "$addr" status)"
"$probe" "$addr" events 1000 > "$W/cpp.events" 2>&1 &
events_pid=$!
sleep 0.3
step=$("$probe" "$addr" checkpoint | field step)
check "cpp: checkpoint answered a step ($step)" [ -n "$step" ]
ckpt="$W/cpp/checkpoints/step_$(printf %08d "${step:-0}")"
check "cpp: checkpoint of step $step written" wait_for 30 test -f "$ckpt/manifest.json"
check "cpp: CHECKPOINT_SAVED event at $step" wait_for 10 has_event "$W/cpp.events" CHECKPOINT_SAVED "$step"
check "cpp: status names the checkpoint" wait_for 10 \
  grep -q "last_checkpoint=$step" <<<"$("$probe" "$addr" status)"
check "cpp: health SERVING" grep -q "health=SERVING" <<<"$("$probe" "$addr" health)"
"$probe" "$addr" health-watch > "$W/cpp.health" 2>&1 &
watch_pid=$!
sleep 0.3
stop=$("$probe" "$addr" stop after_checkpoint | field step)
wait $pid
rc=$?
check "cpp: stop after checkpoint -> exit 0 (got $rc)" [ $rc -eq 0 ]
check "cpp: stopped at the answered step $stop" grep -q "stopping after step $stop as asked" "$W/cpp.log"
wait $events_pid
check "cpp: event stream ended cleanly with the run" grep -q "ended=ok" "$W/cpp.events"
check "cpp: CONTROL_ACTION event" grep -q "^event CONTROL_ACTION step=$stop checkpoint+stop" "$W/cpp.events"
wait $watch_pid
check "cpp: health SERVING then NOT_SERVING while draining" \
  grep -Pzq "health=SERVING\n(.*\n)*health=NOT_SERVING\n" "$W/cpp.health"
check "cpp: control record from rpc" grep -q '"source":\["rpc"\]' "$W/cpp/metrics.jsonl"
check "cpp: control.address removed at exit" [ ! -e "$W/cpp/control.address" ]
expect 1 "has ended: exit 0 after $stop steps" "$bin/sparta-top" "$W/cpp" --once
"$bin/sparta-train" "${base[@]}" --run-dir "$W/cpp" --resume auto > "$W/cpp2.log" 2>&1
check "cpp: resume exit 0" [ $? -eq 0 ]
check "cpp: losses bit-identical" same_losses "$W/ref" "$W/cpp"

# 2. The Python client: the same calls, malformed requests, stop without saving, resume.
start py
out=$(client "$addr" status)
check "py: status ($out)" grep -q "state=training step=[0-9]* total=1500" <<<"$out"
out=$(client "$addr" metrics 3)
check "py: metrics stream cancelled midway ($out)" grep -q "samples=3 .*cancelled=1" <<<"$out"
expect 3 "rpc error: 13" client "$addr" malformed GetStatus
expect 3 "rpc error: 13" client "$addr" malformed RequestStop
expect 3 "mode must be AFTER_CHECKPOINT (1) or NOW (2), got 0" client "$addr" stop unspecified
expect 3 "got 7" client "$addr" stop 7
expect 3 "rpc error: 12" client "$addr" malformed NoSuchMethod
check "py: the run unharmed" grep -q "state=training" <<<"$(client "$addr" status)"
step=$(client "$addr" checkpoint | field step)
check "py: checkpoint of step $step" wait_for 30 \
  test -f "$W/py/checkpoints/step_$(printf %08d "${step:-0}")/manifest.json"
check "py: health SERVING" grep -q "health=SERVING" <<<"$(client "$addr" health)"
client "$addr" health-watch > "$W/py.health" 2>&1 &
watch_pid=$!
sleep 0.5
client "$addr" stop now > /dev/null
wait $pid
rc=$?
check "py: stop now -> exit 76 (got $rc)" [ $rc -eq 76 ]
wait $watch_pid
check "py: health NOT_SERVING while draining" grep -q "health=NOT_SERVING" "$W/py.health"
"$bin/sparta-train" "${base[@]}" --run-dir "$W/py" --resume auto > "$W/py2.log" 2>&1
check "py: resume exit 0" [ $? -eq 0 ]
check "py: resumed from the rpc checkpoint ($step)" grep -q "(step $step," "$W/py2.log"
check "py: losses bit-identical" same_losses "$W/ref" "$W/py"

# 3. The token: required with [control] token_file; refused (and logged) without it or wrong.
echo "s3cret-token" > "$W/token"
start tok --set "control.token_file=$W/token"
expect 3 "rpc error: 16" "$probe" "$addr" status
expect 3 "rpc error: 16" "$probe" --token wrong "$addr" status
expect 3 "rpc error: 16" client "$addr" checkpoint
check "tok: right token accepted (C++)" grep -q "state=training" <<<"$("$probe" --token s3cret-token "$addr" status)"
check "tok: right token accepted (Python)" grep -q "state=" <<<"$(client --token s3cret-token "$addr" status)"
expect 0 "[training]" "$bin/sparta-top" "$W/tok" --once --token-file "$W/token"
expect 1 "this control server needs" "$bin/sparta-top" "$W/tok" --once
check "tok: refusals logged" grep -q "control: refused GetStatus from .*: no token" "$W/tok.log"
check "tok: wrong token logged" grep -q "a wrong token" "$W/tok.log"
no_checkpoints() { [ -z "$(ls "$W/tok/checkpoints" 2> /dev/null)" ]; }
check "tok: no checkpoint from the refused request" no_checkpoints
"$probe" --token s3cret-token "$addr" stop now > /dev/null
wait $pid
check "tok: stopped (exit $?)" true

# 4. Two ranks under mpirun: rank 0 serves; the status has both ranks' heartbeats; a stop over
#    gRPC stops both at the answered step.
if command -v mpirun > /dev/null; then
  mpirun --allow-run-as-root --oversubscribe -np 2 "$bin/sparta-train" "${base[@]}" \
    --set train.batch_size=2 --run-dir "$W/two" > "$W/two.log" 2>&1 &
  pid=$!
  wait_for 60 test -s "$W/two/control.address" || bad "two: no control.address"
  wait_steps "$W/two" 10 || bad "two: no progress"
  out=$("$probe" "$(cat "$W/two/control.address")" status)
  check "two: layout dp2, two heartbeats ($out)" grep -q "heartbeats=2 layout=tp1 cp1 ep1 dp2 zero0" <<<"$out"
  fresh() { awk -v r="$1" '$2 == "rank=" r { split($3, a, "="); exit !(a[2] >= 0 && a[2] < 5) }' <<<"$out"; }
  check "two: rank 1's heartbeat is fresh" fresh 1
  stop=$("$probe" "$(cat "$W/two/control.address")" stop after_checkpoint | field step)
  wait $pid
  rc=$?
  check "two: exit 0 (got $rc)" [ $rc -eq 0 ]
  check "two: stopped at $stop" grep -q "stopping after step $stop as asked" "$W/two.log"
  check "two: checkpoint of step $stop" \
    test -f "$W/two/checkpoints/step_$(printf %08d "${stop:-0}")/manifest.json"
fi

# 5. Bad settings and clients: exit codes and messages.
expect 2 "is not a loopback address: set [control] token_file" \
  "$bin/sparta-train" "${base[@]}" --set control.grpc_bind=0.0.0.0:0
expect 2 "control.grpc_bind = 'localhost' is not host:port" \
  "$bin/sparta-train" "${base[@]}" --set control.grpc_bind=localhost
expect 2 "[control] token_file = '$W/missing' cannot be read" \
  "$bin/sparta-train" "${base[@]}" --set "control.token_file=$W/missing"
: > "$W/empty"
expect 2 "is empty" "$bin/sparta-train" "${base[@]}" --set "control.token_file=$W/empty"
expect 1 "cannot reach sparta.v1.Control at 127.0.0.1:1" "$bin/sparta-top" 127.0.0.1:1 --once
mkdir -p "$W/never"
expect 1 "has no control.address: the run is not serving" "$bin/sparta-top" "$W/never" --once
expect 1 "neither a run directory nor HOST:PORT" "$bin/sparta-top" "$W/nothing-here" --once
expect 2 "target is required" "$bin/sparta-top"
expect 2 "--interval" "$bin/sparta-top" "$W/cpp" --interval 0
expect 2 "no such file" "$bin/sparta-top" "$W/cpp" --token-file "$W/missing"
"$bin/sparta-train" "${base[@]}" --set train.steps=30 --set control.grpc_bind=none \
  --run-dir "$W/off" > "$W/off.log" 2>&1
check "grpc_bind = none: runs (exit $?)" grep -q "^done: 30 steps" "$W/off.log"
check "grpc_bind = none: serves nothing" not grep -q "sparta.v1.Control" "$W/off.log"

echo "grpc_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
