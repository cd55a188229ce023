"""The encoder losses of the Text VE (Table 3b): each a small registered module that owns its network.

- ImageTower (``it_contrastive``, the final choice): h(image) -> a vector of z0's size; CLIP loss between z0
  and h(image). [code] uses a SigLIP ViT-L/16 created without pretrained weights; at CPU scale a small CNN
  plays that role [open].
- TextTower (``tt_contrastive``): g(x) -> a vector of z0's size; CLIP loss between z0 and g(x).
- TextDecoder (``tt_recon``): z0 -> reconstructed token states; masked MSE (a plain VAE).
Each carries its own learnable logit scale where it needs one, used raw as in [code].

``ENC_LOSSES`` maps ``objective.enc_loss`` to its class; :class:`crossflow.models.CrossFlow` builds the one its
config names (``build``) and the objective calls ``loss(z0, batch)`` on it: no code outside this file knows
which network an encoder loss needs. ``attr`` is the attribute the model holds it under (the checkpoints' keys).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ..flow import clip_loss


class EncoderLoss(nn.Module):
    """An encoder loss: ``loss(z0, batch)`` -> 0-d tensor; ``batch`` is the training batch (x, mask, pixels...)."""
    name: ClassVar[str]                # the objective.enc_loss value
    attr: ClassVar[str]                # the attribute of the model that holds it (stable checkpoint keys)

    @classmethod
    def build(cls, numel: int, image_size: int, text_dim: int, n_tokens: int) -> "EncoderLoss":
        raise NotImplementedError

    def loss(self, z0: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError


ENC_LOSSES: dict[str, type[EncoderLoss]] = {}


def register(cls: type[EncoderLoss]) -> type[EncoderLoss]:
    ENC_LOSSES[cls.name] = cls
    return cls


@register
class ImageTower(EncoderLoss):
    name, attr = "it_contrastive", "image_tower"

    def __init__(self, out_dim: int, image_size: int, width: int = 32, logit_scale_init: float = 10.0):
        super().__init__()
        layers, c, side = [], 3, image_size
        while side > 4:                                                  # stride-2 convs down to 4x4
            layers += [nn.Conv2d(c, width, 3, 2, 1), nn.GroupNorm(8, width), nn.SiLU()]
            c, side, width = width, (side + 1) // 2, min(width * 2, 256)   # ceil: stride 2, padding 1
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, out_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    @classmethod
    def build(cls, numel, image_size, text_dim, n_tokens):
        return cls(numel, image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> (B, out_dim)."""
        return self.net(images)

    def loss(self, z0, batch):
        return clip_loss(z0, self(batch["pixels"]), self.logit_scale)     # true pairs, sampled z0 [code]


@register
class TextTower(EncoderLoss):
    name, attr = "tt_contrastive", "text_tower"

    def __init__(self, text_dim: int, out_dim: int, width: int = 256, logit_scale_init: float = 10.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(), nn.Linear(width, width))
        self.head = nn.Linear(width, out_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    @classmethod
    def build(cls, numel, image_size, text_dim, n_tokens):
        return cls(text_dim, numel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        pooled = (self.net(x) * m).sum(1) / m.sum(1).clamp(min=1)        # masked mean over tokens
        return self.head(pooled)

    def loss(self, z0, batch):
        return clip_loss(z0, self(batch["x"], batch["mask"]), self.logit_scale)


@register
class TextDecoder(EncoderLoss):
    name, attr = "tt_recon", "text_decoder"

    def __init__(self, in_dim: int, text_dim: int, n_tokens: int, width: int = 64):
        super().__init__()
        self.n_tokens, self.width = n_tokens, width
        self.expand = nn.Linear(in_dim, n_tokens * width)
        self.tok = nn.Sequential(nn.GELU(), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, text_dim))

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        """z0: (B, c, h, w) -> (B, n, d) reconstructed token states."""
        return self.tok(self.expand(z0.flatten(1)).view(-1, self.n_tokens, self.width))

    @classmethod
    def build(cls, numel, image_size, text_dim, n_tokens):
        return cls(numel, text_dim, n_tokens)

    def loss(self, z0, batch):
        x, m = batch["x"], batch["mask"][..., None].to(batch["x"].dtype)
        return ((self(z0) - x).pow(2) * m).sum() / (m.sum() * x.shape[-1])
