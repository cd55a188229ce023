"""Text-latent interpolation, arithmetic and the Table 10 compression measurement."""
from __future__ import annotations

import pytest
import torch

from crossflow.compression import (COMPRESSION_PRESETS, compression_ratio, evaluate_reconstruction,
                                   token_cosine_accuracy, train_text_autoencoder)
from crossflow.latent_ops import (ALPHAS, arithmetic, images_from_z0, interpolate, lm_space_interpolation,
                                  path_smoothness, scaled_addition, standardize, text_latents)
from crossflow.train import train


def test_interpolation_is_linear_and_keeps_endpoints():
    a, b = torch.randn(4, 8, 8), torch.randn(4, 8, 8)
    path = interpolate(a, b, 7)
    assert path.shape == (9, 4, 8, 8)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    for i in range(9):                                           # z_A + (z_B - z_A) * i / (n + 1), by hand
        assert torch.allclose(path[i], a + (b - a) * i / 8, atol=1e-6)
    assert not torch.allclose(path[4].std(), torch.tensor(1.0))   # no renormalisation (generic a, b)


def test_standardize_and_arithmetic_by_hand():
    z = torch.randn(3, 4, 8, 8) * 3 + 2
    s = standardize(z)
    for i in range(3):
        flat = z[i].flatten()
        assert torch.allclose(s[i].flatten(), (flat - flat.mean()) / flat.std(), atol=1e-5)
    a, p, m = torch.randn(3, 1, 4, 4).unbind(0)
    assert torch.allclose(arithmetic(a, p, m), standardize(a + p - m))
    assert torch.allclose(arithmetic(a, z_minus=m), standardize(a - m))
    out = scaled_addition(a[0], p[0], standardise=False)
    assert out.shape[0] == len(ALPHAS) and torch.allclose(out[2], a[0] + 0.67 * p[0])


def test_path_smoothness_numbers():
    even = torch.arange(5, dtype=torch.float32)[:, None] * torch.ones(1, 3)       # equal steps on a line
    s = path_smoothness(even)
    assert s["evenness"] == pytest.approx(1.0) and s["straightness"] == pytest.approx(1.0)
    assert s["max_step_share"] == pytest.approx(0.25)
    jump = torch.tensor([[0.0], [0.0], [0.0], [1.0], [1.0]])                         # one jump
    j = path_smoothness(jump)
    assert j["max_step_share"] == pytest.approx(1.0) and j["evenness"] < 0


def test_token_cosine_accuracy_ignores_padding():
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    x_hat = x.clone()
    x_hat[~mask] = -x[~mask]                                      # padded tokens wrong: must not count
    assert token_cosine_accuracy(x_hat, x, mask) == pytest.approx(1.0, abs=1e-6)
    x_hat[0, 0] = -x[0, 0]                                        # one of five real tokens flipped
    assert token_cosine_accuracy(x_hat, x, mask) == pytest.approx((4 - 1) / 5, abs=1e-5)


@pytest.mark.slow
def test_text_autoencoders_and_latent_ops_on_smoke_model(smoke_cfg, smoke_features, tmp_path):
    x, mask = smoke_features.x[:64], smoke_features.mask[:64]
    ccfg = COMPRESSION_PRESETS["smoke"]
    enc, dec, hist = train_text_autoencoder(smoke_cfg, x, mask, "deterministic", ccfg, progress=False)
    r = evaluate_reconstruction(enc, dec, x, mask)
    assert r["cosine_sampled"] == r["cosine_mean"]               # deterministic: z0 = mu
    assert hist[-1]["loss"] < hist[0]["loss"]
    ratio = compression_ratio(x, mask, smoke_cfg.latent_shape)
    assert ratio["padded"] == pytest.approx(24 * 384 / 256)

    model = train(smoke_cfg, smoke_features, tmp_path, progress=False).model
    z = text_latents(model, smoke_cfg, ["a red sandal", "two blue bags"])
    images = images_from_z0(model, smoke_cfg, interpolate(z[0], z[1], 3), steps=2)
    assert images.shape == (5, 3, 32, 32) and torch.isfinite(images).all()
    lm = lm_space_interpolation(model, smoke_cfg, "a red sandal", "two blue bags", 3)
    assert lm.shape == (5, *smoke_cfg.latent_shape)


@pytest.mark.slow
def test_lm_space_path_ends_at_each_captions_own_encoding(smoke_cfg, smoke_features, tmp_path):
    model = train(smoke_cfg, smoke_features, tmp_path, progress=False).model
    a, b = "a red sandal", "exactly three blue bags at the top"
    path = lm_space_interpolation(model, smoke_cfg, a, b, 3, seed=5)
    from crossflow.encoders import embed_captions
    x, mask = embed_captions([a, b], smoke_cfg.text)
    dev = next(model.parameters()).device
    mu, logvar = (t.cpu() for t in model.text_ve(x.to(dev), mask.to(dev)))
    path = path.cpu()
    eps = torch.randn(mu.shape[1:], generator=torch.Generator().manual_seed(5))
    assert torch.allclose(path[0], mu[0] + torch.exp(0.5 * logvar[0]) * eps, atol=1e-5)
    assert torch.allclose(path[-1], mu[1] + torch.exp(0.5 * logvar[1]) * eps, atol=1e-5)
