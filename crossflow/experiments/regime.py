"""The regime study (issue 15, item 1; notebooks/17_regime.ipynb): which variant of the main text-to-image recipe,
trained how long, gives the best quality per CPU-minute, and how far the best affordable one is from the targets.

Each *point* of the study is the main recipe with a few overrides (width, patch, learning rate, batch, ...), trained
once for its longest length and evaluated at every length it lists (the learning rate is constant after warm-up and
the EMA warm-up counts steps, so a checkpoint at step s is what a run of s steps would give). Quality is measured
on the test set at each checkpoint with the guidance chosen on validation captions at the end of training; cost is
the training time of a one-thread worker, in CPU-minutes (evaluation not counted).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from ..config import Config, get_config, to_dict
from ..profiles import TINY_RECIPE
from .pool import Guidance, Job, JobResult, make_job

# The targets of issue 15, item 1 for the main text-to-image model at tiny: FID-domain at most this many times the
# real-vs-real floor at the same n, and GenEval-domain overall at least the paper's own CrossFlow score (0.55,
# Table 2 of the paper; on our domain's GenEval-domain, not GenEval), within this many minutes of training here.
TARGET_FID_FLOOR_RATIO = 2.0
TARGET_GENEVAL = 0.55
TARGET_BUDGET_MINUTES = 45.0


def study_base(profile: str, overrides: Mapping | None = None) -> Config:
    """The recipe the study varies: the profile's main recipe as it was before the study. At tiny the study's outcome
    (``crossflow.profiles.TINY_RECIPE``) became the recipe afterwards, so its keys go back to the Config defaults
    (patch 1, width 128, 1,400 fp32 steps): the committed points keep their configs and job hashes. ``overrides``
    apply last."""
    before = {}
    if profile == "tiny":
        defaults = to_dict(Config())
        before = {k: _dotted(defaults, k) for k in TINY_RECIPE}
    return get_config(profile, {**before, **(overrides or {})})


def _dotted(d: Mapping, key: str):
    for part in key.split("."):
        d = d[part]
    return tuple(d) if isinstance(d, list) else d


def regime_jobs(base: Config, points: Mapping[str, Mapping], seed: int, root, guidance: Sequence[Guidance],
                eval_sizes: Mapping[str, int] | None = None) -> dict[str, Job]:
    """One job per point. ``points``: {name: {"overrides": dotted Config overrides of ``base``, "lengths": training
    lengths as multiples of ``base.train.steps``}}; the job trains to the longest length and is evaluated (test FID,
    CLIP and GenEval-domain) at every length."""
    jobs = {}
    for name, p in points.items():
        unknown = set(p) - {"overrides", "lengths"}
        if unknown or not p.get("lengths"):
            raise ValueError(f"regime point '{name}': give 'overrides' and a non-empty 'lengths' list "
                             f"(not {sorted(unknown)})")
        steps = sorted({max(1, int(round(f * base.train.steps))) for f in p["lengths"]})
        cfg = base.replace({**p.get("overrides", {}), "train.steps": steps[-1]})
        jobs[name] = make_job(name, cfg, seed, root, guidance=guidance, eval_at=steps[:-1], geneval=True,
                              eval_cfg=base, eval_sizes=dict(eval_sizes or {}))
    return jobs


def checkpoint_at(job: Job, step: int, result: JobResult) -> Path:
    """The checkpoint file of ``job`` at ``step``: the final one, or the snapshot kept for an evaluated length."""
    return Path(result.checkpoint) if step == result.train_steps else Path(job.run_dir) / f"step{step}.pt"


def curve_rows(results: Mapping[str, JobResult], fid_floor: float) -> list[dict]:
    """One row per (point, evaluated length): CPU-minutes of training (one-thread workers: seconds x threads),
    FID-domain and its ratio to the real-vs-real floor, CLIPScore-domain, GenEval-domain, parameters."""
    rows = []
    for name, r in results.items():
        for pt in r.curve:
            rows.append({"point": name, "step": int(pt["step"]), "cpu_minutes": pt["train_seconds"] * r.threads / 60,
                         "fid": pt["fid"], "fid_ratio": pt["fid"] / fid_floor, "clip": pt["clip"],
                         "geneval": pt.get("geneval"), "parameters": r.n_params, "guidance": r.chosen_label})
    return sorted(rows, key=lambda x: (x["point"], x["step"]))


def choose_point(rows: Sequence[dict], budget_minutes: float = TARGET_BUDGET_MINUTES) -> dict | None:
    """The chosen recipe: the lowest FID-domain among the points trained within ``budget_minutes`` (GenEval-domain
    breaks ties); None if nothing fits the budget."""
    within = [r for r in rows if r["cpu_minutes"] <= budget_minutes]
    return min(within, key=lambda r: (r["fid"], -(r["geneval"] or 0.0))) if within else None


def target_check(row: Mapping, fid_ratio: float = TARGET_FID_FLOOR_RATIO, geneval: float = TARGET_GENEVAL,
                 budget_minutes: float = TARGET_BUDGET_MINUTES) -> dict:
    """Whether ``row`` meets each target of issue 15, item 1, and by how much it misses."""
    return {"fid_ratio": row["fid_ratio"], "fid_target": fid_ratio, "fid_met": row["fid_ratio"] <= fid_ratio,
            "geneval": row["geneval"], "geneval_target": geneval,
            "geneval_met": row["geneval"] is not None and row["geneval"] >= geneval,
            "cpu_minutes": row["cpu_minutes"], "budget_minutes": budget_minutes,
            "within_budget": row["cpu_minutes"] <= budget_minutes}


def doubling_trend(rows: Sequence[dict], key: str = "fid_ratio") -> dict | None:
    """How ``key`` moved over the last doubling (or more) of training along one point's curve: the factor per
    doubling of CPU-minutes from the last two evaluations at least 1.5x apart in cost. A description of the
    measured curve, not a forecast; None if the curve is too short."""
    pts = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r["cpu_minutes"])
    if len(pts) < 2:
        return None
    last = pts[-1]
    prev = next((p for p in reversed(pts[:-1]) if last["cpu_minutes"] >= 1.5 * p["cpu_minutes"]), None)
    if prev is None or prev[key] <= 0 or last[key] <= 0:
        return None
    doublings = math.log2(last["cpu_minutes"] / prev["cpu_minutes"])
    return {"from_minutes": prev["cpu_minutes"], "to_minutes": last["cpu_minutes"], "from": prev[key],
            "to": last[key], "factor_per_doubling": (last[key] / prev[key]) ** (1 / doublings)}


def guidance_summary(result: JobResult) -> dict:
    """Indicator CFG on one point's validation grid (end of training): FID-domain without guidance, the best scale
    and its FID-domain, the gain (positive = guidance helps) and whether the curve over scales (1 = none, then the
    searched ones) has an interior optimum: guidance beats scale 1 and the largest scale is not the best. Issue 15,
    item 2's question, at one seed (no seed spread)."""
    none = next((r.fid for r in result.search if r.guidance is not None and r.guidance.kind == "none"), None)
    cfg = sorted((r for r in result.search if r.guidance is not None and r.guidance.kind == "indicator"),
                 key=lambda r: r.guidance.scale)
    if none is None or not cfg:
        raise ValueError("the validation grid needs no guidance and at least one indicator CFG scale")
    best = min(cfg, key=lambda r: r.fid)
    return {"none": none, "best_scale": best.guidance.scale, "best_fid": best.fid, "gain": none - best.fid,
            "interior": best.fid < none and best.guidance.scale != cfg[-1].guidance.scale,
            "curve": {(1.0 if r.guidance.kind == "none" else r.guidance.scale): r.fid for r in result.search}}
