"""Tier "math": the objective (crossflow/flow.py) and the samplers (crossflow/sampling.py), re-derived by hand.

Every expected value here is written from docs/method.md (sections 2, 4, 5) with explicit formulas,
plain loops or numpy, never by calling the helper under test a second time.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from crossflow import flow, sampling

def _rng(seed=0):
    return np.random.default_rng(seed)


def _t64(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------
# Interpolant, target velocity, time convention
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma_min", [1e-5, 0.1])
def test_interpolant_endpoints(sigma_min):
    r = _rng(1)
    z0, z1 = r.normal(size=(4, 2, 3, 3)), r.normal(size=(4, 2, 3, 3))
    at0 = flow.interpolate(_t64(z0), _t64(z1), torch.zeros(4, dtype=torch.float64), sigma_min).numpy()
    at1 = flow.interpolate(_t64(z0), _t64(z1), torch.ones(4, dtype=torch.float64), sigma_min).numpy()
    np.testing.assert_allclose(at0, z0, rtol=0, atol=1e-12)
    # t = 1: t*z1 + (1 - (1 - s)) z0 = z1 + s*z0
    np.testing.assert_allclose(at1, z1 + sigma_min * z0, rtol=0, atol=1e-12)


def test_interpolant_sigma0_is_straight_line_with_per_sample_t():
    r = _rng(2)
    B = 5
    z0, z1 = r.normal(size=(B, 3, 2, 2)), r.normal(size=(B, 3, 2, 2))
    t = np.array([0.0, 0.1, 0.5, 0.77, 1.0])
    got = flow.interpolate(_t64(z0), _t64(z1), _t64(t), 0.0).numpy()
    for i in range(B):                                   # each row uses its own t
        expected = (1 - t[i]) * z0[i] + t[i] * z1[i]
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-12)


def test_interpolant_general_sigma_per_sample_by_hand():
    r = _rng(3)
    s = 0.2
    z0, z1 = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    t = np.array([0.25, 0.6, 0.9])
    got = flow.interpolate(_t64(z0), _t64(z1), _t64(t), s).numpy()
    for i in range(3):
        for j in range(4):
            want = t[i] * z1[i, j] + (1.0 - (1.0 - s) * t[i]) * z0[i, j]
            assert abs(got[i, j] - want) < 1e-12


@pytest.mark.parametrize("sigma_min", [0.0, 1e-5, 0.3])
def test_target_velocity_is_central_difference_of_interpolant(sigma_min):
    r = _rng(4)
    z0, z1 = _t64(r.normal(size=(3, 2, 4, 4))), _t64(r.normal(size=(3, 2, 4, 4)))
    target = flow.target_velocity(z0, z1, sigma_min)
    h = 1e-4
    for tv in (0.1, 0.5, 0.93):
        tp = torch.full((3,), tv + h, dtype=torch.float64)
        tm = torch.full((3,), tv - h, dtype=torch.float64)
        fd = (flow.interpolate(z0, z1, tp, sigma_min) - flow.interpolate(z0, z1, tm, sigma_min)) / (2 * h)
        np.testing.assert_allclose(fd.numpy(), target.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(target.numpy(), (z1 - (1 - sigma_min) * z0).numpy(), rtol=0, atol=1e-12)


def test_time_convention_t0_is_source_text_latent_and_t1_is_target_image_latent():
    """Pinned: t=0 -> z0 (source: text latent / noise), t=1 -> z1 (target: image latent); v points z0 -> z1."""
    z0 = torch.full((1, 4), -3.0, dtype=torch.float64)  # "text latent"
    z1 = torch.full((1, 4), 5.0, dtype=torch.float64)   # "image latent"
    zt0 = flow.interpolate(z0, z1, torch.tensor([0.0], dtype=torch.float64), 0.0)
    zt1 = flow.interpolate(z0, z1, torch.tensor([1.0], dtype=torch.float64), 0.0)
    assert torch.equal(zt0, z0), "t=0 must be the source z0"
    assert torch.equal(zt1, z1), "t=1 must be the target z1"
    assert (flow.target_velocity(z0, z1, 0.0) > 0).all(), "velocity must point from z0 towards z1"
    # sampling integrates forward from t=0 (z0) to t=1 (z1): the first velocity call happens at t=0
    seen = []
    sampling.euler(lambda z, t: (seen.append(t), z1 - z0)[1], z0, steps=4)
    assert seen == [0.0, 0.25, 0.5, 0.75]


# ----------------------------------------------------------------------------------------------------------
# Logit-normal time
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (-0.8, 1.5), (1.0, 0.5)])
def test_sample_t_is_logit_normal(mean, std):
    n = 200_000
    g = torch.Generator().manual_seed(123)
    t = flow.sample_t(n, mean, std, generator=g)
    assert t.shape == (n,)
    assert (t > 0).all() and (t < 1).all()
    tt = t.double().numpy()
    logit = np.log(tt) - np.log1p(-tt)
    assert abs(logit.mean() - mean) < 0.02, logit.mean()
    assert abs(logit.std() - std) < 0.02 * max(std, 1.0), logit.std()


def test_sample_t_default_is_standard_logit_normal():
    t = flow.sample_t(100_000, generator=torch.Generator().manual_seed(5)).double().numpy()
    logit = np.log(t / (1 - t))
    assert abs(logit.mean()) < 0.02 and abs(logit.std() - 1.0) < 0.02
    assert abs(np.median(t) - 0.5) < 0.01


# ----------------------------------------------------------------------------------------------------------
# KL forms
# ----------------------------------------------------------------------------------------------------------

def _kl_paper_np(mu, logvar):
    # KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2)/2 - 1/2, per element
    out = np.zeros(mu.shape[0])
    for b in range(mu.shape[0]):
        s2 = np.exp(logvar[b])
        out[b] = np.sum(-0.5 * logvar[b] + 0.5 * (s2 + mu[b] ** 2) - 0.5)
    return out.mean()


def _kl_code_np(mu, logvar):
    out = np.zeros(mu.shape[0])
    for b in range(mu.shape[0]):
        out[b] = -0.5 * np.sum(1 + logvar[b] - (0.3 * mu[b]) ** 6 - np.exp(logvar[b]))
    return out.mean()


def test_kl_paper_matches_closed_form_and_torch_distributions():
    r = _rng(6)
    mu, lv = r.normal(size=(4, 2, 3, 3)) * 1.5, r.normal(size=(4, 2, 3, 3)) * 0.7
    got = float(flow.kl_paper(_t64(mu), _t64(lv)))
    assert got == pytest.approx(_kl_paper_np(mu, lv), rel=1e-10)
    d = torch.distributions
    ref = d.kl_divergence(d.Normal(_t64(mu), _t64(np.exp(0.5 * lv))), d.Normal(0.0, 1.0))
    assert got == pytest.approx(float(ref.flatten(1).sum(1).mean()), rel=1e-10)


def test_kl_forms_zero_at_standard_normal():
    z = torch.zeros(3, 4, 2, 2)
    assert float(flow.kl_paper(z, z)) == 0.0
    assert float(flow.kl_code(z, z)) == 0.0
    assert float(flow.kl_paper(z + 0.5, z)) > 0


def test_kl_code_matches_hand_formula():
    r = _rng(7)
    mu, lv = r.normal(size=(5, 4, 2, 2)) * 3.0, r.normal(size=(5, 4, 2, 2)) * 0.5
    got = float(flow.kl_code(_t64(mu), _t64(lv)))
    assert got == pytest.approx(_kl_code_np(mu, lv), rel=1e-10)
    assert got != pytest.approx(_kl_paper_np(mu, lv), rel=1e-3)


def _grad_mu(fn, m):
    mu = torch.tensor([[m]], dtype=torch.float64, requires_grad=True)
    fn(mu, torch.zeros(1, 1, dtype=torch.float64)).backward()
    return float(mu.grad)


def test_kl_code_flat_inside_steep_outside():
    # d/dmu of 0.5*(0.3 mu)^6 = 3 * 0.3^6 * mu^5;  paper KL: d/dmu 0.5 mu^2 = mu
    for m in (1.0, 2.0, 4.0):
        assert _grad_mu(flow.kl_code, m) == pytest.approx(3 * 0.3 ** 6 * m ** 5, rel=1e-9)
        assert _grad_mu(flow.kl_paper, m) == pytest.approx(m, rel=1e-9)
    assert _grad_mu(flow.kl_code, 1.0) < 0.01 * _grad_mu(flow.kl_paper, 1.0)       # nearly flat at |mu|=1
    val = lambda m: float(flow.kl_code(torch.tensor([[m]]), torch.zeros(1, 1)))  # noqa: E731
    assert val(2.0) < 0.05                                                          # flat prior on |mu| < 2
    assert val(-2.0) < 0.05
    assert val(5.0) > 10 * val(3.3) and val(5.0) > 5.0                              # a wall above ~3.3
    assert _grad_mu(flow.kl_code, 4.0) > _grad_mu(flow.kl_paper, 1.0)


# ----------------------------------------------------------------------------------------------------------
# CLIP-style contrastive loss
# ----------------------------------------------------------------------------------------------------------

def _clip_loss_loops(a, b, scale):
    B = a.shape[0]
    a = a.reshape(B, -1)
    b = b.reshape(B, -1)
    an = [a[i] / math.sqrt(sum(x * x for x in a[i])) for i in range(B)]
    bn = [b[i] / math.sqrt(sum(x * x for x in b[i])) for i in range(B)]
    L = [[scale * float(np.dot(an[i], bn[j])) for j in range(B)] for i in range(B)]

    def lse(v):
        m = max(v)
        return m + math.log(sum(math.exp(x - m) for x in v))
    rows = [lse(L[i]) - L[i][i] for i in range(B)]                          # image -> text
    cols = [lse([L[i][j] for i in range(B)]) - L[j][j] for j in range(B)]   # text -> image
    return 0.5 * (sum(rows) / B + sum(cols) / B)


@pytest.mark.parametrize("scale", [1.0, 2.0, 10.0])
def test_clip_loss_matches_loop_implementation(scale):
    r = _rng(8)
    a, b = r.normal(size=(6, 2, 3, 3)), r.normal(size=(6, 18)) * 3.0
    got = float(flow.clip_loss(_t64(a), _t64(b), torch.tensor(scale, dtype=torch.float64)))
    assert got == pytest.approx(_clip_loss_loops(a, b, scale), rel=1e-9)


def test_clip_loss_scale_used_raw_not_exponentiated():
    r = _rng(9)
    a, b = r.normal(size=(5, 8)), r.normal(size=(5, 8))
    got = float(flow.clip_loss(_t64(a), _t64(b), torch.tensor(2.0, dtype=torch.float64)))
    raw, expd = _clip_loss_loops(a, b, 2.0), _clip_loss_loops(a, b, math.exp(2.0))
    assert got == pytest.approx(raw, rel=1e-9)
    assert abs(got - expd) > 1e-3


def test_clip_loss_lower_for_matched_than_shuffled_pairs():
    r = _rng(10)
    b = r.normal(size=(8, 32))
    a = b + 0.1 * r.normal(size=(8, 32))
    scale = torch.tensor(10.0, dtype=torch.float64)
    matched = float(flow.clip_loss(_t64(a), _t64(b), scale))
    shuffled = float(flow.clip_loss(_t64(a), _t64(b[np.roll(np.arange(8), 3)]), scale))
    assert matched < shuffled - 1.0, (matched, shuffled)
    assert matched < math.log(8) < shuffled                      # chance level is log(B)


# ----------------------------------------------------------------------------------------------------------
# Indicator swap and unconditional flags
# ----------------------------------------------------------------------------------------------------------

def _distinct_rows(B):
    return torch.arange(B, dtype=torch.float32)[:, None, None, None] * 10 + torch.randn(B, 2, 3, 3) * 0.01


@pytest.mark.parametrize("flags", [
    [1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 1]])
def test_indicator_swap_rolls_among_flagged(flags):
    B = len(flags)
    z1 = _distinct_rows(B)
    before = z1.clone()
    uncond = torch.tensor(flags, dtype=torch.bool)
    out = flow.indicator_swap(z1, uncond)
    assert torch.equal(z1, before), "indicator_swap modified its input in place"
    flagged = [i for i in range(B) if flags[i]]
    src = {}
    for i in range(B):
        matches = [j for j in range(B) if torch.equal(out[i], z1[j])]
        assert len(matches) == 1
        src[i] = matches[0]
    for i in range(B):
        if not flags[i]:
            assert src[i] == i, f"unflagged row {i} was changed"
    # flagged rows receive another flagged row's target: a permutation of the flagged set, no fixed points
    assert sorted(src[i] for i in flagged) == flagged
    assert all(src[i] != i for i in flagged)
    # rolled by one position among the flagged samples: the k-th flagged gets the (k-1)-th flagged's image
    for k, i in enumerate(flagged):
        assert src[i] == flagged[k - 1]


@pytest.mark.parametrize("flags", [[0, 0, 0, 0], [0, 0, 1, 0], [1]])
def test_indicator_swap_fewer_than_two_flagged_is_identity(flags):
    z1 = _distinct_rows(len(flags))
    before = z1.clone()
    out = flow.indicator_swap(z1, torch.tensor(flags, dtype=torch.bool))
    assert torch.equal(out, before) and torch.equal(z1, before)


def test_indicator_swap_random_patterns_are_derangements_of_flagged():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        B = int(torch.randint(2, 12, (1,), generator=g))
        flags = torch.rand(B, generator=g) < 0.5
        z1 = torch.arange(B, dtype=torch.float32)[:, None]
        out = flow.indicator_swap(z1, flags)[:, 0].long().tolist()
        f = [i for i in range(B) if flags[i]]
        for i in range(B):
            if i not in f or len(f) < 2:
                assert out[i] == i
            else:
                assert out[i] in f and out[i] != i
        assert sorted(out) == list(range(B))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_sample_uncond_rate(p):
    n = 100_000
    u = flow.sample_uncond(n, p, generator=torch.Generator().manual_seed(3))
    assert u.dtype == torch.bool and u.shape == (n,)
    rate = u.float().mean().item()
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-12, rate


# ----------------------------------------------------------------------------------------------------------
# Samplers and guidance
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 50])
def test_euler_constant_velocity_reaches_target(steps):
    r = _rng(11)
    z0, z1 = _t64(r.normal(size=(3, 2, 4, 4))), _t64(r.normal(size=(3, 2, 4, 4)))
    out = sampling.euler(lambda z, t: z1 - z0, z0, steps)
    np.testing.assert_allclose(out.numpy(), z1.numpy(), rtol=0, atol=1e-10)


def test_euler_is_first_order_on_linear_ode():
    a = 1.0
    z0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    exact = z0 * math.exp(a)
    errs = []
    for n in (10, 20, 40, 80):
        out = sampling.euler(lambda z, t: a * z, z0, n)
        # explicit Euler on dz/dt = a z: z_N = z0 (1 + a/N)^N exactly
        np.testing.assert_allclose(out.numpy(), (z0 * (1 + a / n) ** n).numpy(), rtol=1e-12)
        errs.append(float((out - exact).abs().max()))
    for e_coarse, e_fine in zip(errs, errs[1:]):
        assert e_fine < e_coarse
        assert 1.8 < e_coarse / e_fine < 2.2, errs     # halve the step -> error roughly halves


@pytest.mark.parametrize("solver,order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_fixed_step_solver_order_on_time_dependent_flow(solver, order):
    """dz/dt = cos(t) z has z(1) = z0 exp(sin 1): halving the step divides the error by 2**order."""
    z0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    exact = z0 * math.exp(math.sin(1.0))
    v = lambda z, t: math.cos(t) * z  # noqa: E731
    errs = [float((sampling.solve(v, z0, solver, n) - exact).abs().max()) for n in (16, 32, 64, 128)]
    ratios = [a / b for a, b in zip(errs, errs[1:])]
    assert all(0.85 * 2 ** order < r < 1.15 * 2 ** order for r in ratios), (solver, errs, ratios)


@pytest.mark.parametrize("solver", ["midpoint", "heun"])
def test_second_order_solvers_exact_on_linear_in_time_velocity(solver):
    """A velocity linear in t (z quadratic in t) is integrated exactly by a 2nd-order method, in one step."""
    z0 = torch.tensor([[0.25, -1.0]], dtype=torch.float64)
    out = sampling.solve(lambda z, t: torch.full_like(z, 3.0 * t + 1.0), z0, solver, 1)
    np.testing.assert_allclose(out.numpy(), (z0 + 2.5).numpy(), rtol=0, atol=1e-12)


def test_nfe_of_each_solver_and_steps_for_nfe():
    z0 = torch.zeros(1, 1)
    for solver, per_step in (("euler", 1), ("midpoint", 2), ("heun", 2)):
        counter = sampling.NFECounter(lambda z, t: z)
        steps = sampling.steps_for_nfe(solver, 12)
        sampling.solve(counter, z0, solver, steps)
        assert counter.nfe == 12 == steps * per_step
    with pytest.raises(ValueError):
        sampling.steps_for_nfe("dopri5", 12)


def test_euler_backwards_returns_to_start():
    z0 = torch.tensor([[0.3]], dtype=torch.float64)
    v = lambda z, t: torch.full_like(z, 2.0)  # noqa: E731
    fwd = sampling.euler(v, z0, 7)
    back = sampling.euler(v, fwd, 7, t0=1.0, t1=0.0)
    assert float(fwd) == pytest.approx(2.3) and float(back) == pytest.approx(0.3)


@pytest.mark.parametrize("a", [1.0, -2.0])
def test_dopri5_matches_exponential(a):
    z0 = torch.tensor([[1.0, 0.5, -3.0]], dtype=torch.float64)
    out = sampling.dopri5(lambda z, t: a * z, z0)
    np.testing.assert_allclose(out.numpy(), (z0 * math.exp(a)).numpy(), rtol=1e-4, atol=1e-4)
    out2 = sampling.solve(lambda z, t: a * z, z0, "dopri5")
    np.testing.assert_allclose(out2.numpy(), (z0 * math.exp(a)).numpy(), rtol=1e-4, atol=1e-4)


def test_solve_rejects_unknown_solver():
    with pytest.raises(ValueError):
        sampling.solve(lambda z, t: z, torch.zeros(1, 1), "rk4")


@pytest.mark.parametrize("passes", [1, 2])
def test_nfe_counter_counts_calls(passes):
    calls = []

    def v(z, t):
        calls.append(t)
        return torch.zeros_like(z)
    c = sampling.NFECounter(v, passes)
    sampling.euler(c, torch.zeros(2, 3), 9)
    assert len(calls) == 9
    assert c.nfe == 9 * passes


class _FakeIndicatorNet(nn.Module):
    """v = (1 + 2 * indicator) * z + t: the conditional (1) and unconditional (0) velocities differ."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, z, t, indicator=None):
        self.calls.append((z.shape[0], indicator.clone()))
        assert t.shape == (z.shape[0],)
        ind = indicator.to(z.dtype).view(-1, *([1] * (z.dim() - 1)))
        return (1 + 2 * ind) * z + t.view(-1, *([1] * (z.dim() - 1)))


@pytest.mark.parametrize("s", [0.0, 2.0, 7.0])
def test_indicator_cfg_formula(s):
    net = _FakeIndicatorNet()
    z = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    t = 0.3
    got = sampling.indicator_cfg(net, s)(z, t)
    v_c, v_u = 3 * z + t, 1 * z + t
    torch.testing.assert_close(got, v_u + s * (v_c - v_u))
    (bs, ind), = net.calls                                 # one batched pass with both indicators
    assert bs == 6 and sorted(ind.tolist()) == [0, 0, 0, 1, 1, 1]


def test_indicator_cfg_scale_one_is_conditional_single_pass():
    net = _FakeIndicatorNet()
    z = torch.randn(4, 2, 2, 2, dtype=torch.float64)
    got = sampling.indicator_cfg(net, 1.0)(z, 0.6)
    torch.testing.assert_close(got, 3 * z + 0.6)
    (bs, ind), = net.calls
    assert bs == 4 and ind.tolist() == [1, 1, 1, 1]


class _FakeScaledNet:
    def __init__(self, k):
        self.k, self.n = k, 0

    def __call__(self, z, t, indicator=None):
        self.n += 1
        assert indicator is not None and (indicator == 1).all()
        return self.k * z + t.view(-1, 1)


@pytest.mark.parametrize("s", [1.0, 3.0])
def test_autoguidance_formula(s):
    good, bad = _FakeScaledNet(2.0), _FakeScaledNet(-1.0)
    z = torch.randn(3, 5, dtype=torch.float64)
    got = sampling.autoguidance(good, bad, s)(z, 0.25)
    v_good, v_bad = 2 * z + 0.25, -1 * z + 0.25
    torch.testing.assert_close(got, v_bad + s * (v_good - v_bad))
    assert good.n == 1 and bad.n == (0 if s == 1.0 else 1)


class _FakeContextNet:
    """v = z * (masked mean of context) ; context (B, n, d), mask (B, n)."""

    def __init__(self):
        self.seen = []

    def __call__(self, z, t, context=None, context_mask=None):
        self.seen.append((context.clone(), context_mask.clone()))
        m = context_mask.to(context.dtype)
        pooled = (context.sum(-1) * m).sum(1) / m.sum(1)             # (B,)
        return z * pooled.view(-1, 1) + t.view(-1, 1)


@pytest.mark.parametrize("s", [1.0, 4.0])
def test_text_cfg_formula(s):
    B, n, d = 3, 4, 2
    ctx = torch.randn(B, n, d, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    null = torch.randn(1, n, d, dtype=torch.float64)
    null_mask = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    z = torch.randn(B, 5, dtype=torch.float64)
    net = _FakeContextNet()
    got = sampling.text_cfg(net, ctx, mask, null, null_mask, s)(z, 0.5)

    def pooled(c, m):
        return torch.stack([sum(c[i, j].sum() for j in range(n) if m[i, j]) / m[i].sum() for i in range(c.shape[0])])
    v_c = z * pooled(ctx, mask)[:, None] + 0.5
    v_u = z * pooled(null.expand(B, n, d), null_mask.expand(B, n))[:, None] + 0.5
    torch.testing.assert_close(got, v_u + s * (v_c - v_u))
    assert len(net.seen) == 1


# ----------------------------------------------------------------------------------------------------------
# compute_loss with a tiny real model
# ----------------------------------------------------------------------------------------------------------

TEXT_DIM, N_TOK, B = 16, 6, 8


def _batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, h, w = cfg.latent_shape
    H = cfg.data.image_size
    mask = torch.ones(B, N_TOK, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    null_mask = torch.zeros(1, N_TOK, dtype=torch.bool)
    null_mask[0, :2] = True
    return {"x": torch.randn(B, N_TOK, TEXT_DIM, generator=g), "mask": mask,
            "z1": torch.randn(B, c, h, w, generator=g),
            "pixels": torch.rand(B, 3, H, H, generator=g) * 2 - 1,
            "null_x": torch.randn(1, N_TOK, TEXT_DIM, generator=g), "null_mask": null_mask}


def _model(cfg, seed=0):
    from crossflow.models import CrossFlow
    torch.manual_seed(seed)
    return CrossFlow(cfg, text_dim=TEXT_DIM, n_tokens=N_TOK)


def _randomise_final(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(net.final.parameters()) + [q for blk in net.blocks for q in blk.adaLN.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("enc_loss", ["it_contrastive", "tt_contrastive", "tt_recon", "none"])
def test_compute_loss_finite_with_terms(smoke_cfg, enc_loss):
    cfg = smoke_cfg.replace({"objective.enc_loss": enc_loss})
    model = _model(cfg)
    loss, terms = flow.compute_loss(model, _batch(cfg), cfg.objective, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    expected = {"fm", "kl"} | ({"enc"} if enc_loss != "none" else set())
    assert set(terms) == expected
    # detached 0-d tensors: the train loop reads them only when it logs (no host sync per step on a GPU)
    assert all(torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad for v in terms.values())
    o = cfg.objective
    total = terms["fm"] + o.enc_weight * terms.get("enc", 0.0) + o.kl_weight * terms["kl"]
    assert float(loss.detach()) == pytest.approx(float(total), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.text_ve.parameters())


def test_compute_loss_fm_term_by_hand(smoke_cfg):
    """Deterministic Text VE, t fixed (t_std=0), no flags: recompute L_FM and L_Enc from the spec."""
    cfg = smoke_cfg.replace({"text_ve.kind": "deterministic", "objective.t_std": 0.0, "objective.t_mean": 0.4,
                             "objective.uncond_prob": 0.0, "objective.sigma_min": 0.05})
    model = _model(cfg).eval()
    _randomise_final(model.net)
    batch = _batch(cfg)
    loss, terms = flow.compute_loss(model, batch, cfg.objective, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mu, logvar = model.text_ve(batch["x"], batch["mask"])
        assert logvar is None
        t = 1.0 / (1.0 + math.exp(-0.4))
        zt = t * batch["z1"] + (1 - (1 - 0.05) * t) * mu
        v = model.net(zt, torch.full((B,), t), indicator=torch.ones(B, dtype=torch.long))
        target = batch["z1"] - 0.95 * mu
        fm = ((v - target) ** 2).mean()
        tower = model.image_tower
        enc = _clip_loss_loops(mu.double().numpy(), tower(batch["pixels"]).double().numpy(),
                               float(tower.logit_scale))
    assert float(terms["fm"]) == pytest.approx(float(fm), rel=1e-4)
    assert float(terms["enc"]) == pytest.approx(enc, rel=1e-4)
    assert "kl" not in terms
    assert float(loss.detach()) == pytest.approx(float(fm) + cfg.objective.enc_weight * enc, rel=1e-4)


def test_fm_term_alone_trains_text_ve(smoke_cfg):
    """z0 is not detached: with enc and KL weights 0, L_FM alone gives the Text VE nonzero gradients."""
    cfg = smoke_cfg.replace({"objective.enc_weight": 0.0, "objective.kl_weight": 0.0})
    model = _model(cfg)
    _randomise_final(model.net)
    loss, terms = flow.compute_loss(model, _batch(cfg), cfg.objective, torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(float(terms["fm"]), rel=1e-6)
    loss.backward()
    grads = {n: p.grad for n, p in model.text_ve.named_parameters()}
    assert grads["head.weight"] is not None and grads["head.weight"].abs().sum() > 0
    assert grads["proj_in.weight"] is not None and grads["proj_in.weight"].abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.image_tower.parameters())


def test_uncond_prob_changes_loss(smoke_cfg):
    losses = []
    for p in (0.0, 0.9):
        cfg = smoke_cfg.replace({"objective.uncond_prob": p})
        model = _model(cfg).eval()
        _randomise_final(model.net)
        loss, _ = flow.compute_loss(model, _batch(cfg), cfg.objective, torch.Generator().manual_seed(7))
        losses.append(float(loss.detach()))
    assert losses[0] != pytest.approx(losses[1], rel=1e-4), losses


def test_compute_loss_seeded_is_reproducible(smoke_cfg):
    model = _model(smoke_cfg).eval()
    a, _ = flow.compute_loss(model, _batch(smoke_cfg), smoke_cfg.objective, torch.Generator().manual_seed(3))
    b, _ = flow.compute_loss(model, _batch(smoke_cfg), smoke_cfg.objective, torch.Generator().manual_seed(3))
    assert float(a.detach()) == float(b.detach())


def test_baseline_noise_source_with_cross_attention(smoke_cfg):
    from crossflow.models import has_cross_attention
    cfg = smoke_cfg.replace({"objective.source": "noise", "flow.cross_attention": True,
                             "objective.uncond_prob": 0.5})
    model = _model(cfg)
    assert model.text_ve is None
    assert not hasattr(model, "image_tower")
    assert has_cross_attention(model.net)
    loss, terms = flow.compute_loss(model, _batch(cfg), cfg.objective, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and set(terms) == {"fm"}
    assert float(loss.detach()) == pytest.approx(float(terms["fm"]), rel=1e-6)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
