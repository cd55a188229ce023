"""Figures of the evaluation notebooks (kept here: notebooks hold no functions)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def confusion_figure(conf, labels: Sequence[str], title: str = "", ax=None):
    """Row-normalised confusion matrix (rows = truth) with counts printed in each cell."""
    conf = np.asarray(conf)
    rates = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.55 * len(labels) + 1.5, 0.55 * len(labels) + 1.2))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=6.5,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("judged", fontsize=8), ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig if fig is not None else ax.figure


def task_bars(series: Mapping[str, Mapping[str, float]], tasks: Sequence[str], title: str = "", ylabel: str = ""):
    """Grouped bars: one group per task, one bar per series (e.g. {"paper": {...}, "ours": {...}})."""
    fig, ax = plt.subplots(figsize=(1.1 * len(tasks) + 1.5, 2.8))
    width = 0.8 / len(series)
    for k, (name, vals) in enumerate(series.items()):
        x = np.arange(len(tasks)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, [vals.get(t, np.nan) for t in tasks], width, label=name)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, fontsize=7.5)
    ax.set_ylim(0, 1.05), ax.set_ylabel(ylabel, fontsize=8), ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1)), ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
