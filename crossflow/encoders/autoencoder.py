"""Image autoencoder: diffusers ``AutoencoderKL``, trained on the domain or loaded with ``from_pretrained``.

No pretrained image autoencoder can be downloaded on the CPU machines, so by default a small AutoencoderKL is
trained on the domain's real training images, cached with its config, and its latent scale is *measured*
(1 / std of training latents, so z1 has unit std) and stored in its config as ``scaling_factor``. GPU users set
``autoencoder.pretrained`` (e.g. SD-VAE) and ``autoencoder.scaling_factor`` (the released code uses 0.23010).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ..progress import tqdm

from ..config import AutoencoderConfig
from ..device import module_device, resolve_device
from ..integrity import checked_write, load_cache
from ..utils import cache_dir, file_lock, stable_hash, write_json


def build_autoencoder(cfg: AutoencoderConfig, image_size: int):
    from diffusers import AutoencoderKL
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels, norm_num_groups=min(8, min(cfg.block_out_channels)),
        sample_size=image_size,
    )


def to_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_autoencoder(cfg: AutoencoderConfig, images: np.ndarray, seed: int = 0, progress: bool = True,
                      device=None):
    """Reconstruction (MSE) + a small KL, Adam, ``cfg.steps`` steps of random minibatches, on ``device``."""
    device = resolve_device(device)
    torch.manual_seed(seed)
    vae = build_autoencoder(cfg, images.shape[1]).to(device).train()
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    bar = tqdm(range(cfg.steps), desc="autoencoder", disable=not progress)
    for step in bar:
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=g)
        x = to_pixels(images[idx.numpy()]).to(device)
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample(generator=g)).sample         # diffusers draws on g's device (CPU), moves
        mse = torch.nn.functional.mse_loss(recon, x)
        loss = mse + cfg.kl_weight * post.kl().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"autoencoder loss is {loss.item()} at step {step}; lower autoencoder.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(mse.item())
        if step % 25 == 0:
            bar.set_postfix(mse=f"{mse.item():.4f}")
    return vae.eval(), losses


@torch.no_grad()
def encode_images(vae, images: np.ndarray, scaling_factor: float, batch_size: int = 256) -> torch.Tensor:
    """uint8 images -> z1 = scaling_factor * posterior mean, (N, c, h, w) float32 on the CPU (run on vae's device)."""
    device, out = module_device(vae), []
    for i in range(0, len(images), batch_size):
        z = vae.encode(to_pixels(images[i:i + batch_size]).to(device)).latent_dist.mean * scaling_factor
        out.append(z.cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae, z1: torch.Tensor, scaling_factor: float, batch_size: int = 256) -> torch.Tensor:
    """z1 -> images float (N, 3, H, W) in [0, 1] on the CPU (decoded on vae's device)."""
    device, out = module_device(vae), []
    for i in range(0, len(z1), batch_size):
        out.append(vae.decode(z1[i:i + batch_size].to(device) / scaling_factor).sample.cpu())
    return torch.cat(out).add(1).div(2).clamp(0, 1)


def get_autoencoder(cfg: AutoencoderConfig, train_images: np.ndarray | None = None, data_key: str = "",
                    seed: int = 0, progress: bool = True, device=None):
    """Return (vae, scaling_factor, info) with the vae on ``device``. Pretrained if configured, else trained
    once (on ``device``) and cached.

    The cache key is the autoencoder config plus ``data_key`` (a hash of the training data's config).
    """
    from diffusers import AutoencoderKL
    device = resolve_device(device)
    if cfg.pretrained:
        vae = AutoencoderKL.from_pretrained(cfg.pretrained).to(device).eval().requires_grad_(False)
        scale = cfg.scaling_factor or vae.config.scaling_factor
        return vae, float(scale), {"source": cfg.pretrained, "scaling_factor": float(scale)}
    folder = Path(cache_dir("autoencoder")) / stable_hash({"ae": vars(cfg), "data": data_key, "seed": seed})

    def load(path):
        info = json.loads((path / "crossflow_meta.json").read_text())
        return AutoencoderKL.from_pretrained(path).to(device).eval().requires_grad_(False), info

    with file_lock(folder):                                # two processes: one trains, the other reads
        cached = load_cache(folder, load, "autoencoder")                    # None: missing or damaged
        if cached is not None:
            vae, info = cached
            return vae, float(vae.config.scaling_factor), info
        if train_images is None:
            raise ValueError("no cached autoencoder for this config; pass train_images to train one")
        vae, losses = train_autoencoder(cfg, train_images, seed=seed, progress=progress, device=device)
        probe = train_images[np.random.default_rng(seed).choice(len(train_images), min(2048, len(train_images)),
                                                                 replace=False)]
        raw = encode_images(vae, probe, 1.0)
        scale = cfg.scaling_factor or float(1.0 / raw.std())       # measured: z1 has unit std [code, section 2]
        vae.register_to_config(scaling_factor=scale)
        recon = decode_latents(vae, raw[:256], 1.0)
        recon_mse = float(((recon * 2 - 1) - to_pixels(probe[:256])).pow(2).mean())     # both on the CPU
        info = {"source": "trained", "scaling_factor": scale, "steps": cfg.steps, "final_train_mse": losses[-1],
                "recon_mse_probe": recon_mse, "loss_curve": losses[:: max(1, len(losses) // 200)]}
        with checked_write(folder) as tmp:                            # a unique scratch folder, swapped in whole
            vae.save_pretrained(tmp)
            write_json(tmp / "crossflow_meta.json", info)
        return vae.requires_grad_(False), scale, info
