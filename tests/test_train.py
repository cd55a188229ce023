"""Tier 2: tiny-model smoke training, checkpoints, resume after a kill, errors, two-process data parallelism."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
import torch

from crossflow.config import get_config
from crossflow.models import count_parameters
from crossflow.pipeline import text_to_image
from crossflow.train import CKPT, NonFiniteLossError, load_model, train

pytestmark = pytest.mark.slow


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_smoke_training_learns_and_samples(smoke_cfg, smoke_features, tmp_path):
    cfg = smoke_cfg.replace({"train.steps": 60, "train.log_every": 10})
    result = train(cfg, smoke_features, tmp_path / "run", progress=False)
    fm = [r["fm"] for r in result.history]
    assert len(result.history) == 6 and all(math.isfinite(v) for v in fm)
    assert fm[-1] < fm[0], f"flow-matching loss did not decrease: {fm}"
    assert {"loss", "fm", "enc", "kl", "lr"} <= set(result.history[-1])
    # metrics log and resolved config are on disk
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 60
    images = text_to_image(result.model, cfg, ["a red sandal", "two blue bags"], steps=3, scale=2.0)
    assert images.shape == (2, 3, cfg.data.image_size, cfg.data.image_size)
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()


def test_checkpoint_round_trip(smoke_cfg, smoke_features, tmp_path):
    result = train(smoke_cfg, smoke_features, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / CKPT, weights_only=False)
    assert {"model", "ema", "optimizer", "scheduler", "step", "rng", "config", "dims", "code_version",
            "train_seconds"} <= set(ckpt)
    assert ckpt["step"] == smoke_cfg.train.steps
    model, cfg, _ = load_model(tmp_path)                          # rebuilt from the checkpoint alone
    assert cfg == smoke_cfg
    assert _same_weights(model, result.model)
    raw, _, _ = load_model(tmp_path, ema=False)
    assert _same_weights(raw, result.raw_model)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "a temporary file was left behind"


@pytest.mark.cpu
def test_resume_after_graceful_stop_is_exact(smoke_cfg, smoke_features, tmp_path):
    full = train(smoke_cfg, smoke_features, tmp_path / "full", progress=False)
    part = train(smoke_cfg, smoke_features, tmp_path / "part", stop_at=10, progress=False)
    assert part.step == 10
    resumed = train(smoke_cfg, smoke_features, tmp_path / "part", progress=False)
    assert resumed.step == smoke_cfg.train.steps
    assert _same_weights(full.raw_model, resumed.raw_model)
    assert _same_weights(full.model, resumed.model)              # EMA too
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from crossflow.config import get_config
    from crossflow.features import prepare_features
    from crossflow.train import train
    cfg = get_config("smoke", {"train.steps": 100000, "train.ckpt_every": 10})
    train(cfg, prepare_features(cfg, progress=False), sys.argv[1], progress=False)
""")


@pytest.mark.cpu
def test_killed_run_resumes_to_the_same_weights(smoke_features, tmp_path):
    """SIGKILL a training process after its first checkpoint, resume, compare with an uninterrupted run."""
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run)])
    try:
        deadline = time.time() + 240
        while not (run / CKPT).exists():
            assert proc.poll() is None, "training process died before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        time.sleep(1.0)                                           # let it run past the checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = torch.load(run / CKPT, weights_only=False)["step"]
    assert done % 10 == 0 and done >= 10
    final = done + 10
    cfg = get_config("smoke", {"train.steps": final, "train.ckpt_every": 10})
    resumed = train(cfg, smoke_features, run, progress=False)
    reference = train(cfg, smoke_features, tmp_path / "reference", progress=False)
    assert _same_weights(reference.raw_model, resumed.raw_model)
    assert _same_weights(reference.model, resumed.model)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == final, "log lines past the checkpoint were not dropped"


def test_resume_refuses_a_different_config(smoke_cfg, smoke_features, tmp_path):
    train(smoke_cfg.replace({"train.steps": 5}), smoke_features, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different config \(train.lr: 0.001 -> 0.5;"):
        train(smoke_cfg.replace({"train.steps": 5, "train.lr": 0.5}), smoke_features, tmp_path, progress=False)


def test_resume_with_fewer_steps_than_the_checkpoint_says_so(smoke_cfg, smoke_features, tmp_path):
    """Issue 12 (8): asking for 3 steps from a 5-step checkpoint is refused, and config.json is not rewritten."""
    train(smoke_cfg.replace({"train.steps": 5}), smoke_features, tmp_path, progress=False)
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match="at step 5, past train.steps=3"):
        train(smoke_cfg.replace({"train.steps": 3}), smoke_features, tmp_path, progress=False)
    with pytest.raises(ValueError, match="at step 5, past stop_at=2"):
        train(smoke_cfg.replace({"train.steps": 5}), smoke_features, tmp_path, stop_at=2, progress=False)
    assert (tmp_path / "config.json").read_text() == before


def test_nan_loss_stops_with_a_clear_error(smoke_cfg, smoke_features, tmp_path):
    bad = replace(smoke_features, z1=torch.full_like(smoke_features.z1, float("nan")))
    with pytest.raises(NonFiniteLossError, match="train.lr"):
        train(smoke_cfg, bad, tmp_path, progress=False)
    assert not (tmp_path / CKPT).exists()


def test_baseline_and_ablation_variants_train(smoke_cfg, smoke_features, tmp_path):
    """One training path serves CrossFlow, its Table 3 variants and the noise + cross-attention baseline."""
    variants = {
        "baseline": {"objective.source": "noise", "flow.cross_attention": True},
        "deterministic": {"text_ve.kind": "deterministic", "objective.enc_loss": "none"},
        "noise": {"text_ve.kind": "noise"},
        "tt_recon": {"objective.enc_loss": "tt_recon"},
        "tt_contrastive": {"objective.enc_loss": "tt_contrastive", "objective.kl_form": "paper"},
    }
    for name, over in variants.items():
        cfg = smoke_cfg.replace({**over, "train.steps": 3})
        result = train(cfg, smoke_features, tmp_path / name, progress=False)
        assert math.isfinite(result.history[-1]["loss"]), name
        images = text_to_image(result.model, cfg, ["a red sandal"], steps=2, scale=1.5)
        assert torch.isfinite(images).all(), name


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    from accelerate import Accelerator
    from crossflow.config import get_config
    from crossflow.features import prepare_features
    from crossflow.train import train
    acc = Accelerator(cpu=True)
    cfg = get_config("smoke", {"train.steps": 6})
    out = sys.argv[1]
    result = train(cfg, prepare_features(cfg, progress=False), out, progress=False, accelerator=acc)
    flat = torch.cat([p.detach().flatten() for p in result.raw_model.parameters()])
    torch.save({"world": acc.num_processes, "flat": flat}, f"{out}/rank{acc.process_index}.pt")
""")


@pytest.mark.cpu
def test_two_cpu_processes_data_parallel(smoke_features, tmp_path):
    """Two CPU processes (torchrun; Accelerator picks up the distributed env, gloo backend) run the unchanged
    loop; both replicas end identical. On GPUs `accelerate launch` or torchrun start the same script."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert torch.allclose(r0["flat"], r1["flat"]), "replicas diverged: gradients were not synchronised"
    assert torch.load(out / CKPT, weights_only=False)["step"] == 6


def test_paper_preset_one_step_at_reduced_width(smoke_features, tmp_path):
    """The paper recipe's structure (SD-VAE-like factor 8, 3 VE reductions, patch 2, bf16) at reduced width."""
    cfg = get_config("paper", {
        "data.source": "scenes", "data.image_size": 64, "data.num_train": 64, "data.num_test": 16,
        "text.model": "minilm",                                       # CLIP cannot be downloaded here
        "autoencoder.pretrained": None, "autoencoder.block_out_channels": (8, 8, 16, 16),
        "autoencoder.steps": 2, "autoencoder.scaling_factor": None,
        "text_ve.width": 64, "text_ve.depth": 1, "text_ve.heads": 4, "text_ve.ffn": 64,
        "flow.width": 64, "flow.depth": 2, "flow.heads": 4,
        "train.steps": 1, "train.batch_size": 8,
    })
    from crossflow.features import prepare_features
    feats = prepare_features(cfg, progress=False)
    assert feats.z1.shape[1:] == (4, 8, 8) and feats.x.shape[1] == 77
    result = train(cfg, feats, tmp_path, progress=False)
    assert result.step == 1 and math.isfinite(result.history[-1]["loss"])
    assert count_parameters(result.model.net) > 0


def test_grad_accumulation_matches_one_big_batch(smoke_features, tmp_path):
    """One step of batch B equals one step of 2 micro-batches of B/2 with train.grad_accum=2 (same samples).

    Everything random inside the loss is switched off (deterministic encoder, fixed t = sigmoid(0), no
    unconditional samples, no dropout, no contrastive loss whose negatives depend on the batch), so the only
    difference left is floating-point summation order."""
    cfg = get_config("smoke", {"train.steps": 1, "text_ve.kind": "deterministic", "objective.enc_loss": "none",
                               "objective.t_std": 0.0, "objective.uncond_prob": 0.0, "text_ve.dropout": 0.0,
                               "train.batch_size": 16, "train.warmup_steps": 1})
    one = train(cfg, smoke_features, tmp_path / "one", progress=False)
    two = train(cfg.replace({"train.grad_accum": 2}), smoke_features, tmp_path / "two", progress=False)
    half = train(cfg.replace({"train.batch_size": 8}), smoke_features, tmp_path / "half", progress=False)
    init = _initial_weights(cfg, smoke_features)

    def update(result):                                  # the step's change of every weight, as one vector
        sd = {k: v.cpu() for k, v in result.raw_model.state_dict().items()}
        return torch.cat([(sd[k] - init[k]).flatten() for k in init])

    u_one, u_two, u_half = update(one), update(two), update(half)
    assert u_one.norm() > 0.1, "the step did not move the weights; the comparison would be empty"
    # measured: 3e-5 for accumulation (summation order), 1.0 for a step on other samples (the control)
    assert (u_one - u_two).norm() / u_one.norm() < 1e-3
    assert (u_one - u_half).norm() / u_one.norm() > 0.1
    assert one.history[-1]["loss"] == pytest.approx(two.history[-1]["loss"], rel=1e-5)


def _initial_weights(cfg, feats) -> dict:
    """The initial weights train() starts from (seeded by train.seed)."""
    from crossflow.models import CrossFlow
    torch.manual_seed(cfg.train.seed)
    return CrossFlow(cfg, feats.x.shape[-1], feats.x.shape[1]).state_dict()


def test_grad_accum_must_divide_the_batch():
    from crossflow.config import ConfigError
    with pytest.raises(ConfigError, match="grad_accum"):
        get_config("smoke", {"train.grad_accum": 3})
    with pytest.raises(ConfigError, match="grad_accum"):
        get_config("smoke", {"train.grad_accum": 0})


def _torchrun(args: list[str], env_extra: dict | None = None, timeout: int = 600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.cpu
def test_train_cli_under_torchrun_two_processes(tmp_path):
    """`python -m crossflow.train --profile smoke --out DIR key=value` runs unchanged under a launcher (torchrun;
    `accelerate launch` starts the same module): features are built once, the run resumes, the logged loss is
    the mean over the two processes, and the checkpoint is written once."""
    out = tmp_path / "cli"
    res = _torchrun(["-m", "crossflow.train", "--profile", "smoke", "--out", str(out), "train.steps=6",
                     "train.log_every=3", "train.grad_accum=2"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 process(es)" in res.stdout and "grad_accum 2" in res.stdout
    ckpt = torch.load(out / CKPT, weights_only=False)
    assert ckpt["step"] == 6 and ckpt["config"]["train"]["grad_accum"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]                 # one log line per step, not one per process


LOSS_PROBE = textwrap.dedent("""
    import json, sys, torch
    from accelerate import Accelerator
    from crossflow.config import get_config
    from crossflow.features import prepare_features
    from crossflow.train import train, NonFiniteLossError
    from dataclasses import replace
    acc = Accelerator(cpu=True)
    cfg = get_config("smoke", {"train.steps": 2, "train.log_every": 1})
    feats = prepare_features(cfg, progress=False)
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "nan" and acc.process_index == 1:               # only the second process sees broken data
        feats = replace(feats, z1=torch.full_like(feats.z1, float("nan")))
    try:
        result = train(cfg, feats, out, progress=False, accelerator=acc)
    except NonFiniteLossError as e:
        print(f"rank {acc.process_index} stopped: {e}", flush=True)
        sys.exit(3)
    json.dump(result.history, open(f"{out}/rank{acc.process_index}.json", "w"))
""")


@pytest.mark.cpu
def test_logged_loss_is_the_mean_over_processes(tmp_path):
    """Each process computes the loss of its own slice; the logged value is their mean, the same on both
    (before issue 11 each process logged its own slice's loss)."""
    script = tmp_path / "probe.py"
    script.write_text(LOSS_PROBE)
    out = tmp_path / "ok"
    res = _torchrun([str(script), "ok", str(out)], timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    h0, h1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert [r["step"] for r in h0] == [1, 2]
    assert h0 == h1


@pytest.mark.cpu
def test_nan_on_one_process_stops_every_process(tmp_path):
    """A NaN on rank 1 only: both ranks raise the same NonFiniteLossError (no rank waits forever in the gradient
    all-reduce), and the message says on how many processes the loss broke."""
    script = tmp_path / "probe.py"
    script.write_text(LOSS_PROBE)
    res = _torchrun([str(script), "nan", str(tmp_path / "nan")], timeout=300)
    assert res.returncode != 0
    out = res.stdout
    assert "rank 0 stopped" in out and "rank 1 stopped" in out, out[-3000:] + res.stderr[-3000:]
    assert "on 1 of 2 processes" in out and "no checkpoint had been written yet" in out


def test_fast_step_trains_close_to_fp32_and_loads(smoke_cfg, smoke_features, tmp_path):
    """The fast step (bf16 autocast, math attention, fused AdamW) stays finite, follows the fp32 loss on a smoke
    run (margin decided before running: mean logged loss within 10%), and its checkpoint loads into a plain model."""
    from crossflow.profiles import FAST_STEP
    cfg = smoke_cfg.replace({"train.steps": 40, "train.log_every": 5})
    ref = train(cfg, smoke_features, tmp_path / "fp32", progress=False)
    fast = train(cfg.replace(dict(FAST_STEP)), smoke_features, tmp_path / "fast", progress=False)
    loss_ref = [r["loss"] for r in ref.history]
    loss_fast = [r["loss"] for r in fast.history]
    assert all(math.isfinite(v) for v in loss_fast)
    mean_ref, mean_fast = sum(loss_ref) / len(loss_ref), sum(loss_fast) / len(loss_fast)
    assert abs(mean_fast - mean_ref) <= 0.10 * mean_ref, (loss_ref, loss_fast)
    model, loaded_cfg, _ = load_model(tmp_path / "fast")
    assert loaded_cfg.train.mixed_precision == "bf16" and loaded_cfg.flow.attention == "math"
    assert _same_weights(model, fast.model)


@pytest.mark.cpu
def test_compiled_fp32_step_matches_and_bf16_compile_is_refused_on_cpu(smoke_cfg, smoke_features, tmp_path):
    """Compiling the flow network (in place: the same parameter names) trains finitely in fp32; with bf16 on a CPU
    it is refused, because inductor's vectorised bf16 CPU kernels gave non-finite gradients (torch 2.14.1)."""
    cfg = smoke_cfg.replace({"train.steps": 6, "train.log_every": 3})
    compiled = train(cfg.replace({"train.compile": True}), smoke_features, tmp_path / "c", progress=False)
    assert all(math.isfinite(r["loss"]) for r in compiled.history)
    model, _, _ = load_model(tmp_path / "c")
    assert _same_weights(model, compiled.model)
    with pytest.raises(ValueError, match="refused"):
        train(cfg.replace({"train.compile": True, "train.mixed_precision": "bf16"}), smoke_features,
              tmp_path / "b", progress=False)


def test_finite_watch_names_the_first_bad_step_without_reading_every_step(tmp_path):
    """On a GPU the loop records non-finite losses on the device and reads them only at logging/checkpoint steps;
    the error names the first bad step."""
    from crossflow.train import _FiniteWatch

    class Acc:                                             # the parts of an Accelerator the watch uses
        device, num_processes = torch.device("cpu"), 1
    watch = _FiniteWatch(Acc())
    for step, value in enumerate([1.0, 2.0, float("nan"), 3.0, float("inf")]):
        watch.see(torch.tensor(value), {"fm": torch.tensor(value)}, step)
    with pytest.raises(NonFiniteLossError, match="at step 2 .*no checkpoint had been written yet"):
        watch.check(tmp_path / CKPT)
    ok = _FiniteWatch(Acc())
    ok.see(torch.tensor(1.0), {}, 0)
    ok.check(tmp_path / CKPT)                              # finite: nothing raised


def test_tensorboard_logging_is_optional_and_may_change_on_resume(smoke_cfg, smoke_features, tmp_path):
    """train.tensorboard=True writes TensorBoard events beside metrics.jsonl; toggling it does not block a resume."""
    pytest.importorskip("tensorboard")
    cfg = smoke_cfg.replace({"train.steps": 10, "train.log_every": 5})
    train(cfg, smoke_features, tmp_path, stop_at=5, progress=False)
    result = train(cfg.replace({"train.tensorboard": True}), smoke_features, tmp_path, progress=False)
    assert result.step == 10
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]


def test_train_step_used_by_benchmarks_is_trains_step(smoke_cfg, smoke_features, tmp_path):
    """Issue 14: make bench and Table 1's cost ratios time crossflow.train.TrainStep, which runs train()'s own step
    functions: two of its steps give train()'s weights after two steps, bit for bit."""
    from crossflow.train import TrainStep
    cfg = smoke_cfg.replace({"train.steps": 2, "train.log_every": 1, "train.ckpt_every": 2})
    result = train(cfg, smoke_features, tmp_path, progress=False)
    st = TrainStep(cfg, smoke_features, "cpu")
    st.step(), st.step()
    assert _same_weights(st.model, result.raw_model) and _same_weights(st.ema, result.model)
