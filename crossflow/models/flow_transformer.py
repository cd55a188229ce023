"""Flow transformer v(z_t, t, indicator): DiT-style blocks with adaLN-Zero, and no cross-attention.

The paper's network is DiMR (docs/method.md section 6); any standard backbone without cross-attention is
acceptable at small scale [open]. We follow the released DiT variant: the CFG indicator is a 2-entry embedding
added to the timestep embedding, so it modulates every block through adaLN [code, DiT].

The Table 1 baseline uses the same class with ``cross_attention=True``: a cross-attention layer after every
self-attention (queries from image tokens; keys and values from projected text tokens, padding masked), and
no indicator (its CFG drops the text instead).

Sections: embedders, blocks, model, presets/parameter counting.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import FlowNetConfig


# ----------------------------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------------------------

class TimestepEmbedder(nn.Module):
    """Scalar t in [0, 1] -> vector: sinusoidal features then an MLP (as DiT, with t scaled by 1000)."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def sincos_pos_embed_2d(width: int, side: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding, (side*side, width), as in DiT / MAE."""
    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gy, gx = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64), indexing="ij")
    return np.concatenate([one_d(width // 2, gy), one_d(width // 2, gx)], axis=1)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# ----------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------

def attend(q, k, v, mask=None, impl: str = "sdpa"):
    """softmax(q k^T / sqrt(d)) v over (B, H, N, d) heads; ``mask`` (B, 1, 1, M) True = attend.

    "sdpa": PyTorch's fused kernel (on CPUs its flash kernel). "math": the same formula as three plain ops, which
    autocast runs as bf16 matrix products; on a CPU its bf16 backward pass is ~7x faster than the flash kernel's
    at 64 tokens (measured by ``make bench``). The two agree to float rounding."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention to it."""

    def __init__(self, width: int, heads: int, context_dim: int | None = None, impl: str = "sdpa"):
        super().__init__()
        self.heads, self.impl = heads, impl
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_dim or width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x, context=None, context_mask=None):
        B, N, C = x.shape
        src = x if context is None else context
        q = self.q(x).view(B, N, self.heads, -1).transpose(1, 2)                       # (B, H, N, C/H)
        k, v = self.kv(src).view(B, src.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # (B, 1, 1, M)
        out = attend(q, k, v, mask, self.impl)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """adaLN-Zero DiT block; with ``cross_attention`` a pre-norm cross-attention sits after self-attention."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, cross_attention: bool = False,
                 attention: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads, impl=attention)
        self.cross = None
        if cross_attention:
            self.norm_x = nn.LayerNorm(width, eps=1e-6)
            self.cross = Attention(width, heads, context_dim=width, impl=attention)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x, c, context=None, context_mask=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        if self.cross is not None:
            x = x + self.cross(self.norm_x(x), context, context_mask)
        x = x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    def __init__(self, width: int, patch: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, patch * patch * channels)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x, c):
        shift, scale = self.adaLN(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------

class FlowTransformer(nn.Module):
    def __init__(self, cfg: FlowNetConfig, latent_shape: tuple[int, int, int], context_dim: int | None = None,
                 cond_channels: int = 0):
        super().__init__()
        self.cfg, self.latent_shape = cfg, tuple(latent_shape)
        c, h, w = latent_shape
        p, width = cfg.patch_size, cfg.width
        self.grid = h // p
        # cond_channels > 0: an image of the latent's size concatenated to z_t at the input (the noise + concat
        # baseline of super-resolution); the output keeps the latent's c channels
        self.cond_channels = cond_channels
        self.x_embed = nn.Conv2d(c + cond_channels, width, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", torch.zeros(1, self.grid * self.grid, width), persistent=False)
        self.t_embed = TimestepEmbedder(width)
        # indicator: 1 = conditional, 0 = unconditional [code, DiT]; the baseline has no indicator
        self.indicator_embed = None if cfg.cross_attention else nn.Embedding(2, width)
        self.context_proj = None
        if cfg.cross_attention:
            if context_dim is None:
                raise ValueError("cross_attention=True needs context_dim (the text encoder's width)")
            self.context_proj = nn.Linear(context_dim, width)
        self.blocks = nn.ModuleList([Block(width, cfg.heads, cfg.mlp_ratio, cfg.cross_attention, cfg.attention)
                                     for _ in range(cfg.depth)])
        self.final = FinalLayer(width, p, c)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT init: xavier linears, zero adaLN and output layers so every block starts as the identity."""
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_basic)
        if self.pos_embed.device.type != "meta":
            self.pos_embed.copy_(torch.from_numpy(sincos_pos_embed_2d(self.cfg.width, self.grid)).float()[None])
        w = self.x_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        if self.indicator_embed is not None:
            nn.init.normal_(self.indicator_embed.weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN[-1].weight)
            nn.init.zeros_(blk.adaLN[-1].bias)
            if blk.cross is not None:                                   # cross-attention starts silent too
                nn.init.zeros_(blk.cross.proj.weight)
        nn.init.zeros_(self.final.adaLN[-1].weight)
        nn.init.zeros_(self.final.adaLN[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def unpatchify(self, x):
        c, p, g = self.latent_shape[0], self.cfg.patch_size, self.grid
        x = x.view(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def forward(self, z_t, t, indicator=None, context=None, context_mask=None, cond=None):
        """z_t: (B, c, h, w); t: (B,) in [0, 1]; indicator: (B,) long, 1 = conditional (CrossFlow only);
        context, context_mask: (B, n, d), (B, n) text tokens (baseline only); cond: (B, cond_channels, h, w)
        concatenated to z_t (only when built with cond_channels). Returns v_pred (B, c, h, w)."""
        if self.cond_channels:
            if cond is None:
                raise ValueError(f"this network was built with cond_channels={self.cond_channels}: pass `cond`")
            z_t = torch.cat([z_t, cond.to(z_t.dtype)], dim=1)
        x = self.x_embed(z_t).flatten(2).transpose(1, 2) + self.pos_embed   # (B, T, width)
        c = self.t_embed(t)                                                  # (B, width)
        if self.indicator_embed is not None:
            if indicator is None:
                indicator = torch.ones(z_t.shape[0], dtype=torch.long, device=z_t.device)
            c = c + self.indicator_embed(indicator.long())
        if self.context_proj is not None:
            if context is None:
                raise ValueError("the cross-attention baseline needs `context` (text token states)")
            context = self.context_proj(context)
        for blk in self.blocks:
            x = blk(x, c, context, context_mask)
        return self.unpatchify(self.final(x, c))                             # (B, c, h, w)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def has_cross_attention(module: nn.Module) -> bool:
    return any(isinstance(m, Block) and m.cross is not None for m in module.modules())
