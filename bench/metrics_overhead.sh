#!/usr/bin/env bash
# The cost of live metrics: the same training run with [monitoring] prometheus off and on,
# alternating (this VM drifts ±15 % between identical runs), on while a scraper reads /metrics
# every second as Prometheus would. Prints each run's median step time and the paired overhead.
# usage: bench/metrics_overhead.sh [ROUNDS=3] [STEPS=15] [sparta-train args...]
#        (default: the dense default model on data/default; run scripts/train.sh once first)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
steps=${2:-15}
shift $(($# < 2 ? $# : 2))
bin=build/bin
work=$(mktemp -d /tmp/sparta-overhead.XXXXXX)
trap 'rm -rf "$work"' EXIT
common=(--set "train.steps=$steps" --set train.log_every=1 --set train.eval_every=0
  --set train.eval_batches=1 "$@")
median() { /usr/bin/python3 -c "
import json, statistics, sys
ms = [json.loads(l)['step_ms'] for l in open(sys.argv[1]) if 'step_ms' in l][2:]
print(f'{statistics.median(ms):.1f}')" "$1"; }
results=()
for r in $(seq 1 "$rounds"); do
  for mode in off on; do
    run="$work/$mode-$r"
    if [ $mode = on ]; then
      "$bin/sparta-train" "${common[@]}" --set monitoring.prometheus=true --run-dir "$run" > "$run.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 200); do [ -s "$run/prometheus_targets.json" ] && break; sleep 0.1; done
      addr=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['targets'][0])" "$run/prometheus_targets.json")
      while kill -0 $pid 2> /dev/null; do curl -s "http://$addr/metrics" > /dev/null || true; sleep 1; done
      wait $pid
    else
      "$bin/sparta-train" "${common[@]}" --run-dir "$run" > "$run.log" 2>&1
    fi
    m=$(median "$run/metrics.jsonl")
    echo "round $r metrics $mode: median step $m ms"
    results+=("$m")
  done
done
/usr/bin/python3 - "${results[@]}" << 'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
off, on = v[0::2], v[1::2]
ratios = [b / a for a, b in zip(off, on)]
print(f"off {statistics.median(off):.1f} ms, on {statistics.median(on):.1f} ms per step (medians of rounds); "
      f"paired on/off: {', '.join(f'{r:.3f}' for r in ratios)}; median overhead "
      f"{100 * (statistics.median(ratios) - 1):+.2f} %")
PY
