"""Evaluator configuration: one small frozen dataclass, presets keyed by the scale profile.

The evaluator networks (GenEval-style judge, whose penultimate layer also gives the domain FID features, and
the domain CLIP model) are trained once per (EvalConfig, DataConfig) and cached; see ``store.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..profiles import PROFILES


@dataclass(frozen=True)
class EvalConfig:
    # -- judge: a per-cell CNN reading class (or empty) and colour; trained on real renders only --------------
    judge_cells: int = 60000            # training cells rendered from Fashion-MNIST *train* items
    judge_steps: int = 2500             # AdamW steps at judge_batch (1500 left counting at 96.5%, issue 3)
    judge_batch: int = 256
    judge_width: int = 16               # channels of the first conv block (doubled in the second)
    judge_feat: int = 64                # penultimate width per cell; FID features = concat over cells
    judge_lr: float = 2e-3
    judge_jitter: int = 1               # +-pixels of random shift: generated items are not pixel-aligned
    judge_noise: float = 0.03           # std of additive pixel noise (decoded latents are never exactly 0)
    judge_val_prompts: int = 1200       # prompts whose Fashion-MNIST *test* renders measure the judge: 400 renders
                                        # per task, so a 97% accuracy is estimated to about +-0.9 points
    # -- domain CLIP: image CNN + text head over the frozen LM's token states, InfoNCE (CLIP) loss ---------
    clip_dim: int = 128                 # joint embedding width
    clip_width: int = 16                # image CNN base channels
    clip_steps: int = 1200
    clip_batch: int = 128
    clip_lr: float = 1e-3
    clip_model: Optional[str] = None    # HF CLIPModel id or folder (GPU users): real CLIP instead of the domain one
    # -- evaluation sizes (what a notebook samples; not part of any network's cache key) --------------------
    n_prompts: int = 48                 # GenEval prompt suite size (make_prompt_suite: held-out pairs first)
    samples_per_prompt: int = 4         # GenEval's protocol generates 4 images per prompt
    fid_samples: int = 2000             # generated images (one per test caption) vs as many real test images; issue 15: >= 2,000
    # -- FID ---------------------------------------------------------------------------------------------
    fid_backend: str = "domain"         # "domain" (judge features) | "inception" (clean-fid Inception, needs weights)
    seed: int = 0
    threads: int = 1                    # torch intra-op threads while training (tiny convs on a shared CPU run
                                        # fastest single-threaded); 0 = leave torch's setting


# per profile, from the one registry (crossflow/profiles.py, ``evaluators``): overrides of the fields above
_PRESETS: dict[str, dict[str, Any]] = {name: dict(p.evaluators) for name, p in PROFILES.items()}
EVAL_PRESETS = tuple(_PRESETS)


def get_eval_config(profile: str = "tiny", overrides: dict[str, Any] | None = None) -> EvalConfig:
    """The evaluator preset of a profile ("custom" maps to "tiny"), with keyword overrides."""
    base = _PRESETS.get("tiny" if profile == "custom" else profile)
    if base is None:
        raise ValueError(f"no evaluator preset for profile {profile!r}; known: {', '.join(EVAL_PRESETS)}")
    merged = {**base, **(overrides or {})}
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(merged) - names)
    if unknown:
        raise ValueError(f"unknown evaluator config key(s) {unknown}; valid: {', '.join(sorted(names))}")
    ecfg = EvalConfig(**merged)
    if ecfg.fid_backend not in ("domain", "inception"):
        raise ValueError(f"fid_backend must be 'domain' or 'inception', got {ecfg.fid_backend!r}")
    return ecfg
