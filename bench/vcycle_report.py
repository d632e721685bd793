#!/usr/bin/env python3
"""Reads bench/vcycle_compare.sh's runs and prints, per seed and averaged: the baseline's final
validation loss L*; the FLOPs and training wall time (steps only: the sum of step_ms, evaluation
excluded) at which each run first reaches L* (the V-cycle only in its last phase, on the full
model; linear between the two evaluations around the crossing); the saving; and the V-cycle's
final loss against the baseline's at the V-cycle's total FLOPs (the baseline's evaluations
interpolated linearly in FLOPs).
usage: vcycle_report.py OUT_DIR SEED..."""
import json, os, sys


def records(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def curve(run_dir, flops_per_step, first_step=0, flops0=0.0, ms0=0.0):
    """(flops, wall_ms, val_loss) at each evaluation, and the totals at the run's end."""
    recs = records(os.path.join(run_dir, "metrics.jsonl"))
    out, ms, last = [], ms0, first_step
    train = {r["step"]: r for r in recs if "loss" in r}
    for r in recs:
        if "loss" in r:
            ms += r["step_ms"] * (r["step"] - last)
            last = r["step"]
        elif "val_loss" in r:
            out.append((flops0 + flops_per_step * r["step"], ms, r["val_loss"]))
    return out, flops0 + flops_per_step * last, ms


def first_reach(points, target):
    """The first crossing of target, linear between the two evaluations around it."""
    prev = None
    for f, ms, v in points:
        if v <= target:
            if prev is None or prev[2] == v:
                return f, ms
            t = (prev[2] - target) / (prev[2] - v)
            return prev[0] + t * (f - prev[0]), prev[1] + t * (ms - prev[1])
        prev = (f, ms, v)
    return None, None


def at_flops(points, f):
    for (f0, _, v0), (f1, _, v1) in zip(points, points[1:]):
        if f0 <= f <= f1:
            return v0 + (v1 - v0) * (f - f0) / (f1 - f0)
    return None


def main():
    out, seeds = sys.argv[1], sys.argv[2:]
    rows = []
    for seed in seeds:
        vc = os.path.join(out, f"vc-{seed}")
        ml = records(os.path.join(vc, "multilevel.jsonl"))
        full_per_step = ml[0]["full_model_flops"] / ml[0]["steps"]
        base_pts, base_f, base_ms = curve(os.path.join(out, f"base-{seed}"), full_per_step)
        target = base_pts[-1][2]
        phases = sorted(d for d in os.listdir(vc) if d.startswith("phase-"))
        pts, flops, ms, prev = [], 0.0, 0.0, 0.0
        for i, (d, r) in enumerate(zip(sorted(phases, key=lambda d: int(d.split("-")[1])), ml)):
            per_step = (r["flops"] - prev) / r["steps"]
            p, flops, ms = curve(os.path.join(vc, d), per_step, 0, flops, ms)
            prev = r["flops"]
            if i == len(ml) - 1:
                pts = p  # only the full model's last phase counts as reaching L*
        bf, bms = first_reach(base_pts, target)
        vf, vms = first_reach(pts, target)
        rows.append((seed, target, bf, bms, vf, vms, pts[-1][2], flops, at_flops(base_pts, flops)))
    print("| seed | baseline final val loss | baseline FLOPs / wall | V-cycle FLOPs / wall to reach it | FLOPs saved | wall saved | V-cycle final val loss | baseline at the V-cycle's FLOPs |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, t, bf, bms, vf, vms, vfin, vtot, beq in rows:
        reach = f"{vf:.3e} / {vms / 1000:.0f} s" if vf else "not reached"
        fs = f"{100 * (1 - vf / bf):.1f}%" if vf else "-"
        ws = f"{100 * (1 - vms / bms):.1f}%" if vf else "-"
        beq_s = f"{beq:.4f}" if beq is not None else "-"
        print(f"| {seed} | {t:.4f} | {bf:.3e} / {bms / 1000:.0f} s | {reach} | {fs} | {ws} | {vfin:.4f} ({vtot:.3e} FLOPs) | {beq_s} |")


if __name__ == "__main__":
    main()
