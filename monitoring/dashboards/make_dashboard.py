#!/usr/bin/env python3
"""Writes monitoring/dashboards/sparta.json, the Grafana dashboard of sparta runs.

Edit the panel list here, rerun (python3 monitoring/dashboards/make_dashboard.py), commit both.
tests/monitoring/check_dashboard.py checks the JSON's structure and runs every expression
against a live Prometheus scraping a real run.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
J = '{job=~"$job"}'
R = "$__rate_interval"
COMPUTE = 'phase=~"data|forward|backward|optimizer"'

# (title, type, unit, [(expr, legend)], width, height, extra options)
PANELS = [
    ("Training and validation loss", "timeseries", "none",
     [(f"max by (job) (sparta_loss{J})", "train {{job}}"),
      (f"max by (job) (sparta_val_loss{J})", "val {{job}}")], 12, 8, {}),
    ("Validation bits per byte", "timeseries", "none",
     [(f"max by (job) (sparta_val_bpb{J})", "{{job}}")], 6, 8, {}),
    ("Step and ETA", "stat", "s",
     [(f"max by (job) ((sparta_target_steps{J} - sparta_step{J}) / "
       f"rate(sparta_steps_total{J}[5m]))", "ETA {{job}}")], 6, 8, {}),
    ("Tokens per second by rank", "timeseries", "short",
     [(f"rate(sparta_tokens_total{J}[{R}])", "rank {{rank}}"),
      (f"sum by (job) (rate(sparta_tokens_total{J}[{R}]))", "all ranks {{job}}")], 12, 8, {}),
    ("MFU by rank", "timeseries", "percentunit",
     [(f"rate(sparta_model_flops_total{J}[{R}]) / sparta_peak_flops{J}", "rank {{rank}}"),
      (f"sum by (job) (rate(sparta_model_flops_total{J}[{R}])) / "
       f"sum by (job) (sparta_peak_flops{J})", "job {{job}}")], 12, 8, {}),
    ("Time by phase (seconds per second, all ranks)", "timeseries", "s",
     [(f"sum by (phase) (rate(sparta_phase_seconds_total{J}[{R}]))", "{{phase}}")], 12, 8,
     {"stack": True}),
    ("Communication share of wall time by group", "timeseries", "percentunit",
     [(f"sum by (group) (rate(sparta_collective_seconds_total{J}[{R}])) / "
       f"scalar(count(sparta_step{J}))", "{{group}}")], 12, 8, {}),
    ("Expert load: tokens per second by layer and expert", "heatmap", "short",
     [(f"sum by (layer, block, expert) (rate(sparta_expert_tokens_total{J}[{R}]))",
       "{{block}} L{{layer}} E{{expert}}")], 24, 10, {"heatmap": True}),
    ("Expert balance: busiest over mean, by layer", "timeseries", "none",
     [(f"max by (layer, block) (sparta_expert_load_max_mean_ratio{J})",
       "{{block}} L{{layer}}")], 8, 8, {}),
    ("Dead experts by layer", "timeseries", "short",
     [(f"max by (layer, block) (sparta_dead_experts{J})", "{{block}} L{{layer}}")], 8, 8, {}),
    ("Router entropy by layer (nats)", "timeseries", "none",
     [(f"max by (layer, block) (sparta_router_entropy_nats{J})", "{{block}} L{{layer}}")], 8, 8,
     {}),
    ("Memory by kind and rank", "timeseries", "bytes",
     [(f"sparta_arena_bytes{J}", "{{kind}} rank {{rank}}"),
      (f"sparta_device_memory_used_bytes{J}", "device rank {{rank}}")], 8, 8, {}),
    ("Checkpoint age", "stat", "s",
     [(f"time() - max by (job) (sparta_last_checkpoint_timestamp_seconds{J} > 0 or "
       f"sparta_start_timestamp_seconds{J})", "{{job}}")], 8, 8, {}),
    ("Slowest rank: compute seconds per second", "timeseries", "s",
     [(f"topk(1, sum by (job, rank) (rate(sparta_phase_seconds_total{{job=~\"$job\",{COMPUTE}}}[{R}])))",
       "slowest: rank {{rank}}"),
      (f"avg by (job) (sum by (job, rank) (rate(sparta_phase_seconds_total{{job=~\"$job\",{COMPUTE}}}[{R}])))",
       "mean rank")], 8, 8, {}),
    ("Gradient norm and learning rate", "timeseries", "none",
     [(f"max by (job) (sparta_grad_norm{J})", "grad norm {{job}}"),
      (f"max by (job) (sparta_learning_rate{J})", "lr {{job}}")], 12, 8, {}),
    ("Gradient norm by layer (Mix-LN depth)", "timeseries", "none",
     [(f"max by (layer) (sparta_layer_grad_norm{J})", "layer {{layer}}")], 12, 8, {}),
]


def panel(i, x, y, title, kind, unit, targets, w, h, extra):
    p = {
        "id": i + 1,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + k), "datasource": DS, "expr": e, "legendFormat": l}
                    for k, (e, l) in enumerate(targets)],
    }
    if extra.get("stack"):
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal"}}
    if extra.get("heatmap"):
        p["options"] = {"calculate": False, "yAxis": {"axisPlacement": "left"}}
        for t in p["targets"]:
            t["format"] = "heatmap"
    return p


def dashboard():
    panels, x, y, row_h = [], 0, 0, 0
    for i, spec in enumerate(PANELS):
        title, kind, unit, targets, w, h, extra = spec
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel(i, x, y, title, kind, unit, targets, w, h, extra))
        x, row_h = x + w, max(row_h, h)
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": "sparta training",
        "uid": "sparta-training",
        "description": "Live view of sparta runs: loss, throughput, MFU, phases, communication, "
                       "expert load, memory, checkpoints, stragglers (README: Watching a run).",
        "schemaVersion": 37,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "tags": ["sparta", "training", "moe"],
        "templating": {"list": [{
            "name": "job", "label": "run", "type": "query", "datasource": DS,
            "query": "label_values(sparta_step, job)", "refresh": 2, "includeAll": True,
            "multi": True, "current": {"text": "All", "value": "$__all"}, "allValue": ".+"}]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sparta.json")
    with open(out, "w") as f:
        json.dump(dashboard(), f, indent=2)
        f.write("\n")
    print(f"wrote {out} ({len(PANELS)} panels)")
