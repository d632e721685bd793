#!/usr/bin/python3
"""Checks against a live Prometheus (tests/monitoring/prometheus_test.sh):

  promql.py URL dashboard FILE     every panel of the Grafana dashboard is well formed and every
                                   expression returns data
  promql.py URL rules FILE         every rule of the rule file evaluates without error on the
                                   server and every metric selector in it returns data
  promql.py URL wait EXPR [N]      polls until EXPR returns at least N series (default 1)
Bounded: each query is retried for at most 120 s (a loaded machine steps slowly). Exit 1 with a list of what failed.
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request

DEADLINE_S = 120


def query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def wait_for(url, expr, n=1):
    t0 = time.time()
    while True:
        try:
            res = query(url, expr)
            if len(res) >= n:
                return res
        except Exception as e:  # a parse error is final
            if "bad_data" in str(e) or "parse error" in str(e):
                raise
        if time.time() - t0 > DEADLINE_S:
            return query(url, expr)
        time.sleep(1)


# Grafana's variables, as the dashboard would expand them for "All runs".
def expand(expr):
    return (expr.replace("$__rate_interval", "10s").replace("$__interval", "5s")
            .replace('"$job"', '".+"'))


def check_dashboard(url, path):
    d = json.load(open(path))
    errors = []
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        if key not in d:
            errors.append(f"dashboard: no '{key}'")
    ids = set()
    for p in d.get("panels", []):
        where = f"panel {p.get('id')} '{p.get('title')}'"
        for key in ("id", "type", "title", "gridPos", "targets", "datasource"):
            if key not in p:
                errors.append(f"{where}: no '{key}'")
        if p.get("id") in ids:
            errors.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(k in g for k in "xywh") or g.get("x", 0) + g.get("w", 0) > 24:
            errors.append(f"{where}: bad gridPos {g}")
        if p.get("type") not in ("timeseries", "stat", "heatmap", "gauge", "table", "bargauge"):
            errors.append(f"{where}: unknown panel type {p.get('type')}")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr or "refId" not in t:
                errors.append(f"{where}: a target without expr/refId")
                continue
            res = wait_for(url, expand(expr))
            if not res:
                errors.append(f"{where}: no data for {expand(expr)}")
    print(f"dashboard: {len(d.get('panels', []))} panels, "
          f"{sum(len(p.get('targets', [])) for p in d.get('panels', []))} expressions checked")
    return errors


def check_rules(url, path):
    errors = []
    text = open(path).read()
    # The server's view: every rule loaded and evaluated without error.
    t0 = time.time()
    while True:
        with urllib.request.urlopen(url + "/api/v1/rules", timeout=10) as r:
            groups = json.load(r)["data"]["groups"]
        rules = [x for g in groups for x in g["rules"]]
        if rules and all(x.get("lastEvaluation", "").startswith("2") and
                         not x["lastEvaluation"].startswith("0001") for x in rules):
            break
        if time.time() - t0 > DEADLINE_S:
            break
        time.sleep(1)
    for x in rules:
        if x.get("health") != "ok":
            errors.append(f"rule {x['name']}: health {x.get('health')} {x.get('lastError')}")
    names = set(re.findall(r"\b(sparta_[a-z_]+)", text))
    for name in sorted(names):
        if not wait_for(url, name):
            errors.append(f"rules: selector {name} matches no series")
    print(f"rules: {len(rules)} loaded, {len(names)} selectors checked")
    return errors


def main():
    url, what = sys.argv[1], sys.argv[2]
    if what == "wait":
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
        res = wait_for(url, sys.argv[3], n)
        print(json.dumps(res))
        sys.exit(0 if len(res) >= n else 1)
    errors = check_dashboard(url, sys.argv[3]) if what == "dashboard" else check_rules(url, sys.argv[3])
    for e in errors:
        print("FAIL:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
