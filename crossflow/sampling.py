"""ODE sampling from the source z0 (t=0) to the image latent z1 (t=1), with guidance.

Kept apart from the objective and the networks (as Meta's flow_matching): a *velocity function*
``v(z, t) -> dz/dt`` is built from a model plus a guidance rule, and a solver integrates it.

Guidance rules (docs/method.md section 5):
- indicator CFG  [paper, code]: v = v_u + s (v_c - v_u), the same z0, indicator 1 vs 0.
- autoguidance   [paper, Table 3c]: v = v_bad + s (v_good - v_bad), a weaker checkpoint as the guide.
- null-text CFG  (the baseline): v = v(null text) + s (v(text) - v(null text)).
"""
from __future__ import annotations

from typing import Callable

import torch

from .device import module_device, randn

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NFECounter:
    """Wraps a velocity function and counts network evaluations (one per call, guidance passes included)."""

    def __init__(self, fn: VelocityFn, passes_per_call: int = 1):
        self.fn, self.passes, self.nfe = fn, passes_per_call, 0

    def __call__(self, z, t):
        self.nfe += self.passes
        return self.fn(z, t)


def _t(z, t: float) -> torch.Tensor:
    return torch.full((z.shape[0],), float(t), device=z.device, dtype=z.dtype)


def indicator_cfg(net, scale: float) -> VelocityFn:
    """CrossFlow's guidance: conditional (indicator 1) vs unconditional (indicator 0) from the same z."""
    def v(z, t):
        B = z.shape[0]
        if scale == 1.0:
            return net(z, _t(z, t), indicator=torch.ones(B, dtype=torch.long, device=z.device))
        ind = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)]).to(z.device)
        v_c, v_u = net(torch.cat([z, z]), _t(z, t).repeat(2), indicator=ind).chunk(2)
        return v_u + scale * (v_c - v_u)
    return v


def unconditional(net) -> VelocityFn:
    """Indicator 0 alone: the flow CrossFlow learned for the samples flagged unconditional (Figure 9)."""
    def v(z, t):
        return net(z, _t(z, t), indicator=torch.zeros(z.shape[0], dtype=torch.long, device=z.device))
    return v


def autoguidance(net_good, net_bad, scale: float) -> VelocityFn:
    """Autoguidance (Karras et al. 2024) with an under-trained checkpoint of the same model as the guide."""
    def v(z, t):
        ones = torch.ones(z.shape[0], dtype=torch.long, device=z.device)
        v_good = net_good(z, _t(z, t), indicator=ones)
        if scale == 1.0:
            return v_good
        v_bad = net_bad(z, _t(z, t), indicator=ones)
        return v_bad + scale * (v_good - v_bad)
    return v


def text_cfg(net, context, context_mask, null_context, null_mask, scale: float) -> VelocityFn:
    """Standard CFG of the cross-attention baseline: the text vs the empty-prompt embedding."""
    def v(z, t):
        if scale == 1.0:
            return net(z, _t(z, t), context=context, context_mask=context_mask)
        ctx = torch.cat([context, null_context.expand_as(context)])
        msk = torch.cat([context_mask, null_mask.expand_as(context_mask)])
        v_c, v_u = net(torch.cat([z, z]), _t(z, t).repeat(2), context=ctx, context_mask=msk).chunk(2)
        return v_u + scale * (v_c - v_u)
    return v


@torch.no_grad()
def euler(v: VelocityFn, z0: torch.Tensor, steps: int, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Explicit Euler with ``steps`` uniform steps from t0 to t1 [code]. t1 < t0 integrates backwards."""
    z, dt = z0, (t1 - t0) / steps
    for i in range(steps):
        z = z + dt * v(z, t0 + i * dt)
    return z


@torch.no_grad()
def midpoint(v: VelocityFn, z0: torch.Tensor, steps: int, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Explicit midpoint (2nd order Runge-Kutta): 2 evaluations per step, the second at the half step."""
    z, dt = z0, (t1 - t0) / steps
    for i in range(steps):
        t = t0 + i * dt
        z = z + dt * v(z + 0.5 * dt * v(z, t), t + 0.5 * dt)
    return z


@torch.no_grad()
def heun(v: VelocityFn, z0: torch.Tensor, steps: int, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Heun (explicit trapezoid, 2nd order): an Euler predictor, then the mean of the slopes at both ends;
    2 evaluations per step."""
    z, dt = z0, (t1 - t0) / steps
    for i in range(steps):
        t = t0 + i * dt
        k1 = v(z, t)
        k2 = v(z + dt * k1, t + dt)
        z = z + 0.5 * dt * (k1 + k2)
    return z


@torch.no_grad()
def dopri5(v: VelocityFn, z0: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5,
           t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Adaptive Dormand-Prince (torchdiffeq), the released code's unused alternative."""
    from torchdiffeq import odeint
    ts = torch.tensor([t0, t1], dtype=z0.dtype, device=z0.device)
    return odeint(lambda t, z: v(z, float(t)), z0, ts, rtol=rtol, atol=atol, method="dopri5")[-1]


# fixed-step solvers: name -> (function, network evaluations per step); dopri5 chooses its own steps
FIXED_STEP = {"euler": (euler, 1), "midpoint": (midpoint, 2), "heun": (heun, 2)}
SOLVERS = (*FIXED_STEP, "dopri5")


def steps_for_nfe(solver: str, nfe: int) -> int:
    """The number of steps of a fixed-step ``solver`` that costs ``nfe`` velocity evaluations (per guidance
    pass; CFG doubles every count). A 2-evaluation solver gets nfe // 2 steps (at least 1)."""
    if solver not in FIXED_STEP:
        raise ValueError(f"{solver!r} has no fixed number of evaluations; fixed-step solvers: {tuple(FIXED_STEP)}")
    return max(1, nfe // FIXED_STEP[solver][1])


def solve(v: VelocityFn, z0: torch.Tensor, solver: str = "euler", steps: int = 50) -> torch.Tensor:
    """Integrate from t=0 to t=1. ``steps`` counts solver steps (a midpoint or Heun step costs 2 evaluations:
    see :func:`steps_for_nfe`); dopri5 ignores it."""
    if solver in FIXED_STEP:
        return FIXED_STEP[solver][0](v, z0, steps)
    if solver == "dopri5":
        return dopri5(v, z0)
    raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")


@torch.no_grad()
def generate(model, x: torch.Tensor, mask: torch.Tensor, *, scale: float = 1.0, steps: int = 50,
             solver: str = "euler", seed: int = 0, null_x=None, null_mask=None, guide=None,
             indicator_zero: bool = False):
    """Text token states -> image latents z1. Returns (z1, nfe).

    CrossFlow: z0 = Text VE sample (the only randomness), then the ODE with indicator CFG (or autoguidance when
    ``guide`` is a weaker model). Baseline (no Text VE): z0 ~ N(0, I) and null-text CFG.
    """
    g = torch.Generator().manual_seed(seed)                  # a CPU generator: the same z0 on every device
    model.eval()
    x, mask = x.to(module_device(model)), mask.to(module_device(model))
    if model.text_ve is not None:
        z0 = model.text_ve.encode(x, mask, g)[0]
        return generate_from_z0(model, z0, scale=scale, steps=steps, solver=solver, guide=guide,
                                indicator_zero=indicator_zero)
    z0 = randn((x.shape[0], *model.net.latent_shape), g, x.device)
    null_x, null_mask = null_x.to(x.device), null_mask.to(x.device)
    v = text_cfg(model.net, x, mask, null_x, null_mask, scale)
    counter = NFECounter(v, 1 if scale == 1.0 else 2)
    return solve(counter, z0, solver, steps), counter.nfe


@torch.no_grad()
def generate_from_z0(model, z0: torch.Tensor, *, scale: float = 1.0, steps: int = 50, solver: str = "euler",
                     guide=None, indicator_zero: bool = False):
    """Integrate CrossFlow's ODE from given text latents z0 (interpolations, arithmetic). Returns (z1, nfe).

    Runs on the model's device (z0 and the guide are moved there); z1 stays on it."""
    model.eval()
    z0 = z0.to(module_device(model))
    if indicator_zero:                                       # unconditional: no guidance (one pass)
        v, scale = unconditional(model.net), 1.0
    elif guide is not None:
        v = autoguidance(model.net, guide.to(z0.device).eval().net, scale)
    else:
        v = indicator_cfg(model.net, scale)
    passes = 1 if scale == 1.0 else 2
    counter = NFECounter(v, passes)
    return solve(counter, z0, solver, steps), counter.nfe
