"""crossflow.models: parameter counts (meta device), Text VE variants, flow transformer, towers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from crossflow.config import get_config
from crossflow.models import (CrossFlow, FlowTransformer, ImageTower, TextDecoder, TextTower, TextVE,
                              count_parameters, has_cross_attention)

TEXT_DIM, N_TOK = 16, 6


def _randomise(module: nn.Module, seed: int = 0, std: float = 0.1):
    """Overwrite every parameter that init left at exactly zero (adaLN-Zero, final layer, cross proj)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)


# ----------------------------------------------------------------------------------------------------------
# Parameter counts of the paper-scale network (meta device: no memory, no time)
# ----------------------------------------------------------------------------------------------------------

def test_paper_flow_network_is_095B_without_cross_attention():
    cfg = get_config("paper")
    with torch.device("meta"):
        net = FlowTransformer(cfg.flow, cfg.latent_shape)
    n = count_parameters(net)
    assert abs(n - 0.95e9) <= 0.02 * 0.95e9, f"paper flow network has {n:,} parameters, expected 0.95B +- 2%"
    assert not has_cross_attention(net), f"CrossFlow's network ({n:,} params) must have no cross-attention"
    assert not any("cross" in name for name, _ in net.named_parameters())


def test_paper_baseline_has_cross_attention():
    cfg = get_config("paper", {"objective.source": "noise", "flow.cross_attention": True})
    with torch.device("meta"):
        net = FlowTransformer(cfg.flow, cfg.latent_shape, context_dim=768)
        ours = FlowTransformer(get_config("paper").flow, cfg.latent_shape)
    n, n_ours = count_parameters(net), count_parameters(ours)
    assert has_cross_attention(net), f"baseline ({n:,} params) must have cross-attention"
    assert n > n_ours, f"baseline {n:,} vs CrossFlow {n_ours:,} parameters"
    assert net.indicator_embed is None


def test_count_parameters_by_hand():
    lin = nn.Linear(7, 3)
    assert count_parameters(nn.Sequential(lin, nn.Linear(3, 2, bias=False))) == 7 * 3 + 3 + 3 * 2


def test_paper_text_ve_matches_released_code_shapes():
    """docs/method.md 3: 768 -> 384 -> 192 -> 96 per token, flatten 77*96 = 7392, Linear to 2*4096."""
    cfg = get_config("paper")
    with torch.device("meta"):
        ve = TextVE(cfg.text_ve, 768, 77, cfg.latent_shape)
    assert ve.out_width == 96
    assert (ve.head.in_features, ve.head.out_features) == (7392, 2 * 4096)
    assert [p.out_features for p in ve.reduce_proj] == [384, 192, 96]
    assert len(ve.layers) == 11


# ----------------------------------------------------------------------------------------------------------
# Text VE
# ----------------------------------------------------------------------------------------------------------

def _ve(smoke_cfg, **over):
    cfg = smoke_cfg.replace({f"text_ve.{k}": v for k, v in over.items()})
    torch.manual_seed(0)
    return TextVE(cfg.text_ve, TEXT_DIM, N_TOK, cfg.latent_shape).eval(), cfg.latent_shape


def _tokens(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N_TOK, TEXT_DIM, generator=g)
    mask = torch.ones(B, N_TOK, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 2:] = False
    return x, mask


def test_text_ve_variational_shapes_and_reparameterisation(smoke_cfg):
    ve, shape = _ve(smoke_cfg, kind="variational")
    x, mask = _tokens(B=16)
    with torch.no_grad():
        z0, mu, logvar = ve.encode(x, mask, torch.Generator().manual_seed(1))
    assert mu.shape == logvar.shape == z0.shape == (16, *shape)
    eps = (z0 - mu) / torch.exp(0.5 * logvar)               # z0 = mu + sigma * eps, eps ~ N(0, 1)
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1.0) < 0.05


def test_text_ve_deterministic(smoke_cfg):
    ve, shape = _ve(smoke_cfg, kind="deterministic")
    x, mask = _tokens()
    with torch.no_grad():
        z0, mu, logvar = ve.encode(x, mask, torch.Generator().manual_seed(1))
    assert logvar is None
    assert mu.shape == (4, *shape) and torch.equal(z0, mu)
    assert ve.head.out_features == math.prod(shape)


@pytest.mark.parametrize("noise_std", [1.0, 0.3])
def test_text_ve_noise_kind(smoke_cfg, noise_std):
    ve, shape = _ve(smoke_cfg, kind="noise", noise_std=noise_std)
    x, mask = _tokens(B=16)
    with torch.no_grad():
        z0, mu, _ = ve.encode(x, mask, torch.Generator().manual_seed(2))
    assert z0.shape == mu.shape == (16, *shape)
    d = z0 - mu
    assert abs(d.std().item() - noise_std) < 0.05 * noise_std, d.std().item()
    assert abs(d.mean().item()) < 0.05 * noise_std


@pytest.mark.parametrize("grad", [False, True])
def test_text_ve_padding_invariance(smoke_cfg, grad):
    ve, _ = _ve(smoke_cfg, kind="variational")
    x, mask = _tokens()
    x_pad = x.clone()
    g = torch.Generator().manual_seed(9)
    x_pad[~mask] = torch.randn(int((~mask).sum()), TEXT_DIM, generator=g) * 50
    x_real = x.clone()
    x_real[0, 1] += 1.0                                      # a real token: must matter
    with torch.set_grad_enabled(grad):
        mu, logvar = ve(x, mask)
        mu_p, logvar_p = ve(x_pad, mask)
        mu_r, _ = ve(x_real, mask)
    torch.testing.assert_close(mu_p, mu, rtol=0, atol=1e-5)
    torch.testing.assert_close(logvar_p, logvar, rtol=0, atol=1e-5)
    assert (mu_r[0] - mu[0]).abs().max() > 1e-4
    torch.testing.assert_close(mu_r[1:], mu[1:], rtol=0, atol=1e-6)   # rows are independent


# ----------------------------------------------------------------------------------------------------------
# Flow transformer
# ----------------------------------------------------------------------------------------------------------

def _net(smoke_cfg, **over):
    cfg = smoke_cfg.replace({f"flow.{k}": v for k, v in over.items()})
    torch.manual_seed(0)
    ctx = TEXT_DIM if cfg.flow.cross_attention else None
    return FlowTransformer(cfg.flow, cfg.latent_shape, context_dim=ctx).eval(), cfg.latent_shape


@pytest.mark.parametrize("patch", [1, 2])
def test_flow_transformer_shape_and_zero_init(smoke_cfg, patch):
    net, shape = _net(smoke_cfg, patch_size=patch)
    z = torch.randn(3, *shape)
    with torch.no_grad():
        out = net(z, torch.rand(3), indicator=torch.tensor([0, 1, 1]))
    assert out.shape == z.shape
    assert torch.equal(out, torch.zeros_like(out)), "adaLN-Zero / zero final layer: output must be 0 at init"
    _randomise(net)
    with torch.no_grad():
        out = net(z, torch.rand(3), indicator=torch.tensor([0, 1, 1]))
    assert out.shape == z.shape and out.abs().sum() > 0


@pytest.mark.parametrize("cross", [False, True])
def test_math_attention_equals_sdpa(smoke_cfg, cross):
    """flow.attention="math" computes what the fused kernel computes (padding masked in cross-attention), so the
    choice is a speed option, not a different model."""
    a, shape = _net(smoke_cfg, cross_attention=cross)
    b, _ = _net(smoke_cfg, cross_attention=cross, attention="math")
    _randomise(a)
    b.load_state_dict(a.state_dict())
    z, t = torch.randn(3, *shape), torch.rand(3)
    kw = {"indicator": torch.tensor([0, 1, 1])}
    if cross:
        mask = torch.ones(3, 5, dtype=torch.bool)
        mask[1, 3:] = False
        kw = {"context": torch.randn(3, 5, TEXT_DIM), "context_mask": mask}
    with torch.no_grad():
        out_a, out_b = a(z, t, **kw), b(z, t, **kw)
    assert out_a.abs().sum() > 0
    torch.testing.assert_close(out_b, out_a, rtol=1e-5, atol=1e-5)


def test_flow_transformer_unpatchify_keeps_spatial_layout(smoke_cfg):
    """Patch 2: with an identity patch embedding, no blocks and an identity final projection, patchify followed
    by unpatchify must return the input, which pins unpatchify's (p, p, c) feature layout and token order."""
    net, shape = _net(smoke_cfg, patch_size=2)
    with torch.no_grad():
        # make the network a per-token map: identity patch embed, no blocks, output = linear(norm(x))
        net.blocks = nn.ModuleList()
        net.pos_embed.zero_()
        c, p = shape[0], 2
        w = torch.zeros_like(net.x_embed.weight)            # (width, c, p, p)
        for ci in range(c):
            for i in range(p):
                for j in range(p):
                    w[(ci * p + i) * p + j, ci, i, j] = 1.0
        net.x_embed.weight.copy_(w)
        net.x_embed.bias.zero_()
        net.final.norm = nn.Identity()
        lin = torch.zeros_like(net.final.linear.weight)     # output feature (i, j, c) <- input (c, i, j)
        for ci in range(c):
            for i in range(p):
                for j in range(p):
                    lin[(i * p + j) * c + ci, (ci * p + i) * p + j] = 1.0
        net.final.linear.weight.copy_(lin)
        z = torch.randn(2, *shape)
        out = net(z, torch.rand(2))
    torch.testing.assert_close(out, z)


def test_indicator_changes_output_after_perturbation(smoke_cfg):
    net, shape = _net(smoke_cfg)
    z, t = torch.randn(4, *shape), torch.rand(4)
    with torch.no_grad():
        same0 = net(z, t, indicator=torch.zeros(4, dtype=torch.long))
        same1 = net(z, t, indicator=torch.ones(4, dtype=torch.long))
    assert torch.equal(same0, same1)                        # both zero at init
    _randomise(net)
    with torch.no_grad():
        v0 = net(z, t, indicator=torch.zeros(4, dtype=torch.long))
        v1 = net(z, t, indicator=torch.ones(4, dtype=torch.long))
        v_mixed = net(z, t, indicator=torch.tensor([0, 1, 0, 1]))
    assert (v0 - v1).abs().max() > 1e-4, "indicator 0 vs 1 must give different velocities"
    torch.testing.assert_close(v_mixed[0::2], v0[0::2])      # per-sample indicator
    torch.testing.assert_close(v_mixed[1::2], v1[1::2])


def test_time_changes_output_after_perturbation(smoke_cfg):
    net, shape = _net(smoke_cfg)
    _randomise(net)
    z = torch.randn(2, *shape)
    with torch.no_grad():
        a = net(z, torch.full((2,), 0.1))
        b = net(z, torch.full((2,), 0.9))
    assert (a - b).abs().max() > 1e-4


def test_baseline_requires_context_and_respects_mask(smoke_cfg):
    net, shape = _net(smoke_cfg, cross_attention=True)
    assert has_cross_attention(net) and net.indicator_embed is None
    z, t = torch.randn(3, *shape), torch.rand(3)
    with pytest.raises(ValueError, match="context"):
        net(z, t)
    _randomise(net)
    g = torch.Generator().manual_seed(4)
    ctx = torch.randn(3, N_TOK, TEXT_DIM, generator=g)
    mask = torch.ones(3, N_TOK, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, 1:] = False
    ctx_pad = ctx.clone()
    ctx_pad[~mask] = torch.randn(int((~mask).sum()), TEXT_DIM, generator=g) * 30
    ctx_real = ctx.clone()
    ctx_real[:, 0] += 2.0
    with torch.no_grad():
        v = net(z, t, context=ctx, context_mask=mask)
        v_pad = net(z, t, context=ctx_pad, context_mask=mask)
        v_real = net(z, t, context=ctx_real, context_mask=mask)
        v_nomask = net(z, t, context=ctx_pad, context_mask=None)
    assert v.shape == z.shape
    torch.testing.assert_close(v_pad, v, rtol=0, atol=1e-5)
    assert (v_real - v).abs().max() > 1e-4, "the text must reach the output through cross-attention"
    assert (v_nomask - v).abs().max() > 1e-4, "without a mask the padded values would leak in"


def test_crossflow_has_no_cross_attention_and_baseline_does(smoke_cfg):
    ours = CrossFlow(smoke_cfg, text_dim=TEXT_DIM, n_tokens=N_TOK)
    base = CrossFlow(smoke_cfg.replace({"objective.source": "noise", "flow.cross_attention": True}),
                     text_dim=TEXT_DIM, n_tokens=N_TOK)
    assert not has_cross_attention(ours) and has_cross_attention(base)
    assert ours.text_ve is not None and base.text_ve is None
    assert hasattr(ours, "image_tower")


# ----------------------------------------------------------------------------------------------------------
# Towers of the encoder losses
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image_size", [16, 32, 48])
def test_image_tower_shape(image_size):
    tower = ImageTower(out_dim=100, image_size=image_size)
    out = tower(torch.rand(2, 3, image_size, image_size) * 2 - 1)
    assert out.shape == (2, 100)
    assert tower.logit_scale.requires_grad and float(tower.logit_scale.detach()) == pytest.approx(10.0)


def test_image_tower_accepts_every_valid_config_image_size(smoke_cfg):
    """image_size=28 (Fashion-MNIST's native size) is a valid config (latent 4x7x7), so CrossFlow's
    ImageTower must accept 28x28 images. Stride-2 convs give ceil(side/2), not floor: 28->14->7->4."""
    cfg = smoke_cfg.replace({"data.image_size": 28})
    assert cfg.latent_shape == (4, 7, 7)
    tower = ImageTower(out_dim=math.prod(cfg.latent_shape), image_size=28)
    out = tower(torch.rand(2, 3, 28, 28) * 2 - 1)
    assert out.shape == (2, 196)


def test_text_tower_shape_and_padding_invariance():
    tower = TextTower(TEXT_DIM, out_dim=64)
    x, mask = _tokens()
    out = tower(x, mask)
    assert out.shape == (4, 64)
    x2 = x.clone()
    x2[~mask] = 100.0
    torch.testing.assert_close(tower(x2, mask), out)


def test_text_decoder_shape():
    dec = TextDecoder(in_dim=4 * 8 * 8, text_dim=TEXT_DIM, n_tokens=N_TOK)
    out = dec(torch.randn(3, 4, 8, 8))
    assert out.shape == (3, N_TOK, TEXT_DIM)


def test_encoder_loss_registry_matches_config_choices(smoke_cfg):
    """Every objective.enc_loss the config accepts (but "none") is a registered module, and the model holds the
    one its config names under the module's own attribute (the checkpoints' keys)."""
    from crossflow.config import _CHOICES as CHOICES
    from crossflow.models import ENC_LOSSES, CrossFlow
    assert set(ENC_LOSSES) | {"none"} == set(CHOICES[("objective", "enc_loss")])
    for name, cls in ENC_LOSSES.items():
        model = CrossFlow(smoke_cfg.replace({"objective.enc_loss": name}), 8, 6)
        assert isinstance(model.enc_loss, cls) and getattr(model, cls.attr) is model.enc_loss
        assert model.encoder_modules() == [model.text_ve, model.enc_loss]
    none = CrossFlow(smoke_cfg.replace({"objective.enc_loss": "none"}), 8, 6)
    assert none.enc_loss is None and none.encoder_modules() == [none.text_ve]
