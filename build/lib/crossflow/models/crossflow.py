"""The trainable whole: Text VE + flow network + the tower its encoder loss needs (or the noise baseline)."""
from __future__ import annotations

import math

import torch.nn as nn

from ..config import Config
from ..flow import compute_loss
from .flow_transformer import FlowTransformer
from .text_ve import TextVE
from .towers import ImageTower, TextDecoder, TextTower


class CrossFlow(nn.Module):
    """``forward(batch, generator)`` returns (loss, terms) so that data-parallel wrappers see the whole step.

    For sampling use the parts: ``text_ve.encode(x, mask)`` gives z0, ``net(z, t, indicator)`` the velocity.
    """

    def __init__(self, cfg: Config, text_dim: int, n_tokens: int):
        super().__init__()
        self.cfg = cfg
        shape, o = cfg.latent_shape, cfg.objective
        self.text_ve = TextVE(cfg.text_ve, text_dim, n_tokens, shape) if o.source == "text" else None
        self.net = FlowTransformer(cfg.flow, shape, context_dim=text_dim if cfg.flow.cross_attention else None)
        numel = math.prod(shape)
        if o.source == "text" and o.enc_loss == "it_contrastive":
            self.image_tower = ImageTower(numel, cfg.data.image_size)
        if o.source == "text" and o.enc_loss == "tt_contrastive":
            self.text_tower = TextTower(text_dim, numel)
        if o.source == "text" and o.enc_loss == "tt_recon":
            self.text_decoder = TextDecoder(numel, text_dim, n_tokens)

    def forward(self, batch, generator=None, phase: str = "joint"):
        return compute_loss(self, batch, self.cfg.objective, generator, phase)

    def encoder_modules(self) -> list[nn.Module]:
        """The Text VE and the tower of its encoder loss: what 2-stage training pre-trains, then freezes."""
        names = ("text_ve", "image_tower", "text_tower", "text_decoder")
        return [getattr(self, n) for n in names if getattr(self, n, None) is not None]
