"""Training: one readable function on HF accelerate.

``train(cfg, features, out_dir)`` trains the Text VE and the flow network jointly from scratch (or the noise
baseline, or any ablation: the config decides), keeps an EMA, logs metrics to ``metrics.jsonl``, writes
self-describing checkpoints atomically and resumes from the last one. It reads cached text embeddings and image
latents (:class:`crossflow.features.Features`), as the released code does, so no frozen encoder runs per step.

Determinism: every random draw of step ``s`` comes from generators seeded by (seed, s, process), so a run that
is killed and resumed from a checkpoint ends with exactly the weights of an uninterrupted run.
Multi-process data parallelism (``accelerate launch``) needs no change here: each process takes its slice of
the same global batch, and accelerate averages the gradients.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config, config_from_dict, to_dict
from .models import CrossFlow
from .utils import REPO_ROOT, atomic_path, write_json

CKPT = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; nothing was written for that step."""


def code_version() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except Exception:
        from importlib.metadata import version
        return f"crossflow-repro {version('crossflow-repro')}"


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------

def save_checkpoint(path, *, model, ema, optimizer, scheduler, step: int, cfg: Config, dims: dict,
                    train_seconds: float = 0.0) -> None:
    """Everything needed to resume or to rebuild the model alone, written atomically."""
    state = {
        "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
        "train_seconds": train_seconds,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "config": to_dict(cfg), "dims": dims, "code_version": code_version(), "torch": torch.__version__,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(run_dir_or_ckpt, ema: bool = True) -> tuple[CrossFlow, Config, dict]:
    """Rebuild a trained model from its checkpoint alone (config and dims are inside). Returns (model, cfg, ckpt)."""
    path = Path(run_dir_or_ckpt)
    path = path / CKPT if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (crossflow.train.train)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = config_from_dict(ckpt["config"])
    model = CrossFlow(cfg, **ckpt["dims"])
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.eval(), cfg, ckpt


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    model: CrossFlow                   # EMA weights, eval mode: what sampling should use
    raw_model: CrossFlow               # the optimised weights
    history: list = field(default_factory=list)
    out_dir: Path | None = None
    step: int = 0
    train_seconds: float = 0.0         # wall time spent in training steps, summed over resumed runs


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step) * 97 + int(stream))


def _without_steps(d: dict) -> dict:
    """What must match to resume: everything but train.steps and the sampling settings (not used in training)."""
    d = to_dict(config_from_dict(d))                      # fill fields added since the checkpoint was written
    return {**{k: v for k, v in d.items() if k != "sample"},
            "train": {k: v for k, v in d["train"].items() if k != "steps"}}


def phase_at(step: int, tc) -> str:
    """Which loss terms step ``step`` trains (crossflow.flow.PHASES): Table 3e's schedules."""
    if step < tc.ve_pretrain_steps:
        return "ve"
    return "flow" if tc.freeze_text_ve else "joint"


def _read_history(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def train(cfg: Config, features, out_dir, *, resume: bool = True, stop_at: int | None = None,
          progress: bool = True, accelerator=None) -> TrainResult:
    """Train ``cfg`` on ``features`` into ``out_dir``; resume from ``out_dir/checkpoint.pt`` when present.

    ``stop_at`` ends the run early after that step (with a checkpoint), as if it had been interrupted.
    """
    from accelerate import Accelerator

    tc = cfg.train
    out_dir = Path(out_dir)
    # Mixed precision is applied by our own autocast (below), not by the Accelerator, so that runs with different
    # configs can follow each other in one process (accelerate's state is a process-wide singleton).
    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    amp = {"device_type": acc.device.type, "dtype": torch.bfloat16, "enabled": tc.mixed_precision == "bf16"}
    rank, world = acc.process_index, acc.num_processes
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size={tc.batch_size} is not divisible by the {world} processes")
    local_bs = tc.batch_size // world
    if tc.ve_pretrain_steps and world > 1:
        raise ValueError("2-stage training (train.ve_pretrain_steps > 0) runs in one process only: its stages "
                         "train different parameter sets, which DistributedDataParallel does not allow")
    dims = {"text_dim": features.x.shape[-1], "n_tokens": features.x.shape[1]}

    torch.manual_seed(tc.seed)                            # same initial weights on every process
    model = CrossFlow(cfg, **dims)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    warm = max(1, tc.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))   # [paper] warm-up, then constant

    start, spent, ckpt_path, log_path = 0, 0.0, out_dir / CKPT, out_dir / "metrics.jsonl"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if _without_steps(ckpt["config"]) != _without_steps(to_dict(cfg)):
            raise ValueError(f"{ckpt_path} was written by a different config (only train.steps and sample.* may "
                             f"change on resume); use another out_dir, or resume=False to start over")
        model.load_state_dict(ckpt["model"]), ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"]), sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"]), np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        start, spent = ckpt["step"], ckpt.get("train_seconds", 0.0)
    history = _read_history(log_path, start)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", to_dict(cfg))
        with atomic_path(log_path) as tmp:                # drop log lines past the checkpoint we resume from
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history))

    model, opt = acc.prepare(model, opt)
    ema = ema.to(acc.device)
    feats = features.to_device(acc.device) if hasattr(features, "to_device") else features
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)
    bar = tqdm(range(start, end), initial=start, total=tc.steps, desc=f"train {cfg.name}",
               disable=not (progress and acc.is_main_process))
    t_start = time.time()
    for step in bar:
        phase = phase_at(step, tc)
        model.train()
        for module in acc.unwrap_model(model).encoder_modules() if phase == "flow" else ():
            module.eval().requires_grad_(False)           # 2-stage separate: the pre-trained Text VE is frozen
        # the global batch is the same on every process; each takes its slice
        g = _step_generator(tc.seed, step, 0)
        batch = feats.batch(g, tc.batch_size, slice(rank * local_bs, (rank + 1) * local_bs))
        torch.manual_seed(tc.seed * 1_000_003 + step * 97 + 1 + rank)   # dropout
        with torch.autocast(**amp):
            loss, terms = model(batch, _step_generator(tc.seed, step, 1 + rank), phase)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step} (terms {terms}). Nothing was saved for this step; the last "
                f"checkpoint in {out_dir} is intact. Try a lower train.lr, train.grad_clip > 0, or "
                f"objective.kl_form='code'.")
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        if tc.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        decay = min(tc.ema_decay, (1 + step) / (10 + step)) if tc.ema_warmup else tc.ema_decay
        with torch.no_grad():                             # EMA of all weights (Text VE, net, towers)
            for pe, pm in zip(ema.parameters(), acc.unwrap_model(model).parameters()):
                pe.lerp_(pm.detach(), 1 - decay)

        done = step + 1
        if done % tc.log_every == 0 or done == end:
            row = {"step": done, "loss": loss.item(), **terms, "lr": sched.get_last_lr()[0], "phase": phase}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", phase=phase)
            if acc.is_main_process:
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
        if done % tc.ckpt_every == 0 or done == end:
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_checkpoint(ckpt_path, model=acc.unwrap_model(model), ema=ema, optimizer=opt,
                                scheduler=sched, step=done, cfg=cfg, dims=dims,
                                train_seconds=spent + time.time() - t_start)
    bar.close()
    return TrainResult(model=ema, raw_model=acc.unwrap_model(model), history=history, out_dir=out_dir,
                       step=max(start, end), train_seconds=spent + time.time() - t_start)
