"""Every figure of the notebooks, in one module (notebooks hold no functions; they call these and save with
:func:`crossflow.results.savefig`).

Sections: images (sample grids), training curves, the evaluators (judge confusion, per-task bars), the comparison
tables (Table 3, Table 1's guidance curves, Figure 3), the sampler and precision studies, super-resolution crops.
Each function takes plain data (lists, dicts, tensors, the experiments' typed records) and returns a matplotlib
figure. One module does not make every artifact depend on every figure: the re-run check follows the
definitions a notebook uses (reproduce/deps.py), not whole files.
"""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")                     # headless (papermill, CI); notebooks display the saved figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

def sample_grid(images: torch.Tensor | np.ndarray, captions: list[str], ncol: int = 6, title: str = "",
                marks: list[bool] | None = None, scale: float = 1.6):
    """A figure of images with their prompt printed under each; ``marks`` outlines some (e.g. held-out) in red."""
    imgs = images.permute(0, 2, 3, 1).cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    n = len(imgs)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * scale, nrow * (scale + 0.6)), squeeze=False,
                             gridspec_kw={"hspace": 0.55})
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, imgs)):
        ax.imshow(np.clip(img, 0, 1) if img.dtype != np.uint8 else img, interpolation="nearest")
        ax.text(0.5, -0.03, _wrap(captions[i], 22), transform=ax.transAxes, ha="center", va="top",
                fontsize=6.5, color="crimson" if marks and marks[i] else "black", clip_on=False)
        if marks and marks[i]:
            ax.axis("on"), ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_color("crimson"), s.set_linewidth(2)
    if title:
        # Title just above the first row (the default top margin is a fixed 12% of the height, an empty band on
        # a tall grid); savefig's tight bounding box then crops what is left above it.
        height = fig.get_figheight()
        fig.subplots_adjust(top=1 - 0.3 / height)
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join(lines + [cur])


def loss_curve(history: list[dict], title: str = "", keys=("loss", "fm", "enc", "kl")):
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6))
    steps = [r["step"] for r in history]
    for ax, k in zip(np.atleast_1d(axes), keys):
        vals = [r.get(k) for r in history]
        if any(v is not None for v in vals):
            ax.plot(steps, vals, lw=1.2)
        ax.set_title(k, fontsize=9), ax.set_xlabel("step", fontsize=8), ax.grid(alpha=0.3)
        if k in ("loss", "fm") and all(v is not None and v > 0 for v in vals):
            ax.set_yscale("log")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


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


def regime_figure(rows: Sequence[dict], chosen: Mapping | None, targets: Mapping[str, float], title: str = ""):
    """The regime study: FID-domain / real-vs-real floor and GenEval-domain against training CPU-minutes, one line per
    point (``rows``: point, cpu_minutes, fid_ratio, geneval), the chosen point ringed, the targets dashed
    (``targets``: fid_ratio, geneval, budget_minutes)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(dict.fromkeys(r["point"] for r in rows))
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, key, target, label in ((axes[0], "fid_ratio", targets["fid_ratio"], "FID-domain / real-vs-real floor"),
                                   (axes[1], "geneval", targets["geneval"], "GenEval-domain overall")):
        for name, c in zip(names, colors):
            pts = sorted((r for r in rows if r["point"] == name and r.get(key) is not None),
                         key=lambda r: r["cpu_minutes"])
            ax.plot([r["cpu_minutes"] for r in pts], [r[key] for r in pts], marker="o", color=c, label=name)
        if chosen is not None and chosen.get(key) is not None:
            ax.scatter([chosen["cpu_minutes"]], [chosen[key]], s=180, facecolors="none", edgecolors="k",
                       linewidths=1.5, zorder=5, label="chosen")
        ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:g}")
        ax.axvline(targets["budget_minutes"], color="grey", ls=":", lw=0.8, label=f"budget {targets['budget_minutes']:g} min")
        ax.set_xlabel("training CPU-minutes (one thread)", fontsize=8), ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3), ax.tick_params(labelsize=7)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def nfe_figure(rows: Sequence[dict], ref, title: str = ""):
    """FID-domain and GenEval-domain against NFE, one line per solver, Euler-50's seed band shaded."""

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, mean, rng, label in ((axes[0], "fid", ref.fid_mean, ref.fid_range, "FID-domain (lower is better)"),
                                      (axes[1], "geneval", ref.geneval_mean, ref.geneval_range,
                                       "GenEval-domain (higher is better)")):
        ax.axhspan(mean - rng, mean + rng, color="0.85", label=f"Euler-50, {len(ref.seeds)} seeds: mean +- range")
        ax.axhline(mean, color="0.4", lw=0.8)
        for solver in dict.fromkeys(r["solver"] for r in rows):
            pts = sorted((r["nfe"], r[key]) for r in rows if r["solver"] == solver and r["seed"] == ref.seeds[0])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=solver)
        ax.scatter([50], [mean], marker="*", s=180, color="k", zorder=5, label="paper's sampler: Euler, 50 steps")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per image and guidance pass (NFE)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_figure(histories: dict, key: str = "fm", title: str = ""):
    """Training curves of several runs on one axis (raw and a 10-point running mean)."""

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, hist in histories.items():
        steps = [r["step"] for r in hist]
        vals = [r[key] for r in hist]
        smooth = [statistics.mean(vals[max(0, i - 9):i + 1]) for i in range(len(vals))]
        line, = ax.plot(steps, vals, alpha=0.3)
        ax.plot(steps, smooth, color=line.get_color(), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{key} loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def crops_figure(test, rows: dict[str, torch.Tensor], index: list[int], title: str = ""):
    """One column per method (LR, bicubic, each method, HR), one row per chosen test patch."""

    cols = ["LR (nearest)", *rows, "HR"]
    fig, axes = plt.subplots(len(index), len(cols), figsize=(1.6 * len(cols), 1.7 * len(index)), squeeze=False)
    for r, i in enumerate(index):
        lr = F.interpolate(test.lr[i:i + 1], size=test.hr.shape[-1], mode="nearest")[0]
        for c, (name, img) in enumerate([("LR (nearest)", lr), *((k, v[i]) for k, v in rows.items()),
                                         ("HR", test.hr[i])]):
            ax = axes[r, c]
            ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(test.photo[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def depth_figure(images: torch.Tensor, gt: np.ndarray, preds: Mapping[str, np.ndarray], labels: Sequence[str],
                 error_of: str | None = None, title: str = ""):
    """One row per test image: the input, the ground truth, each method's prediction aligned to it (Marigold's
    scale and shift; NaN ground truth shown as grey), and the AbsRel map |d - d*| / d* of ``error_of``.
    ``preds``: method -> (N, H, W) aligned depth. Depth shares one colour scale per row (near = bright)."""
    cols = ["input", "ground truth", *preds] + ([f"|error| / depth, {error_of}"] if error_of else [])
    fig, axes = plt.subplots(len(labels), len(cols), figsize=(1.55 * len(cols), 1.65 * len(labels)), squeeze=False)
    cmap = plt.get_cmap("magma_r").copy()
    cmap.set_bad("0.6")
    for r, label in enumerate(labels):
        g = gt[r]
        lo, hi = np.nanmin(g), np.nanmax(g)
        panels = [("input", images[r].permute(1, 2, 0).clamp(0, 1).numpy(), {}),
                  ("ground truth", g, {"cmap": cmap, "vmin": lo, "vmax": hi})]
        panels += [(k, v[r], {"cmap": cmap, "vmin": lo, "vmax": hi}) for k, v in preds.items()]
        if error_of:
            panels.append((cols[-1], np.abs(preds[error_of][r] - g) / g, {"cmap": "viridis", "vmin": 0, "vmax": 0.5}))
        for c, (name, img, kw) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest", **kw)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def caption_figure(images: np.ndarray, refs: Sequence[Sequence[str]], captions: Mapping[str, Sequence[str]],
                   title: str = "", n_refs_shown: int = 2):
    """One row per test scene: the image, then its first ``n_refs_shown`` reference captions and each method's
    caption as text (``captions``: method -> one caption per scene)."""
    import textwrap
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(9.0, 1.25 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 6.5]})
    for r in range(n):
        axes[r, 0].imshow(images[r], interpolation="nearest")
        axes[r, 0].set_xticks([]), axes[r, 0].set_yticks([])
        lines = [f"reference: {c}" for c in refs[r][:n_refs_shown]]
        lines += [f"{m}: {caps[r] or '(empty)'}" for m, caps in captions.items()]
        text = "\n".join(textwrap.shorten(line, 110) for line in lines)
        axes[r, 1].text(0, 0.5, text, fontsize=6.5, va="center", family="monospace")
        axes[r, 1].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
