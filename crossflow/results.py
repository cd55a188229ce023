"""What a notebook writes to results/: metrics.json with its provenance, figures, atomic writes.

Every number in a results table comes from a metrics.json written here, never from printed output.
"""
from __future__ import annotations

import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")                     # headless (papermill, CI); notebooks still display the saved figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .config import to_dict  # noqa: E402
from .utils import atomic_path, write_json  # noqa: E402

PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "clean-fid", "papermill")


def environment_info() -> dict:
    pkgs = {}
    for p in PACKAGES:
        try:
            pkgs[p] = version(p)
        except PackageNotFoundError:
            pkgs[p] = None
    from .train import code_version
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "packages": pkgs,
            "code_version": code_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_metrics(out_dir, metrics: dict, cfg=None, **extra) -> Path:
    """Write ``out_dir/metrics.json``: the numbers, the profile that made them, the config (any task's config
    dataclass: text-to-image's Config, super-resolution's SRConfig, ...) and environment."""
    out_dir = Path(out_dir)
    from .utils import PROVENANCE
    body = {"profile": cfg.profile if cfg else None, "metrics": metrics, **extra,
            "config": to_dict(cfg) if cfg else None, "environment": environment_info(),
            # sha256 of every checkpoint and evaluator network this process used (crossflow.utils.PROVENANCE)
            "provenance": {k: dict(v) for k, v in PROVENANCE.items()}}
    write_json(out_dir / "metrics.json", body)
    return out_dir / "metrics.json"


def savefig(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    return path


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
        fig.suptitle(title, fontsize=9)
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
