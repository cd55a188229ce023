"""The evaluation suite: GenEval rules by hand, the metrics' own validation on real images, the train-once cache.

Metric validation uses the smoke evaluators on slightly larger real splits (renders are cheap): each metric
must order real images above broken ones by a clear margin, so a broken metric fails here.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from crossflow.data import Item, PromptSpec, class_ids
from crossflow.evaluate import (cache_paths, get_eval_config, geneval_summary, geneval_verdict, load_evaluators,
                                stale_reason)
from crossflow.evaluate.suite import metric_sanity
from reproduce.report import mean_std, ordering_verdict, paper_row, write_table


@pytest.fixture(scope="module")
def evaluators(smoke_cfg):
    return load_evaluators(smoke_cfg, progress=False)


@pytest.fixture(scope="module")
def sanity(evaluators, smoke_cfg):
    # larger real splits than the smoke profile's 64 test scenes: FID is biased upwards at tiny sample sizes
    data = dataclasses.replace(smoke_cfg.data, num_train=600, num_test=400)
    return metric_sanity(evaluators, n_fid=400, n_prompts=36, data=data, blur_sigma=1.5)


# ----------------------------------------------------------------------------------------------------------
# GenEval rules (hand-made readings)
# ----------------------------------------------------------------------------------------------------------

def test_geneval_rules_by_hand(smoke_cfg):
    t_shirt, trouser, sandal = class_ids(smoke_cfg.data)[:3]
    red_tee, blue_trouser = Item(t_shirt, "red", 0), Item(trouser, "blue", 1)   # tee left of trouser (top row)
    spec = lambda task, *items: PromptSpec("caption", task, list(items))  # noqa: E731
    g = 2
    assert geneval_verdict(spec("single_object", Item(t_shirt, "green", 3)), [red_tee], g)
    assert not geneval_verdict(spec("single_object", Item(sandal, "red", 0)), [red_tee], g)
    assert geneval_verdict(spec("two_object", red_tee, blue_trouser), [blue_trouser, red_tee], g)
    assert not geneval_verdict(spec("two_object", red_tee, blue_trouser), [red_tee], g)
    three = [Item(t_shirt, "red", c) for c in range(3)]
    assert geneval_verdict(spec("counting", *three), three, g)
    assert not geneval_verdict(spec("counting", *three), three + [Item(t_shirt, "blue", 3)], g)   # exactly N
    assert not geneval_verdict(spec("counting", *three), three[:2], g)
    assert geneval_verdict(spec("colors", Item(t_shirt, "red", 2)), [red_tee], g)
    assert not geneval_verdict(spec("colors", Item(t_shirt, "blue", 0)), [red_tee], g)
    assert geneval_verdict(spec("position", red_tee, blue_trouser), [red_tee, blue_trouser], g)
    # same classes, swapped cells: the relation is wrong
    assert not geneval_verdict(spec("position", red_tee, blue_trouser),
                               [Item(t_shirt, "red", 1), Item(trouser, "blue", 0)], g)
    # relation holds in another row too (GenEval checks the relation, not the cells)
    assert geneval_verdict(spec("position", red_tee, blue_trouser),
                           [Item(t_shirt, "red", 2), Item(trouser, "red", 3)], g)
    assert geneval_verdict(spec("color_attr", red_tee, blue_trouser), [red_tee, blue_trouser], g)
    assert not geneval_verdict(spec("color_attr", red_tee, blue_trouser),
                               [Item(t_shirt, "blue", 0), Item(trouser, "red", 1)], g)        # colours swapped
    s = geneval_summary([True, False, True, True], ["colors", "colors", "counting", "counting"])
    assert s["per_task"] == {"counting": 1.0, "colors": 0.5} and s["overall"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------------------------------------
# The metrics' own validation
# ----------------------------------------------------------------------------------------------------------

def test_fid_orders_real_blurred_and_wrong_caption(sanity):
    fid = sanity["fid"]
    assert fid["real_test_vs_train"] > 0
    # margins are loose on purpose: the smoke judge is trained for seconds (tiny: 39 vs 250 vs 724)
    assert fid["blurred_test_vs_train"] > 2 * fid["real_test_vs_train"], fid
    assert fid["wrong_caption_vs_train"] > 3 * fid["real_test_vs_train"], fid


def test_clip_score_prefers_matching_pairs(sanity):
    clip = sanity["clip_score"]
    assert clip["matched"] > clip["shuffled"] + 0.2, clip
    assert clip["matched_wins"] > 0.8, clip


def test_geneval_prefers_matching_pairs(sanity):
    gen = sanity["geneval"]
    assert gen["matched"] > 0.6, gen                       # a smoke judge (tiny judge: 0.96 matched, 0.04 shuffled)
    assert gen["matched"] > gen["shuffled"] + 0.4, gen


def test_judge_and_retrieval_are_validated(evaluators):
    val = evaluators.judge_info["validation"]
    assert set(val["per_task_accuracy"]) == {"single_object", "two_object", "counting", "colors", "position",
                                             "color_attr"}
    assert val["cell_color_accuracy"] > 0.95 and val["cell_class_accuracy"] > 0.9, val
    r = evaluators.clip_info["retrieval"]
    assert r["i2t_r1"] > 5 * r["chance"], r
    info = evaluators.metric_info()
    assert info["fid"]["name"] == "FID-domain" and "frechet_distance" in info["fid"]["backend"]
    assert "30K" not in json.dumps(info)


# ----------------------------------------------------------------------------------------------------------
# Train once, cache, rebuild when stale
# ----------------------------------------------------------------------------------------------------------

def test_evaluator_cache_reuse_and_rebuild(evaluators, smoke_cfg):
    again = load_evaluators(smoke_cfg, progress=False)
    assert again.judge_info["cached"] and again.clip_info["cached"], "second load retrained"

    # a changed config is a different network: trained, then reused
    small = get_eval_config("smoke", {"judge_steps": 3, "clip_steps": 3, "judge_val_prompts": 12})
    first = load_evaluators(smoke_cfg, small, progress=False)
    assert not first.judge_info["cached"] and not first.clip_info["cached"]
    assert load_evaluators(smoke_cfg, small, progress=False).judge_info["cached"]

    # a corrupted weights file fails its checksum and is rebuilt
    weights = first.judge_info["path"]
    raw = bytearray(open(weights, "rb").read())
    raw[-10] ^= 0xFF
    open(weights, "wb").write(bytes(raw))
    spec_meta = json.loads(open(weights.replace(".pt", ".json")).read())
    assert "checksum" in stale_reason("judge", spec_meta["spec"])
    rebuilt = load_evaluators(smoke_cfg, small, progress=False)
    assert not rebuilt.judge_info["cached"] and rebuilt.clip_info["cached"]
    assert stale_reason("judge", spec_meta["spec"]) is None

    # a hand-edited spec beside the weights is stale too
    wpath, mpath = cache_paths("judge", spec_meta["spec"])
    meta = json.loads(mpath.read_text())
    meta["spec"]["eval"]["judge_steps"] = 999
    mpath.write_text(json.dumps(meta))
    assert "spec" in stale_reason("judge", spec_meta["spec"])


# ----------------------------------------------------------------------------------------------------------
# Report helpers
# ----------------------------------------------------------------------------------------------------------

def test_ordering_verdict():
    order = ["crossflow", "baseline"]                     # paper: crossflow's FID < baseline's
    assert ordering_verdict(order, {"crossflow": 10, "baseline": 12}, {"crossflow": 0.5, "baseline": 0.5}) == "holds"
    assert ordering_verdict(order, {"crossflow": 12, "baseline": 10}, {"crossflow": 0.5, "baseline": 0.5}) == "fails"
    assert ordering_verdict(order, {"crossflow": 10, "baseline": 10.3},
                            {"crossflow": 0.5, "baseline": 0.5}) == "inconclusive"
    assert ordering_verdict(order, {"crossflow": 10, "baseline": 12}, None) == "inconclusive"   # one seed


def test_report_table(tmp_path):
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0) and mean_std([4.0]) == (4.0, None)
    rows = [paper_row("Table 7", "GenEval overall", "CrossFlow", paper=0.55, paper_metric="GenEval",
                      ours=[0.5, 0.6], our_metric="GenEval-domain", profile="smoke")]
    assert rows[0]["ours"] == "0.550 ± 0.071" and rows[0]["ours_n"] == 2
    paths = write_table(rows, tmp_path, "t", title="T")
    md = open(paths["md"]).read()
    assert "GenEval-domain" in md and "0.550" in md
    assert open(paths["csv"]).read().splitlines()[0].startswith("artifact,quantity")
    assert np.isfinite(m)


def test_evaluator_cache_from_before_checksum_files_is_adopted(evaluators, smoke_cfg):
    """Caches written before the .sha256 files existed carry their checksum in the JSON: used, not retrained."""
    from crossflow.integrity import sidecar
    weights = Path(evaluators.judge_info["path"])
    sidecar(weights).unlink()
    again = load_evaluators(smoke_cfg, progress=False)
    assert again.judge_info["cached"] and sidecar(weights).exists()


def test_judge_agreement_counts_cells_and_chance():
    """A judge agrees with itself on every cell (kappa 1); with an unrelated network, agreement beyond chance
    is near 0; disagreements are listed with both readings."""
    import torch

    from crossflow.config import get_config
    from crossflow.data.scenes import cell_size
    from crossflow.evaluate import get_eval_config
    from crossflow.evaluate.judge import CellMLP, build_judge, judge_agreement
    cfg = get_config("smoke")
    torch.manual_seed(0)
    judge = build_judge(cfg.data, get_eval_config("smoke")).eval()
    other = CellMLP(len(cfg.data.classes), len(cfg.data.colors), cell_size(cfg.data)).eval()
    images = torch.rand(40, 3, cfg.data.image_size, cfg.data.image_size)
    same = judge_agreement(judge, judge, images, cfg.data)
    assert same["cells"] == 40 * cfg.data.grid ** 2 and same["item_agreement"] == 1.0 and not same["disagreements"]
    assert same["kappa"] in (None, 1.0)
    diff = judge_agreement(judge, other, images, cfg.data, max_listed=5)
    assert len(diff["disagreements"]) <= 5 and diff["item_agreement"] < 1.0
    assert all(len(d) == 4 for d in diff["disagreements"])
