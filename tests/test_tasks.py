"""Issue 14: tasks as modality pairs (registry, interfaces) and the super-resolution task (Table 6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossflow.config import ConfigError


def test_the_task_registry_lists_t2i_sr_and_depth():
    from crossflow.tasks import TASKS, get_task
    assert sorted(TASKS) == ["depth", "sr", "t2i"]
    for task in TASKS.values():
        impl = task.impl()
        assert all(hasattr(impl, f) for f in ("build_model", "model_from_dims", "config_from_dict")), task.name
        assert all(Path(nb).is_file() for nb in task.notebooks), task.notebooks
    for name in ("sr", "depth"):                            # what crossflow.tasks.runs trains with
        assert callable(get_task(name).impl().training_data)
    with pytest.raises(KeyError, match="registered: t2i, sr, depth"):
        get_task("captioning")


@pytest.mark.parametrize("module", ["sr", "depth", "runs"])
def test_pixel_tasks_use_no_text_specific_code(module):
    """The super-resolution and depth modules import nothing of the text side (encoders, Text VE, features,
    scenes, the experiments of the text-to-image tables)."""
    import ast
    import importlib

    mod = importlib.import_module(f"crossflow.tasks.{module}")
    tree = ast.parse(Path(mod.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    for bad in ("encoders", "models.text_ve", "models.crossflow", "features", "data.scenes", "pipeline",
                "experiments", "experiments.protocol"):
        assert not any(m.endswith(bad) for m in imported), bad


def test_source_encoders_and_codecs_follow_the_interfaces():
    from crossflow.config import TextVEConfig
    from crossflow.models import TextVE
    from crossflow.tasks import PixelCodec, SourceEncoder, TargetCodec
    from crossflow.tasks.sr import BicubicSource
    ve = TextVE(TextVEConfig(width=32, depth=1, heads=2, ffn=64), 16, 6, (4, 8, 8))
    assert isinstance(ve, SourceEncoder) and isinstance(BicubicSource(4), SourceEncoder)
    assert isinstance(PixelCodec(), TargetCodec)
    lr = torch.rand(2, 3, 8, 8)
    z0, mu, logvar = BicubicSource(4).encode(lr)
    assert z0.shape == (2, 3, 32, 32) and logvar is None and torch.equal(z0, mu) and z0.abs().max() <= 1
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(PixelCodec().decode(PixelCodec().encode(x)), x)


def test_sr_config_is_strict():
    from crossflow.tasks.sr import config_from_dict, get_sr_config
    cfg = get_sr_config("smoke")
    assert cfg.task == "sr" and cfg.profile == "smoke" and cfg.target_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="unknown config key 'train.stpes'"):
        cfg.replace({"train.stpes": 3})
    with pytest.raises(ConfigError, match="method="):
        cfg.replace({"method": "gan"})
    with pytest.raises(ConfigError, match="divisible"):
        cfg.replace({"data.patch": 30})
    from crossflow.config import to_dict
    assert config_from_dict(to_dict(cfg)) == cfg


def test_y_psnr_and_ssim_by_hand():
    from crossflow.tasks.sr import psnr_y, rgb_to_y, ssim_y
    white, black = np.full((1, 1, 1, 3), 255, np.uint8), np.zeros((1, 1, 1, 3), np.uint8)
    assert rgb_to_y(white).item() == pytest.approx(235.0) and rgb_to_y(black).item() == pytest.approx(16.0)
    a = np.zeros((1, 12, 12, 3), np.uint8)
    b = a.copy()
    b[0, 2:10, 2:10] = 10                       # an 8x8 square of RGB 10 -> Y differs by 10 * 219/255 inside
    dy = 10 * (65.481 + 128.553 + 24.966) / 255
    # crop 2: the 8x8 square fills the whole 8x8 crop, so MSE = dy^2
    assert psnr_y(b, a, crop=2)[0] == pytest.approx(10 * np.log10(255 ** 2 / dy ** 2))
    # crop 0: 64 of 144 pixels differ
    assert psnr_y(b, a, crop=0)[0] == pytest.approx(10 * np.log10(255 ** 2 / (dy ** 2 * 64 / 144)))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 24, 24, 3), dtype=np.uint8)
    assert ssim_y(img, img, 4)[0] == pytest.approx(1.0)
    assert ssim_y(img, 255 - img, 4)[0] < 0


def test_direct_vs_concat_verdict_rule():
    from crossflow.tasks.sr import direct_vs_concat_verdict

    def runs(a, b):
        return {"crossflow": [dict(zip(("psnr", "ssim", "fid"), v)) for v in a],
                "noise_concat": [dict(zip(("psnr", "ssim", "fid"), v)) for v in b]}
    assert direct_vs_concat_verdict(runs([(26, .8, 1), (26.2, .81, 1.1)], [(25, .7, 2), (25.5, .75, 3)]))["verdict"] == "holds"
    assert direct_vs_concat_verdict(runs([(25, .7, 2), (25.5, .75, 3)], [(26, .8, 1), (26.2, .81, 1.1)]))["verdict"] == "fails"
    tie = direct_vs_concat_verdict(runs([(26, .8, 1), (25, .7, 3)], [(25.5, .75, 2), (25.6, .76, 2.1)]))
    assert tie["verdict"] == "not shown" and set(tie["per_metric"].values()) == {"tie"}


@pytest.mark.parametrize("method", ["crossflow", "noise_concat", "regression"])
def test_sr_trains_resumes_and_reloads(method, tmp_path):
    from crossflow.tasks.sr import SRPatches, get_sr_config, super_resolve
    from crossflow.train import load_model, train
    g = torch.Generator().manual_seed(0)
    photos = [torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8, generator=g) for _ in range(3)]
    feats = SRPatches(photos=photos, names=["a", "b", "c"], patch=32, scale=4)
    cfg = get_sr_config("smoke", {"method": method, "train.steps": 6, "train.log_every": 3, "train.ckpt_every": 3})
    full = train(cfg, feats, tmp_path / "full", progress=False)
    train(cfg, feats, tmp_path / "part", stop_at=3, progress=False)
    resumed = train(cfg, feats, tmp_path / "part", progress=False)
    for a, b in zip(full.raw_model.parameters(), resumed.raw_model.parameters()):
        assert torch.equal(a, b), "resuming a super-resolution run is exact"
    model, loaded_cfg, _ = load_model(tmp_path / "full")
    assert loaded_cfg == cfg and type(model).__name__ == "SRModel"
    lr = torch.rand(5, 3, 8, 8)
    out = super_resolve(model, lr, steps=2)
    assert out.shape == (5, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, super_resolve(model, lr, steps=2)), "sampling is seeded"


def test_noise_concat_network_needs_its_condition():
    from crossflow.config import FlowNetConfig
    from crossflow.models.flow_transformer import FlowTransformer
    net = FlowTransformer(FlowNetConfig(width=16, depth=1, heads=2, patch_size=4), (3, 8, 8), cond_channels=3)
    with pytest.raises(ValueError, match="pass `cond`"):
        net(torch.zeros(1, 3, 8, 8), torch.zeros(1))
    assert net(torch.zeros(1, 3, 8, 8), torch.zeros(1), cond=torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_photos_split_by_photo_and_name_the_test_images():
    from crossflow.data import photos
    train_names = {n for _, n in photos.TRAIN_PHOTOS}
    test_names = {n for _, n in photos.TEST_PHOTOS}
    assert not train_names & test_names
    assert {"butterfly.jpg", "baboon.jpg"} <= test_names
    try:
        loaded = photos.load_photos("test", short_side=64)
    except photos.PhotosNotFoundError as e:
        pytest.skip(f"photos not installed here: {e}")
    assert [p.name for p in loaded] == [n.rsplit(".", 1)[0] for _, n in photos.TEST_PHOTOS]
    assert all(min(p.pixels.shape[:2]) == 64 and p.pixels.dtype == np.uint8 for p in loaded)
    crops = photos.grid_patches(loaded[0], 16, max_patches=5)
    assert crops.shape == (5, 16, 16, 3)


def test_unconditional_sampling_uses_indicator_zero():
    from crossflow.config import FlowNetConfig
    from crossflow.models.flow_transformer import FlowTransformer
    from crossflow.sampling import unconditional
    net = FlowTransformer(FlowNetConfig(width=16, depth=1, heads=2), (4, 4, 4))
    seen = []
    net.indicator_embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].tolist()))
    unconditional(net)(torch.zeros(3, 4, 4, 4), 0.5)
    assert seen == [[0, 0, 0]]


def test_pair_cache_builds_once_hit_equals_miss_and_rebuilds_damaged(tmp_path, monkeypatch):
    """crossflow.pairs.cached_tensors: one build per key, the same values from a hit, a damaged file rebuilt."""
    import torch
    from crossflow.pairs import cache_path, cached_tensors
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"z1": torch.arange(6.0).reshape(2, 3), "mask": torch.tensor([1, 0], dtype=torch.uint8)}

    miss = cached_tensors("pairs-test", {"k": 1}, build, "test pairs")
    hit = cached_tensors("pairs-test", {"k": 1}, build, "test pairs")
    assert len(calls) == 1 and all(torch.equal(miss[k], hit[k]) for k in miss)
    cached_tensors("pairs-test", {"k": 2}, build, "test pairs")
    assert len(calls) == 2                                          # another key, another entry
    path = cache_path("pairs-test", {"k": 1})
    path.write_bytes(path.read_bytes()[:-5])                       # truncated: checksum no longer matches
    with pytest.warns(UserWarning, match="not usable"):
        again = cached_tensors("pairs-test", {"k": 1}, build, "test pairs")
    assert len(calls) == 3 and torch.equal(again["z1"], miss["z1"])


def test_task_data_are_pair_data(smoke_cfg):
    """Both tasks' training data satisfy the PairData protocol crossflow.train reads."""
    from crossflow.pairs import PairData
    from crossflow.tasks import sr
    from crossflow.features import prepare_features
    assert isinstance(prepare_features(smoke_cfg, progress=False), PairData)
    assert isinstance(sr.training_patches(sr.get_sr_config("smoke")), PairData)
