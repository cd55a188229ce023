"""The evaluation protocol of every comparison table: train, grid-search guidance on validation captions,
report the chosen setting on test captions; the cost benchmark and loss summaries (crossflow.experiments)."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..config import Config, to_dict
from ..device import resolve_device, synchronize
from ..profiles import get_profile
from ..utils import stable_hash, write_json
from .pool import Guidance, Job, JobResult, evaluators_sha256, load_result


# ----------------------------------------------------------------------------------------------------------
# One job: train, grid-search guidance on validation, evaluate on test
# ----------------------------------------------------------------------------------------------------------

_CACHE: dict = {}


def _features_key(cfg: Config) -> tuple:
    d = to_dict(cfg)
    return ("features", stable_hash({"data": d["data"], "text": d["text"], "ae": d["autoencoder"]}))


def _features(cfg: Config):
    from ..features import prepare_features
    key = _features_key(cfg)
    if key not in _CACHE:
        for k in [k for k in _CACHE if k[0] == "features"]:
            del _CACHE[k]                                # one feature set in memory at a time
        _CACHE[key] = prepare_features(cfg, progress=False)
    return _CACHE[key]


def _eval_sets(cfg: Config, eval_cfg: Config, eval_sizes: dict | None = None):
    """(validation, test) dicts of captions and the real images' judge features, and the evaluators.
    ``eval_sizes``: {"n_test", "n_val"}; empty or None: the profile's."""
    from ..evaluate import load_evaluators
    from ..features import load_scenes
    sizes = {**get_profile(cfg.profile).eval_sizes, **(eval_sizes or {})}
    key = ("eval", stable_hash({"cfg": to_dict(eval_cfg), "sizes": sizes}))
    if key not in _CACHE:
        ev = load_evaluators(eval_cfg, progress=False)
        test = load_scenes(cfg, "test")
        n_test, n_val = min(sizes["n_test"], len(test) // 2), min(sizes["n_val"], len(test) // 2)
        sets = {}
        for name, idx in (("test", range(0, n_test)), ("val", range(len(test) - n_val, len(test)))):
            idx = list(idx)
            sets[name] = {"captions": [test.captions[i][0] for i in idx],
                          "ref": ev.features(test.images[idx]), "n": len(idx)}
        _CACHE[key] = (ev, sets)
    return _CACHE[key]


def real_fid_floor(cfg: Config, eval_cfg: Config | None = None, eval_sizes: dict | None = None) -> dict:
    """The real-vs-real floor of the jobs' FID-domain at the same n (issue 15, item 4): real *train* renders
    against the very test reference the jobs are scored on (the first ``n_test`` test scenes, the same evaluators).
    A generator cannot be expected to go below it at that n; a table reports its FID-domain beside it.
    Returns {"value", "n"}."""
    from ..features import load_scenes
    ev, sets = _eval_sets(cfg, eval_cfg or cfg, eval_sizes)
    n = sets["test"]["n"]
    return {"value": float(ev.fid(load_scenes(cfg, "train").images[:n], feats_b=sets["test"]["ref"])["value"]), "n": n}


def sample_images(model, cfg: Config, captions: Sequence[str], g: Guidance, seed: int, guide=None):
    from ..pipeline import text_to_image
    if g.kind == "autoguidance" and guide is None:
        raise ValueError("autoguidance needs the weak guide model")
    scale = g.scale if g.kind != "none" else 1.0
    return text_to_image(model, cfg, list(captions), scale=scale, seed=seed,
                         guide=guide if g.kind == "autoguidance" else None)


def geneval_score(ev, model, cfg: Config, g: Guidance, seed: int, guide=None) -> dict:
    """GenEval-domain of ``model`` on the evaluators' prompt suite, sampled with guidance ``g``."""
    from ..data import make_prompt_suite
    specs = make_prompt_suite(cfg.data, n=ev.ecfg.n_prompts, seed=0)
    rows = [s for s in specs for _ in range(ev.ecfg.samples_per_prompt)]
    return ev.geneval(sample_images(model, cfg, [s.caption for s in rows], g, seed=seed, guide=guide), rows)


def evaluate_images(ev, images, captions, ref) -> dict:
    return {"fid": float(ev.fid(images, feats_b=ref)["value"]), "clip": float(ev.clip_score(images, captions)["mean"])}


def run_job(job: Job, force: bool = False) -> JobResult:
    """Train ``job`` (resuming), pick its guidance on validation, evaluate on test; write ``result.json``."""
    from ..integrity import IntegrityError, checked_write, stored_checksum, verify
    from ..train import CKPT, load_model, train
    if not force and (res := load_result(job)) is not None:
        return res
    t0 = time.time()
    cfg, run_dir = job.cfg, Path(job.run_dir)
    feats = _features(cfg)
    ev, sets = _eval_sets(cfg, job.eval_cfg, job.eval_sizes)

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
        gen = geneval_score(ev, model, cfg, chosen, job.seed, guides.get(chosen.guide_fraction))
        test["geneval"] = gen["overall"]
        test["geneval_per_task"] = gen["per_task"]

    # test metrics along training at the chosen guidance (+ GenEval-domain when the job has it), with the training
    # seconds spent up to each point
    curve = []
    for s, path in sorted(snapshots.items()):
        if s in job.eval_at:
            m, _, ck = load_model(path)
            imgs = sample_images(m, cfg, sets["test"]["captions"], chosen, seed=job.seed,
                                 guide=guides.get(chosen.guide_fraction))
            point = {"step": s, **evaluate_images(ev, imgs, sets["test"]["captions"], sets["test"]["ref"]),
                     "train_seconds": round(float(ck.get("train_seconds", 0.0)), 1)}
            if job.geneval:
                point["geneval"] = geneval_score(ev, m, cfg, chosen, job.seed, guides.get(chosen.guide_fraction))["overall"]
            curve.append(point)
    curve.append({"step": result.step, "fid": test["fid"], "clip": test["clip"],
                  "train_seconds": round(result.train_seconds, 1),
                  **({"geneval": test["geneval"]} if job.geneval else {})})

    from ..models import count_parameters
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
        "evaluators_sha256": evaluators_sha256(ev),
        "sampler": {"solver": cfg.sample.solver, "steps": cfg.sample.steps},
        "seconds": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
    }
    write_json(run_dir / "result.json", res)
    return JobResult.from_dict(res)


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
    from ..sampling import generate
    from ..train import TrainStep
    device = resolve_device(device)
    times = {name: {"train_step": [], "sample_image": []} for name in cfgs}
    steppers = {name: TrainStep(cfg, features, device, seed=seed) for name, cfg in cfgs.items()}
    features = features.to_device(device)
    x, mask = features.x[:n_images], features.mask[:n_images]
    for r in range(repeats + 1):                          # repeat 0 warms up (allocations, caches)
        for name, cfg in cfgs.items():
            st = steppers[name]
            model = st.model
            synchronize(device)
            t0 = time.perf_counter()
            for s in range(steps):
                st.step()                                 # train()'s step: autocast, clipping, AdamW, EMA
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

