"""Per-seed values of the comparison tables (crossflow.experiments; the verdicts, Figure 3's crossover included,
are in reproduce/report.py)."""
from __future__ import annotations

from typing import Sequence


def per_seed(by: dict, model: str, kind: str, metric: str, seeds: Sequence[int]) -> list[float]:
    """``metric`` ("fid" | "clip") of ``model`` sampled with guidance ``kind``, one value per seed, from the
    results of ``run_jobs`` (:class:`JobResult`) keyed by (row, seed)."""
    return [getattr(by[(model, s)].test_by_guidance[kind], metric) for s in seeds]
