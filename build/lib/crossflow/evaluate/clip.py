"""CLIP score. Real CLIP (transformers ``CLIPModel``) when a model id/path is given; otherwise a small
contrastive image-text model trained here on the domain's real (image, caption) pairs.

Domain CLIP: an image CNN and a text head over the *frozen* language model's token states (the same MiniLM
states CrossFlow reads, ``embed_captions``), trained with the symmetric InfoNCE loss of CLIP (Radford et al.
2021, Fig. 3) with a learnable temperature. The score, as the paper's CLIP score, is the raw cosine similarity
between an image's and its prompt's embeddings (not multiplied by 100 or clipped at 0).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ..progress import tqdm

from ..config import Config
from ..device import module_device, resolve_device
from ..encoders import embed_captions
from .judge import as_float_images


class ImageEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, dim). Flattening (no global pooling) keeps *where* things are."""

    def __init__(self, image_size: int, width: int, dim: int):
        super().__init__()
        w = width
        conv = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]  # noqa: E731
        self.body = nn.Sequential(*conv(3, w), *conv(w, 2 * w), *conv(2 * w, 4 * w), nn.Flatten())  # (B, 4w * (H/8)^2)
        self.proj = nn.Sequential(nn.Linear(4 * w * (image_size // 8) ** 2, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))


class TextHead(nn.Module):
    """Frozen LM token states (B, n, d) + mask -> (B, dim): projection, one attention layer (word order and
    colour-object binding), masked mean."""

    def __init__(self, text_dim: int, n_tokens: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim))
        self.block = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.block(self.proj(x) + self.pos, src_key_padding_mask=~mask)               # (B, n, dim)
        m = mask.unsqueeze(-1).float()
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))                            # (B, dim)


class DomainCLIP(nn.Module):
    def __init__(self, image_size: int, text_dim: int, n_tokens: int, width: int = 32, dim: int = 128):
        super().__init__()
        self.image = ImageEncoder(image_size, width, dim)
        self.text = TextHead(text_dim, n_tokens, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))               # CLIP's initial temperature

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(images), dim=-1)

    def encode_text(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(x, mask), dim=-1)


def build_clip(cfg: Config, ecfg, text_dim: int) -> DomainCLIP:
    return DomainCLIP(cfg.data.image_size, text_dim, cfg.text.max_length, ecfg.clip_width, ecfg.clip_dim)


def train_clip(net: DomainCLIP, scenes, x: torch.Tensor, mask: torch.Tensor, ecfg, progress: bool = True) -> dict:
    """InfoNCE over random (scene, one of its captions) batches. Captions repeated inside a batch ("a photo of
    a bag" fits many scenes) are all counted as positives, so the loss never pushes a true pair apart."""
    device = module_device(net)                                                         # train where the net is
    cap_index = torch.from_numpy(scenes.caption_index(_vocab(scenes))).to(device)       # (N, K)
    images = as_float_images(scenes.images).to(device)
    x, mask = x.to(device), mask.to(device)
    g = torch.Generator().manual_seed(ecfg.seed)
    torch.manual_seed(ecfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=ecfg.clip_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, ecfg.clip_lr, total_steps=ecfg.clip_steps, pct_start=0.1)
    net.train()
    losses = []
    for _ in tqdm(range(ecfg.clip_steps), desc="train domain CLIP", disable=not progress, leave=False):
        idx = torch.randint(0, len(images), (ecfg.clip_batch,), generator=g).to(device)
        cap = cap_index[idx, torch.randint(0, cap_index.shape[1], (len(idx),), generator=g).to(device)]
        img = net.encode_image(images[idx])
        txt = net.encode_text(x[cap], mask[cap])
        logits = net.logit_scale.exp().clamp(max=100) * img @ txt.T                       # (B, B)
        same = (cap[:, None] == cap[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    return {"train_scenes": len(images), "steps": ecfg.clip_steps, "final_loss": float(np.mean(losses[-50:])),
            "temperature": float(1 / net.logit_scale.exp().item())}


@torch.no_grad()
def _embed_texts(net: DomainCLIP, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Text embeddings on the CPU (computed on the net's device, in one batch)."""
    device = module_device(net)
    return net.encode_text(x.to(device), mask.to(device)).cpu()


def _vocab(scenes) -> list[str]:
    return scenes.unique_captions()


def embed_scene_captions(scenes, cfg: Config, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states of ``scenes.unique_captions()``; the list (+ the empty prompt) is the one
    ``prepare_features`` embeds, so the text cache is shared with training."""
    x, mask = embed_captions(_vocab(scenes) + [""], cfg.text, device=device)
    return x[:-1], mask[:-1]


@torch.no_grad()
def _embed_images(net: DomainCLIP, images, batch_size: int = 512) -> torch.Tensor:
    """Image embeddings on the CPU (computed on the net's device)."""
    x, device = as_float_images(images), module_device(net)
    return torch.cat([net.encode_image(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def retrieval_accuracy(net: DomainCLIP, scenes, cfg: Config, candidates: int = 100) -> dict:
    """R@1 image->text and text->image among ``candidates``-sized batches of held-out scenes, each with its
    first caption. A retrieval counts as correct if the caption is true for the image (captions describe the
    whole scene; a generic caption can be true for several scenes of a batch)."""
    x, mask = embed_scene_captions(scenes, cfg, module_device(net))
    vocab = {c: i for i, c in enumerate(_vocab(scenes))}
    own = torch.tensor([vocab[caps[0]] for caps in scenes.captions])
    img = _embed_images(net, scenes.images)
    txt = _embed_texts(net, x[own], mask[own])
    i2t = t2i = 0
    n = (len(scenes) // candidates) * candidates or len(scenes)
    size = min(candidates, n)
    for s in range(0, n, size):
        sims = img[s:s + size] @ txt[s:s + size].T                                        # (c, c)
        for a, b in enumerate(sims.argmax(1).tolist()):          # image a -> caption of scene b
            i2t += scenes.captions[s + b][0] in scenes.captions[s + a]
        for b, a in enumerate(sims.argmax(0).tolist()):          # caption of scene b -> image a
            t2i += scenes.captions[s + b][0] in scenes.captions[s + a]
    return {"i2t_r1": i2t / n, "t2i_r1": t2i / n, "n": n, "candidates": size, "chance": 1 / size}


class HFClip:
    """Real CLIP through transformers (GPU users with weights): the same ``score`` interface."""

    def __init__(self, model: str, device=None):
        from transformers import CLIPModel, CLIPProcessor
        self.device = resolve_device(device)
        try:
            self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
            self.processor = CLIPProcessor.from_pretrained(model)
        except OSError as e:
            raise OSError(f"could not load CLIP model '{model}'; give a local folder offline, or set "
                          f"clip_model=None for the domain CLIP") from e

    @torch.no_grad()
    def score(self, images, captions: Sequence[str], batch_size: int = 64) -> np.ndarray:
        x = as_float_images(images)
        out = []
        for i in range(0, len(x), batch_size):
            inputs = self.processor(text=list(captions[i:i + batch_size]), images=list(x[i:i + batch_size]),
                                    return_tensors="pt", padding=True, do_rescale=False).to(self.device)
            o = self.model(**inputs)
            out.append(F.cosine_similarity(o.image_embeds, o.text_embeds).cpu())
        return torch.cat(out).numpy()


@torch.no_grad()
def domain_clip_score(net: DomainCLIP, images, captions: Sequence[str], cfg: Config) -> np.ndarray:
    """Cosine similarity of each image with its caption, (N,)."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images for {len(captions)} captions")
    unique = sorted(set(captions))
    x, mask = embed_captions(unique, cfg.text, device=module_device(net))
    where = {c: i for i, c in enumerate(unique)}
    txt = _embed_texts(net, x, mask)[torch.tensor([where[c] for c in captions])]
    return (_embed_images(net, images) * txt).sum(-1).numpy()
