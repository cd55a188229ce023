"""Issue 11: one device everywhere, the profile registry, GPU refusal, make gpu-check; CUDA-only tests marked gpu."""
from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from crossflow.config import get_config
from crossflow.device import DeviceError, check_profile_device, randn, resolve_device
from crossflow.profiles import PROFILE_NAMES, get_profile
from reproduce.run import ROOT

NO_CUDA = not torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------------------
# Profiles: one registry
# ----------------------------------------------------------------------------------------------------------

def test_every_profile_is_one_registry_entry_that_every_consumer_reads():
    from crossflow.compression import COMPRESSION_PRESETS
    from crossflow.evaluate import get_eval_config
    from crossflow.experiments import experiment_config, fig3_plan
    assert {"smoke", "tiny", "gpu-smoke", "gpu", "paper"} <= set(PROFILE_NAMES)
    for name in PROFILE_NAMES:
        cfg = get_config(name)
        assert cfg.profile == name
        assert experiment_config(name).profile == name
        get_eval_config(name)
        assert name in COMPRESSION_PRESETS
        steps, sizes = fig3_plan(name)
        assert sizes and all(experiment_config(name, ov) for ov in sizes.values())
        assert {"n_val", "n_test"} <= set(get_profile(name).eval_sizes)
        assert get_profile(name).device in ("cpu", "cuda")


def test_tiny_sizes_are_the_regime_studys_choice():
    """tiny = the Config defaults (the recipe before the regime study) + the study's chosen point; the comparison
    models are that network trained 2,800 steps with the study's sampler; evaluation at issue 15's sizes."""
    from crossflow.compression import COMPRESSION_PRESETS, CompressionConfig
    from crossflow.evaluate import EvalConfig, get_eval_config
    from crossflow.experiments import experiment_config, fig3_plan, generator_parameters
    from crossflow.config import Config
    from crossflow.profiles import FAST_SAMPLER, FAST_STEP, FP32_STEP, TINY_RECIPE
    tiny = get_config("tiny")
    assert tiny == Config().replace({"name": "tiny", "profile": "tiny", **TINY_RECIPE, "data.num_test": 5000})
    assert (tiny.flow.patch_size, tiny.flow.width, tiny.train.steps, tiny.train.mixed_precision) == (2, 256, 4200, "bf16")
    assert 8.0e6 < generator_parameters(tiny) < 8.5e6
    assert set(FAST_STEP) == set(FP32_STEP) and Config().replace(dict(FP32_STEP)) == Config()   # the defaults
    e = experiment_config("tiny")
    assert e.flow == tiny.flow and e.train.steps == 2800 and (e.sample.solver, e.sample.steps) == (
        FAST_SAMPLER["sample.solver"], FAST_SAMPLER["sample.steps"])
    assert get_profile("tiny").eval_sizes == {"n_val": 500, "n_test": 2000}
    assert get_eval_config("tiny") == EvalConfig() and COMPRESSION_PRESETS["tiny"] == CompressionConfig()
    steps, sizes = fig3_plan("tiny")
    assert steps is None and list(sizes) == ["XS", "S", "M", "L", "XL"] and sizes["XL"] == {}   # XL = the comparison model
    p = [generator_parameters(e.replace(ov)) for ov in sizes.values()]
    assert p == sorted(p) and p[-1] / p[0] >= 10


def test_regime_study_base_is_the_recipe_before_the_study():
    """The regime study varies the recipe as it was before it: its committed job records keep their hashes."""
    import json
    from crossflow.experiments import Guidance, regime_jobs, study_base
    from crossflow.config import Config
    from crossflow.profiles import FAST_SAMPLER
    base = study_base("tiny", {"data.num_test": 5000})
    assert base == Config().replace({"name": "tiny", "profile": "tiny", "data.num_test": 5000})
    assert study_base("smoke") == get_config("smoke")
    rec = Path(__file__).parents[1] / "results" / "regime" / "jobs" / "recipe-s0.json"
    if rec.exists():
        job = regime_jobs(study_base("tiny", {"data.num_test": 5000, **FAST_SAMPLER}),
                          {"recipe": {"overrides": {}, "lengths": [0.5, 1, 2, 3, 4]}}, 0, "runs",
                          [Guidance()] + [Guidance("indicator", s) for s in (2.0, 3.0, 5.0, 7.0)],
                          {"n_test": 2000, "n_val": 500})["recipe"]
        assert job.spec_hash() == json.loads(rec.read_text())["spec_hash"]


def test_gpu_profile_is_a_real_step_up():
    """gpu: a 20-50M-parameter flow network on the same 32x32 domain, batch 256, tens of thousands of steps."""
    from crossflow.experiments import generator_parameters
    from crossflow.models import CrossFlow, count_parameters
    tiny, gpu = get_config("tiny"), get_config("gpu")
    with torch.device("meta"):
        net = CrossFlow(gpu, 384, gpu.text.max_length).net
    assert 20e6 <= count_parameters(net) <= 50e6
    assert gpu.data.image_size == tiny.data.image_size and gpu.latent_shape == tiny.latent_shape
    assert gpu.train.batch_size == 256 and gpu.train.steps >= 20000
    assert generator_parameters(gpu) > 3 * generator_parameters(tiny)
    assert gpu.train.steps * gpu.train.batch_size > 30 * tiny.train.steps * tiny.train.batch_size   # samples seen


def test_unknown_profile_says_what_exists():
    with pytest.raises(ValueError, match="did you mean 'gpu'"):
        get_profile("gpux")


# ----------------------------------------------------------------------------------------------------------
# Device choice and random draws
# ----------------------------------------------------------------------------------------------------------

def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("CROSSFLOW_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu9")
    if NO_CUDA:
        with pytest.raises(DeviceError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_seeded_draws_come_from_the_cpu_generator():
    """randn(shape, generator, device) = the CPU generator's numbers, wherever they are put."""
    a = randn((3, 4), torch.Generator().manual_seed(7), "cpu")
    b = torch.randn((3, 4), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_cuda_profile_refuses_without_cuda_unless_cpu_is_asked_for(monkeypatch):
    monkeypatch.delenv("CROSSFLOW_DEVICE", raising=False)
    with pytest.raises(DeviceError, match="set CROSSFLOW_DEVICE=cpu"):
        check_profile_device("gpu-smoke")
    assert check_profile_device("tiny") == torch.device("cpu")
    monkeypatch.setenv("CROSSFLOW_DEVICE", "cpu")
    assert check_profile_device("gpu-smoke") == torch.device("cpu")
    # the driver, as `make reproduce-t2i PROFILE=gpu-smoke` calls it
    env = {k: v for k, v in os.environ.items() if k != "CROSSFLOW_DEVICE"}
    res = subprocess.run([sys.executable, "-m", "reproduce.run", "t2i", "--profile", "gpu-smoke", "--out",
                          os.devnull + "-never"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "sized for a CUDA GPU" in res.stderr + res.stdout


# ----------------------------------------------------------------------------------------------------------
# make gpu-check
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not NO_CUDA, reason="checks the missing-CUDA report")
def test_gpu_check_says_what_is_missing():
    res = subprocess.run([sys.executable, "-m", "reproduce.gpu_check", "--device", "cuda",
                          "--text-model", "/nonexistent/minilm"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert "CUDA: torch" in res.stderr and "--device cpu" in res.stderr
    assert "text encoder: /nonexistent/minilm has no config.json" in res.stderr


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The whole check, on the CPU (the stages assert 'cpu' where on a GPU they assert 'cuda'), with a narrow
    paper step, so that the script cannot rot between GPU runs."""
    res = subprocess.run([sys.executable, "-m", "reproduce.gpu_check", "--device", "cpu", "--paper-width", "32",
                          "--paper-batch", "1", "--gpu-steps", "1", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "TQDM_DISABLE": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = (tmp_path / "report-cpu-dry-run.md").read_text()
    for stage in ("features", "train", "sample", "evaluate", "paper", "gpu-step"):
        assert f"| {stage} |" in report
    assert "checkpoint tensors on cpu" in report and "judge inputs on cpu" in report


# ----------------------------------------------------------------------------------------------------------
# CUDA only (pytest -m gpu on a GPU runner; skipped here)
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.slow
def test_train_sample_and_reload_on_cuda(smoke_features, tmp_path, monkeypatch):
    from crossflow.device import module_device
    from crossflow.pipeline import text_to_image
    from crossflow.train import load_model, train
    monkeypatch.setenv("CROSSFLOW_DEVICE", "cuda")
    cfg = get_config("smoke")
    res = train(cfg, smoke_features, tmp_path, progress=False)
    assert module_device(res.model).type == "cuda"
    images = text_to_image(res.model, cfg, ["a red sandal", "two blue bags"], steps=3)
    assert images.device.type == "cpu" and torch.isfinite(images).all()
    cpu_model = load_model(tmp_path, map_location="cpu")[0]
    assert module_device(cpu_model).type == "cpu"


@pytest.mark.gpu
def test_text_ve_noise_is_the_same_on_cuda_and_cpu():
    from crossflow.config import TextVEConfig
    from crossflow.models import TextVE
    torch.manual_seed(0)
    ve = TextVE(TextVEConfig(width=32, depth=1, heads=2, ffn=64, dropout=0.0), 16, 6, (4, 8, 8)).eval()
    x, mask = torch.randn(2, 6, 16), torch.ones(2, 6, dtype=torch.bool)
    z_cpu = ve.encode(x, mask, torch.Generator().manual_seed(3))[0]
    z_gpu = ve.cuda().encode(x.cuda(), mask.cuda(), torch.Generator().manual_seed(3))[0]
    assert torch.allclose(z_cpu, z_gpu.cpu(), atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# Shipped launcher configs and CI workflows
# ----------------------------------------------------------------------------------------------------------

def test_accelerate_configs_load_and_name_real_things():
    from accelerate.commands.config.config_args import load_config_from_file
    from crossflow.models import flow_transformer
    ddp = load_config_from_file(str(ROOT / "configs/accelerate/ddp_bf16.yaml"))
    assert ddp.distributed_type.value == "MULTI_GPU" and ddp.mixed_precision == "bf16"
    fsdp = load_config_from_file(str(ROOT / "configs/accelerate/fsdp.yaml"))
    assert fsdp.distributed_type.value == "FSDP"
    assert hasattr(flow_transformer, fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"])


def test_workflows_run_the_documented_commands():
    import yaml
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    gpu = yaml.safe_load((ROOT / ".github/workflows/gpu.yml").read_text())
    ci_steps = " ".join(s.get("run", "") for job in ci["jobs"].values() for s in job["steps"])
    assert "make test" in ci_steps
    job = next(iter(gpu["jobs"].values()))
    assert "gpu" in job["runs-on"]
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "nvidia-smi" in runs and "make gpu-check" in runs and "--profile gpu-smoke" in runs
    triggers = gpu.get("on", gpu.get(True))                     # YAML 1.1 reads the key `on` as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers


def test_gpu_time_estimate_counts_every_artifact():
    from reproduce.estimate import artifact_flops, notebook_parameters
    per = artifact_flops("smoke")
    from reproduce.run import ARTIFACTS
    assert set(per) == set(ARTIFACTS), "every artifact of the driver has a row"
    assert per["t2i"]["train"] > 0 and per["table3"]["train"] > per["table1"]["train"] > 0
    assert notebook_parameters("fig3")["curve_fractions"] == [1 / 3, 2 / 3]
