"""Statistics and verdicts of the comparison tables: per-seed values, FID gaps and their signs, Figure 3's
crossover shape (crossflow.experiments; the table verdicts are in reproduce/report.py)."""
from __future__ import annotations

import math
from typing import Sequence


def per_seed(by: dict, model: str, kind: str, metric: str, seeds: Sequence[int]) -> list[float]:
    """``metric`` ("fid" | "clip") of ``model`` sampled with guidance ``kind``, one value per seed, from the
    results of ``run_jobs`` (:class:`JobResult`) keyed by (row, seed)."""
    return [getattr(by[(model, s)].test_by_guidance[kind], metric) for s in seeds]


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
