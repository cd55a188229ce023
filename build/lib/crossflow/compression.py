"""Table 10: how much of the language model's token states survive compression into the text latent.

A text decoder reconstructs the frozen token states x (n x d) from the latent (the image-latent shape). The score
is the paper's per-token reconstruction accuracy: the cosine similarity between reconstructed and original token
states, averaged over real (unpadded) tokens of held-out captions. Rows:
- a deterministic encoder trained with its decoder for reconstruction ("Text encoder" in the paper);
- a variational encoder (Text VE) trained likewise, with the KL term ("Text VE");
- optionally the CrossFlow Text VE taken frozen from a text-to-image run, with a decoder trained afterwards
  (how much text the latent keeps when it was trained for flowing to images, not for reconstruction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from .progress import tqdm

from .config import Config
from .device import module_device, resolve_device
from .flow import KL_FORMS
from .models import TextDecoder, TextVE
from .profiles import PROFILES


@dataclass(frozen=True)
class CompressionConfig:
    steps: int = 600                   # [open] ~2 min per autoencoder on 2 CPU cores; see the loss curves
    batch_size: int = 128
    lr: float = 1e-3
    decoder_width: int = 64            # per-token width of the decoder (towers.TextDecoder)
    seed: int = 0


# per profile, from the one registry (crossflow/profiles.py, ``compression``)
COMPRESSION_PRESETS = {name: CompressionConfig(**p.compression) for name, p in PROFILES.items()}


def masked_recon_loss(x_hat, x, mask):
    m = mask[..., None].to(x.dtype)
    return ((x_hat - x).pow(2) * m).sum() / (m.sum() * x.shape[-1])


@torch.no_grad()
def token_cosine_accuracy(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean cosine similarity between reconstructed and original token states over real tokens."""
    cos = F.cosine_similarity(x_hat, x, dim=-1)                       # (B, n)
    return float((cos * mask).sum() / mask.sum())


def train_text_autoencoder(cfg: Config, x: torch.Tensor, mask: torch.Tensor, kind: str,
                           ccfg: CompressionConfig, frozen_encoder: TextVE | None = None, progress: bool = True,
                           device=None):
    """Train (encoder +) decoder for reconstruction on ``device``. Returns (encoder, decoder, history).

    ``kind`` is "deterministic" or "variational"; with ``frozen_encoder`` only the decoder is trained.
    """
    device = resolve_device(device)
    torch.manual_seed(ccfg.seed)
    n_tokens, d = x.shape[1], x.shape[2]
    shape = cfg.latent_shape
    if frozen_encoder is None:
        encoder = TextVE(replace(cfg.text_ve, kind=kind, dropout=0.0), d, n_tokens, shape)
    else:
        encoder = frozen_encoder.eval().requires_grad_(False)
    decoder = TextDecoder(math.prod(shape), d, n_tokens, ccfg.decoder_width)
    encoder, decoder, x, mask = encoder.to(device), decoder.to(device), x.to(device), mask.to(device)
    params = list(decoder.parameters()) + ([] if frozen_encoder is not None else list(encoder.parameters()))
    opt = torch.optim.AdamW(params, lr=ccfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(ccfg.seed)
    history = []
    for step in tqdm(range(ccfg.steps), desc=f"text AE ({kind})", disable=not progress):
        idx = torch.randint(0, len(x), (ccfg.batch_size,), generator=g).to(device)
        z0, mu, logvar = encoder.encode(x[idx], mask[idx], g)
        loss = masked_recon_loss(decoder(z0), x[idx], mask[idx])
        if logvar is not None and frozen_encoder is None:
            loss = loss + cfg.objective.kl_weight * KL_FORMS[cfg.objective.kl_form](mu, logvar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == ccfg.steps - 1:
            history.append({"step": step + 1, "loss": loss.item()})
    return encoder.eval(), decoder.eval(), history


@torch.no_grad()
def evaluate_reconstruction(encoder: TextVE, decoder: TextDecoder, x, mask, seed: int = 0) -> dict:
    """Per-token cosine accuracy from the sampled latent and from its mean (on the encoder's device)."""
    device = module_device(encoder)
    x, mask = x.to(device), mask.to(device)
    g = torch.Generator().manual_seed(seed)
    z0, mu, _ = encoder.encode(x, mask, g)
    return {"cosine_sampled": token_cosine_accuracy(decoder(z0), x, mask),
            "cosine_mean": token_cosine_accuracy(decoder(mu), x, mask)}


def compression_ratio(x: torch.Tensor, mask: torch.Tensor, latent_shape) -> dict:
    numel = math.prod(latent_shape)
    return {"padded": x.shape[1] * x.shape[2] / numel,
            "real_tokens": float(mask.sum(1).float().mean()) * x.shape[2] / numel,
            "latent_numel": numel, "tokens": x.shape[1], "token_dim": x.shape[2]}
