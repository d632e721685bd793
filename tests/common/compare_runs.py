#!/usr/bin/env python3
"""compare_runs.py A B TOL: two run directories agree: per-step losses (metrics.jsonl) within
TOL/10 relative and every tensor of the final checkpoint within TOL relative to that tensor's
largest value (the multi-rank tests' criterion: a layout against one process). Exit 0 / 1."""
import array, json, os, struct, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
def losses(d):
    return {l["step"]: l["loss"] for l in map(json.loads, open(os.path.join(d, "metrics.jsonl"))) if "loss" in l}
def tensors(d):
    c = os.path.join(d, "checkpoints")
    raw = open(os.path.join(c, open(os.path.join(c, "latest")).read().strip(), "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k == "__metadata__": continue
        x = array.array("f"); x.frombytes(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]); out[k] = x
    return out
la, lb = losses(a), losses(b)
assert la.keys() == lb.keys() and len(la) >= 10, (sorted(la), sorted(lb))
worst_loss = max(abs(la[s] - lb[s]) / abs(lb[s]) for s in la)
ta, tb = tensors(a), tensors(b)
assert ta.keys() == tb.keys()
# Parameters: the largest difference in each tensor relative to that tensor's largest value.
worst, where = 0.0, ""
for k in ta:
    scale = max(abs(v) for v in tb[k]) or 1.0
    d = max(abs(x - y) for x, y in zip(ta[k], tb[k])) / scale
    if d > worst: worst, where = d, k
print(f"{os.path.basename(a)} vs {os.path.basename(b)}: per-step loss rel {worst_loss:.2e}, "
      f"params rel {worst:.2e} ({where})")
sys.exit(0 if worst_loss <= tol / 10 and worst <= tol else 1)
