"""The trainable whole: Text VE + flow network + the module of its encoder loss (or the noise baseline)."""
from __future__ import annotations

import math

import torch.nn as nn

from ..config import Config
from ..flow import compute_loss
from .flow_transformer import FlowTransformer
from .text_ve import TextVE
from .towers import ENC_LOSSES, EncoderLoss


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
        self._enc_attr = None
        if o.source == "text" and o.enc_loss != "none":   # registered under its own name: stable checkpoint keys
            cls = ENC_LOSSES[o.enc_loss]
            self._enc_attr = cls.attr
            setattr(self, cls.attr, cls.build(math.prod(shape), cfg.data.image_size, text_dim, n_tokens))

    def forward(self, batch, generator=None, phase: str = "joint"):
        return compute_loss(self, batch, self.cfg.objective, generator, phase)

    @property
    def enc_loss(self) -> EncoderLoss | None:
        """The module of the encoder loss (objective.enc_loss), or None."""
        return getattr(self, self._enc_attr) if self._enc_attr else None

    def encoder_modules(self) -> list[nn.Module]:
        """The Text VE and its encoder loss's module: what 2-stage training pre-trains, then freezes."""
        return [m for m in (self.text_ve, self.enc_loss) if m is not None]
