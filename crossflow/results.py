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


