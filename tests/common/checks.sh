# Shared helpers of the shell tests (sourced). Counters pass/fail; each test ends with its own
# summary line and `[ "$fail" -eq 0 ]`.
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# check DESCRIPTION CMD...: passes when CMD succeeds
check() {
  local what=$1
  shift
  if "$@"; then ok; else bad "$what"; fi
}
# expect CODE NEEDLE CMD...: runs CMD, checks its exit code and that stderr+stdout contain NEEDLE.
expect() {
  local code=$1 needle=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$code" ] && grep -qF -- "$needle" <<<"$out"; then
    ok
  else
    bad "$* -> exit $rc (want $code), output lacks '$needle' or differs:"
    echo "$out" | tail -5 | sed 's/^/    /'
  fi
}
# wait_steps DIR N: until DIR/metrics.jsonl has N training records (at most 60 s)
wait_steps() {
  for _ in $(seq 600); do
    [ -f "$1/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$1/metrics.jsonl")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
# same_losses REF RUN: every step's loss of REF equals RUN's (the last record of a step wins)
same_losses() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    d = {}
    for line in open(p):
        j = json.loads(line)
        if "loss" in j:
            d[j["step"]] = j["loss"]
    return d
a, b = losses(sys.argv[1]), losses(sys.argv[2])
diff = [s for s in a if a[s] != b.get(s)]
print(f"  {len(a)} steps, {len(diff)} differ" + (f" (first {diff[0]})" if diff else ""))
sys.exit(0 if len(a) == len(b) and not diff else 1)
PY
}
