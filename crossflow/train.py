"""Training: one readable function on HF accelerate.

``train(cfg, features, out_dir)`` trains the Text VE and the flow network jointly from scratch (or the noise
baseline, or any ablation: the config decides), keeps an EMA, logs metrics to ``metrics.jsonl``, writes
self-describing checkpoints atomically and resumes from the last one. It reads the task's (source, target) pairs
(:class:`crossflow.pairs.PairData`; for text-to-image the cached text embeddings and image latents of
:class:`crossflow.features.Features`, as the released code does), so no frozen encoder runs per step.

Determinism: every random draw of step ``s`` comes from CPU generators seeded by (seed, s, process, micro-batch)
and is moved to the device, so a run that is killed and resumed from a checkpoint ends with exactly the weights
of an uninterrupted run, and a GPU run draws the same batches, times and noise as a CPU run.

Devices: one process trains on ``crossflow.device.default_device()`` ($CROSSFLOW_DEVICE, default CUDA when
there is one). Multi-process data parallelism needs no change here: ``accelerate launch`` or ``torchrun`` start
``python -m crossflow.train --profile P --out DIR [key=value ...]`` (see :func:`main`); each process takes its
slice of the same global batch, accelerate averages the gradients, the logged loss is averaged over processes,
and a non-finite loss on any process stops every process with the same error. ``train.grad_accum`` splits each
process's slice into micro-batches whose gradients are summed before the one optimizer step.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from .progress import tqdm

from .config import Config, config_from_dict, get_config, to_dict
from .device import default_device, resolve_device
from .models import CrossFlow
from .tasks import get_task, task_of
from .integrity import checked_write, load_checked, stored_checksum
from .utils import REPO_ROOT, atomic_path, file_lock, record_provenance, remove_orphans, write_json

CKPT = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; nothing was written for that step."""


# what counts as code for the "-dirty" mark: a run rewriting results/ (or a README edit) is not a code change
CODE_PATHS = ("crossflow", "reproduce", "notebooks", "pyproject.toml", "constraints-cpu.txt", "Makefile")


def code_version() -> str:
    """The commit, with "-dirty" if the code (CODE_PATHS, not results/) differs from it."""
    try:
        git = ["git", "-C", str(REPO_ROOT)]
        rev = subprocess.check_output([*git, "describe", "--always"], stderr=subprocess.DEVNULL, text=True).strip()
        changed = subprocess.check_output([*git, "status", "--porcelain", "--", *CODE_PATHS],
                                          stderr=subprocess.DEVNULL, text=True).strip()
        return rev + ("-dirty" if changed else "")
    except Exception:
        from importlib.metadata import version
        return f"crossflow-repro {version('crossflow-repro')}"


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------

def save_checkpoint(path, *, model, ema, optimizer, scheduler, step: int, cfg: Config, dims: dict,
                    train_seconds: float = 0.0) -> None:
    """Everything needed to resume or to rebuild the model alone, written atomically with its sha256 beside it."""
    state = {
        "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
        "train_seconds": train_seconds,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "config": to_dict(cfg), "dims": dims, "code_version": code_version(), "torch": torch.__version__,
    }
    with checked_write(path) as tmp, open(tmp, "wb") as f:   # a file object: no temporary name in the archive
        torch.save(state, f)


def read_checkpoint(path) -> dict:
    """A checkpoint's contents (on the CPU), after its checksum is verified: IntegrityError names a damaged one."""
    return load_checked(path, lambda p: torch.load(p, map_location="cpu", weights_only=False), "checkpoint")


def load_model(run_dir_or_ckpt, ema: bool = True, map_location=None) -> tuple[CrossFlow, Config, dict]:
    """Rebuild a trained model from its checkpoint alone (config and dims are inside). Returns (model, cfg, ckpt)
    with the model on ``map_location`` (default: crossflow.device.default_device()); a checkpoint written on a
    GPU loads on a CPU and the other way round."""
    path = Path(run_dir_or_ckpt)
    path = path / CKPT if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (crossflow.train.train)")
    device = resolve_device(map_location)
    ckpt = read_checkpoint(path)
    record_provenance("checkpoints", str(path), stored_checksum(path))
    task = get_task(ckpt["config"].get("task", "t2i")).impl()
    cfg = task.config_from_dict(ckpt["config"])
    model = task.model_from_dims(cfg, ckpt["dims"])
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.to(device).eval(), cfg, ckpt


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


def _step_seed(seed: int, step: int, stream: int) -> int:
    return int(seed) * 1_000_003 + int(step) * 97 + int(stream)


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(_step_seed(seed, step, stream))


# ----------------------------------------------------------------------------------------------------------
# The pieces of one training step: train() runs them, and so do TrainStep (benchmarks) and make bench
# ----------------------------------------------------------------------------------------------------------

def forward_loss(model, batch: dict, tc, step: int, stream: int, phase: str, amp: dict):
    """The loss of one (micro-)batch: dropout seeded by (seed, step, stream), the step's generator for the
    objective's draws, under the recipe's autocast. Returns (loss, terms)."""
    torch.manual_seed(_step_seed(tc.seed, step, stream))     # dropout
    with torch.autocast(**amp):
        return model(batch, _step_generator(tc.seed, step, stream), phase)


def ema_decay(step: int, tc) -> float:
    """The EMA decay after ``step`` ([open] warm-up: min(ema_decay, (1 + t) / (10 + t)))."""
    return min(tc.ema_decay, (1 + step) / (10 + step)) if tc.ema_warmup else tc.ema_decay


def update_ema(ema_params: list, raw_params: list, decay: float) -> None:
    """EMA of all weights in one call (bit-identical to the per-parameter loop)."""
    with torch.no_grad():
        torch._foreach_lerp_(ema_params, raw_params, 1 - decay)


def autocast_args(device, tc) -> dict:
    return {"device_type": torch.device(device).type, "dtype": torch.bfloat16, "enabled": tc.mixed_precision == "bf16"}


class TrainStep:
    """One step of :func:`train` in one process, for timing it (``make bench``, Table 1's cost ratios): the same
    model construction (through the task), optimizer, forward_loss, gradient clipping, AdamW step and EMA update,
    without the run folder, logging or checkpoints. ``step()`` draws its batch like train() does."""

    def __init__(self, cfg, features, device, seed: int | None = None):
        tc = cfg.train
        check_compile(tc, device)
        self.cfg, self.tc, self.device = cfg, tc, torch.device(device)
        self.feats = features.to_device(self.device) if hasattr(features, "to_device") else features
        torch.manual_seed(tc.seed if seed is None else seed)
        self.model = task_of(cfg).impl().build_model(cfg, features)[0].to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.opt = build_optimizer(self.model.parameters(), tc)
        self.sched = build_scheduler(self.opt, tc)
        if tc.compile:
            self.model.net.compile()
        self.ema_params = list(self.ema.parameters())
        self.raw_params = [p.detach() for p in self.model.parameters()]
        self.amp = autocast_args(self.device, tc)
        self.step_i = 0

    def batch(self) -> dict:
        return self.feats.batch(_step_generator(self.tc.seed, self.step_i, 0), self.tc.batch_size)

    def forward_backward(self, batch: dict):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss, _ = forward_loss(self.model, batch, self.tc, self.step_i, 1, "joint", self.amp)
        loss.backward()
        return loss

    def optimizer(self) -> None:
        if self.tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.opt.step()
        self.sched.step()

    def ema_update(self) -> None:
        update_ema(self.ema_params, self.raw_params, ema_decay(self.step_i, self.tc))

    def step(self):
        loss = self.forward_backward(self.batch())
        self.optimizer()
        self.ema_update()
        self.step_i += 1
        return loss


def _accelerator():
    """accelerate's Accelerator on crossflow's device (a launcher's environment decides under accelerate launch /
    torchrun). Mixed precision stays ours (``train.mixed_precision``, autocast in the loop), so the config alone
    says how a run was trained."""
    from accelerate import Accelerator
    device = default_device()
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device.index)
    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")


def _micro_batch(batch: dict, part: slice) -> dict:
    """Rows ``part`` of every per-sample tensor of a batch (the empty-prompt embedding is shared)."""
    return {k: v if k.startswith("null_") else v[part] for k, v in batch.items()}


class _FiniteWatch:
    """Watches the loss for NaN/inf without a host synchronisation per step on an accelerator.

    ``see`` records the first non-finite step on the device (no sync); ``check`` reads it (a sync), and raises
    NonFiniteLossError on every process if any one saw a non-finite loss (all processes call it at the same
    steps, so none waits forever in a collective). On the CPU, where reading costs nothing, the train loop checks
    every step before the backward pass; on a GPU at logging and checkpoint steps, so nothing non-finite is ever
    written to a checkpoint."""

    def __init__(self, acc):
        self.acc = acc
        self.first_bad = torch.full((), -1, dtype=torch.long, device=acc.device)
        self.last_loss, self.last_terms = None, {}

    def see(self, loss, terms: dict, step: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)
        self.last_loss, self.last_terms = loss, terms

    def check(self, ckpt_path: Path) -> None:
        acc = self.acc
        flags = torch.stack([(self.first_bad >= 0).float(), self.first_bad.float()])
        n_bad = int(flags[0].item())
        if acc.num_processes > 1:
            n_bad = int(acc.reduce(flags[:1].clone(), "sum").item())
        if not n_bad:
            return
        where = "" if acc.num_processes == 1 else f" on {n_bad} of {acc.num_processes} processes"
        step = int(flags[1].item())
        saved = (f"the last checkpoint in {ckpt_path.parent} is intact" if ckpt_path.exists()
                 else "no checkpoint had been written yet")
        terms = {k: float(v) for k, v in self.last_terms.items()}
        at = f"at step {step}" if step >= 0 else "on another process"
        raise NonFiniteLossError(
            f"loss is not finite{where} {at} (this process: {float(self.last_loss.detach())}, terms {terms}). "
            f"Nothing was saved for this step; {saved}. Try a lower train.lr, train.grad_clip > 0, or "
            f"objective.kl_form='code'.")


def _differences(a: dict, b: dict, prefix: str = "") -> dict:
    """{dotted key: (a's value, b's value)} where two nested config dicts differ."""
    out = {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(_differences(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out[f"{prefix}{k}"] = (va, vb)
    return out


# train.* fields that may change when a run resumes: its length and where its curves are shown
RESUMABLE_TRAIN_KEYS = ("steps", "tensorboard")


def _without_steps(d: dict, from_dict=config_from_dict) -> dict:
    """What must match to resume: everything but RESUMABLE_TRAIN_KEYS and the sampling settings."""
    d = to_dict(from_dict(d))                             # fill fields added since the checkpoint was written
    return {**{k: v for k, v in d.items() if k != "sample"},
            "train": {k: v for k, v in d["train"].items() if k not in RESUMABLE_TRAIN_KEYS}}


def _tensorboard(out_dir: Path, cfg: Config):
    """accelerate's TensorBoard tracker writing to ``out_dir/tensorboard`` (``train.tensorboard=True``)."""
    try:
        import tensorboard  # noqa: F401
        from accelerate.tracking import TensorBoardTracker
    except ImportError as e:
        raise ImportError("train.tensorboard=True needs the tensorboard package: pip install -e '.[tensorboard]' "
                          "(or set train.tensorboard=False; metrics.jsonl is written either way)") from e
    tracker = TensorBoardTracker("tensorboard", out_dir)
    if hasattr(tracker, "start"):                         # newer accelerate starts trackers lazily
        tracker.start()
    flat = {}
    for section, values in to_dict(cfg).items():
        for k, v in (values.items() if isinstance(values, dict) else [("", values)]):
            flat[f"{section}.{k}".rstrip(".")] = v if isinstance(v, (int, float, str, bool)) else str(v)
    tracker.store_init_configuration(flat)
    return tracker


def build_optimizer(params, tc) -> torch.optim.AdamW:
    """AdamW of the recipe ``tc`` (a TrainConfig): torch's default (foreach) kernel, or the fused one."""
    return torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay,
                             fused=True if tc.fused_optimizer else None)


def build_scheduler(opt, tc) -> torch.optim.lr_scheduler.LambdaLR:
    """[paper] linear warm-up over train.warmup_steps, then constant."""
    warm = max(1, tc.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))


def check_compile(tc, device) -> None:
    """Refuse ``train.compile`` with bf16 on a CPU (non-finite gradients with this torch's inductor)."""
    if tc.compile and tc.mixed_precision == "bf16" and torch.device(device).type == "cpu":
        raise ValueError(
            "train.compile=True with train.mixed_precision='bf16' on a CPU is refused: with torch "
            f"{torch.__version__} inductor's vectorised bf16 CPU kernels give non-finite gradients from the first "
            "step (measured on the tiny recipe). Use one of the two: bf16 without compiling (the fast CPU step, "
            "crossflow.profiles.FAST_STEP) or compiling in fp32.")


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
    """Train ``cfg`` on ``features`` (the task's :class:`crossflow.pairs.PairData`) into ``out_dir``; resume from ``out_dir/checkpoint.pt`` when present.

    ``stop_at`` ends the run early after that step (with a checkpoint), as if it had been interrupted.
    One run per folder: a second process that trains into ``out_dir`` meanwhile is refused (LockedError with
    the holder's PID); under a launcher only the main process (RANK 0) takes the lock.
    """
    main = (accelerator.is_main_process if accelerator is not None else int(os.environ.get("RANK", "0")) == 0)
    if not main:
        return _train(cfg, features, out_dir, resume=resume, stop_at=stop_at, progress=progress,
                      accelerator=accelerator)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir, blocking=False, what="run folder", lock=Path(out_dir) / ".lock"):
        return _train(cfg, features, out_dir, resume=resume, stop_at=stop_at, progress=progress,
                      accelerator=accelerator)


def _train(cfg: Config, features, out_dir, *, resume: bool, stop_at: int | None, progress: bool,
           accelerator) -> TrainResult:
    """The training loop of :func:`train` (which holds the run folder's lock around it)."""
    tc = cfg.train
    out_dir = Path(out_dir)
    # Mixed precision is applied by our own autocast (below), not by the Accelerator, so that runs with different
    # configs can follow each other in one process (accelerate's state is a process-wide singleton).
    acc = accelerator or _accelerator()
    amp = autocast_args(acc.device, tc)
    rank, world, accum = acc.process_index, acc.num_processes, tc.grad_accum
    if tc.batch_size % (world * accum):
        raise ValueError(f"train.batch_size={tc.batch_size} is not divisible by the {world} processes x "
                         f"train.grad_accum={accum} micro-batches")
    local_bs = tc.batch_size // world
    micro_bs = local_bs // accum
    if acc.distributed_type.value in ("FSDP", "DEEPSPEED"):
        raise NotImplementedError(
            f"train() does not support {acc.distributed_type.value} yet: its EMA and its single-file checkpoints "
            f"hold full (unsharded) tensors. Use DDP (configs/accelerate/ddp_bf16.yaml): the 0.95B paper preset "
            f"fits one 80 GB GPU per process, with train.grad_accum for the global batch.")
    if tc.ve_pretrain_steps and world > 1:
        raise ValueError("2-stage training (train.ve_pretrain_steps > 0) runs in one process only: its stages "
                         "train different parameter sets, which DistributedDataParallel does not allow")
    check_compile(tc, acc.device)                         # before anything is written
    task = task_of(cfg).impl()                           # text-to-image, super-resolution, ... (crossflow.tasks)
    torch.manual_seed(tc.seed)                            # same initial weights on every process
    model, dims = task.build_model(cfg, features)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = build_optimizer(model.parameters(), tc)
    sched = build_scheduler(opt, tc)

    start, spent, ckpt_path, log_path = 0, 0.0, out_dir / CKPT, out_dir / "metrics.jsonl"
    if resume and ckpt_path.exists():
        ckpt = read_checkpoint(ckpt_path)
        old, new = (_without_steps(d, task.config_from_dict) for d in (ckpt["config"], to_dict(cfg)))
        if old != new:
            diff = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in _differences(old, new).items())
            raise ValueError(f"{ckpt_path} was written by a different config ({diff}; only train.steps and sample.* "
                             f"may change on resume); use another out_dir, or resume=False to start over")
        limit, what = (tc.steps, "train.steps") if stop_at is None or stop_at >= tc.steps else (stop_at, "stop_at")
        if ckpt["step"] > limit:
            raise ValueError(f"{ckpt_path} is at step {ckpt['step']}, past {what}={limit}: nothing to train, and "
                             f"the run folder is left as it is. Load it with load_model({str(out_dir)!r}), raise "
                             f"{what}, or use another out_dir (or resume=False) to train {limit} steps")
        model.load_state_dict(ckpt["model"]), ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"]), sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"]), np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        start, spent = ckpt["step"], ckpt.get("train_seconds", 0.0)
    history = _read_history(log_path, start)
    if acc.is_main_process and out_dir.exists():          # temporary files of a run killed mid-write
        remove_orphans(out_dir, (CKPT, "metrics.jsonl", "config.json"))
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", to_dict(cfg))
        with atomic_path(log_path) as tmp:                # drop log lines past the checkpoint we resume from
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history))

    if tc.compile:                                        # in place: state_dict keys stay the same
        model.net.compile()
    model, opt = acc.prepare(model, opt)
    ema = ema.to(acc.device)
    ema_params = list(ema.parameters())
    raw_params = [p.detach() for p in acc.unwrap_model(model).parameters()]
    watch = _FiniteWatch(acc)
    tracker = _tensorboard(out_dir, cfg) if tc.tensorboard and acc.is_main_process else None
    check_each_step = acc.device.type == "cpu"            # reading a CPU tensor is free; a GPU's is a sync
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
        # the global batch is the same on every process; each takes its slice, then its micro-batches
        g = _step_generator(tc.seed, step, 0)
        batch = feats.batch(g, tc.batch_size, slice(rank * local_bs, (rank + 1) * local_bs))
        opt.zero_grad(set_to_none=True)
        step_loss, step_terms = 0.0, {}
        for micro in range(accum):
            mb = batch if accum == 1 else _micro_batch(batch, slice(micro * micro_bs, (micro + 1) * micro_bs))
            stream = 1 + rank + world * micro                # micro-batch 0 draws what a step without accumulation draws
            loss, terms = forward_loss(model, mb, tc, step, stream, phase, amp)
            watch.see(loss, terms, step)
            if check_each_step:                           # before backward: nothing of this step is applied
                watch.check(out_dir / CKPT)
            # accumulate locally; DDP averages the gradients over processes at the last micro-batch only
            sync = acc.no_sync(model) if world > 1 and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                acc.backward(loss if accum == 1 else loss / accum)
            if accum == 1:
                step_loss, step_terms = loss, terms
            else:
                step_loss = step_loss + loss.detach() / accum
                step_terms = {k: step_terms.get(k, 0.0) + v / accum for k, v in terms.items()}
        loss, terms = step_loss, step_terms
        if tc.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        update_ema(ema_params, raw_params, ema_decay(step, tc))   # all weights (Text VE, net, towers)

        done = step + 1
        log_now = done % tc.log_every == 0 or done == end
        ckpt_now = done % tc.ckpt_every == 0 or done == end
        if not check_each_step and (log_now or ckpt_now):
            watch.check(out_dir / CKPT)                   # the only host synchronisations: logging, checkpoints
        if log_now:
            if world > 1:                                 # the mean over processes (every process calls this)
                vals = torch.stack([torch.as_tensor(v, device=acc.device).float().reshape(())
                                    for v in (loss.detach(), *terms.values())])
                vals = acc.reduce(vals, "mean").tolist()
                loss, terms = vals[0], dict(zip(terms, vals[1:]))
            loss = float(loss.detach()) if torch.is_tensor(loss) else loss
            terms = {k: float(v) for k, v in terms.items()}
            row = {"step": done, "loss": loss, **terms, "lr": sched.get_last_lr()[0], "phase": phase}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", phase=phase)
            if acc.is_main_process:
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if tracker is not None:                       # live curves; metrics.jsonl stays the record
                tracker.log({k: v for k, v in row.items() if isinstance(v, float)}, step=done)
        if ckpt_now:
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_checkpoint(ckpt_path, model=acc.unwrap_model(model), ema=ema, optimizer=opt,
                                scheduler=sched, step=done, cfg=cfg, dims=dims,
                                train_seconds=spent + time.time() - t_start)
    bar.close()
    if tracker is not None:
        tracker.finish()
    if ckpt_path.exists():
        record_provenance("checkpoints", str(ckpt_path), stored_checksum(ckpt_path))
    return TrainResult(model=ema, raw_model=acc.unwrap_model(model), history=history, out_dir=out_dir,
                       step=max(start, end), train_seconds=spent + time.time() - t_start)


# ----------------------------------------------------------------------------------------------------------
# Command line: the same train() under one process, accelerate launch or torchrun
# ----------------------------------------------------------------------------------------------------------

def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SystemExit(f"override '{text}' is not key=value (e.g. train.steps=500)")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value                       # a bare string, e.g. text.model=/path/to/minilm


def main(argv=None) -> TrainResult:
    """``python -m crossflow.train --profile P --out DIR [key=value ...]``

    One process: trains on $CROSSFLOW_DEVICE (default CUDA when present). Several: ``accelerate launch
    --config_file configs/accelerate/ddp_bf16.yaml -m crossflow.train ...`` or ``torchrun --nproc_per_node N
    -m crossflow.train ...``. The features (scenes, autoencoder, caption embeddings) are built once, by the main
    process, before the others read them from the cache. An accelerate config asking for bf16 sets
    ``train.mixed_precision=bf16`` (recorded in the run's config.json); fp16 is refused.
    """
    from .config import PRESETS
    from .features import prepare_features

    ap = argparse.ArgumentParser(prog="python -m crossflow.train", description=main.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", choices=PRESETS)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, metrics.jsonl, config.json)")
    ap.add_argument("--no-resume", action="store_true", help="start over even if DIR holds a checkpoint")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    a = ap.parse_args(argv)
    overrides = dict(_parse_override(o) for o in a.overrides)
    launcher_mp = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if launcher_mp == "fp16":
        raise SystemExit("the accelerate config asks for fp16; CrossFlow trains in bf16 or fp32 "
                         "(set mixed_precision: bf16 or no)")
    if launcher_mp == "bf16":
        overrides.setdefault("train.mixed_precision", "bf16")
    cfg = get_config(a.profile, overrides)
    acc = _accelerator()
    acc.print(f"[train] profile {a.profile}: {acc.num_processes} process(es) on {acc.device.type}, global batch "
              f"{cfg.train.batch_size} (grad_accum {cfg.train.grad_accum}), precision {cfg.train.mixed_precision}, "
              f"-> {a.out}")
    with acc.main_process_first():                      # built once; the others then hit the cache
        feats = prepare_features(cfg, progress=acc.is_main_process, device=acc.device)
    result = train(cfg, feats, a.out, resume=not a.no_resume, accelerator=acc)
    last = result.history[-1] if result.history else {}
    acc.print(f"[train] done: step {result.step}, loss {last.get('loss', float('nan')):.4f}, "
              f"{result.train_seconds / 60:.1f} min; checkpoint {Path(a.out) / CKPT}")
    return result


if __name__ == "__main__":
    main()
