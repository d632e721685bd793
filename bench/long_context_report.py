#!/usr/bin/env python3
"""long_context_report.py OUT_DIR: the table of bench/long_context.sh's results (Markdown) and
OUT_DIR/memory.svg, memory per rank against sequence length with the budget drawn in."""
import json, os, sys

out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
vanilla = next(r for r in rows if r["label"] == "vanilla attention")
budget = rows[0]["budget_mib"]
print(f"Per-rank budget {budget:.0f} MiB (activations + parameters, gradients, AdamW moments).\n")
at = next((r["time_at"] for r in rows if "time_at" in r), None)
print("| configuration | ranks | longest T | vs vanilla | memory at T (MiB) | fwd+bwd step (s) "
      f"| collectives | step at T = {at} (s) | collectives there |")
print("|---|---|---|---|---|---|---|---|---|")
for r in [vanilla] + [r for r in rows if r is not vanilla]:
    mem = r.get("bytes_at_T_max")
    print(f"| {r['label']} | {r['ranks']} | {r['T_max']} | {r['T_max'] / vanilla['T_max']:.1f}x | "
          f"{'' if mem is None else f'{mem / 2**20:.1f}'} | {r['step_s']:.3f} | "
          f"{100 * r['comm_share']:.0f} % | "
          + (f"{r['step_at_s']:.3f} | {100 * r['comm_share_at']:.0f} % |" if "step_at_s" in r
             else " | |"))
print(f"\nAttention layer forward + backward at T = {vanilla['T_max']}, one rank: materialised "
      f"{vanilla['attn_vanilla_s'] * 1e3:.1f} ms, sparta's block kernel "
      f"{vanilla['attn_sparta_s'] * 1e3:.1f} ms.")

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(7, 4.2))
one = next(r for r in rows if r.get("ranks") == 1 and r.get("recompute") == "none" and "curve" in r)
ax.plot([c["T"] for c in one["curve"]], [c["vanilla_bytes"] / 2**20 for c in one["curve"]],
        "k--", marker="x", label="vanilla attention (T x T kept)")
for r in rows:
    if "curve" in r:
        ax.plot([c["T"] for c in r["curve"]], [c["bytes"] / 2**20 for c in r["curve"]], marker="o",
                markersize=3, label=r["label"])
ax.axhline(budget, color="grey", linewidth=0.8)
ax.text(ax.get_xlim()[0] * 1.1 if ax.get_xlim()[0] > 0 else 300, budget * 1.08,
        f"budget {budget:.0f} MiB", color="grey", fontsize=8)
ax.set_xscale("log", base=2)
ax.set_yscale("log", base=2)
ax.set_xlabel("sequence length T (tokens)")
ax.set_ylabel("memory per rank (MiB)")
ax.set_ylim(top=16 * budget)
ax.legend(fontsize=7)
ax.grid(True, which="both", linewidth=0.3)
fig.tight_layout()
fig.savefig(os.path.join(out, "memory.svg"), metadata={"Date": None})
print(f"\nplot: {os.path.join(out, 'memory.svg')}")
