"""Many small runs of the one training function, evaluated the same way: the machinery of the comparison
notebooks (Table 3 ablations, Table 1 baseline, Figure 3 scaling).

A :class:`Job` is one row of a table at one seed: a config, the guidance settings to evaluate it with, and
optionally checkpoints to evaluate along the way. ``run_jobs(jobs)`` trains each job into its own run folder
(resumable), evaluates it with the evaluation suite and writes ``result.json`` beside the checkpoint; a job whose
``result.json`` holds the same spec is not recomputed. Jobs run in worker processes with one thread each: the
small models of these tables use a CPU core better alone than two cores together (measured in the notebooks).

Evaluation protocol (one for every table):
- a *validation* set (test-split captions ``[n_test, n_test + n_val)``) on which guidance settings are
  grid-searched: the setting with the lowest FID-domain wins;
- a *test* set (test-split captions ``[0, n_test)``) on which the chosen setting is reported: FID-domain against
  the real images of the same scenes, CLIPScore-domain, and optionally GenEval-domain on the prompt suite.
Selection never sees the test set.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from .progress import tqdm

from .config import Config, config_from_dict, to_dict
from .device import ENV_VAR as DEVICE_ENV
from .device import default_device, resolve_device, synchronize
from .profiles import get_profile
from .utils import stable_hash, write_json

# ----------------------------------------------------------------------------------------------------------
# Budgets of the comparison notebooks: per profile, in crossflow/profiles.py (``experiment``, ``eval_sizes``)
# ----------------------------------------------------------------------------------------------------------

def experiment_config(profile: str, overrides: dict | None = None) -> Config:
    """The base config of the comparison notebooks: the profile's preset + its ``experiment`` sizes + yours."""
    from .config import get_config
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
    from .models import CrossFlow, count_parameters
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


# ----------------------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Guidance:
    """One way to sample: ``kind`` "none" | "indicator" (CrossFlow CFG) | "text" (the baseline's null-text CFG) |
    "autoguidance" (an under-trained checkpoint at ``guide_fraction`` of training is the weak guide)."""
    kind: str = "none"
    scale: float = 1.0
    guide_fraction: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "none"
        g = f", guide at {self.guide_fraction:g} of training" if self.kind == "autoguidance" else ""
        return f"{self.kind} {self.scale:g}{g}"


@dataclass(frozen=True)
class Job:
    row: str                           # the table row, e.g. "a/deterministic"
    config: dict                       # to_dict(Config)
    seed: int
    run_dir: str
    guidance: tuple = (Guidance(),)    # settings grid-searched on the validation set (one = no search)
    eval_at: tuple = ()                # extra steps at which the (EMA) model is also evaluated on the test set
    geneval: bool = False              # also GenEval-domain on the prompt suite (chosen guidance)
    eval_text: dict = field(default_factory=dict)   # TextConfig of the evaluators (the CLIP score's LM)

    @property
    def cfg(self) -> Config:
        return config_from_dict(self.config)

    @property
    def eval_cfg(self) -> Config:
        """The config the evaluators are built from: the job's, with the evaluators' text encoder."""
        cfg = self.cfg
        return cfg.replace({f"text.{k}": v for k, v in self.eval_text.items()}) if self.eval_text else cfg

    def spec_hash(self) -> str:
        return stable_hash({k: v for k, v in asdict(self).items() if k != "run_dir"})


def make_job(row: str, cfg: Config, seed: int, root, guidance: Sequence[Guidance] = (Guidance(),),
             eval_at: Sequence[int] = (), geneval: bool = False, eval_cfg: Config | None = None) -> Job:
    """A job for ``cfg`` at training seed ``seed`` (``train.seed`` is replaced), run in ``root/<row>-s<seed>``."""
    cfg = cfg.replace({"train.seed": int(seed)})
    name = row.replace("/", "_").replace(" ", "_")
    return Job(row, to_dict(cfg), int(seed), str(Path(root) / f"{name}-s{seed}"), tuple(guidance),
               tuple(int(s) for s in eval_at), geneval, asdict((eval_cfg or cfg).text))


def _init_worker(gpus=None):
    """A worker process: one thread; with ``gpus`` (a queue of GPU indices) it takes one GPU for its lifetime."""
    if gpus is not None:                                 # before CUDA is initialised in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
        os.environ[DEVICE_ENV] = "cuda"
    torch.set_num_threads(1)
    os.environ["TQDM_DISABLE"] = "1"                     # the parent shows one bar over jobs
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def run_jobs(jobs: Sequence[Job], workers: int = 2, log=None, force: bool = False) -> list[dict]:
    """Run every job (results in the order given). ``workers`` > 1: that many one-thread processes on the CPU;
    on CUDA (crossflow.device.default_device()) one worker per visible GPU instead, whatever ``workers`` says.

    Finished jobs (``result.json`` with the same spec) are read back, not rerun; interrupted ones resume
    from their last checkpoint. ``log``: a file path that gets one line per finished job (tail -f it)."""
    todo = [j for j in jobs if force or load_result(j) is None]
    from .evaluate import load_evaluators
    for j in todo:                                       # warm the caches once here, not in every worker
        _features(j.cfg)
    for text in {json.dumps(j.eval_text, sort_keys=True) for j in todo}:
        j = next(j for j in todo if json.dumps(j.eval_text, sort_keys=True) == text)
        load_evaluators(j.eval_cfg, progress=False)
    _CACHE.clear()
    done: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="jobs")

    def finish(job, res):
        done[job.run_dir] = res
        bar.update(1)
        if log:
            with open(log, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {job.row} seed {job.seed}: "
                        f"{json.dumps(res['test'], default=float)} ({res['seconds']:.0f} s)\n")

    ctx, gpus = get_context("spawn"), None
    if default_device().type == "cuda":
        workers = torch.cuda.device_count()
        gpus = ctx.Queue()
        for i in range(workers):
            gpus.put(i)
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            finish(job, run_job(job, force=force))
    else:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(gpus,)) as pool:
            futures = {pool.submit(run_job, job, force): job for job in todo}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    finish(job, fut.result())
                except Exception as e:
                    raise RuntimeError(f"job {job.row} (seed {job.seed}, {job.run_dir}) failed: {e}") from e
    bar.close()
    return [done.get(j.run_dir) or load_result(j) for j in jobs]


def load_result(job: Job) -> dict | None:
    path = Path(job.run_dir) / "result.json"
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except ValueError:                                   # truncated: the job is evaluated again
        return None
    return res if res.get("spec_hash") == job.spec_hash() else None


# ----------------------------------------------------------------------------------------------------------
# One job: train, grid-search guidance on validation, evaluate on test
# ----------------------------------------------------------------------------------------------------------

_CACHE: dict = {}


def _features(cfg: Config):
    from .features import prepare_features
    d = to_dict(cfg)
    key = ("features", stable_hash({"data": d["data"], "text": d["text"], "ae": d["autoencoder"]}))
    if key not in _CACHE:
        for k in [k for k in _CACHE if k[0] == "features"]:
            del _CACHE[k]                                # one feature set in memory at a time
        _CACHE[key] = prepare_features(cfg, progress=False)
    return _CACHE[key]


def _eval_sets(cfg: Config, eval_cfg: Config):
    """(validation, test) dicts of captions and the real images' judge features, and the evaluators."""
    from .evaluate import load_evaluators
    from .features import load_scenes
    key = ("eval", stable_hash(to_dict(eval_cfg)))
    if key not in _CACHE:
        ev = load_evaluators(eval_cfg, progress=False)
        test = load_scenes(cfg, "test")
        sizes = get_profile(cfg.profile).eval_sizes
        n_test, n_val = min(sizes["n_test"], len(test) // 2), min(sizes["n_val"], len(test) // 2)
        sets = {}
        for name, idx in (("test", range(0, n_test)), ("val", range(len(test) - n_val, len(test)))):
            idx = list(idx)
            sets[name] = {"captions": [test.captions[i][0] for i in idx],
                          "ref": ev.features(test.images[idx]), "n": len(idx)}
        _CACHE[key] = (ev, sets)
    return _CACHE[key]


def sample_images(model, cfg: Config, captions: Sequence[str], g: Guidance, seed: int, guide=None):
    from .pipeline import text_to_image
    if g.kind == "autoguidance" and guide is None:
        raise ValueError("autoguidance needs the weak guide model")
    scale = g.scale if g.kind != "none" else 1.0
    return text_to_image(model, cfg, list(captions), scale=scale, seed=seed,
                         guide=guide if g.kind == "autoguidance" else None)


def evaluate_images(ev, images, captions, ref) -> dict:
    return {"fid": float(ev.fid(images, feats_b=ref)["value"]), "clip": float(ev.clip_score(images, captions)["mean"])}


def run_job(job: Job, force: bool = False) -> dict:
    """Train ``job`` (resuming), pick its guidance on validation, evaluate on test; write ``result.json``."""
    from .integrity import IntegrityError, checked_write, stored_checksum, verify
    from .train import CKPT, load_model, train
    if not force and (res := load_result(job)) is not None:
        return res
    t0 = time.time()
    cfg, run_dir = job.cfg, Path(job.run_dir)
    feats = _features(cfg)
    ev, sets = _eval_sets(cfg, job.eval_cfg)

    # training, stopping at every step something is evaluated at (guides of autoguidance, learning curves)
    fractions = sorted({g.guide_fraction for g in job.guidance if g.kind == "autoguidance"})
    stops = sorted({max(1, int(round(f * cfg.train.steps))) for f in fractions} | set(job.eval_at))
    snapshots = {}
    for s in stops:
        path = run_dir / f"step{s}.pt"
        if not path.exists():
            train(cfg, feats, run_dir, stop_at=s, progress=False)
            if (reason := verify(run_dir / CKPT)) is not None:   # copy only what its checksum vouches for
                raise IntegrityError(f"checkpoint {run_dir / CKPT}: {reason}; delete {run_dir} to rerun the job")
            with checked_write(path) as tmp:             # the copy gets its own checksum
                shutil.copyfile(run_dir / CKPT, tmp)
        snapshots[s] = path
    result = train(cfg, feats, run_dir, progress=False)
    model = result.model
    guides = {f: load_model(snapshots[max(1, int(round(f * cfg.train.steps)))])[0] for f in fractions}

    # guidance grid search on the validation set (lowest FID-domain), per kind of guidance
    search = []
    for g in job.guidance:
        imgs = sample_images(model, cfg, sets["val"]["captions"], g, seed=job.seed + 1000,
                             guide=guides.get(g.guide_fraction))
        search.append({"guidance": asdict(g), "label": g.label,
                       **evaluate_images(ev, imgs, sets["val"]["captions"], sets["val"]["ref"])})
    best_of_kind = {}
    for g, row in zip(job.guidance, search):
        if g.kind not in best_of_kind or row["fid"] < best_of_kind[g.kind][1]["fid"]:
            best_of_kind[g.kind] = (g, row)
    chosen = min(best_of_kind.values(), key=lambda gr: gr[1]["fid"])[0]

    # the test set: every kind's best setting (Table 3c reports each), GenEval for the overall best
    by_kind, sample_seconds = {}, {}
    for kind, (g, _) in best_of_kind.items():
        t_s = time.time()
        imgs = sample_images(model, cfg, sets["test"]["captions"], g, seed=job.seed, guide=guides.get(g.guide_fraction))
        sample_seconds[kind] = round((time.time() - t_s) / sets["test"]["n"], 4)
        by_kind[kind] = {"guidance": asdict(g), "label": g.label,
                         **evaluate_images(ev, imgs, sets["test"]["captions"], sets["test"]["ref"])}
    test = {k: v for k, v in by_kind[chosen.kind].items() if k in ("fid", "clip")}
    if job.geneval:
        from .data import make_prompt_suite
        specs = make_prompt_suite(cfg.data, n=ev.ecfg.n_prompts, seed=0)
        rows = [s for s in specs for _ in range(ev.ecfg.samples_per_prompt)]
        gimgs = sample_images(model, cfg, [s.caption for s in rows], chosen, seed=job.seed,
                              guide=guides.get(chosen.guide_fraction))
        gen = ev.geneval(gimgs, rows)
        test["geneval"] = gen["overall"]
        test["geneval_per_task"] = gen["per_task"]

    curve = []                                           # test metrics along training, chosen guidance
    for s, path in sorted(snapshots.items()):
        if s in job.eval_at:
            m = load_model(path)[0]
            imgs = sample_images(m, cfg, sets["test"]["captions"], chosen, seed=job.seed,
                                 guide=guides.get(chosen.guide_fraction))
            curve.append({"step": s, **evaluate_images(ev, imgs, sets["test"]["captions"], sets["test"]["ref"])})
    curve.append({"step": result.step, "fid": test["fid"], "clip": test["clip"]})

    from .models import count_parameters
    res = {
        "row": job.row, "seed": job.seed, "spec_hash": job.spec_hash(), "profile": cfg.profile,
        "test": test, "test_by_guidance": by_kind, "chosen_guidance": asdict(chosen), "chosen_label": chosen.label,
        "search": search,
        "curve": curve, "n_test": sets["test"]["n"], "n_val": sets["val"]["n"],
        "train_steps": result.step, "train_seconds": round(result.train_seconds, 1),
        "sample_seconds_per_image": sample_seconds,
        "params": {"flow": count_parameters(model.net),
                   "text_ve": count_parameters(model.text_ve) if model.text_ve is not None else 0},
        "history": [{k: r[k] for k in ("step", "loss", "fm", "phase") if k in r} for r in result.history],
        "checkpoint": str(run_dir / CKPT), "checkpoint_sha256": stored_checksum(run_dir / CKPT),
        "evaluators_sha256": {"judge": ev.judge_info.get("sha256"), "clip": ev.clip_info.get("sha256")},
        "sampler": {"solver": cfg.sample.solver, "steps": cfg.sample.steps},
        "seconds": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
    }
    write_json(run_dir / "result.json", res)
    return res


# ----------------------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------------------

def steps_to_loss(history: Sequence[dict], threshold: float, key: str = "fm", window: int = 5,
                  after: int = 0) -> int | None:
    """The first logged step (counted from ``after``) at which the running mean of ``key`` over ``window`` log
    points is at or below ``threshold``; None if never."""
    rows = [r for r in history if key in r and r["step"] > after]
    vals = np.array([r[key] for r in rows])
    for i in range(len(rows)):
        if i + 1 >= window and vals[i + 1 - window:i + 1].mean() <= threshold:
            return rows[i]["step"] - after
    return None


def final_loss(history: Sequence[dict], key: str = "fm", window: int = 5) -> float:
    vals = [r[key] for r in history if key in r]
    return float(np.mean(vals[-window:]))


def benchmark_cost(cfgs: dict, features, steps: int = 10, n_images: int = 64, scale: float = 4.0,
                   repeats: int = 3, seed: int = 0, device=None) -> dict:
    """Training-step and sampling wall time of several configs, measured in one process with interleaved repeats
    (A, B, A, B, ...) so that machine noise hits all alike; medians over repeats. Ratios are against the first
    config. Sampling: ``n_images`` of the first captions, the config's solver and steps, guidance ``scale``.
    Runs on ``device`` (default: crossflow.device.default_device()); on a GPU the clock is read only after
    ``torch.cuda.synchronize``, so the times are the GPU's, not the launch queue's."""
    from .models import CrossFlow
    from .sampling import generate
    device = resolve_device(device)
    times = {name: {"train_step": [], "sample_image": []} for name in cfgs}
    dims = {"text_dim": features.x.shape[-1], "n_tokens": features.x.shape[1]}
    features = features.to_device(device)
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(seed)
        model = CrossFlow(cfg, **dims).to(device)
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=cfg.train.lr))
    x, mask = features.x[:n_images], features.mask[:n_images]
    for r in range(repeats + 1):                          # repeat 0 warms up (allocations, caches)
        for name, cfg in cfgs.items():
            model, opt = models[name]
            model.train()
            synchronize(device)
            t0 = time.perf_counter()
            for s in range(steps):
                g = torch.Generator().manual_seed(seed * 1000 + s)
                loss, _ = model(features.batch(g, cfg.train.batch_size), g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            synchronize(device)
            t_train = (time.perf_counter() - t0) / steps
            t0 = time.perf_counter()
            generate(model, x, mask, scale=scale, steps=cfg.sample.steps, solver=cfg.sample.solver, seed=seed,
                     null_x=features.null_x, null_mask=features.null_mask)
            synchronize(device)
            t_sample = (time.perf_counter() - t0) / n_images
            if r:
                times[name]["train_step"].append(t_train)
                times[name]["sample_image"].append(t_sample)
    per = {name: {k: float(np.median(v)) for k, v in t.items()} for name, t in times.items()}
    ref = next(iter(per))
    others = [n for n in per if n != ref]
    ratios = {k: per[others[0]][k] / per[ref][k] for k in ("train_step", "sample_image")} if others else {}
    return {"per_method": per, "ratios": ratios, "reference": ref, "repeats": repeats, "steps": steps,
            "n_images": n_images, "scale": scale, "threads": torch.get_num_threads(), "raw": times,
            "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"}


def per_seed(by: dict, model: str, kind: str, metric: str, seeds: Sequence[int]) -> list[float]:
    """``metric`` ("fid" | "clip") of ``model`` sampled with guidance ``kind``, one value per seed, from the
    results of ``run_jobs`` keyed by (row, seed)."""
    return [by[(model, s)]["test_by_guidance"][kind][metric] for s in seeds]


def fid_gaps(rows: Sequence[dict], key: str) -> dict:
    """Baseline minus CrossFlow FID for each value of ``key`` (positive = CrossFlow better), in ``key`` order,
    each as ``(gap, noise)``: ``noise`` is the combined seed spread sqrt(std_baseline^2 + std_CrossFlow^2) from
    the rows' "fid_std", or None where a row has none (one seed). ``rows``: dicts with "method" ("CrossFlow" |
    "baseline"), ``key``, "fid" (the mean over seeds) and optionally "fid_std"."""
    by = {}
    for r in rows:
        by.setdefault(r[key], {})[r["method"]] = r
    gaps = {}
    for k, v in sorted(by.items()):
        if {"baseline", "CrossFlow"} <= set(v):
            b, c = v["baseline"], v["CrossFlow"]
            stds = [b.get("fid_std"), c.get("fid_std")]
            noise = None if any(sd is None or sd != sd for sd in stds) else math.hypot(*stds)   # NaN: one seed
            gaps[k] = (b["fid"] - c["fid"], noise)
    return gaps


def gap_sign(gap: float, noise: float | None, k: float = 1.0) -> str:
    """CrossFlow "better" / "worse" than the baseline, or "level" when the gap is within ``k`` seed spreads.
    With unknown spread (``noise`` None) only the sign is read."""
    if noise is None:
        return "better" if gap > 0 else "worse" if gap < 0 else "level"
    return "better" if gap > k * noise else "worse" if gap < -k * noise else "level"


_SHAPE_WORDS = {"worse": "CrossFlow worse", "better": "CrossFlow better", "level": "level within the seeds' spread"}


def crossover_shape(gaps: Sequence[tuple[float, float | None]], k: float = 1.0) -> str:
    """The paper's Figure 3 shape read from the first and the last ``(gap, noise)`` (baseline - CrossFlow FID):
    the paper has CrossFlow worse at the first (small / early) and better at the last (large / long)."""
    first, last = gap_sign(*gaps[0], k=k), gap_sign(*gaps[-1], k=k)
    if (first, last) == ("worse", "better"):
        kind = "crossover as in the paper"
    elif (first, last) == ("better", "worse"):
        kind = "opposite of the paper"
    elif first == last:
        kind = "no crossover"
    elif first == "worse" or last == "better":
        kind = "no crossover in our range, the gap moves the paper's way"       # worse->level, level->better
    else:
        kind = "no crossover, the gap moves against the paper"                  # better->level, level->worse
    caveat = " (one seed: signs only, spread unknown)" if any(n is None for _, n in gaps) else ""
    return f"{kind}: {_SHAPE_WORDS[first]} first, {_SHAPE_WORDS[last]} last{caveat}"


def describe_gaps(gaps: dict, names: dict | None = None, k: float = 1.0) -> str:
    """``fid_gaps`` output as text: "XS: -220.9 ± 12.0 (worse), ..." (``names`` relabels the keys)."""
    return ", ".join(f"{(names or {}).get(key, key)}: {g:+.1f}" + (f" ± {n:.1f}" if n is not None else "")
                     + f" ({gap_sign(g, n, k)})" for key, (g, n) in gaps.items())
