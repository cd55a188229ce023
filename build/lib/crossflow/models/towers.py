"""The small networks of the encoder losses (Table 3b), trained jointly with the Text VE.

- ImageTower: h(image) -> a vector of z0's size, for the I-T contrastive loss (final choice). [code] uses a
  SigLIP ViT-L/16 created without pretrained weights; at CPU scale a small CNN plays that role [open].
- TextTower: g(x) -> a vector of z0's size, for the T-T contrastive loss.
- TextDecoder: z0 -> reconstructed token states, for the T-T reconstruction loss (a plain VAE).
Each carries its own learnable logit scale where it needs one, used raw as in [code].
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ImageTower(nn.Module):
    def __init__(self, out_dim: int, image_size: int, width: int = 32, logit_scale_init: float = 10.0):
        super().__init__()
        layers, c, side = [], 3, image_size
        while side > 4:                                                  # stride-2 convs down to 4x4
            layers += [nn.Conv2d(c, width, 3, 2, 1), nn.GroupNorm(8, width), nn.SiLU()]
            c, side, width = width, (side + 1) // 2, min(width * 2, 256)   # ceil: stride 2, padding 1
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * side * side, out_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) in [-1, 1] -> (B, out_dim)."""
        return self.net(images)


class TextTower(nn.Module):
    def __init__(self, text_dim: int, out_dim: int, width: int = 256, logit_scale_init: float = 10.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(), nn.Linear(width, width))
        self.head = nn.Linear(width, out_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        pooled = (self.net(x) * m).sum(1) / m.sum(1).clamp(min=1)        # masked mean over tokens
        return self.head(pooled)


class TextDecoder(nn.Module):
    def __init__(self, in_dim: int, text_dim: int, n_tokens: int, width: int = 64):
        super().__init__()
        self.n_tokens, self.width = n_tokens, width
        self.expand = nn.Linear(in_dim, n_tokens * width)
        self.tok = nn.Sequential(nn.GELU(), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, text_dim))

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        """z0: (B, c, h, w) -> (B, n, d) reconstructed token states."""
        return self.tok(self.expand(z0.flatten(1)).view(-1, self.n_tokens, self.width))
