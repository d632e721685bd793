#!/usr/bin/python3
"""sparta-report RUN_DIR [--out FILE]: one self-contained HTML page of PNG plots from a run's
metrics.jsonl (any run: one process or many, resumed or not).

Plots: training and validation loss, learning rate, gradient norm, per-layer gradient norms over
time (heat map), per-layer expert load over time (one heat map per layer and routed block),
throughput, time by phase, and (multi-rank runs) communication by communicator.

matplotlib (Debian's python3-matplotlib) draws them: static PNGs embedded as data URIs render the
same in any browser, in CI and in a mail, with no JavaScript and no network; the page is one file.
Exit codes: 0 written, 2 bad arguments, 3 no readable metrics in RUN_DIR.
"""
import argparse
import base64
import html
import io
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PHASES = ["data", "forward", "backward", "optimizer", "comm_wait"]


def load(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        print(f"sparta-report: error: no {path} (give a run directory of sparta-train)",
              file=sys.stderr)
        sys.exit(3)
    train, evals = {}, {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"sparta-report: warning: {path}:{n}: skipped ({e})", file=sys.stderr)
                continue
            # A resumed run appends: the last record of a step wins. Checkpoint and control
            # records share the step numbers and are not plotted.
            if "val_loss" in r:
                evals[r["step"]] = r
            elif "loss" in r:
                train[r["step"]] = r
    if not train:
        print(f"sparta-report: error: {path} has no training records", file=sys.stderr)
        sys.exit(3)
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]


def png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def line_plot(title, series, ylabel, logy=False):
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for label, xs, ys, style in series:
        ax.plot(xs, ys, style, label=label, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return png(fig)


def heat(title, steps, rows, ylabel, cbar, log=False):
    fig, ax = plt.subplots(figsize=(7, max(2.2, 0.25 * len(rows) + 1.2)))
    a = np.array(rows, dtype=float)
    if log:
        a = np.log10(np.maximum(a, 1e-12))
    im = ax.imshow(a, aspect="auto", origin="lower", interpolation="nearest",
                   extent=[steps[0], steps[-1], -0.5, len(rows) - 0.5], cmap="viridis")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=cbar)
    return png(fig)


def plots(train, evals):
    out = []
    steps = [r["step"] for r in train]
    series = [("train", steps, [r["loss"] for r in train], "-")]
    if evals:
        series.append(("validation", [e["step"] for e in evals], [e["val_loss"] for e in evals], "o-"))
    out.append(("loss", "Loss (nats per token)", line_plot("Loss", series, "nats")))
    out.append(("lr", "Learning rate", line_plot("Learning rate", [("lr", steps, [r["lr"] for r in train], "-")], "lr")))
    out.append(("grad_norm", "Gradient norm (before clipping)",
                line_plot("Gradient norm", [("norm", steps, [r["grad_norm"] for r in train], "-")], "L2 norm", logy=True)))
    with_layers = [r for r in train if r.get("layer_grad_norms")]
    if with_layers:
        rows = np.array([r["layer_grad_norms"] for r in with_layers]).T
        out.append(("layer_grad_norms", "Gradient norm per layer over time (log10)",
                    heat("Per-layer gradient norm", [r["step"] for r in with_layers], rows, "layer", "log10 norm", log=True)))
    # Expert load: share of each expert's assignments per logged step, per (block, layer).
    blocks = {}
    for r in train:
        for m in r.get("moe", []):
            blocks.setdefault((m.get("block", "moe"), m["layer"]), []).append((r["step"], m["expert_tokens"]))
    for (block, layer), recs in sorted(blocks.items()):
        xs = [s for s, _ in recs]
        shares = []
        for _, counts in recs:
            total = sum(counts) or 1
            shares.append([c / total for c in counts])
        rows = np.array(shares).T
        name = f"expert_load_{block.replace('.', '_')}_layer{layer}"
        out.append((name, f"Expert load over time: {block} layer {layer} (share of assignments)",
                    heat(f"{block} layer {layer}: expert load", xs, rows, "expert", "share")))
    out.append(("throughput", "Throughput",
                line_plot("Throughput", [("tokens/s", steps, [r["tokens_per_s"] for r in train], "-")], "tokens/s")))
    with_phases = [r for r in train if r.get("phase_seconds")]
    if with_phases:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        xs = [r["step"] for r in with_phases]
        ys = [[1e3 * r["phase_seconds"].get(p, 0.0) for r in with_phases] for p in PHASES]
        ax.stackplot(xs, ys, labels=PHASES)
        ax.set_xlabel("step")
        ax.set_ylabel("ms per step")
        ax.set_title("Time by phase (compute; comm_wait: inside collectives)")
        ax.legend(loc="upper right", fontsize=8)
        out.append(("phases", "Time by phase", png(fig)))
    with_comm = [r for r in train if r.get("comm")]
    if len(with_comm) > 1:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        names = sorted({f"{c['comm']} {c['kind']}" for r in with_comm for c in r["comm"]})
        prev = {}
        for name in names:
            xs, ys = [], []
            for r in with_comm:
                tot = sum(c["seconds"] for c in r["comm"] if f"{c['comm']} {c['kind']}" == name)
                if name in prev:
                    ds = r["step"] - prev[name][0]
                    xs.append(r["step"])
                    ys.append(1e3 * (tot - prev[name][1]) / max(ds, 1))
                prev[name] = (r["step"], tot)
            ax.plot(xs, ys, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("ms per step (rank 0)")
        ax.set_title("Communication by communicator and collective")
        ax.legend(fontsize=7)
        out.append(("communication", "Communication", png(fig)))
    return out


def summary(run_dir, train, evals):
    last = train[-1]
    rows = [("run", os.path.abspath(run_dir)), ("steps logged", f"{train[0]['step']} .. {last['step']}"),
            ("last training loss", f"{last['loss']:.4f}"),
            ("tokens/s (last record)", f"{last['tokens_per_s']:.0f}")]
    if evals:
        rows.append(("last validation loss", f"{evals[-1]['val_loss']:.4f} ({evals[-1]['val_bpb']:.3f} bits/byte)"))
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)


def page(run_dir, train, evals, figs):
    cfg = ""
    p = os.path.join(run_dir, "config.toml")
    if os.path.isfile(p):
        cfg = f"<details><summary>config.toml</summary><pre>{html.escape(open(p).read())}</pre></details>"
    body = "\n".join(
        f'<figure><figcaption>{html.escape(cap)}</figcaption>'
        f'<img id="{name}" class="plot" alt="{html.escape(cap)}" src="data:image/png;base64,{data}"></figure>'
        for name, cap, data in figs)
    # data-loaded: set once every plot has decoded (what the rendering test reads back).
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sparta report: {html.escape(os.path.basename(os.path.abspath(run_dir)))}</title>
<style>body{{font-family:sans-serif;margin:1.5em;background:#fff}} figure{{display:inline-block;margin:.5em}}
figcaption{{font-weight:bold}} table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}</style>
</head><body>
<h1>sparta run report</h1>
<table>{summary(run_dir, train, evals)}</table>
{cfg}
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img.plot"), ok = 0;
  imgs.forEach(function (i) {{ if (i.complete && i.naturalWidth > 0) {{ i.dataset.loaded = "1"; ok++; }} }});
  document.body.dataset.plots = imgs.length + " " + ok;
}});
</script>
</body></html>
"""


def main():
    ap = argparse.ArgumentParser(prog="sparta-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a sparta-train run directory (holds metrics.jsonl)")
    ap.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    a = ap.parse_args()
    train, evals = load(a.run_dir)
    figs = plots(train, evals)
    out = a.out or os.path.join(a.run_dir, "report.html")
    with open(out, "w") as f:
        f.write(page(a.run_dir, train, evals, figs))
    print(f"sparta-report: wrote {out} ({len(figs)} plots, {len(train)} training records)")


if __name__ == "__main__":
    main()
