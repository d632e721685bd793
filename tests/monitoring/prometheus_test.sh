#!/usr/bin/env bash
# Live metrics against a real Prometheus server (ctest label monitoring): a 2-rank mpirun run of
# an expert-parallel MoE model exports /metrics on every rank; a Prometheus started here (on
# 127.0.0.1, a free port, its own storage) discovers both ranks through the run's file_sd list
# and scrapes them. Then: every target up with its labels; the loss present; tokens/s > 0;
# L x E per-expert series; phase counters rising; promtool check metrics on a scrape; every
# dashboard expression and every alert selector returning data; the alert rules evaluating on
# the server; and the bad inputs (a busy port, a malformed or foreign bind address -> exit 2
# naming them; prometheus = false opens no metrics port). Everything bounded; everything stopped.
# usage: prometheus_test.sh BIN_DIR SOURCE_DIR   (exit 77: no prometheus/promtool/mpirun)
set -uo pipefail
bin=$1
src=$2
for tool in prometheus promtool mpirun curl; do
  command -v $tool > /dev/null || { echo "SKIP: $tool not installed (scripts/test.sh installs it)"; exit 77; }
done
py=/usr/bin/python3
work=$(mktemp -d /tmp/sparta-prom.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
  for _ in $(seq 1 30); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done
  wait 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*"
}
free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$src/tests/fixtures/fixture_data.sh" "$bin" "$work" "$src/tests/fixtures/v1/tokenizer.model" || exit 1
model=()
for s in $(cat "$src/tests/fixtures/fixture_common.txt"); do model+=(--set "$s"); done
model+=(--set "data.dir=$work/data" --set moe.experts=4 --set moe.top_k=2 --set train.log_every=50
  --set train.eval_every=500 --set train.eval_batches=1 --set checkpoint.every_steps=500
  --set checkpoint.keep_last=1)

# 1. The run: ep2 MoE on 2 ranks, long enough to be scraped for a while (killed at the end).
run="$work/runs/moe-ep2"
mpirun -np 2 "$bin/sparta-train" "${model[@]}" --set train.steps=2000000 --set parallel.ep=2 \
  --set monitoring.prometheus=true --run-dir "$run" < /dev/null > "$work/run.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/prometheus_targets.json" ] && break; sleep 0.2; done
[ -s "$run/prometheus_targets.json" ] && ok || { bad "no $run/prometheus_targets.json"; tail -5 "$work/run.log"; exit 1; }
[ -s "$work/runs/prometheus_targets/moe-ep2.json" ] && ok || bad "no shared copy of the target list"
ntargets=$($py -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$run/prometheus_targets.json")
[ "$ntargets" = 2 ] && ok || bad "target list has $ntargets entries, want 2"

# 2. Prometheus, scraping through the file_sd list, with the shipped alert rules.
pport=$(free_port)
cp "$src/monitoring/alerts.yml" "$work/alerts.yml"
cat > "$work/prometheus.yml" << YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: sparta
    file_sd_configs:
      - files: ['$work/runs/prometheus_targets/*.json']
YML
promtool check config "$work/prometheus.yml" > "$work/promtool-config.log" 2>&1 && ok || { bad "promtool check config"; cat "$work/promtool-config.log"; }
promtool check config "$src/monitoring/prometheus.yml" > /dev/null 2>&1 && ok || bad "promtool check config monitoring/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$pport" > "$work/prometheus.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$pport"
up=0
for _ in $(seq 1 90); do
  up=$(curl -s "$url/api/v1/targets" | $py -c "import json,sys; d=json.load(sys.stdin)['data']['activeTargets']; print(sum(t['health']=='up' for t in d))" 2> /dev/null || echo 0)
  [ "$up" = 2 ] && break
  sleep 1
done
[ "$up" = 2 ] && ok || { bad "targets up: $up of 2"; tail -5 "$work/prometheus.log"; }

q() { $py "$src/tests/monitoring/promql.py" "$url" wait "$@"; }
labels=$(q 'sparta_loss' 2) && ok || bad "sparta_loss: not 2 series"
for l in rank local_rank node job; do
  grep -q "\"$l\"" <<< "$labels" && ok || bad "target label $l missing on sparta_loss"
done
# slurm_job_id is empty outside Slurm, and Prometheus drops empty labels: it is in the list.
grep -q '"slurm_job_id"' "$run/prometheus_targets.json" && ok || bad "no slurm_job_id in the target list"
q 'rate(sparta_tokens_total[5s]) > 0' 2 > /dev/null && ok || bad "rate(sparta_tokens_total) > 0 on both ranks"
series=$(q 'count(sparta_expert_tokens_total)' | $py -c "import json,sys; print(json.load(sys.stdin)[0]['value'][1])")
[ "$series" = 8 ] && ok || bad "per-expert series: $series, want L x E = 2 x 4 = 8"
q 'increase(sparta_phase_seconds_total{phase="forward"}[5s]) > 0' 2 > /dev/null && ok || bad "forward phase counter not rising"
q 'increase(sparta_phase_seconds_total{phase="comm_wait"}[5s]) > 0' 2 > /dev/null && ok || bad "comm_wait counter not rising"
q 'sparta_checkpoints_total{reason="interval"} > 0' > /dev/null && ok || bad "no interval checkpoint counted"

# 3. The exposition itself passes promtool's lint.
addr=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))[1]['targets'][0])" "$run/prometheus_targets.json")
curl -s "http://$addr/metrics" > "$work/scrape.txt"
grep -q '^sparta_step ' "$work/scrape.txt" && ok || bad "rank 1's scrape lacks sparta_step"
promtool check metrics < "$work/scrape.txt" > "$work/lint.log" 2>&1 && ok || { bad "promtool check metrics"; cat "$work/lint.log"; }

# 4. Dashboard and alerts against the live server.
$py "$src/tests/monitoring/promql.py" "$url" dashboard "$src/monitoring/dashboards/sparta.json" && ok || bad "dashboard expressions"
$py "$src/tests/monitoring/promql.py" "$url" rules "$src/monitoring/alerts.yml" && ok || bad "alert rules"
(cd "$src/monitoring" && promtool check rules alerts.yml > /dev/null) && ok || bad "promtool check rules"
(cd "$src/tests/monitoring" && promtool test rules alerts_test.yml > "$work/rules-test.log" 2>&1) && ok || { bad "promtool test rules"; cat "$work/rules-test.log"; }

# 5. Bad input: exit 2, naming what to change.
one=(--set train.steps=2 --set monitoring.prometheus=true)
expect_exit() {  # CODE NEEDLE ARGS...
  local code=$1 needle=$2
  shift 2
  out=$("$bin/sparta-train" "${model[@]}" "$@" 2>&1)
  rc=$?
  if [ $rc -eq "$code" ] && grep -qF -- "$needle" <<< "$out"; then ok; else bad "exit $rc (want $code) without '$needle': $(tail -2 <<< "$out")"; fi
}
expect_exit 2 "cannot listen on 127.0.0.1:$pport" "${one[@]}" --set monitoring.port=$pport
expect_exit 2 'monitoring.bind = "999.1.1.1" is not an IPv4 address' "${one[@]}" --set monitoring.bind=999.1.1.1
expect_exit 2 "cannot listen on 10.255.255.1:" "${one[@]}" --set monitoring.bind=10.255.255.1
expect_exit 2 "monitoring.port = 70000 is not allowed" "${one[@]}" --set monitoring.port=70000

# 6. prometheus = false opens no metrics port: the only listening TCP socket of the process is
#    the Control service's (RUN_DIR/control.address), and with grpc_bind = "none" there is none.
listening_ports() {  # PID: the ports its listening TCP sockets are bound to, sorted
  $py - "$1" << 'PY'
import os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        t = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if t.startswith("socket:["):
        inodes.add(t[8:-1])
ports = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).readlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # state LISTEN
            ports.append(int(f[1].split(":")[1], 16))
print(" ".join(str(p) for p in sorted(ports)))
PY
}
for control in on none; do
  extra=()
  [ $control = none ] && extra=(--set control.grpc_bind=none)
  "$bin/sparta-train" "${model[@]}" "${extra[@]}" --set train.steps=2000000 \
    --run-dir "$work/quiet-$control" > /dev/null 2>&1 &
  qp=$!
  pids+=($qp)
  sleep 3
  ports=$(listening_ports $qp)
  want=""
  [ $control = on ] && want=$(sed 's/.*://' "$work/quiet-$control/control.address" 2> /dev/null)
  [ "$ports" = "$want" ] && ok ||
    bad "prometheus = false (control $control): listening on ports '$ports', want '$want'"
  [ ! -e "$work/quiet-$control/prometheus_targets.json" ] && ok ||
    bad "prometheus = false wrote a target list"
  kill $qp 2> /dev/null
done

echo "monitoring (Prometheus): $pass passed, $fail failed"
if [ $fail -ne 0 ]; then  # what a failure on another machine needs to be understood
  echo "--- the run's log (tail)"; tail -15 "$work/run.log"
  echo "--- its last metrics record"; tail -1 "$run/metrics.jsonl" 2> /dev/null
  echo "--- prometheus.log (tail)"; tail -10 "$work/prometheus.log"
  echo "--- load"; cat /proc/loadavg
fi
[ $fail -eq 0 ]
