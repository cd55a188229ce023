"""The CrossFlow objective, kept apart from the networks (which are plain ``v(z_t, t, ...)``).

Time convention (pinned by tests/test_math.py): ``t = 0`` is the source ``z0`` (the text latent, or Gaussian
noise for the baseline), ``t = 1`` is the target ``z1`` (the image latent). [code]

    z_t      = t * z1 + (1 - (1 - sigma_min) * t) * z0          (docs/method.md section 2)
    v_target = z1 - (1 - sigma_min) * z0
    t        ~ sigmoid(N(t_mean, t_std))                         (logit-normal, [paper] [code])

Losses (section 4): ``L = L_FM + enc_weight * L_Enc + kl_weight * L_KL``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .device import randn


# ----------------------------------------------------------------------------------------------------------
# Path: interpolant, target, time
# ----------------------------------------------------------------------------------------------------------

def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def interpolate(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """z_t on the straight path from z0 (t=0) to z1 (t=1)."""
    t = _bcast(t, z0)
    return t * z1 + (1 - (1 - sigma_min) * t) * z0


def target_velocity(z0: torch.Tensor, z1: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """d z_t / d t, constant along the path."""
    return z1 - (1 - sigma_min) * z0


def sample_t(n: int, mean: float = 0.0, std: float = 1.0, generator=None, device=None) -> torch.Tensor:
    """Logit-normal time, one per sample: sigmoid(N(mean, std^2))."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))


# ----------------------------------------------------------------------------------------------------------
# Regularisers of the Text VE
# ----------------------------------------------------------------------------------------------------------

def kl_paper(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[paper] KL(N(mu, sigma^2) || N(0, I)), summed over latent dims, mean over the batch."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return kl.flatten(1).sum(1).mean()


def kl_code(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[code] the released variant: -0.5 * sum(1 + logvar - (0.3 mu)^6 - exp(logvar)), mean over the batch.

    Nearly flat for |mu| < 2, a steep wall above ~3.3: it bounds mu without pulling it to 0.
    """
    kl = -0.5 * (1 + logvar - (0.3 * mu).pow(6) - logvar.exp())
    return kl.flatten(1).sum(1).mean()


KL_FORMS = {"paper": kl_paper, "code": kl_code}


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP-style symmetric InfoNCE between rows of ``a`` and ``b`` (matching pairs on the diagonal).

    Vectors are flattened and L2-normalised; negatives are the rest of the (per-process) batch, as in [code].
    ``logit_scale`` multiplies the cosine similarities; [code] uses the learnable scale raw (not exp).
    """
    a = F.normalize(a.flatten(1), dim=-1)
    b = F.normalize(b.flatten(1), dim=-1)
    logits = logit_scale * a @ b.t()                                     # (B, B)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


# ----------------------------------------------------------------------------------------------------------
# Classifier-free guidance by indicator
# ----------------------------------------------------------------------------------------------------------

def indicator_swap(z1: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """Pair each flagged (unconditional) sample's source with another flagged sample's image.

    The targets of the flagged samples are rolled by one position *among the flagged samples* [paper, code];
    the others are untouched. With fewer than two flagged samples nothing changes (a roll of one is itself).
    """
    idx = torch.nonzero(uncond, as_tuple=False).flatten()
    if idx.numel() < 2:
        return z1
    out = z1.clone()
    out[idx] = z1[idx.roll(1)]
    return out


def sample_uncond(n: int, p: float, generator=None, device=None) -> torch.Tensor:
    """Bernoulli(p) flags: True = unconditional (indicator 0)."""
    return torch.rand(n, generator=generator, device=device) < p


# ----------------------------------------------------------------------------------------------------------
# The full objective: one parameterised path for CrossFlow, its ablations and the noise baseline
# ----------------------------------------------------------------------------------------------------------

PHASES = ("joint", "ve", "flow")


def flow_matching_loss(v_fn, z0: torch.Tensor, z1: torch.Tensor, ocfg, generator=None) -> torch.Tensor:
    """L_FM for any source/target pair of one shape: t ~ logit-normal, z_t on the straight path from z0 to z1,
    MSE between ``v_fn(z_t, t)`` and the path's velocity. ``ocfg`` needs t_mean, t_std and sigma_min. Every
    task's objective is this function of (z0, z1, network); what differs is where z0 comes from."""
    t = sample_t(z1.shape[0], ocfg.t_mean, ocfg.t_std, generator).to(z1.device)
    z_t = interpolate(z0, z1, t, ocfg.sigma_min)
    return F.mse_loss(v_fn(z_t, t).float(), target_velocity(z0, z1, ocfg.sigma_min).float())


def compute_loss(model, batch: dict, ocfg, generator=None, phase: str = "joint") -> tuple[torch.Tensor, dict]:
    """L = L_FM + enc_weight * L_Enc + kl_weight * L_KL for one batch (docs/method.md section 4).

    ``phase`` (Table 3e schedules): "joint" = all terms, the Text VE trained by every loss (the final recipe);
    "ve" = the Text VE alone on L_Enc + L_KL (pre-training, no flow network); "flow" = L_FM with the Text VE
    frozen (z0 computed without gradients, dropout off).

    ``model`` is a :class:`crossflow.models.CrossFlow` (text_ve, net, and ``enc_loss``: the module of
    the encoder loss, whose ``loss(z0, batch)`` gives L_Enc);
    ``batch`` holds x (B, n, d), mask (B, n), z1 (B, c, h, w), and pixels (B, 3, H, W) in [-1, 1] for the
    I-T loss, or null_x / null_mask (1, n, d) / (1, n) for the baseline's text dropout.
    The terms come back as detached 0-d tensors (reading them is a host synchronisation on a GPU: the caller
    reads them when it logs).
    """
    x, mask, z1 = batch["x"], batch["mask"], batch["z1"]
    B, dev = z1.shape[0], z1.device
    uncond = sample_uncond(B, ocfg.uncond_prob, generator).to(dev)
    terms: dict[str, torch.Tensor] = {}

    if phase not in PHASES:
        raise ValueError(f"unknown training phase {phase!r}; known: {PHASES}")
    if phase != "joint" and ocfg.source != "text":
        raise ValueError("the 've' and 'flow' phases (2-stage training) exist only for CrossFlow (source='text')")

    if ocfg.source == "text" and phase == "flow":        # 2-stage, second stage: the Text VE is frozen
        with torch.no_grad():
            z0 = model.text_ve.encode(x, mask, generator)[0]
        z1_pair = indicator_swap(z1, uncond)
        net_kw = {"indicator": (~uncond).long()}
    elif ocfg.source == "text":                          # CrossFlow: the source is the text latent
        z0, mu, logvar = model.text_ve.encode(x, mask, generator)   # z0 not detached: L_FM trains the VE [code]
        z1_pair = indicator_swap(z1, uncond)             # flagged samples see another sample's image
        net_kw = {"indicator": (~uncond).long()}
        if logvar is not None and model.text_ve.cfg.kind == "variational":
            terms["kl"] = KL_FORMS[ocfg.kl_form](mu, logvar)
        if model.enc_loss is not None:                   # the module objective.enc_loss names (Table 3b)
            terms["enc"] = model.enc_loss.loss(z0, batch)
    else:                                                # baseline: Gaussian source, text by cross-attention
        z0 = randn(z1.shape, generator, dev)
        z1_pair = z1
        drop = uncond[:, None]                           # standard CFG: empty-prompt embedding 10% of the time
        ctx = torch.where(drop[..., None], batch["null_x"].expand_as(x), x)
        ctx_mask = torch.where(drop, batch["null_mask"].expand_as(mask), mask)
        net_kw = {"context": ctx, "context_mask": ctx_mask}

    if phase == "ve":                                    # Text VE pre-training: no flow network at all
        loss = ocfg.enc_weight * terms["enc"] + ocfg.kl_weight * terms.get("kl", 0.0)
        return loss, {k: v.detach() for k, v in terms.items()}

    terms["fm"] = flow_matching_loss(lambda z, t: model.net(z, t, **net_kw), z0, z1_pair, ocfg, generator)

    loss = terms["fm"] + ocfg.enc_weight * terms.get("enc", 0.0) + ocfg.kl_weight * terms.get("kl", 0.0)
    return loss, {k: v.detach() for k, v in terms.items()}
