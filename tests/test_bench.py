"""make bench's pieces at the smoke profile: they run, count FLOPs, and report percentages of a measured peak."""
from __future__ import annotations

import pytest
import torch

from crossflow.profiles import FAST_STEP
from reproduce.bench import VARIANTS, bench_sampling, bench_training, markdown, matmul_peaks, machine

CPU = torch.device("cpu")


def test_last_bench_variant_is_the_fast_step():
    assert VARIANTS[list(VARIANTS)[-1]] == dict(FAST_STEP)
    assert VARIANTS[next(iter(VARIANTS))] == {}, "the first row is the fp32 step"


def test_bench_runs_at_smoke_and_reports_against_the_peak():
    peaks = matmul_peaks(CPU, quick=True)
    assert set(peaks["peak"]) == {"fp32", "bf16"} and all(v > 0 for v in peaks["peak"].values())
    variants = {"fp32 step": {}, "bf16 + math": {"train.mixed_precision": "bf16", "flow.attention": "math"}}
    tr = bench_training("smoke", CPU, peaks, quick=True, variants=variants)
    assert [r["variant"] for r in tr["rows"]] == list(variants)
    for r in tr["rows"]:
        assert r["ms_per_step"] > 0 and r["gflops"] > 0
        assert abs(r["pct_bf16_peak"] - 100 * r["gflops"] / peaks["peak"]["bf16"]) < 1e-9
    # a forward + backward pass costs about 3 forward passes: more than 0, far less than a GFLOP at smoke
    assert 0 < tr["flops_per_sample"] < 1e9
    sa = bench_sampling("smoke", CPU, peaks, quick=True, n_images=4)
    assert all(r["images_per_s"] > 0 for r in sa["rows"]) and sa["rows"][0]["nfe"] == 2 * sa["steps"]
    res = {"device": "cpu", "machine": machine(), "threads_used": 1, "command": "test", "date": "today",
           "peaks": peaks, "training": tr, "sampling": sa}
    md = markdown(res)
    assert "% bf16 peak" in md and "fp32 step" in md


@pytest.mark.xfail(strict=True, reason="known deviation (issue 15): FAST_SAMPLER is held at midpoint 4 NFE while the "
                   "comparison re-runs share it; the sampler study on the current main model chose midpoint 6 NFE. "
                   "Change it together with re-running every notebook that samples with it, then drop this mark")
def test_fast_sampler_is_the_sampler_artifacts_confirmed_choice():
    """FAST_SAMPLER copies the committed sampler study's verdict (a re-run that changes it must update it)."""
    import json
    from pathlib import Path
    from crossflow.config import get_config
    from crossflow.profiles import FAST_SAMPLER
    from crossflow.sampling import FIXED_STEP
    cfg = get_config("tiny", dict(FAST_SAMPLER))
    metrics = Path(__file__).resolve().parent.parent / "results" / "sampler" / "metrics.json"
    chosen = json.loads(metrics.read_text())["metrics"]["chosen"]
    assert chosen["solver"] == cfg.sample.solver
    assert chosen["nfe"] == cfg.sample.steps * FIXED_STEP[cfg.sample.solver][1]
