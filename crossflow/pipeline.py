"""High-level calls the notebooks use: captions in, images out."""
from __future__ import annotations

import torch
from .progress import tqdm

from .config import Config
from .device import module_device
from .encoders import check_prompts, decode_latents, embed_captions
from .features import autoencoder_for
from .sampling import generate


def text_to_image(model, cfg: Config, captions: list[str], *, scale: float | None = None, steps: int | None = None,
                  seed: int = 0, guide=None, batch_size: int = 64, indicator_zero: bool = False) -> torch.Tensor:
    """Generate one image per caption: float (B, 3, H, W) in [0, 1] on the CPU. Defaults from ``cfg.sample``.

    Everything runs on the model's device (move the model to choose it); the captions' token states come from
    the cache or the frozen text encoder on that device. ``indicator_zero``: CrossFlow's unconditional samples
    (indicator 0, no guidance; z0 still comes from the captions' text latents)."""
    captions = check_prompts(captions, cfg.text)
    scale = cfg.sample.cfg_scale if scale is None else scale
    steps = cfg.sample.steps if steps is None else steps
    device = module_device(model)                                          # sampling runs where the model is
    x, mask = embed_captions(captions + [""], cfg.text, device=device)
    x, mask, null_x, null_mask = x[:-1], mask[:-1], x[-1:], mask[-1:]      # the last row is the empty prompt
    vae, vae_scale, _ = autoencoder_for(cfg, device=device)
    out = []
    for i in tqdm(range(0, len(captions), batch_size), desc="sample", leave=False,
                  disable=len(captions) <= batch_size):
        z1, _ = generate(model, x[i:i + batch_size], mask[i:i + batch_size], scale=scale, steps=steps,
                         solver=cfg.sample.solver, seed=seed + i, null_x=null_x, null_mask=null_mask, guide=guide,
                         indicator_zero=indicator_zero)
        out.append(decode_latents(vae, z1, vae_scale))                     # decoded on the device, returned on CPU
    return torch.cat(out)
