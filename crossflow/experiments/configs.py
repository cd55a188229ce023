"""Budgets of the comparison notebooks and the matched baseline (crossflow.experiments)."""
from __future__ import annotations

import torch

from ..config import Config
from ..profiles import get_profile


# ----------------------------------------------------------------------------------------------------------
# Budgets of the comparison notebooks: per profile, in crossflow/profiles.py (``experiment``, ``eval_sizes``)
# ----------------------------------------------------------------------------------------------------------

def experiment_config(profile: str, overrides: dict | None = None) -> Config:
    """The base config of the comparison notebooks: the profile's preset + its ``experiment`` sizes + yours."""
    from ..config import get_config
    return get_config(profile, {**get_profile(profile).experiment, **(overrides or {})})


def fig3_plan(profile: str) -> tuple[int | None, dict]:
    """Figure 3's training steps (None = the experiment preset's) and model sizes for ``profile``."""
    p = get_profile(profile).fig3
    return p.get("steps"), dict(p.get("sizes", {}))


# ----------------------------------------------------------------------------------------------------------
# Models: the cross-attention baseline at matched size
# ----------------------------------------------------------------------------------------------------------

def generator_parameters(cfg: Config, text_dim: int = 384, n_tokens: int | None = None) -> int:
    """Parameters used at sampling time (Text VE + flow network; the baseline has no Text VE), counted on
    the meta device (nothing is allocated, so the paper's sizes count in a second)."""
    from ..models import CrossFlow, count_parameters
    with torch.device("meta"):
        model = CrossFlow(cfg, text_dim, n_tokens or cfg.text.max_length)
    return count_parameters(model.net) + (count_parameters(model.text_ve) if model.text_ve is not None else 0)


def baseline_config(cfg: Config, text_dim: int = 384, tolerance: float = 0.10) -> Config:
    """The standard flow-matching baseline of Table 1 for CrossFlow config ``cfg``: Gaussian source, text by
    cross-attention after every self-attention, null-text dropout for CFG (``objective.uncond_prob``), and the
    depth whose parameter count is closest to CrossFlow's (Text VE + flow network) at the same width; only if no
    depth comes within ``tolerance`` is the width changed too (in steps of 2 x heads), as little as possible."""
    target = generator_parameters(cfg, text_dim)
    base = {"objective.source": "noise", "flow.cross_attention": True}
    w0, h = cfg.flow.width, cfg.flow.heads
    widths = [w0] + sorted((w for w in range(2 * h, 2 * w0, 2 * h) if w != w0), key=lambda w: abs(w - w0))
    best = None
    for width in widths:
        for depth in range(1, 2 * cfg.flow.depth + 3):
            cand = cfg.replace({**base, "flow.depth": depth, "flow.width": width})
            err = abs(generator_parameters(cand, text_dim) - target) / target
            if best is None or err < best[0]:
                best = (err, cand)
        if best[0] <= tolerance:
            return best[1]
    raise ValueError(f"no baseline size matches CrossFlow's {target:,} parameters within {tolerance:.0%} "
                     f"(best {best[0]:.1%})")

