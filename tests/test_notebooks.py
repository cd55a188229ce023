"""Tier 3: every notebook runs headlessly through the papermill driver in the smoke profile."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reproduce.run import ARTIFACTS, ROOT, notebook_parameters, run

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# per artifact: the figures its notebook must write, and a check on its metrics.json numbers (smoke profile)
FIGURES = {
    "t2i": ("samples.png", "loss_curve.png", "cfg_sweep.png"),
    "evaluators": ("judge_class_confusion.png", "judge_color_confusion.png", "fid_sanity_sets.png",
                   "geneval_real_renders.png"),
    "table7": ("geneval_samples.png", "table7_bars.png"),
    "fig4": ("interpolation.png",),
    "table8": ("arithmetic_examples.png", "scaled_addition.png", "table8_examples.png"),
    "table10": ("reconstruction_curves.png",),
    "table3": ("table3.png",),
    "table1": ("cfg_search.png",),
    "fig3": ("fig3.png",),
    "sampler": ("sampler_nfe.png",),
    "precision": ("loss_curves.png", "total_loss_curves.png"),
    "table6": ("crops.png", "psnr_per_photo.png"),
    "fig9": ("unconditional.png", "guidance_curves.png", "guidance_grid.png"),
    "table5": ("predictions.png",),
    "table9": ("predictions.png",),
    "table4": ("captions.png",),
    "regime": ("regime.png", "guidance_along_training.png"),
}
CHECKS = {
    "t2i": lambda m: m["train_steps"] == 20 and m["n_heldout_prompts"] > 0 and m["flow_params"] > 0,
    "evaluators": lambda m: m["sanity"]["fid"]["real_test_vs_train"] < m["sanity"]["fid"]["blurred_test_vs_train"]
    and 0 < m["judge"]["overall_accuracy"] <= 1 and 0 <= m["clip_retrieval"]["i2t_r1"] <= 1,
    "table7": lambda m: 0 <= m["geneval"]["overall"] <= 1 and m["fid"] > 0 and m["train_steps"] == 20
    and 0 <= m["judge_agreement"]["item_agreement"] <= 1 and m["judge_agreement"]["cells"] >= 4
    and m["verdict"]["verdict"] == "not testable at this scale" and "GenEval-domain" in m["verdict"]["text"],
    "fig4": lambda m: len(m["per_path"]) == 2 * len(m["pairs"]) and set(m["summary"]) == {"text latent", "LM token space"}
    and m["verdict"]["verdict"] in ("holds", "fails", "inconclusive") and m["verdict"]["n"] == len(m["pairs"]),
    "table8": lambda m: all(0 <= m["rates"][k]["success"] <= 1 for k in ("addition", "subtraction", "combination"))
    and m["rates"]["overall"]["n"] == 3 * m["n_per_kind"]
    and set(m["verdict"]["per_kind"]) == {"addition", "subtraction", "combination"},
    "table10": lambda m: all(len(v) == 3 and all(0 < r["cosine_sampled"] <= 1 for r in v)
                             for v in m["reconstruction"].values())
    and m["compression_ratio"]["padded"] > 1 and m["verdict"]["verdict"] in ("holds", "fails", "inconclusive"),
    "table3": lambda m: len(m["rows"]) == 15 and all(len(r["fid"]) == len(r["clip"]) == 2 for r in m["rows"])
    and set(m["verdicts"]) >= {f"{p}_{k}" for p in "abcde" for k in ("fid", "clip")}
    and all(v in ("holds", "fails", "inconclusive", "not testable at this scale") for v in m["verdicts"].values())
    and m["fid_real_floor"]["value"] > 0 and m["fid_real_floor"]["n"] > 1,
    "table1": lambda m: 0.9 <= m["param_ratio"] <= 1.1 and m["cost"]["ratios"]["train_step"] > 0
    and len(m["crossflow"]) == len(m["baseline"]) == 2 and set(m["guidance_gates"]) == {"CrossFlow", "Standard FM (noise + cross-attention)"}
    and m["verdict"]["verdict"] in ("holds", "fails", "inconclusive", "not testable at this scale")
    and all(v["verdict"] in ("holds", "fails", "inconclusive") for v in m["verdicts"].values())
    and m["crossflow"][0]["train_steps"] == m["baseline"][0]["train_steps"] == 20
    and m["fid_real_floor"]["value"] > 0 and m["fid_real_floor"]["n"] > 1,
    "fig3": lambda m: len(m["sizes"]) == 10 and m["parameter_range"] >= 10 and len(m["curve"]) == 6
    and m["verdict"]["verdict"] in ("holds", "fails", "inconclusive")
    and all(len(v) == 2 for v in m["verdict"]["size_gaps"].values())
    and m["fid_real_floor"]["value"] > 0 and m["fid_real_floor"]["n"] > 1,
    "sampler": lambda m: len(m["euler50"]["runs"]) == 2 and len(m["grid"]) == 3 * 2
    and all(r["nfe"] in (4, 50) for r in m["grid"]) and isinstance(m["verdict"], str),
    "precision": lambda m: len(m["runs"]) == 3 and all(len(r["history"]) > 0 for r in m["runs"].values())
    and set(m["verdict"]["checks"]) == {"fm", "fid", "geneval"},
    "table6": lambda m: set(m["runs"]) == {"crossflow", "noise_concat", "regression"}
    and all(len(r) == 2 and all(10 < x["psnr"] < 60 and 0 < x["ssim"] <= 1 for x in r) for r in m["runs"].values())
    and m["verdict"]["verdict"] in ("holds", "fails", "not shown") and 10 < m["bicubic"]["psnr"] < 60,
    "fig9": lambda m: len(m["rows"]) == 7 + 3 and all(r["fid"] > 0 and 0 <= r["geneval"] <= 1 for r in m["rows"])
    and m["verdicts"]["indicator0_plausible"]["verdict"] in ("holds", "fails")
    and m["verdicts"]["cfg_beats_ag"]["verdict"] in ("holds", "fails", "mixed")
    and m["fid_real_floor"] > 0,
    "table5": lambda m: set(m["runs"]) == {"crossflow", "noise_concat", "regression"}
    and all(len(r) == 2 and all(0 <= x["absrel"] and 0 <= x["delta1"] <= 1 for x in r) for r in m["runs"].values())
    and m["verdict"]["verdict"] in ("holds", "fails", "not testable") and m["mean_depth_map"]["n"] == 8,
    "table9": lambda m: set(m["mean_depth_map"]["per_image"]) == {"motorcycle", "aloe", "quokka"}
    and all(set(x["per_image"]) == {"motorcycle", "aloe", "quokka"} for r in m["runs"].values() for x in r)
    and m["verdict"]["verdict"] in ("holds", "fails", "not testable"),
    "table4": lambda m: set(m["scores"]) == {"crossflow", "crossflow_t2i", "autoregressive"}
    and all(len(v) == 2 and all(0 <= x["CIDEr"] and 0 <= x["BLEU-4"] <= 1 and x["SPICE"] is None for x in v)
            for v in m["scores"].values())
    and m["verdict"]["verdict"] in ("holds", "fails") and m["n_refs"] == 5
    and all(0 <= r["token_accuracy"] <= 1 for r in m["reconstruction"].values()),
    "regime": lambda m: len(m["rows"]) == 3 and m["fid_floor"] > 0 and m["chosen"] is not None
    and all(0 <= r["geneval"] <= 1 and r["cpu_minutes"] > 0 for r in m["rows"])
    and m["confirm"]["sampler"] == "euler 4" and set(m["guidance"]) == {"recipe", "narrow"} and set(m["target_check"]) >= {"fid_met", "geneval_met"}
    and len(m["guidance_along_training"]["fid"]) == 2
    and all(len(v) == 2 for d in m["guidance_along_training"]["fid"].values() for v in d.values()),
}

# smaller grids than the notebooks' defaults, so that the smoke runs take seconds
SMOKE_PARAMS = {"sampler": {"nfes": [4, 50], "seeds": [0, 1]}, "precision": {"steps": 20},
                "table1": {"seeds": [0, 1]}, "fig3": {"seeds": [0, 1]}, "table3": {"seeds": [0, 1]},
                "regime": {"overrides": {}, "n_test": 16, "n_val": 8, "cfg_scales": [2.0], "confirm_steps": 4,
                           "points": {"recipe": {"overrides": {}, "lengths": [0.5, 1]},
                                      "narrow": {"overrides": {"flow.width": 16}, "lengths": [1]}}}}


def test_every_notebook_is_an_artifact():
    """No notebook escapes the driver (and so these tests)."""
    listed = {Path(nb).name for nb, _ in ARTIFACTS.values()}
    assert {p.name for p in NOTEBOOKS} == listed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code), "commit without outputs"
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code), "no 'parameters' cell"
    for c in code:
        src = "".join(c["source"])
        assert not any(line.startswith(("def ", "class ")) for line in src.splitlines()), \
            "logic belongs in crossflow/, not in a notebook"
    assert nb["cells"][0]["cell_type"] == "markdown" and "Runtime" in "".join(nb["cells"][0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "crossflow", "notebooks name the project's kernel (make venv)"
    # papermill parses the parameters cell itself (for --help-notebook and its warnings): every name must parse
    from papermill.translators import PythonTranslator
    params = next(c for c in code if "parameters" in c.get("metadata", {}).get("tags", []))
    parsed = [p.name for p in PythonTranslator.inspect({"source": "".join(params["source"])})]
    assert parsed == list(notebook_parameters(path)), "papermill cannot parse a parameter line (no '=' in comments)"


@pytest.mark.slow
@pytest.mark.parametrize("artifact", sorted(ARTIFACTS))
def test_notebook_runs_in_smoke_profile(artifact, tmp_path):
    out = tmp_path / artifact
    folders = {"run_dir": str(tmp_path / "run"), "runs_dir": str(tmp_path / "runs"), "guide_dir": str(tmp_path / "guide")}
    params = {k: v for k, v in folders.items() if k in notebook_parameters(ROOT / ARTIFACTS[artifact][0])}
    params.update(SMOKE_PARAMS.get(artifact, {}))
    run(artifact, profile="smoke", out=str(out), params=params)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["profile"] == "smoke"
    assert metrics["config"]["profile"] == "smoke"
    executed = out / Path(ARTIFACTS[artifact][0]).name
    assert executed.exists()
    cells = json.loads(executed.read_text())["cells"]
    assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
    for figure in FIGURES.get(artifact, ()):
        assert (out / figure).stat().st_size > 1000, figure
    assert CHECKS.get(artifact, lambda m: True)(metrics["metrics"]), metrics["metrics"]
    # incremental: unchanged inputs -> not recomputed
    stamp = (out / "inputs.json").stat().st_mtime_ns
    before = executed.stat().st_mtime_ns
    run(artifact, profile="smoke", out=str(out), params=params)
    assert executed.stat().st_mtime_ns == before and (out / "inputs.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_fresh_machine_resumes_from_the_committed_job_records(tmp_path):
    """Issue 15 (8): the finished jobs' result.json files committed in results/<artifact>/jobs let a fresh clone
    skip those trainings. The driver executes into a scratch folder, so it must carry the records into it."""
    out, runs = tmp_path / "table1", tmp_path / "runs"
    params = {"runs_dir": str(runs), **SMOKE_PARAMS["table1"], "seeds": [0]}
    run("table1", profile="smoke", out=str(out), params=params)
    records = sorted(p.name for p in (out / "jobs").iterdir())
    assert records, "the notebook keeps job records"
    before = json.loads((out / "metrics.json").read_text())["metrics"]
    shutil.rmtree(runs)                                   # a fresh machine: no training runs, only results/
    run("table1", profile="smoke", out=str(out), params=params, force=True)
    assert not list(runs.glob("*/checkpoint.pt")), "a recorded job was trained again"
    assert sorted(p.name for p in (out / "jobs").iterdir()) == records
    after = json.loads((out / "metrics.json").read_text())["metrics"]
    assert after["verdict"] == before["verdict"] and after["fid_gaps"] == before["fid_gaps"]
    executed = (out / Path(ARTIFACTS["table1"][0]).name).read_text()
    assert f"{ROOT}/" not in executed, "results name checkout paths relative to it (papermill's input_path)"
