"""Speed studies that need trained models: solvers against NFE (the ``sampler`` artifact) and the fast training
step against the fp32 one (the ``precision`` artifact). The hardware benchmark is ``reproduce/bench.py``.

Sampler study: every (solver, NFE) of a grid is scored by FID-domain and GenEval-domain at one seed; Euler with
the paper's 50 steps is scored at several sampling seeds, whose range is the yardstick. The decision rule is
fixed before anything runs (:func:`matches`): a setting *matches Euler-50* when its FID-domain is at most Euler-50's
mean plus its seed range, and its GenEval-domain at least Euler-50's mean minus its seed range (as good or
better, within the noise of the sampling seed). The smallest-NFE setting that matches at the first seed is then
re-scored at the other seeds; it is *confirmed* when its mean over the seeds matches too.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from .config import Config
from .pipeline import text_to_image
from .sampling import FIXED_STEP, steps_for_nfe


@dataclass(frozen=True)
class Reference:
    """Euler-50 over several sampling seeds: means and ranges (max - min) of both metrics."""
    fid_mean: float
    fid_range: float
    geneval_mean: float
    geneval_range: float
    seeds: tuple


def reference(rows: Sequence[dict]) -> Reference:
    fids = [r["fid"] for r in rows]
    gens = [r["geneval"] for r in rows]
    return Reference(statistics.mean(fids), max(fids) - min(fids), statistics.mean(gens), max(gens) - min(gens),
                     tuple(r["seed"] for r in rows))


def matches(fid: float, geneval: float, ref: Reference) -> bool:
    """As good as Euler-50 within its seed range on both metrics (lower FID, higher GenEval are better)."""
    return fid <= ref.fid_mean + ref.fid_range and geneval >= ref.geneval_mean - ref.geneval_range


def score_sampler(model, cfg: Config, ev, *, solver: str, nfe: int, seed: int, specs, fid_captions,
                  ref_feats) -> dict:
    """FID-domain and GenEval-domain of one (solver, NFE per guidance pass, sampling seed)."""
    steps = steps_for_nfe(solver, nfe)
    scfg = cfg.replace({"sample.solver": solver})
    t0 = time.time()
    gen_images = text_to_image(model, scfg, [s.caption for s in specs], steps=steps, seed=seed)
    fid_images = text_to_image(model, scfg, list(fid_captions), steps=steps, seed=seed + 1)
    seconds = time.time() - t0
    return {"solver": solver, "nfe": steps * FIXED_STEP[solver][1], "steps": steps, "seed": seed,
            "fid": ev.fid(fid_images, feats_b=ref_feats)["value"], "geneval": ev.geneval(gen_images, specs)["overall"],
            "seconds": round(seconds, 1), "n_images": len(specs) + len(fid_captions)}


def precision_verdict(histories: dict, scores: dict, *, ref: str, other_seed: str, candidate: str,
                      tail: float = 0.2, rel: float = 0.02) -> dict:
    """Does ``candidate`` (the fast step) train like ``ref`` (the fp32 step, same seed)? The yardstick is
    ``other_seed`` (the fp32 step at another seed): on the mean FM loss of the last ``tail`` of the logged
    steps (which also passes within ``rel`` relative), FID-domain and GenEval-domain, |candidate - ref| must be at
    most |other_seed - ref|. Fixed before the runs (notebooks/11_precision.ipynb)."""
    def tail_mean(hist):
        vals = [r["fm"] for r in hist]
        return statistics.mean(vals[-max(1, int(len(vals) * tail)):])
    fm = {n: tail_mean(h) for n, h in histories.items()}
    diffs = {"fm": (abs(fm[candidate] - fm[ref]), max(abs(fm[other_seed] - fm[ref]), rel * fm[ref]))}
    for key in ("fid", "geneval"):
        diffs[key] = (abs(scores[candidate][key] - scores[ref][key]), abs(scores[other_seed][key] - scores[ref][key]))
    checks = {k: d <= limit for k, (d, limit) in diffs.items()}
    ok = all(checks.values())
    parts = ", ".join(f"{k} |diff| {d:.4g} {'<=' if checks[k] else '>'} {limit:.4g}" for k, (d, limit) in diffs.items())
    text = (f"the fast step {'matches' if ok else 'does NOT match'} the fp32 step ({parts}; limits = the "
            f"fp32 step's seed-to-seed difference or 2% relative for the loss)")
    return {"matches": ok, "checks": checks, "diffs": {k: list(v) for k, v in diffs.items()}, "fm_tail": fm,
            "text": text}
