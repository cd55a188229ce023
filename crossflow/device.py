"""One device, chosen once, and random draws that give the same numbers on every device.

The device is chosen in one place: ``$CROSSFLOW_DEVICE`` ("auto" | "cpu" | "cuda" | "cuda:1" ...; default
"auto" = the first CUDA GPU when there is one, else the CPU). Training takes accelerate's device (which follows the
same choice, or ``accelerate launch``); everything else (caption embedding, the autoencoder, sampling, latent
operations, Table 10's text autoencoders, every evaluator, the experiments and the cost benchmark) takes a
``device`` argument whose default is :func:`default_device`.

Random draws: every seeded draw uses a CPU ``torch.Generator`` and the result is moved to the device of the
tensor it fills (:func:`randn`). The numbers are therefore the same on a CPU and a GPU, and the CPU results
are bit-identical to those made before devices were threaded through (tests/test_bit_identical.py).
"""
from __future__ import annotations

import os

import torch

ENV_VAR = "CROSSFLOW_DEVICE"


class DeviceError(RuntimeError):
    """The requested device does not exist here; the message says what to do."""


def default_device() -> torch.device:
    """``$CROSSFLOW_DEVICE`` or "auto" (CUDA if available, else CPU)."""
    return resolve_device(os.environ.get(ENV_VAR, "auto"))


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """A device from "auto" / None (= :func:`default_device`), "cpu", "cuda", "cuda:N" or a ``torch.device``."""
    if spec is None:
        return default_device()
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise DeviceError(f"unknown device '{spec}' (from ${ENV_VAR} or an argument); use auto, cpu, cuda or "
                          f"cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{spec}' was asked for, but torch {torch.__version__} sees no CUDA GPU here "
                          f"(torch.cuda.is_available() is False); unset ${ENV_VAR} or set it to cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (CPU for a module without parameters)."""
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def randn(shape, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise drawn where ``generator`` lives (the CPU for every seeded draw here), then moved
    to ``device``: the same numbers on any device. Without a generator, torch's global RNG of ``device``."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def synchronize(device) -> None:
    """Wait for queued GPU work (before reading a clock); nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_profile_device(profile: str) -> torch.device:
    """The device a run of ``profile`` will use; refuses a CUDA profile on a machine without CUDA unless
    ``$CROSSFLOW_DEVICE=cpu`` asks for the CPU explicitly (slow, but allowed: e.g. checking gpu-smoke on CPU)."""
    from .profiles import get_profile
    want = get_profile(profile).device
    device = default_device()
    if want == "cuda" and device.type != "cuda" and os.environ.get(ENV_VAR, "auto").strip().lower() != "cpu":
        raise DeviceError(
            f"profile '{profile}' is sized for a CUDA GPU, and torch {torch.__version__} sees none here "
            f"(torch.cuda.is_available() is False). Use a CPU profile (smoke, tiny), run on a GPU machine, or "
            f"set {ENV_VAR}=cpu to run '{profile}' on the CPU anyway.")
    return device


def peak_memory_mib(device) -> float | None:
    """Peak allocated GPU memory since the last reset, in MiB (None on the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def init_worker(gpus=None):
    """A worker process: one thread; with ``gpus`` (a queue of GPU indices) it takes one GPU for its lifetime."""
    if gpus is not None:                                 # before CUDA is initialised in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
        os.environ[ENV_VAR] = "cuda"
    torch.set_num_threads(1)
    os.environ["TQDM_DISABLE"] = "1"                     # the parent shows one bar over jobs
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
