#!/usr/bin/env python3
"""How well does a label-free judgement predict the labels? (issue 32)

    judge_study.py ADAPT_OUT…

Each ADAPT_OUT is a `firmware/bench/adapt.sh` output folder (adapt.json, candidates.json and
state/decisions.jsonl; candidates kept). For every candidate it joins the board's label-free
measurements — the held-out view loss against the factory model (paired per frame: mean and
standard error), and the changes in alignment, uniformity and effective rank — with the
labelled target kNN against the factory model, and prints per run and over all runs:

  * the Spearman rank correlation between each label-free signal and the kNN change
    (signs arranged so that +1 means "the signal ranks candidates as the labels do");
  * for the view-loss test at 2 standard errors (the shipped judge), how many candidates it
    calls better than the factory and how many of those really are, and how many better
    candidates it misses.

Only the standard library is needed.
"""
import json
import os
import sys


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(xs, ys):
    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return None if vx == 0 or vy == 0 else cov / (vx * vy)


def rows_of(out):
    adapt = json.load(open(os.path.join(out, "adapt.json")))
    knn = {c["candidate"]: c["knn"]["top1"] for c in adapt["candidates"] if c["knn"]}
    factory_slot = os.path.basename(os.readlink(os.path.join(out, "state", "factory")))
    rows = []
    for line in open(os.path.join(out, "state", "decisions.jsonl")):
        d = json.loads(line)
        if d["candidate"] not in knn or d.get("candidate_health") is None:
            continue
        vs = d.get("vs_factory") if d["running"] != factory_slot else d.get("vs_running")
        base = d["factory_health"] if d["running"] != factory_slot else d["running_health"]
        if vs is None or base is None:
            continue
        c = d["candidate_health"]
        rows.append({
            "step": d["step"],
            "knn_gain": knn[d["candidate"]] - adapt["knn_factory"],
            "view_loss": -vs["mean"],
            "view_loss_t": -vs["mean"] / vs["se"] if vs["se"] > 0 else 0.0,
            "alignment": base["alignment"] - c["alignment"],
            "uniformity": base["uniformity"] - c["uniformity"],
            "effective_rank": c["effective_rank"] - base["effective_rank"],
            "judged_better": vs["mean"] + 2.0 * vs["se"] < 0,
        })
    return rows


SIGNALS = ("view_loss", "view_loss_t", "alignment", "uniformity", "effective_rank")


def report(name, rows):
    gains = [r["knn_gain"] for r in rows]
    cells = []
    for s in SIGNALS:
        rho = spearman([r[s] for r in rows], gains)
        cells.append("–" if rho is None else f"{rho:+.2f}")
    called = [r for r in rows if r["judged_better"]]
    right = sum(r["knn_gain"] > 0 for r in called)
    missed = sum(r["knn_gain"] > 0 and not r["judged_better"] for r in rows)
    print(f"| {name} | {len(rows)} | " + " | ".join(cells)
          + f" | {right} / {len(called)} | {missed} |")


def main():
    outs = sys.argv[1:]
    if not outs:
        sys.exit(__doc__)
    print("| run | candidates | ρ view loss | ρ view loss (t) | ρ alignment | ρ uniformity "
          "| ρ effective rank | called better: right / all | better ones missed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    everything = []
    for out in outs:
        rows = rows_of(out)
        everything += rows
        report(os.path.basename(os.path.normpath(out)), rows)
    if len(outs) > 1:
        report("all", everything)


if __name__ == "__main__":
    main()
