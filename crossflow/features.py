"""What text-to-image training reads: cached text embeddings and image latents (the frozen encoders never run
per step); a :class:`crossflow.pairs.PairData` of (caption token states, image latent) pairs.

``prepare_features(cfg)`` builds (or loads from the cache) the scenes, trains (or loads) the image autoencoder,
embeds every unique caption once with the frozen language model, and encodes every image once:

    scenes (uint8 images, captions) -> AutoencoderKL -> z1 (N, c, h, w), unit std
                                    -> text encoder  -> x (U, n, d), mask (U, n) for U unique captions
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import torch

from .config import Config
from .encoders import embed_captions, encode_images, get_autoencoder
from .encoders.autoencoder import to_pixels
from .pairs import cached_tensors
from .utils import stable_hash


@dataclass
class Features:
    x: torch.Tensor                    # (U, n, d) token states of the unique captions
    mask: torch.Tensor                 # (U, n) True = real token
    caption_index: torch.Tensor        # (N, K) each scene's captions, indices into x
    z1: torch.Tensor                   # (N, c, h, w) scaled image latents
    pixels: torch.Tensor               # (N, H, W, 3) uint8, for the image tower of the I-T loss
    null_x: torch.Tensor               # (1, n, d) empty-prompt embedding (the baseline's CFG)
    null_mask: torch.Tensor            # (1, n)
    captions: list                     # the U unique caption strings

    def __len__(self) -> int:
        return self.z1.shape[0]

    def to_device(self, device) -> "Features":
        move = {k: getattr(self, k).to(device) for k in ("x", "mask", "caption_index", "z1", "pixels",
                                                          "null_x", "null_mask")}
        return replace(self, **move)

    def batch(self, generator: torch.Generator, batch_size: int, part: slice = slice(None)) -> dict:
        """A random batch: scenes uniformly, one of each scene's captions uniformly; ``part`` = this process's slice."""
        n, k = self.caption_index.shape
        idx = torch.randint(0, n, (batch_size,), generator=generator)[part].to(self.z1.device)
        pick = torch.randint(0, k, (batch_size,), generator=generator)[part].to(self.z1.device)
        cap = self.caption_index[idx, pick]
        return {"x": self.x[cap], "mask": self.mask[cap], "z1": self.z1[idx],
                "pixels": to_pixels(self.pixels[idx]), "null_x": self.null_x, "null_mask": self.null_mask,
                "caption_id": cap, "scene_id": idx}


def load_scenes(cfg: Config, split: str):
    """Scenes for ``split`` ("train"/"test"): Fashion-MNIST compositions, or a COCO-format folder."""
    if cfg.data.source == "coco":
        from .data.coco import CocoCaptions, to_sceneset
        if not (cfg.data.coco_annotations and cfg.data.coco_images):
            raise ValueError("data.source='coco' needs data.coco_annotations and data.coco_images")
        return to_sceneset(CocoCaptions(cfg.data.coco_annotations, cfg.data.coco_images, cfg.data.image_size))
    from .data import build_scenes
    return build_scenes(cfg.data, split, root=cfg.data.fashion_root)


def data_key(cfg: Config) -> str:
    return stable_hash(vars(cfg.data))


def autoencoder_for(cfg: Config, progress: bool = True, device=None):
    """The image autoencoder of this config on ``device``: (vae, scaling_factor, info); trained on the train
    split once."""
    if cfg.autoencoder.pretrained:
        return get_autoencoder(cfg.autoencoder, device=device)
    try:                                       # cached: no need to build the scenes
        return get_autoencoder(cfg.autoencoder, None, data_key(cfg), seed=cfg.data.seed, progress=progress,
                               device=device)
    except ValueError:
        train = load_scenes(cfg, "train")
        return get_autoencoder(cfg.autoencoder, train.images, data_key(cfg), seed=cfg.data.seed,
                               progress=progress, device=device)


def prepare_features(cfg: Config, split: str = "train", progress: bool = True, device=None) -> Features:
    """The cached features of ``split``, on the CPU (``train`` moves them to its device). The autoencoder and the
    text encoder run on ``device`` (default: crossflow.device.default_device()) when something is not cached."""
    scenes = load_scenes(cfg, split)
    vae, scale, ae_info = autoencoder_for(cfg, progress, device)
    key = {"data": vars(cfg.data), "split": split, "ae": ae_info.get("source"), "ae_cfg": vars(cfg.autoencoder),
           "scale": scale}
    z1 = cached_tensors("latents", key, lambda: {"z1": encode_images(vae, scenes.images, scale)}, "image latents")["z1"]
    captions = scenes.unique_captions()
    x, mask = embed_captions(captions + [""], cfg.text, device=device)   # the last row is the empty prompt
    # fresh, aligned copies: tensors loaded from the cache are views into a file buffer, and SIMD reductions
    # over differently aligned memory can differ in the last bit, which would break exact resumption.
    own = lambda t: t.clone(memory_format=torch.contiguous_format)  # noqa: E731
    return Features(x=own(x[:-1]), mask=own(mask[:-1]),
                    caption_index=torch.from_numpy(scenes.caption_index(captions)), z1=own(z1),
                    pixels=own(torch.from_numpy(scenes.images)), null_x=own(x[-1:]), null_mask=own(mask[-1:]),
                    captions=captions)
