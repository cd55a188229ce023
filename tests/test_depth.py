"""Issue 16: the depth task: renderer, real test images, Marigold's alignment and metrics, the three methods."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossflow.config import ConfigError
from crossflow.data.photos import PhotosNotFoundError


# ---------------------------------------------------------------------------------------------------------
# Metrics (Marigold's protocol) against hand-computed values
# ---------------------------------------------------------------------------------------------------------

def test_alignment_recovers_an_affine_prediction_exactly():
    from crossflow.tasks.depth import depth_metrics
    pred = np.array([[0.0, 1.0], [2.0, 3.0]])
    gt = 2.0 * pred + 1.0                                   # scale 2, shift 1
    m = depth_metrics(pred, gt)
    assert m["absrel"] == pytest.approx(0, abs=1e-12) and m["delta1"] == 1.0 and m["rmse"] == pytest.approx(0, abs=1e-12)


def test_metrics_match_a_hand_computed_case():
    """pred [0, 0, 1], gt [1, 3, 4]: least squares gives shift 2 (mean of 1 and 3) and scale 2, so the aligned
    prediction is [2, 2, 4]; AbsRel = (1/1 + 1/3 + 0) / 3, delta1 = 1/3 (ratios 2, 1.5, 1), RMSE = sqrt(2/3)."""
    from crossflow.tasks.depth import align, depth_metrics
    pred, gt = np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 3.0, 4.0]])
    assert np.allclose(align(pred, gt, np.ones_like(gt, bool)), [[2.0, 2.0, 4.0]])
    m = depth_metrics(pred, gt)
    assert m["absrel"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["delta1"] == pytest.approx(1 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))


def test_invalid_pixels_are_ignored_and_the_aligned_prediction_is_clipped():
    from crossflow.tasks.depth import align, depth_metrics
    pred = np.array([[0.0, 1.0, 50.0]])
    gt = np.array([[1.0, 2.0, np.nan]])                      # the third pixel is unknown
    m = depth_metrics(pred, gt)
    assert m["valid"] == 2 and m["absrel"] == pytest.approx(0, abs=1e-12)
    out = align(np.array([0.0, 1.0, 5.0]), np.array([1.0, 2.0, 3.0]), np.array([True, True, False]))
    assert out.max() == pytest.approx(2.0)                   # clipped to the valid ground truth's range


# ---------------------------------------------------------------------------------------------------------
# Renderer
# ---------------------------------------------------------------------------------------------------------

def _empty_room():
    from crossflow.data.rooms import RoomSpec, Texture
    tex = Texture(0, 0.0, 0.0, 16, 1.0)
    return RoomSpec(seed=0, fov_deg=60.0, yaw_deg=0.0, pitch_deg=0.0, floor=-1.2, ceiling=1.5, left=-2.0,
                    right=2.5, back=6.0, walls=(tex,) * 5, objects=(), light=(0.0, 1.0, 0.0), ambient=0.4)


def test_rendered_depth_of_an_empty_room_is_the_analytic_depth_of_its_planes():
    """Every pixel of an empty room sees one of five planes: its planar depth is the smallest positive
    coord / d_axis over them, with d the pixel's ray (d_z = 1); the floor rows checked on their own too."""
    from crossflow.data.rooms import render, rays
    spec, size = _empty_room(), 24
    photo = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image, depth = render(spec, [photo], size=size, ss=1)
    d = rays(size, spec.fov_deg)
    with np.errstate(divide="ignore"):
        ts = [spec.floor / d[..., 1], spec.ceiling / d[..., 1], spec.back / d[..., 2], spec.left / d[..., 0],
              spec.right / d[..., 0]]
    expected = np.min([np.where(t > 0, t, np.inf) for t in ts], axis=0)
    assert np.allclose(depth, expected, rtol=1e-5)
    floor = (ts[0] > 0) & (ts[0] <= expected + 1e-9)
    f = (size / 2) / np.tan(np.radians(spec.fov_deg) / 2)
    rows = np.nonzero(floor.any(1))[0]
    for v in rows:                                          # z = h f / (v + 0.5 - size / 2) on the floor
        z = -spec.floor * f / (v + 0.5 - size / 2)
        assert np.allclose(depth[v][floor[v]], z, rtol=1e-5)
    assert image.dtype == np.uint8 and image.shape == (size, size, 3) and len(rows) > 3


def test_rooms_are_deterministic_and_objects_come_forward():
    from crossflow.data.rooms import render, room_spec
    photos = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    a = render(room_spec(7, 3), photos, 16, 2)
    b = render(room_spec(7, 3), photos, 16, 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    spec = room_spec(7, 3)
    assert spec.objects and np.isfinite(a[1]).all() and (a[1] > 0).all() and a[1].max() <= spec.back * 1.5


# ---------------------------------------------------------------------------------------------------------
# Real zero-shot images
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["motorcycle", "aloe", "quokka"])
def test_real_images_load_with_depth(name):
    from crossflow.data.real_depth import load_real, resize_pair
    try:
        img = load_real(name)
    except PhotosNotFoundError as e:
        pytest.skip(f"{name} not installed here: {e}")
    assert img.image.shape[:2] == img.depth.shape and img.image.dtype == np.uint8
    valid = np.isfinite(img.depth)
    assert valid.mean() > 0.85 and (img.depth[valid] > 0).all()
    image, depth = resize_pair(img, 32)
    assert image.shape == (32, 32, 3) and depth.shape == (32, 32) and np.isfinite(depth).mean() > 0.8
    if name == "motorcycle":                                 # the near front wheel is closer than the far wall
        assert np.nanmedian(depth[24:, :8]) < np.nanmedian(depth[:8, 12:20]) * 1.5


# ---------------------------------------------------------------------------------------------------------
# The task: config, models, training data, prediction
# ---------------------------------------------------------------------------------------------------------

def test_depth_config_is_strict():
    from crossflow.config import to_dict
    from crossflow.tasks.depth import config_from_dict, get_depth_config
    cfg = get_depth_config("smoke")
    assert cfg.task == "depth" and cfg.target_shape == (1, 32, 32)
    with pytest.raises(ConfigError, match="unknown config key"):
        cfg.replace({"ve.widht": 3})
    with pytest.raises(ConfigError, match="method="):
        cfg.replace({"method": "gan"})
    assert config_from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize("method", ["crossflow", "noise_concat", "regression"])
def test_each_method_trains_a_step_and_predicts(method):
    from crossflow.tasks.depth import DepthModel, Rooms, get_depth_config, predict
    cfg = get_depth_config("smoke", {"method": method})
    g = torch.Generator().manual_seed(0)
    rooms = Rooms(torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=g),
                  torch.rand(6, 32, 32, generator=g) + 1, ["x"])
    model = DepthModel(cfg)
    loss, terms = model(rooms.batch(g, 4), g)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
    assert ("rec" in terms) == (method == "crossflow")
    assert (model.ve is not None) == (method == "crossflow")
    pred = predict(model.eval(), rooms.pixels(), steps=2)
    assert pred.shape == (6, 32, 32) and torch.isfinite(pred).all()


def test_rooms_batches_are_normalised_pairs():
    from crossflow.pairs import PairData
    from crossflow.tasks.depth import get_depth_config, in_domain_test, training_data
    try:
        cfg = get_depth_config("smoke")
        rooms = training_data(cfg)
        test = in_domain_test(cfg)
    except PhotosNotFoundError as e:
        pytest.skip(f"texture photos not installed: {e}")
    assert isinstance(rooms, PairData) and len(rooms) == cfg.data.n_train and len(test.images) == cfg.data.n_test
    b = rooms.batch(torch.Generator().manual_seed(0), 8)
    assert b["image"].shape == (8, 3, 32, 32) and b["depth"].shape == (8, 1, 32, 32)
    assert b["depth"].amin() == pytest.approx(-1) and b["depth"].amax() == pytest.approx(1)
    from crossflow.data.photos import TEST_PHOTOS, TRAIN_PHOTOS
    assert rooms.photos == [n.rsplit(".", 1)[0] for _, n in TRAIN_PHOTOS]          # textures: the train photos only
    assert not set(rooms.photos) & {n.rsplit(".", 1)[0] for _, n in TEST_PHOTOS}
    again = training_data(cfg)                                   # cached: the same rooms
    assert torch.equal(again.images, rooms.images) and torch.equal(again.depth, rooms.depth)


def test_competitive_verdict_rule():
    from crossflow.tasks.depth import competitive_verdict
    runs = lambda cf, reg, nc: {"crossflow": [{"absrel": v} for v in cf], "regression": [{"absrel": v} for v in reg],  # noqa: E731
                                "noise_concat": [{"absrel": v} for v in nc]}
    assert competitive_verdict(runs([0.105, 0.107], [0.10, 0.10], [0.2, 0.2]))["verdict"] == "holds"   # 6% above
    assert competitive_verdict(runs([0.12, 0.12], [0.10, 0.10], [0.2, 0.2]))["verdict"] == "fails"     # 20% above
    v = competitive_verdict(runs([0.05, 0.06], [0.10, 0.11], [0.09, 0.2]))
    assert v["verdict"] == "holds" and v["better_than_all_seeds"] and v["best_baseline"] == "regression"
    # no baseline better than the mean depth map: nothing to compare
    assert competitive_verdict(runs([0.3, 0.3], [0.31, 0.3], [0.4, 0.4]), reference=0.29)["verdict"] == "not testable"
    assert competitive_verdict(runs([0.3, 0.3], [0.31, 0.3], [0.4, 0.4]), reference=0.35)["verdict"] == "holds"


def test_image_ve_is_a_source_encoder_of_the_depth_maps_shape():
    from crossflow.tasks import SourceEncoder
    from crossflow.tasks.depth import ImageVE, ImageVEConfig
    ve = ImageVE(ImageVEConfig(width=8))
    assert isinstance(ve, SourceEncoder)
    z0, mu, logvar = ve.encode(torch.rand(2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    assert z0.shape == mu.shape == logvar.shape == (2, 1, 16, 16) and not torch.equal(z0, mu)
    assert ve.reconstruct(z0).shape == (2, 3, 16, 16)
