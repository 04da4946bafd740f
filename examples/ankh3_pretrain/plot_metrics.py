#!/usr/bin/env python3
"""Plots the learning curves of an ankh3_pretrain run from its metrics.jsonl.

    python3 plot_metrics.py ankh3_run/metrics.jsonl -o curves.png

Left: per-task training loss ("split": "train" records, averaged over a window
of steps) and held-out loss ("split": "valid" records). Right: held-out
accuracy on the residues of the targets (masked residues for nlu, completed
residues for s2s) against the residue-frequency baseline stored with each
held-out record. Needs matplotlib (pip install matplotlib); only the plot
needs Python, training does not."""
import argparse
import json


def smooth(values, window):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def read(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not a JSON record ({e})")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics")
    p.add_argument("-o", "--output", default="curves.png")
    p.add_argument("--window", type=int, default=25, help="steps averaged in the training curves")
    p.add_argument("--tasks", default="nlu,s2s")
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read(a.metrics)
    train = [r for r in rows if r.get("split") == "train"]
    valid = [r for r in rows if r.get("split") == "valid"]
    if not train:
        raise SystemExit(f"{a.metrics}: no training records")
    tasks = a.tasks.split(",")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {t: c for t, c in zip(tasks, ["tab:blue", "tab:orange", "tab:green", "tab:red"])}
    for t in tasks:
        # a step's batch may hold no example of a task: its loss is then 0 and not a measurement
        pts = [(r["step"], r[f"{t}_loss"]) for r in train if r.get(f"{t}_loss", 0) > 0]
        if pts:
            ax1.plot([s for s, _ in pts], smooth([l for _, l in pts], a.window), color=colors[t], alpha=0.6, label=f"train {t}")
        vp = [(r["step"], r[f"{t}_loss"], r[f"{t}_acc"], r.get(f"{t}_baseline_acc")) for r in valid if f"{t}_loss" in r]
        if vp:
            ax1.plot([x[0] for x in vp], [x[1] for x in vp], "o-", color=colors[t], label=f"held-out {t}")
            ax2.plot([x[0] for x in vp], [100 * x[2] for x in vp], "o-", color=colors[t], label=f"held-out {t}")
            if vp[-1][3] is not None:
                ax2.axhline(100 * vp[-1][3], linestyle="--", color=colors[t], alpha=0.6, label=f"frequency baseline {t}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats / target token)")
    ax1.set_title("loss")
    ax1.legend()
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy on target residues (%)")
    ax2.set_title("masked (nlu) / completed (s2s) residues")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(a.output, dpi=110)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
