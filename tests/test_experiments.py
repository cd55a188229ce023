"""Tier 2: the comparison machinery (2-stage training, weaker language models, the matched baseline, jobs,
verdicts) on smoke-sized models."""
from __future__ import annotations

import json
import math

import pytest
import torch

from crossflow.config import ConfigError, get_config
from crossflow.experiments import (Guidance, JobResult, baseline_config, benchmark_cost,
                                   generator_parameters, load_result, make_job, restore_record, run_job,
                                   run_jobs, sample_images, save_record, steps_to_loss)
from crossflow.train import phase_at, train
from reproduce.report import pairwise_verdict


# ---------------------------------------------------------------------------------------------------------
# Table 3e: training schedules
# ---------------------------------------------------------------------------------------------------------

def test_phase_schedule(smoke_cfg):
    two = smoke_cfg.replace({"train.ve_pretrain_steps": 5, "train.freeze_text_ve": True}).train
    assert [phase_at(s, two) for s in (0, 4, 5, 19)] == ["ve", "ve", "flow", "flow"]
    ft = smoke_cfg.replace({"train.ve_pretrain_steps": 5}).train
    assert [phase_at(s, ft) for s in (4, 5)] == ["ve", "joint"]
    assert {phase_at(s, smoke_cfg.train) for s in range(20)} == {"joint"}


@pytest.mark.parametrize("bad", [{"train.freeze_text_ve": True},
                                 {"train.ve_pretrain_steps": 20},
                                 {"train.ve_pretrain_steps": 5, "objective.enc_loss": "none"}])
def test_two_stage_config_errors(smoke_cfg, bad):
    with pytest.raises(ConfigError):
        smoke_cfg.replace(bad)


def _params(module):
    return torch.cat([p.detach().cpu().flatten() for p in module.parameters()])


def test_two_stage_separate_trains_ve_first_then_only_the_flow(smoke_cfg, smoke_features, tmp_path):
    cfg = smoke_cfg.replace({"train.ve_pretrain_steps": 6, "train.freeze_text_ve": True})
    torch.manual_seed(cfg.train.seed)
    from crossflow.models import CrossFlow
    init = CrossFlow(cfg, smoke_features.x.shape[-1], smoke_features.x.shape[1])
    mid = train(cfg, smoke_features, tmp_path, stop_at=6, progress=False).raw_model
    assert torch.equal(_params(mid.net), _params(init.net)), "the flow network must not move while the VE pre-trains"
    assert not torch.equal(_params(mid.text_ve), _params(init.text_ve))
    ve_after_stage1 = _params(mid.text_ve).clone()
    end = train(cfg, smoke_features, tmp_path, progress=False)
    assert torch.equal(_params(end.raw_model.text_ve), ve_after_stage1), "2-stage separate: the VE stays frozen"
    assert not torch.equal(_params(end.raw_model.net), _params(init.net))
    phases = [r["phase"] for r in end.history]
    assert phases == sorted(phases, key=["ve", "flow"].index) and set(phases) == {"ve", "flow"}
    assert all("fm" not in r for r in end.history if r["phase"] == "ve")


def test_two_stage_joint_finetuning_keeps_training_the_ve(smoke_cfg, smoke_features, tmp_path):
    cfg = smoke_cfg.replace({"train.ve_pretrain_steps": 6})
    mid = _params(train(cfg, smoke_features, tmp_path, stop_at=6, progress=False).raw_model.text_ve).clone()
    end = train(cfg, smoke_features, tmp_path, progress=False)
    assert not torch.equal(_params(end.raw_model.text_ve), mid)


# ---------------------------------------------------------------------------------------------------------
# Table 3d: weaker offline language models
# ---------------------------------------------------------------------------------------------------------

def test_language_model_variants_differ_and_are_deterministic():
    from crossflow.config import TextConfig
    from crossflow.encoders.text import FrozenTextEncoder
    caps = ["a red bag", "two blue trousers"]
    full = FrozenTextEncoder(TextConfig(model="minilm", max_length=8))
    static = FrozenTextEncoder(TextConfig(model="minilm-static", max_length=8))
    rand_a = FrozenTextEncoder(TextConfig(model="minilm-random", max_length=8))
    rand_b = FrozenTextEncoder(TextConfig(model="minilm-random", max_length=8))
    (x_full, m), (x_static, _), (x_ra, _), (x_rb, _) = (e.encode(caps) for e in (full, static, rand_a, rand_b))
    assert x_full.shape == x_static.shape == x_ra.shape
    ids = full.tokenizer(caps, padding="max_length", truncation=True, max_length=8, return_tensors="pt")["input_ids"]
    assert torch.allclose(x_static, full.model.get_input_embeddings()(ids.to(full.model.device)).cpu()), "static = the word-piece table"
    assert torch.equal(x_ra, x_rb), "random weights are seeded"
    assert not torch.allclose(x_ra, x_full, atol=1e-2) and not torch.allclose(x_static, x_full, atol=1e-2)
    # static vectors have no context: the same token gives the same vector wherever it stands
    tok = full.tokenizer(["bag", "a red bag"], return_tensors="pt", padding=True)["input_ids"]
    xs = static.encode(["bag", "a red bag"])[0]
    i0, i1 = (tok[0] == tok[0][1]).nonzero()[0, 0], (tok[1] == tok[0][1]).nonzero()[0, 0]
    assert torch.allclose(xs[0, i0], xs[1, i1])


# ---------------------------------------------------------------------------------------------------------
# Table 1: the matched baseline
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "tiny"])
def test_baseline_matches_parameters_within_ten_percent(preset):
    cfg = get_config(preset)
    base = baseline_config(cfg)
    assert base.flow.cross_attention and base.objective.source == "noise"
    assert base.objective.uncond_prob == cfg.objective.uncond_prob          # null-text dropout for CFG
    ratio = generator_parameters(base) / generator_parameters(cfg)
    assert 0.9 <= ratio <= 1.1, ratio
    if preset == "tiny":
        assert base.flow.width == cfg.flow.width                           # depth alone sufficed


def test_paper_presets_count_like_the_paper():
    from crossflow.models import CrossFlow, count_parameters
    cf, base = get_config("paper"), get_config("paper-baseline")
    with torch.device("meta"):
        net_cf = CrossFlow(cf, 768, 77).net
        net_base = CrossFlow(base, 768, 77).net
    assert 0.93e9 <= count_parameters(net_cf) <= 0.97e9                    # paper 0.95B
    assert 1.02e9 <= count_parameters(net_base) <= 1.07e9                  # paper 1.04B
    assert base.flow.cross_attention and base.objective.source == "noise" and base.profile == "paper"


# ---------------------------------------------------------------------------------------------------------
# Jobs, verdicts, convergence, cost
# ---------------------------------------------------------------------------------------------------------

def test_job_trains_evaluates_and_is_reused(smoke_cfg, tmp_path):
    job = make_job("c/final", smoke_cfg, 0, tmp_path,
                   guidance=[Guidance(), Guidance("indicator", 2.0), Guidance("autoguidance", 2.0, 0.5)])
    res = run_job(job)
    assert set(res.test_by_guidance) == {"none", "indicator", "autoguidance"}
    assert len(res.search) == 3 and res.train_steps == smoke_cfg.train.steps
    assert all(math.isfinite(v.fid) and -1 <= v.clip <= 1 for v in res.test_by_guidance.values())
    assert res.chosen in job.guidance and res.test.fid == res.test_by_guidance[res.chosen.kind].fid
    assert (tmp_path / "c_final-s0" / "step10.pt").exists()                 # the autoguidance guide
    assert load_result(job) == res
    # the typed record is a lossless view of result.json: its layout is unchanged, so old runs are reused
    on_disk = json.loads((tmp_path / "c_final-s0" / "result.json").read_text())
    assert res.to_dict() == on_disk and JobResult.from_dict(on_disk) == res
    changed = make_job("c/final", smoke_cfg, 0, tmp_path, guidance=[Guidance()])
    assert load_result(changed) is None, "a different spec must not reuse the result"
    # committed job records: a fresh run folder is restored from them, never from a record of another spec
    records = tmp_path / "records"
    save_record(job, records)
    assert (records / "c_final-s0.json").read_bytes() == (tmp_path / "c_final-s0" / "result.json").read_bytes()
    fresh = make_job("c/final", smoke_cfg, 0, tmp_path / "fresh-clone",
                     guidance=[Guidance(), Guidance("indicator", 2.0), Guidance("autoguidance", 2.0, 0.5)])
    assert load_result(fresh) is None and restore_record(fresh, records)
    assert load_result(fresh) == res and not (tmp_path / "fresh-clone" / "c_final-s0" / "step10.pt").exists()
    other = make_job("c/final", smoke_cfg, 0, tmp_path / "other-clone", guidance=[Guidance()])
    assert not restore_record(other, records) and load_result(other) is None


def test_results_scored_by_other_evaluators_are_rerun_not_mixed(smoke_cfg, tmp_path, recwarn):
    """Evaluators are trained where the table runs; another CPU kind trains other ones (seen: an Intel and an AMD
    machine gave other judge weights). A record or run folder scored by them must not join a table made here."""
    job = make_job("c/x", smoke_cfg, 0, tmp_path / "runs")
    records = tmp_path / "records"
    [res] = run_jobs([job], workers=1, records=records)
    rec = records / "c_x-s0.json"
    foreign = json.loads(rec.read_text())
    foreign["evaluators_sha256"] = {"judge": "0" * 64, "clip": "1" * 64}
    foreign["test"]["fid"] = -1.0
    rec.write_text(json.dumps(foreign))
    fresh = make_job("c/x", smoke_cfg, 0, tmp_path / "fresh-clone")
    assert not restore_record(fresh, records, res.evaluators_sha256)
    assert restore_record(fresh, records) and load_result(fresh).test.fid == -1.0   # without the check: mixed
    with pytest.warns(UserWarning, match="1 finished job.*judge 00000000.*c/x s0"):
        [again] = run_jobs([fresh], workers=1, records=records)
    assert again.evaluators_sha256 == res.evaluators_sha256 and again.test.fid == res.test.fid     # rerun whole
    assert json.loads(rec.read_text())["evaluators_sha256"] == res.evaluators_sha256                # record replaced
    assert (tmp_path / "fresh-clone" / "c_x-s0.other-evaluators-00000000" / "result.json").exists()
    # a run folder scored by other evaluators: moved aside (kept), the job rerun
    path = tmp_path / "runs" / "c_x-s0" / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "evaluators_sha256": {"judge": "2" * 64}}))
    with pytest.warns(UserWarning, match="judge 22222222"):
        run_jobs([job], workers=1)
    assert (tmp_path / "runs" / "c_x-s0.other-evaluators-22222222" / "checkpoint.pt").exists()
    assert load_result(job).evaluators_sha256 == res.evaluators_sha256
    recwarn.clear()
    run_jobs([job, fresh], workers=1, records=records)                 # matching results: reused, no warning
    assert not [w for w in recwarn if "other evaluator" in str(w.message)]


def test_autoguidance_without_guide_is_an_error(smoke_cfg, smoke_features, tmp_path):
    model = train(smoke_cfg, smoke_features, tmp_path, progress=False).model
    with pytest.raises(ValueError, match="guide"):
        sample_images(model, smoke_cfg, ["a red bag"], Guidance("autoguidance", 2.0, 0.5), seed=0)


def test_pairwise_verdict():
    paper = {"a": 60.0, "b": 40.0, "c": 30.0}                                # FID: lower is better
    assert pairwise_verdict(paper, {"a": 9, "b": 6, "c": 3}, {"a": 0.5, "b": 0.5, "c": 0.5}) == "holds"
    assert pairwise_verdict(paper, {"a": 3, "b": 6, "c": 9}, {"a": 0.5, "b": 0.5, "c": 0.5}) == "fails"
    assert pairwise_verdict(paper, {"a": 9, "b": 8.8, "c": 3}, {"a": 0.5, "b": 0.5, "c": 0.5}) == "inconclusive"
    assert pairwise_verdict(paper, {"a": 9, "b": 6, "c": 3}, {"a": None, "b": 0.5, "c": 0.5}) == "inconclusive"
    ties = {"x": 0.26, "y": 0.27, "z": 0.27}                                 # ties make no claim
    assert pairwise_verdict(ties, {"x": 1, "y": 2, "z": 1.5}, {"x": 0.1, "y": 0.1, "z": 0.1}) == "holds"


def test_steps_to_loss():
    hist = [{"step": s, "fm": 1.0 / s} for s in range(10, 110, 10)]
    assert steps_to_loss(hist, 0.05, window=1) == 20
    assert steps_to_loss(hist, 0.05, window=1, after=10) == 10
    assert steps_to_loss(hist, 0.001, window=1) is None


def test_benchmark_cost_measures_both(smoke_cfg, smoke_features):
    cost = benchmark_cost({"CrossFlow": smoke_cfg, "baseline": baseline_config(smoke_cfg)}, smoke_features,
                          steps=2, n_images=4, repeats=1)
    assert set(cost["per_method"]) == {"CrossFlow", "baseline"}
    assert all(v > 0 for m in cost["per_method"].values() for v in m.values())
    assert cost["ratios"]["train_step"] > 0 and cost["ratios"]["sample_image"] > 0


# ---------------------------------------------------------------------------------------------------------
# The regime study (issue 15, item 1)
# ---------------------------------------------------------------------------------------------------------

def test_eval_sizes_keep_old_job_hashes(smoke_cfg, tmp_path):
    """Jobs without eval_sizes hash as before the field existed (committed records stay valid); sizes count."""
    from dataclasses import asdict

    from crossflow.utils import stable_hash
    job = make_job("a/x", smoke_cfg, 0, tmp_path)
    old = stable_hash({k: v for k, v in asdict(job).items() if k not in ("run_dir", "eval_sizes")})
    assert job.spec_hash() == old
    sized = make_job("a/x", smoke_cfg, 0, tmp_path, eval_sizes={"n_test": 16, "n_val": 8})
    assert sized.spec_hash() != old and sized.eval_sizes == {"n_test": 16, "n_val": 8}
    with pytest.raises(ValueError, match="n_test and n_val"):
        make_job("a/x", smoke_cfg, 0, tmp_path, eval_sizes={"n_tset": 16})


def test_regime_jobs_lengths_and_choice(smoke_cfg, tmp_path):
    from crossflow.experiments import choose_point, doubling_trend, regime_jobs, target_check
    base = smoke_cfg.replace({"train.steps": 100})
    jobs = regime_jobs(base, {"recipe": {"overrides": {}, "lengths": [4, 0.5, 1]},
                              "wide": {"overrides": {"flow.width": 48}, "lengths": [2]}}, 0, tmp_path, [Guidance()])
    assert jobs["recipe"].cfg.train.steps == 400 and jobs["recipe"].eval_at == (50, 100)
    assert jobs["wide"].cfg.train.steps == 200 and jobs["wide"].eval_at == () and jobs["wide"].cfg.flow.width == 48
    assert jobs["recipe"].geneval
    with pytest.raises(ValueError, match="lengths"):
        regime_jobs(base, {"bad": {"overrides": {}}}, 0, tmp_path, [Guidance()])
    rows = [{"point": "a", "step": 1, "cpu_minutes": 10, "fid": 100.0, "fid_ratio": 4.0, "geneval": 0.2},
            {"point": "a", "step": 2, "cpu_minutes": 20, "fid": 80.0, "fid_ratio": 3.2, "geneval": 0.3},
            {"point": "a", "step": 4, "cpu_minutes": 80, "fid": 50.0, "fid_ratio": 2.0, "geneval": 0.6},
            {"point": "b", "step": 2, "cpu_minutes": 30, "fid": 80.0, "fid_ratio": 3.2, "geneval": 0.4}]
    chosen = choose_point(rows, budget_minutes=45)
    assert (chosen["point"], chosen["step"]) == ("b", 2), "lowest FID within the budget, GenEval breaks the tie"
    assert choose_point(rows, budget_minutes=5) is None
    check = target_check(chosen)
    assert not check["fid_met"] and not check["geneval_met"] and check["within_budget"]
    assert target_check(rows[2], budget_minutes=100)["fid_met"] and target_check(rows[2])["geneval_met"]
    trend = doubling_trend([r for r in rows if r["point"] == "a"])
    assert trend["from_minutes"] == 20 and trend["to_minutes"] == 80
    assert trend["factor_per_doubling"] == pytest.approx((2.0 / 3.2) ** 0.5)
    assert doubling_trend(rows[:1]) is None


def test_guidance_summary_reads_an_interior_optimum():
    from crossflow.experiments import Scores, guidance_summary

    class R:
        def __init__(self, fids):
            self.search = tuple(Scores(f, 0.3, Guidance() if s == 1 else Guidance("indicator", s)) for s, f in fids)
    helps = guidance_summary(R([(1, 100.0), (2, 90.0), (3, 95.0), (5, 99.0)]))
    assert helps["best_scale"] == 2 and helps["gain"] == 10.0 and helps["interior"]
    assert not guidance_summary(R([(1, 80.0), (2, 90.0), (3, 95.0)]))["interior"]       # guidance only hurts
    assert not guidance_summary(R([(1, 100.0), (2, 90.0), (3, 85.0)]))["interior"]      # still falling at the edge
    with pytest.raises(ValueError, match="no guidance"):
        guidance_summary(R([(2, 90.0)]))
