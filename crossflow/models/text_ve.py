"""Text Variational Encoder: frozen language-model tokens x (n x d) -> mu, logvar of the image-latent shape.

Follows the released code (docs/method.md section 3): a projection to the encoder width, post-norm
transformer encoder layers, then "reduction" layers (an encoder layer followed by a per-token Linear that
halves the channels), flatten all tokens, one Linear to 2 * (c*h*w), split into mu and logvar, reshape
row-major to (c, h, w). ``z0 = mu + exp(0.5 * logvar) * eps``.

``kind`` selects the Table 3a variants: "variational" (the above), "deterministic" (z0 = mu), "noise"
(z0 = mu + noise_std * eps with a fixed std, as in CFM-style conditional noise).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..config import TextVEConfig
from ..device import randn


def _encoder_layer(width: int, heads: int, ffn: int, dropout: float) -> nn.TransformerEncoderLayer:
    # post-norm, as nn.TransformerEncoderLayer's default and the released code
    return nn.TransformerEncoderLayer(width, heads, ffn, dropout, batch_first=True, norm_first=False)


class TextVE(nn.Module):
    def __init__(self, cfg: TextVEConfig, text_dim: int, n_tokens: int, latent_shape: tuple[int, int, int]):
        super().__init__()
        self.cfg, self.latent_shape = cfg, tuple(latent_shape)
        self.numel = math.prod(latent_shape)
        w = cfg.width
        self.proj_in = nn.Linear(text_dim, w)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, w))
        self.layers = nn.ModuleList([_encoder_layer(w, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.depth)])
        self.reduce_layers = nn.ModuleList()
        self.reduce_proj = nn.ModuleList()
        for _ in range(cfg.reductions):
            self.reduce_layers.append(_encoder_layer(w, cfg.heads, cfg.ffn, cfg.dropout))
            self.reduce_proj.append(nn.Linear(w, w // 2))
            w //= 2
        self.out_width = w
        n_out = self.numel if cfg.kind == "deterministic" else 2 * self.numel
        self.head = nn.Linear(n_tokens * w, n_out)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, n, d) token states, mask: (B, n) True for real tokens. Returns mu, logvar: (B, c, h, w)."""
        pad = ~mask.bool()
        h = self.proj_in(x) + self.pos                                   # (B, n, w)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        for layer, proj in zip(self.reduce_layers, self.reduce_proj):
            h = proj(layer(h, src_key_padding_mask=pad))                 # (B, n, w / 2^k)
        h = h * mask[..., None].to(h.dtype)                              # padding carries no information
        out = self.head(h.flatten(1))                                    # (B, numel or 2 numel)
        if self.cfg.kind == "deterministic":
            return out.view(-1, *self.latent_shape), None
        mu, logvar = out.chunk(2, dim=1)
        return mu.reshape(-1, *self.latent_shape), logvar.reshape(-1, *self.latent_shape)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor | None, generator=None) -> torch.Tensor:
        """z0 from (mu, logvar): the reparameterisation of each Table 3a variant."""
        if self.cfg.kind == "deterministic":
            return mu
        eps = randn(mu.shape, generator, mu.device, mu.dtype)            # drawn on the generator's device
        if self.cfg.kind == "noise":
            return mu + self.cfg.noise_std * eps
        return mu + torch.exp(0.5 * logvar) * eps

    def encode(self, x, mask, generator=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (z0, mu, logvar)."""
        mu, logvar = self(x, mask)
        return self.sample(mu, logvar, generator), mu, logvar
