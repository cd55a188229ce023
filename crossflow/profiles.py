"""Scale profiles: one registry, one entry per profile, every per-profile size in it.

A profile says how big everything is: the model and its training (``config``, dotted overrides of
``crossflow.config.Config``'s defaults), the comparison notebooks' models (``experiment``, on top of ``config``),
their evaluation sets (``eval_sizes``), the evaluator networks (``evaluators``, ``EvalConfig`` fields), Table 10's
text autoencoders (``compression``, ``CompressionConfig`` fields) and Figure 3's model sizes (``fig3``). Adding a
profile is adding one entry here; nothing else holds a size per profile.

``device`` is where a profile is meant to run. "cuda" profiles refuse to start on a machine without CUDA (the
driver says so) unless ``CROSSFLOW_DEVICE=cpu`` asks for the CPU explicitly; see ``crossflow.device``.

This module is plain data and imports nothing from the package (everything else may import it).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str                                           # "cpu" | "cuda" (where it is meant to run)
    runtime: str                                          # what a whole `make reproduce` takes, measured or estimated
    config: Mapping[str, Any] = field(default_factory=dict)       # Config overrides (dotted keys)
    experiment: Mapping[str, Any] = field(default_factory=dict)   # + these for Table 3 / Table 1 / Figure 3 models
    eval_sizes: Mapping[str, int] = field(default_factory=dict)   # comparison notebooks: n_val, n_test captions
    evaluators: Mapping[str, Any] = field(default_factory=dict)   # EvalConfig overrides
    compression: Mapping[str, Any] = field(default_factory=dict)  # CompressionConfig overrides (Table 10)
    fig3: Mapping[str, Any] = field(default_factory=dict)         # {"steps": int | None, "sizes": {name: overrides}}
    sr: Mapping[str, Any] = field(default_factory=dict)           # super-resolution (crossflow.tasks.sr.SRConfig)
    depth: Mapping[str, Any] = field(default_factory=dict)        # depth (crossflow.tasks.depth.DepthConfig)
    caption: Mapping[str, Any] = field(default_factory=dict)      # captioning (crossflow.tasks.caption.CaptionConfig)


# The sampler of the evaluation-heavy notebooks (the comparison models, Figure 9, the regime study): the fewest-
# evaluation sampler that matched Euler-50 on the earlier tiny model (results/sampler then: 4 network evaluations per
# guidance pass, confirmed over 3 sampling seeds). On the current main model the study chose midpoint with 6
# evaluations; 4 gives a better FID-domain but a GenEval-domain 0.04 lower (results/sampler, README "Speed"). Held
# at 4 while the comparison re-runs are under way, so that they share one sampler (tests/test_bench.py marks it).
FAST_SAMPLER: Mapping[str, Any] = MappingProxyType({"sample.solver": "midpoint", "sample.steps": 2})

# The fast training step of issue 13 (make bench), as config overrides: part of the tiny recipe since the regime study
# (it trained as well per step as fp32 there, FID-domain 303/210/168 vs 315/219/171 at 700/1,400/2,800 steps, in
# 0.68x the time; results/regime). FP32_STEP is the step it replaces (the Config defaults), which
# notebooks/11_precision.ipynb compares it with.
# train.compile is not in it: on CPUs, inductor's vectorised bf16 kernels (torch 2.14.1) give non-finite gradients
# from the first step (measured; train() refuses the combination there), and compiling in fp32 gains little.
FAST_STEP: Mapping[str, Any] = MappingProxyType({
    "train.mixed_precision": "bf16", "flow.attention": "math", "train.fused_optimizer": True})
FP32_STEP: Mapping[str, Any] = MappingProxyType({
    "train.mixed_precision": "no", "flow.attention": "sdpa", "train.fused_optimizer": False})

# The main text-to-image recipe at tiny: the regime study's chosen point (results/regime, issue 15: the lowest
# FID-domain within 45 training minutes; 8.3M generator parameters, 4,200 steps, 26 CPU-minutes) on top of the Config
# defaults, which are the recipe before the study (patch 1, width 128, 1,400 fp32 steps; the study's "recipe" point).
# Indicator CFG scale 3: the study's validation optimum for this point (500 captions, scales 2 / 3 / 5 / 7).
TINY_RECIPE: Mapping[str, Any] = MappingProxyType({
    "flow.patch_size": 2, "flow.width": 256, **FAST_STEP, "train.steps": 4200, "sample.cfg_scale": 3.0})


# Figure 3's model sizes at tiny [open]: the comparison models' family (patch 2, the fast step), widths 64-256 with the
# Text VE growing with the flow network up to the recipe's 128, 0.67M-8.3M generator parameters (12.4x); XL is the
# comparison model itself (issue 15).
_FIG3_TINY_SIZES = {
    "XS": {"flow.width": 64, "flow.depth": 4, "flow.heads": 4, "text_ve.width": 64, "text_ve.ffn": 128},
    "S": {"flow.width": 96, "flow.depth": 5, "flow.heads": 4, "text_ve.width": 96, "text_ve.ffn": 192},
    "M": {"flow.width": 128, "flow.depth": 6, "flow.heads": 4},
    "L": {"flow.width": 192, "flow.depth": 6, "flow.heads": 4},
    "XL": {},
}

# Figure 3's earlier tiny sizes (patch 1; flow width/depth and the Text VE's width/depth grow together, 0.18M-2.5M
# parameters, issue 5): the smoke and gpu-short profiles' sizes.
_FIG3_SMALL_SIZES = {
    "XS": {"flow.width": 32, "flow.depth": 2, "flow.heads": 2, "text_ve.width": 32, "text_ve.depth": 1,
           "text_ve.heads": 2, "text_ve.ffn": 64},
    "S": {"flow.width": 48, "flow.depth": 3, "text_ve.width": 48, "text_ve.depth": 1, "text_ve.ffn": 96},
    "M": {"flow.width": 64, "flow.depth": 4, "text_ve.width": 64, "text_ve.ffn": 128},
    "L": {"flow.width": 96, "flow.depth": 4, "text_ve.width": 96, "text_ve.ffn": 192},
    "XL": {"flow.width": 128, "flow.depth": 5, "text_ve.width": 128, "text_ve.ffn": 256},
}

# The smoke sizes (seconds; tests and CI). gpu-smoke uses the same, on CUDA.
_SMOKE_CONFIG = {
    "data.num_train": 256, "data.num_test": 64, "data.captions_per_scene": 2,
    "autoencoder.block_out_channels": (8, 16, 16), "autoencoder.steps": 20, "autoencoder.batch_size": 32,
    "text_ve.width": 32, "text_ve.depth": 1, "text_ve.heads": 2, "text_ve.ffn": 64,
    "flow.width": 32, "flow.depth": 2, "flow.heads": 2,
    "train.steps": 20, "train.batch_size": 16, "train.warmup_steps": 2, "train.log_every": 5,
    "train.ckpt_every": 10, "train.ema_decay": 0.9,
    "sample.steps": 4, "sample.cfg_scale": 2.0,
}
_SMOKE_EVALUATORS = {"judge_cells": 6000, "judge_steps": 300, "judge_batch": 128, "judge_feat": 16,
                     "judge_val_prompts": 120, "clip_dim": 64, "clip_width": 16, "clip_steps": 250, "clip_batch": 64,
                     "n_prompts": 24, "samples_per_prompt": 1, "fid_samples": 64}
_SMOKE_FIG3_SIZES = {k: _FIG3_SMALL_SIZES[k] for k in ("XS", "S", "M", "L", "XL")}

_PAPER_CONFIG = {
    # The paper's sizes and recipe (docs/method.md sections 3, 6, 10). GPU only.
    "data.source": "coco", "data.image_size": 256,
    "text.model": "openai/clip-vit-large-patch14", "text.max_length": 77,       # [paper, code]
    "autoencoder.pretrained": "stabilityai/sd-vae-ft-ema",                        # [code] SD-VAE, f=8
    "autoencoder.block_out_channels": (128, 256, 512, 512),                       # SD-VAE layout: factor 8
    "autoencoder.scaling_factor": 0.23010,                                        # [code]
    "text_ve.width": 768, "text_ve.depth": 11, "text_ve.heads": 8, "text_ve.ffn": 1024,   # [code]
    "text_ve.reductions": 3,                                                      # [code] 768 -> 96
    # DiT-style stand-in for DiMR ([open]): width 1280, depth 32, patch 2 on 4 x 32 x 32 gives 0.95B
    # flow-network parameters, the paper's count.
    "flow.width": 1280, "flow.depth": 32, "flow.heads": 16, "flow.patch_size": 2,
    "train.steps": 300_000, "train.batch_size": 1024, "train.lr": 1e-4,           # [paper] Table 1 budget
    "train.warmup_steps": 5000, "train.ema_decay": 0.9999, "train.mixed_precision": "bf16",  # [paper]
    "train.ema_warmup": False,                                                    # [paper] plain EMA
    "train.log_every": 100, "train.ckpt_every": 5000,
    "sample.steps": 50, "sample.cfg_scale": 7.0,                                  # [code]
}

_SMOKE = Profile(
    "smoke", "seconds per artifact; tests and CI. Numbers it produces mean nothing.", "cpu",
    "make test: 7-10 min on 2 CPU cores (README, Tests)",
    config=_SMOKE_CONFIG,
    experiment={},
    eval_sizes={"n_val": 24, "n_test": 32},
    evaluators=_SMOKE_EVALUATORS,
    compression={"steps": 20, "batch_size": 32},
    fig3={"steps": None, "sizes": _SMOKE_FIG3_SIZES},
    sr={"flow.width": 32, "flow.depth": 2, "flow.heads": 2, "train.steps": 20, "train.batch_size": 16,
        "train.warmup_steps": 2, "train.log_every": 5, "train.ckpt_every": 10, "sample.steps": 4,
        "data.test_patches_per_photo": 8, "features.steps": 30, "features.width": 8, "features.feat_dim": 16},
    depth={"flow.width": 32, "flow.depth": 2, "flow.heads": 2, "train.steps": 20, "train.batch_size": 16,
           "train.warmup_steps": 2, "train.log_every": 5, "train.ckpt_every": 10, "sample.steps": 4,
           "data.n_train": 48, "data.n_test": 8, "ve.width": 8},
    caption={"text_vae.encoder.width": 32, "text_vae.encoder.depth": 1, "text_vae.encoder.heads": 2,
             "text_vae.encoder.ffn": 64, "text_vae.decoder_width": 32, "text_vae.decoder_depth": 1,
             "text_vae.heads": 2, "ve.width": 8, "ar.width": 32, "ar.depth": 1, "ar.heads": 2, "flow.width": 32,
             "flow.depth": 2, "flow.heads": 2, "fit.steps": 20, "fit.batch_size": 16, "fit.warmup_steps": 2,
             "fit.log_every": 5, "sample.steps": 4, "n_test": 16})

# The registry, smallest first. An artifact depends on its own profile's entry only (reproduce/deps.py prunes the
# others): adding or changing a profile does not make another profile's results stale.
_PROFILES = {
    "smoke": _SMOKE,
    "tiny": Profile(
        "tiny", "the CPU default (2 cores) that makes the committed results/", "cpu",
        "several hours on 2 CPU cores for every artifact (README: measured per artifact)",
        # the regime study's choice (TINY_RECIPE) and 5,000 test scenes (2,000 test + 500 validation captions)
        config={**TINY_RECIPE, "data.num_test": 5000},
        # [open] The paper runs its ablations (Table 3) on its smallest (70M) model. Here the comparison models are the
        # main model's network (8.3M generator parameters) trained 2/3 as long (2,800 steps): the shortest training
        # at which indicator CFG beat no guidance on validation in the regime study's checkpoints (FID-domain on 500
        # validation captions, two sampling seeds: 700 and 1,400 steps no gain, 2,800 steps ~18 better at scale 3;
        # README, Comparison models). Sampled with FAST_SAMPLER, the study's sampler. The former comparison models
        # (0.67M parameters, 500 steps) showed no guidance effect at all (issue 15).
        experiment={"train.steps": 2800, "train.ckpt_every": 700, **FAST_SAMPLER},
        # issue 15: FID-domain on >= 2,000 generated images, guidance chosen on >= 500 disjoint validation captions
        eval_sizes={"n_val": 500, "n_test": 2000},
        evaluators={},                                # the EvalConfig defaults are the tiny evaluators
        compression={},                               # the CompressionConfig defaults are the tiny ones
        fig3={"steps": None, "sizes": _FIG3_TINY_SIZES},         # the comparison models' 2,800 steps
        sr={},                                        # the SRConfig defaults are the tiny super-resolution sizes
        depth={}),                                    # the DepthConfig defaults are the tiny depth sizes
    # the smoke sizes, on CUDA
    "gpu-smoke": replace(
        _SMOKE, name="gpu-smoke", device="cuda",
        description="the smoke sizes on one CUDA GPU: every notebook in minutes (GPU CI, make gpu-check)",
        runtime="make gpu-check at these sizes: 27 s on one H100 (features 5 s, training 1 s, evaluators 6 s; "
                "results/gpu-check); every notebook not timed on a GPU yet"),
    # [open] What one GPU does in minutes for the comparison notebooks (issue 15): the tiny data, autoencoder and
    # evaluators; evaluation at adequate n (2,000 test / 500 validation captions, disjoint, from 5,000 test
    # scenes); comparison models twice as wide as tiny's (2.2M generator parameters) at 4x its batch, so that
    # Table 3 with 4 seeds fits minutes of one GPU with workers sharing it (measured: 36 jobs in 5.5 min, 12 workers).
    "gpu-short": Profile(
        "gpu-short", "minutes on one GPU: the tiny data and evaluators, comparison models 2x wider at 4x the batch, "
        "evaluated at n = 2,000", "cuda",
        "Table 3 with 4 seeds: measured on one H200 (results/table3-gpu-short/README.md); other artifacts not timed",
        config={"data.num_test": 5000},
        experiment={"flow.width": 128, "flow.depth": 4, "flow.heads": 4, "text_ve.width": 128, "text_ve.ffn": 256,
                    "train.steps": 500, "train.batch_size": 256, "train.warmup_steps": 50, "train.log_every": 10,
                    "train.ckpt_every": 100, "sample.steps": 25},
        eval_sizes={"n_val": 500, "n_test": 2000},
        evaluators={"threads": 0},
        fig3={"steps": 300, "sizes": _FIG3_SMALL_SIZES}),
    "gpu": Profile(
        "gpu", "one 80 GB GPU: each artifact a real step up from tiny on the same 32x32 domain", "cuda",
        "estimated 6.3 GPU-hours of network compute for every artifact on one H100 at the rate make gpu-check "
        "measured, plus data and evaluation overhead (results/estimate-gpu/estimate.md: per artifact, and how)",
        # [open] 5x the scenes, a 4x wider autoencoder, a ~35M-parameter flow network (width 384, depth 12)
        # and a 3M-parameter Text VE, batch 256 for 40K steps in bf16 (the paper's precision).
        config={"data.num_train": 60000, "data.num_test": 5000,
                "autoencoder.block_out_channels": (32, 64, 64), "autoencoder.steps": 6000,
                "autoencoder.batch_size": 128,
                "text_ve.width": 256, "text_ve.depth": 4, "text_ve.heads": 8, "text_ve.ffn": 1024,
                "flow.width": 384, "flow.depth": 12, "flow.heads": 6,
                "train.steps": 40000, "train.batch_size": 256, "train.lr": 3e-4, "train.warmup_steps": 1000,
                "train.ema_decay": 0.9999, "train.mixed_precision": "bf16", "train.log_every": 100,
                "train.ckpt_every": 2000},
        # comparison models (Table 3 / Table 1): ~9M parameters, 10K steps at batch 256
        experiment={"flow.width": 256, "flow.depth": 8, "flow.heads": 4, "text_ve.width": 128, "text_ve.ffn": 512,
                    "train.steps": 10000, "train.warmup_steps": 500, "train.log_every": 50,
                    "train.ckpt_every": 1000, "sample.steps": 25},
        eval_sizes={"n_val": 500, "n_test": 2000},
        evaluators={"fid_samples": 5000, "n_prompts": 200, "threads": 0},
        compression={"steps": 5000, "batch_size": 512},
        fig3={"steps": 5000, "sizes": {
            "XS": {"flow.width": 64, "flow.depth": 4, "flow.heads": 4, "text_ve.width": 64, "text_ve.ffn": 256},
            "S": {"flow.width": 128, "flow.depth": 6, "flow.heads": 4, "text_ve.width": 128, "text_ve.ffn": 512},
            "M": {"flow.width": 192, "flow.depth": 8, "flow.heads": 6, "text_ve.width": 128, "text_ve.ffn": 512},
            "L": {"flow.width": 256, "flow.depth": 10, "flow.heads": 8, "text_ve.width": 256, "text_ve.ffn": 1024},
            "XL": {"flow.width": 384, "flow.depth": 12, "flow.heads": 6, "text_ve.width": 256, "text_ve.ffn": 1024},
        }}),
    "paper": Profile(
        "paper", "the paper's sizes and recipe (0.95B flow network, COCO, CLIP, SD-VAE); many GPUs", "cuda",
        "the paper's budget (300K steps at batch 1024 on many GPUs); here it is only built, counted and stepped",
        config=_PAPER_CONFIG,
        # the paper's ablation model is its 70M one: width 512, depth 15 of our DiT stand-in at patch 2 (72M)
        experiment={"flow.width": 512, "flow.depth": 15, "flow.heads": 8},
        eval_sizes={"n_val": 1000, "n_test": 10000},
        evaluators={"clip_model": "openai/clip-vit-large-patch14", "fid_backend": "inception", "threads": 0},
        compression={"steps": 20000, "batch_size": 1024},
        fig3={"steps": None, "sizes": {
            "70M": {"flow.width": 512, "flow.depth": 15, "flow.heads": 8},
            "0.95B": {"flow.width": 1280, "flow.depth": 32, "flow.heads": 16}}}),
}

PROFILES: Mapping[str, Profile] = MappingProxyType(_PROFILES)

PROFILE_NAMES = tuple(PROFILES)


def get_profile(name: str) -> Profile:
    """The registry entry of ``name``; "custom" (a hand-made config) reads the tiny sizes."""
    if name == "custom":
        name = "tiny"
    if name not in PROFILES:
        import difflib
        close = difflib.get_close_matches(name, PROFILE_NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown profile '{name}'{hint} (known: {', '.join(PROFILE_NAMES)})")
    return PROFILES[name]
