"""Figures of the comparison notebooks (Table 3, Table 1, Figure 3); apart from plots.py so that the
evaluation notebooks' inputs do not change when these do."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np


def table3_figure(rows, values, table3: Mapping, parts: Mapping[str, str], title: str = ""):
    """Table 3 as a grid: one column per part (a-e), FID (top) and CLIP (bottom). Blue = our mean +- std over
    seeds, black dots = each seed, grey diamonds = the paper's value on a right-hand axis (a different metric and scale).

    ``rows``: (part, label, model, guidance kind, paper row); ``values(model, kind, metric)`` -> per-seed list.
    """
    part_ids = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(2, len(part_ids), figsize=(3.0 * len(part_ids), 5.6), squeeze=False)
    for j, part in enumerate(part_ids):
        pr = [r for r in rows if r[0] == part]
        for i, (metric, col, name) in enumerate((("fid", 0, "FID-domain (lower better)"),
                                                 ("clip", 1, "CLIPScore-domain (higher better)"))):
            ax = axes[i, j]
            vals = [np.asarray(values(r[2], r[3], metric), float) for r in pr]
            x = np.arange(len(pr))
            ax.errorbar(x, [v.mean() for v in vals], [v.std(ddof=1) if len(v) > 1 else 0 for v in vals],
                        fmt="o", color="tab:blue", capsize=4, ms=6)
            for k, v in enumerate(vals):
                ax.plot(np.full(len(v), k + 0.12), v, "k.", ms=3)
            ax.set_xlim(-0.5, len(pr) - 0.5)
            twin = ax.twinx()
            twin.plot(x, [table3[parts[part]][r[4]][col] for r in pr], "D", color="0.45", ms=5)
            twin.tick_params(labelsize=6, colors="0.45")
            ax.set_xticks(x, [r[1] for r in pr], rotation=35, ha="right", fontsize=6.5)
            ax.tick_params(axis="y", labelsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if i == 0:
                ax.set_title(f"({part}) {parts[part].split('_', 1)[1].replace('_', ' ')}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def guidance_curves(searches: Mapping[str, Sequence], title: str = ""):
    """Validation FID-domain and CLIPScore-domain against the guidance scale, one line per method
    (``searches``: method -> ``JobResult.search``, the validation grid's :class:`Scores`)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for name, rows in searches.items():
        scale = lambda r: r.guidance.scale if r.guidance.kind != "none" else 1.0   # noqa: E731
        rows = sorted(rows, key=scale)
        axes[0].plot([scale(r) for r in rows], [r.fid for r in rows], "o-", label=name)
        axes[1].plot([scale(r) for r in rows], [r.clip for r in rows], "o-", label=name)
    axes[0].set_ylabel("FID-domain (validation)", fontsize=8), axes[1].set_ylabel("CLIPScore-domain", fontsize=8)
    for ax in axes:
        ax.set_xlabel("guidance scale", fontsize=8), ax.grid(alpha=0.3), ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def scaling_figure(size_table, curve_table, title: str = ""):
    """Figure 3 drawn like the paper's: FID against parameters (log x) and against training steps, one line per
    method. ``size_table``: rows with method, parameters, fid; ``curve_table``: rows with method, step, fid. An
    optional "fid_std" column (the spread over seeds) is drawn as error bars."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    style = {"CrossFlow": ("tab:red", "o"), "baseline": ("tab:blue", "s")}
    for ax, table, x in ((axes[0], size_table, "parameters"), (axes[1], curve_table, "step")):
        for method, df in table.groupby("method"):
            df = df.sort_values(x)
            c, m = style.get(method, ("k", "^"))
            err = df["fid_std"] if "fid_std" in df and df["fid_std"].notna().any() else None
            ax.errorbar(df[x], df["fid"], yerr=err, marker=m, color=c, label=method, capsize=3)
    axes[0].set_xscale("log"), axes[0].set_xlabel("parameters (Text VE + flow network)", fontsize=8)
    lo, hi = size_table["parameters"].min() / 1.3, size_table["parameters"].max() * 1.3
    ticks = [m * 10 ** e for e in range(3, 13) for m in (1, 2, 5) if lo <= m * 10 ** e <= hi]
    axes[0].xaxis.set_minor_formatter(NullFormatter())                    # no overlapping 2x10^5, 3x10^5, ...
    axes[0].set_xticks(ticks, [f"{t / 1e9:g}B" if t >= 1e9 else f"{t / 1e6:g}M" if t >= 1e6 else f"{t / 1e3:g}K"
                               for t in ticks])
    axes[1].set_xlabel("training steps", fontsize=8)
    for ax in axes:
        ax.set_ylabel("FID-domain (lower better)", fontsize=8), ax.grid(alpha=0.3), ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
