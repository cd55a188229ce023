"""Shared fixtures: an isolated cache for the whole session, Fashion-MNIST (real or synthetic), smoke features,
the CPU as the device, and the ``gpu`` marker's skip where there is no CUDA."""
from __future__ import annotations

import os

import pytest

from crossflow.data import fashion_mnist as fm


@pytest.fixture(scope="session", autouse=True)
def session_env(tmp_path_factory):
    """Tests never write to the repo's cache; subprocesses (notebooks, accelerate) inherit these variables."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSFLOW_CACHE", str(tmp_path_factory.mktemp("crossflow-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    # CPU tests on any machine (CI is CPU; a GPU runner uses `pytest -m gpu` / make gpu-check); set
    # CROSSFLOW_DEVICE=cuda before pytest to run the whole suite on a GPU instead
    mp.setenv("CROSSFLOW_DEVICE", os.environ.get("CROSSFLOW_DEVICE", "cpu"))
    root = fm.DEBIAN_DIR if fm._complete(fm.DEBIAN_DIR) else fm.write_idx_fixture(
        tmp_path_factory.mktemp("fmnist"), n_train=600, n_test=200)
    mp.setenv(fm.ENV_VAR, str(root))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def smoke_cfg():
    from crossflow.config import get_config
    return get_config("smoke")


@pytest.fixture(scope="session")
def smoke_features(smoke_cfg):
    from crossflow.features import prepare_features
    return prepare_features(smoke_cfg, progress=False)


@pytest.fixture(autouse=True)
def _cpu_marker(request, monkeypatch):
    """Tests marked ``cpu`` run on the CPU even when the suite runs with CROSSFLOW_DEVICE=cuda: they check
    bit-exact reruns (CUDA kernels with atomics are not bit-reproducible), gloo multi-process training or CPU-only
    behaviour. accelerate keeps one device per process (AcceleratorState is a singleton), so its state is reset
    before and after such a test when another device may have set it."""
    if request.node.get_closest_marker("cpu") is None or os.environ.get("CROSSFLOW_DEVICE", "cpu") == "cpu":
        yield
        return
    from accelerate.state import AcceleratorState
    monkeypatch.setenv("CROSSFLOW_DEVICE", "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")      # for launched CPU processes: accelerate's gloo barrier
    AcceleratorState._reset_state(reset_partial_state=True)   # would pick cuda:<rank> on a one-GPU machine
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped (with the reason) where torch sees none."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
