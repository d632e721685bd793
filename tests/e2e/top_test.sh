#!/usr/bin/env bash
# sparta-top in a real terminal (tmux, private server): the screen shows the run's step and loss;
# c checkpoints at the answered step; s asks first (n cancels, y stops after a checkpoint); the
# screen says when the run is gone; q quits. README "sparta-top".
# usage: top_test.sh BIN_DIR SOURCE_DIR
set -uo pipefail
bin=$1
src=$2
W=$(mktemp -d /tmp/top.XXXXXX)
sock="sparta-top-test-$$"
trap 'tmux -L "$sock" kill-server 2> /dev/null; kill $(jobs -p) 2> /dev/null; rm -rf "$W"' EXIT
. "$src/tests/common/checks.sh"
command -v tmux > /dev/null || { echo "FAIL: tmux is not installed (scripts/test.sh installs it)"; exit 1; }

bash "$src/tests/mpi/tiny_data.sh" "$bin" "$W" || exit 1
"$bin/sparta-train" --config "$src/configs/tiny.toml" --set "data.dir=$W/data" \
  --set train.steps=6000 --set train.eval_every=500 --set train.threads=1 --run-dir "$W/run" \
  > "$W/run.log" 2>&1 &
pid=$!
wait_steps "$W/run" 20 || bad "no progress"
for _ in $(seq 100); do [ -s "$W/run/control.address" ] && break; sleep 0.1; done

tmux -L "$sock" new-session -d -s top -x 110 -y 36 "$bin/sparta-top $W/run --interval 0.2"
screen() { tmux -L "$sock" capture-pane -p -t top; }
# shows TEXT [SECONDS]: the screen contains TEXT (grep -E) within SECONDS (10)
shows() {
  for _ in $(seq $((${2:-10} * 10))); do screen | grep -qE -- "$1" && return 0; sleep 0.1; done
  echo "  screen:"
  screen | sed 's/^/    /'
  return 1
}
not_running() { ! tmux -L "$sock" has-session -t top 2> /dev/null; }
key() { tmux -L "$sock" send-keys -t top "$1"; }

check "screen: step of 6000" shows "^step +[0-9]+ / 6000"
check "screen: loss" shows "^loss +[0-9]+\.[0-9]{4}"
check "screen: tokens/s and MFU" shows "tokens/s +MFU"
check "screen: the keys" shows "c checkpoint +s stop"
shown=$(screen | sed -n 's/^step *\([0-9]*\) .*/\1/p')
logged=$(grep -c '"loss"' "$W/run/metrics.jsonl")
in_range() { [ "${shown:-0}" -gt 0 ] && [ "${shown:-0}" -le "$((logged + 50))" ]; }
check "screen: step $shown is the run's (metrics.jsonl has $logged)" in_range
check "screen: loss equals a logged loss" python3 - "$W/run/metrics.jsonl" "$(screen | sed -n 's/^loss *\([0-9.]*\).*/\1/p')" <<'PY'
import json, sys
want = sys.argv[2]
losses = {f"{json.loads(l)['loss']:.4f}" for l in open(sys.argv[1]) if '"loss"' in l}
sys.exit(0 if want in losses else 1)
PY

key c
check "c: checkpoint requested" shows "checkpoint requested: at the end of step [0-9]+"
step=$(screen | sed -n 's/.*checkpoint requested: at the end of step \([0-9]*\).*/\1/p')
ckpt="$W/run/checkpoints/step_$(printf %08d "${step:-0}")/manifest.json"
for _ in $(seq 100); do [ -f "$ckpt" ] && break; sleep 0.1; done
check "c: checkpoint of step $step written" [ -f "$ckpt" ]
check "c: the screen names it" shows "^checkpoint step $step"

key s
check "s: asks first" shows "stop the run after a checkpoint\? y/N"
key n
check "s, n: cancelled" shows "stop cancelled"
check "s, n: the run goes on" kill -0 $pid
key s
shows "y/N" > /dev/null
key y
check "s, y: stop requested" shows "stop requested: checkpoint and stop after step [0-9]+"
wait $pid
rc=$?
check "s, y: the run stopped after a checkpoint (exit $rc)" [ $rc -eq 0 ]
check "s, y: the run's log says so" grep -q "stopping after step .* as asked" "$W/run.log"
check "after the end: the screen says so" shows "finished|cannot reach|not connected"
key q
for _ in $(seq 50); do tmux -L "$sock" has-session -t top 2> /dev/null || break; sleep 0.1; done
check "q: sparta-top quit" not_running
echo "top_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
