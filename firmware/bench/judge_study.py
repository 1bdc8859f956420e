#!/usr/bin/env python3
"""How well does a label-free judgement predict the labels? (issue 32)

    judge_study.py ADAPT_OUT…

Each ADAPT_OUT is a `firmware/bench/adapt.sh` output folder (adapt.json, candidates.json and
state/decisions.jsonl; candidates kept). For every candidate it joins the board's label-free
measurements against the factory model — the effective-rank gain with its jackknife standard
error, the held-out view loss (paired per frame), and the changes in alignment and
uniformity — with the
labelled target kNN against the factory model, and prints per run and over all runs:

  * the Spearman rank correlation between each label-free signal and the kNN change
    (signs arranged so that +1 means "the signal ranks candidates as the labels do");
  * for the shipped judge's rule applied against the factory (held-out view loss 2 standard
    errors lower), how many candidates it calls better than the factory, how many of those
    really are, and how many better candidates it misses.

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
        against_factory = d["running"] == factory_slot
        vs = d.get("vs_running" if against_factory else "vs_factory")
        rank = d.get("rank_vs_running" if against_factory else "rank_vs_factory")
        base = d["running_health" if against_factory else "factory_health"]
        if vs is None or rank is None or base is None:
            continue
        c = d["candidate_health"]
        rows.append({
            "step": d["step"],
            "knn_gain": knn[d["candidate"]] - adapt["knn_factory"],
            "rank": rank["difference"],
            "rank_t": rank["difference"] / rank["se"] if rank["se"] > 0 else 0.0,
            "view_loss": -vs["mean"],
            "alignment": base["alignment"] - c["alignment"],
            "uniformity": base["uniformity"] - c["uniformity"],
            "judged_better": vs["mean"] + 2.0 * vs["se"] < 0,
        })
    return rows


SIGNALS = ("rank", "rank_t", "view_loss", "alignment", "uniformity")


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
    print("| run | candidates | ρ effective rank | ρ rank (t) | ρ view loss | ρ alignment "
          "| ρ uniformity | called better: right / all | better ones missed |")
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
