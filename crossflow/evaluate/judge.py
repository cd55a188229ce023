"""GenEval-style judge: a per-cell CNN that reads each grid cell's item class (or "empty") and colour.

GenEval (Ghosh et al. 2023) runs an object detector and a colour classifier on each generated image and checks
the prompt's claim. Here scenes are a grid of cells, each empty or holding one tinted Fashion-MNIST item, so a
detector reduces to a classifier applied to every cell; count and position follow from the cells.
The judge is trained only on real renders (Fashion-MNIST *train* items, every colour-class pair including the
held-out ones, which generated images must be judged on too) and validated on renders of Fashion-MNIST *test*
items. Its penultimate layer, concatenated over cells, is also the feature space of the domain FID (fid.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ..progress import tqdm

from ..config import DataConfig
from ..data import COLORS, TASKS, Item, PromptSpec, class_ids, load_fashion_mnist
from ..data.scenes import cell_size, relation, resize_items
from ..device import module_device, randn

# ----------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------


class CellNet(nn.Module):
    """(B, 3, S, S) cell in [0, 1] -> class logits (K + 1, last = empty), colour logits, S = cell side."""

    def __init__(self, n_classes: int, n_colors: int, cell: int = 16, width: int = 32, feat: int = 64):
        super().__init__()
        w = width
        conv = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
        self.body = nn.Sequential(*conv(3, w), *conv(w, w), nn.MaxPool2d(2),          # (B, w, S/2, S/2)
                                  *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
                                  nn.Flatten(), nn.Linear(2 * w * (cell // 4) ** 2, feat), nn.ReLU())
        self.cls_head = nn.Linear(feat, n_classes + 1)
        self.color_head = nn.Linear(feat, n_colors)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)                                                              # (B, feat)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.cls_head(h), self.color_head(h)


def build_judge(cfg: DataConfig, ecfg) -> CellNet:
    return CellNet(len(cfg.classes), len(cfg.colors), cell_size(cfg), ecfg.judge_width, ecfg.judge_feat)


# ----------------------------------------------------------------------------------------------------------
# Images and cells
# ----------------------------------------------------------------------------------------------------------

def as_float_images(images) -> torch.Tensor:
    """uint8 (N, H, W, 3) arrays or float (N, 3, H, W) tensors in [0, 1] -> float (N, 3, H, W) in [0, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype == torch.uint8:
        return images.permute(0, 3, 1, 2).float().div(255.0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected float images (N, 3, H, W), got shape {tuple(images.shape)}")
    return images.float()


def split_cells(images: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """(N, 3, H, W) -> (N * G, 3, S, S), cells in row-major order (G = grid**2), as ``Item.cell`` counts."""
    s, g = cell_size(cfg), cfg.grid
    m = (cfg.image_size - s * g) // 2
    x = images[:, :, m:m + s * g, m:m + s * g]
    n = x.shape[0]
    x = x.reshape(n, 3, g, s, g, s).permute(0, 2, 4, 1, 3, 5)                            # (N, g, g, 3, s, s)
    return x.reshape(n * g * g, 3, s, s)


def render_cells(cfg: DataConfig, n: int, split: str, rng: np.random.Generator):
    """``n`` single cells, each empty (1 in K+1) or one item of a random class and colour, painted exactly as
    ``render_scene`` paints (pixel = intensity x RGB, centred). Returns uint8 (n, S, S, 3), class target
    (n,) in 0..K (K = empty) and colour target (n,) (-100 = empty, ignored by the loss)."""
    images, labels = load_fashion_mnist(split, cfg.fashion_root)
    ids, s = class_ids(cfg), cell_size(cfg)
    k = len(ids)
    cls = rng.integers(0, k + 1, n)
    col = rng.integers(0, len(cfg.colors), n)
    full = np.flatnonzero(cls < k)
    pools = [np.flatnonzero(labels == c) for c in ids]
    picks = np.array([pools[c][rng.integers(len(pools[c]))] for c in cls[full]], dtype=np.int64)
    canvas = np.zeros((n, s, s, 3), np.float32)
    pad = (s - cfg.item_size) // 2
    rgb = np.array([COLORS[c] for c in cfg.colors], np.float32)                            # (C, 3)
    if len(full):
        inten = resize_items(images[picks], cfg.item_size)                                  # (m, i, i)
        canvas[full, pad:pad + cfg.item_size, pad:pad + cfg.item_size] = inten[..., None] * rgb[col[full], None, None]
    color_target = np.where(cls < k, col, -100)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), cls, color_target


def _augment(x: torch.Tensor, g: torch.Generator, jitter: int, noise: float) -> torch.Tensor:
    """Random +-jitter pixel shift per batch and Gaussian pixel noise: generated items are neither
    pixel-aligned nor exactly black around. No blur: the FID features must stay sensitive to it."""
    if jitter:
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if noise:
        x = (x + noise * randn(x.shape, g, x.device)).clamp(0, 1)
    return x


def train_judge(net: CellNet, cfg: DataConfig, ecfg, progress: bool = True) -> dict:
    """Cross-entropy on class (K + 1 way) + colour, AdamW with cosine decay, on real train renders, on the
    device the network is on."""
    device = module_device(net)
    rng = np.random.default_rng([ecfg.seed, 11])
    cells, cls, col = render_cells(cfg, ecfg.judge_cells, "train", rng)
    x_all = as_float_images(cells).to(device)
    cls_t, col_t = torch.from_numpy(cls).to(device), torch.from_numpy(col).to(device)
    g = torch.Generator().manual_seed(ecfg.seed)
    torch.manual_seed(ecfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=ecfg.judge_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, ecfg.judge_lr, total_steps=ecfg.judge_steps, pct_start=0.1)
    net.train()
    losses = []
    for step in tqdm(range(ecfg.judge_steps), desc="train judge", disable=not progress, leave=False):
        idx = torch.randint(0, len(x_all), (ecfg.judge_batch,), generator=g).to(device)
        x = _augment(x_all[idx], g, ecfg.judge_jitter, ecfg.judge_noise)
        cls_logits, col_logits = net(x)
        loss = F.cross_entropy(cls_logits, cls_t[idx]) + F.cross_entropy(col_logits, col_t[idx], ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    return {"train_cells": len(x_all), "steps": ecfg.judge_steps, "final_loss": float(np.mean(losses[-50:]))}


# ----------------------------------------------------------------------------------------------------------
# Reading images
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Reading:
    """What the judge sees in N images with G cells each."""
    cls: np.ndarray          # (N, G) Fashion-MNIST label index per cell, -1 = empty
    color: np.ndarray        # (N, G) index into cfg.colors (meaningless where empty)
    features: np.ndarray     # (N, G * feat) penultimate features, concatenated over cells (FID)

    def items(self, i: int, cfg: DataConfig) -> list[Item]:
        """The items detected in image ``i``."""
        return [Item(int(c), cfg.colors[int(k)], cell)
                for cell, (c, k) in enumerate(zip(self.cls[i], self.color[i])) if c >= 0]


@torch.no_grad()
def read_images(net: CellNet, images, cfg: DataConfig, batch_size: int = 512) -> Reading:
    """The judge's reading of every image (run on the judge's device; the Reading holds numpy arrays)."""
    device = module_device(net)
    x = as_float_images(images)
    ids = np.array(class_ids(cfg) + [-1])                                                # last index = empty
    g = cfg.grid ** 2
    cls, col, feats = [], [], []
    for i in range(0, len(x), batch_size):
        cells = split_cells(x[i:i + batch_size].to(device), cfg)
        h = net.features(cells)
        cls.append(net.cls_head(h).argmax(-1).cpu()), col.append(net.color_head(h).argmax(-1).cpu())
        feats.append(h.cpu())
    n = len(x)
    return Reading(ids[torch.cat(cls).numpy()].reshape(n, g), torch.cat(col).numpy().reshape(n, g),
                   torch.cat(feats).reshape(n, -1).double().numpy())


# ----------------------------------------------------------------------------------------------------------
# GenEval semantics
# ----------------------------------------------------------------------------------------------------------

def geneval_verdict(spec: PromptSpec, detected: Sequence[Item], grid: int) -> bool:
    """Does an image whose detected items are ``detected`` satisfy ``spec`` under GenEval's rule for its task?

    single_object: the class is present; two_object: both classes present; counting: exactly N items of the
    class; colors: an item of the class with the colour; position: both classes present in the stated
    relation; color_attr: both (class, colour) pairs present.
    """
    want = spec.items
    present = {d.cls for d in detected}
    pairs = {(d.cls, d.color) for d in detected}
    if spec.task == "single_object":
        return want[0].cls in present
    if spec.task == "two_object":
        return want[0].cls in present and want[1].cls in present
    if spec.task == "counting":
        return sum(d.cls == want[0].cls for d in detected) == len(want)
    if spec.task == "colors":
        return (want[0].cls, want[0].color) in pairs
    if spec.task == "position":
        rel = relation(want[0], want[1], grid)
        return any(a.cls == want[0].cls and b.cls == want[1].cls and relation(a, b, grid) == rel
                   for a in detected for b in detected if a is not b)
    if spec.task == "color_attr":
        return all((w.cls, w.color) in pairs for w in want)
    raise ValueError(f"unknown GenEval task {spec.task!r}; known: {TASKS}")


def geneval_summary(verdicts: Sequence[bool], tasks: Sequence[str]) -> dict:
    """Per-task success rate and GenEval's overall score (the unweighted mean over tasks present)."""
    v, t = np.asarray(verdicts, dtype=float), np.asarray(tasks)
    per_task = {task: float(v[t == task].mean()) for task in TASKS if (t == task).any()}
    counts = {task: int((t == task).sum()) for task in per_task}
    return {"overall": float(np.mean(list(per_task.values()))), "per_task": per_task, "n_per_task": counts}


def geneval_score(net: CellNet, images, specs: Sequence[PromptSpec], cfg: DataConfig) -> dict:
    """GenEval-style scores of ``images[i]`` generated for ``specs[i]`` (several images per spec: repeat it)."""
    if len(images) != len(specs):
        raise ValueError(f"{len(images)} images for {len(specs)} prompt specs")
    reading = read_images(net, images, cfg)
    verdicts = [geneval_verdict(s, reading.items(i, cfg), cfg.grid) for i, s in enumerate(specs)]
    return {**geneval_summary(verdicts, [s.task for s in specs]), "verdicts": verdicts}


# ----------------------------------------------------------------------------------------------------------
# Validation on held-out real renders
# ----------------------------------------------------------------------------------------------------------

def render_specs(specs: Sequence[PromptSpec], cfg: DataConfig, split: str = "test", seed: int = 0,
                 items: Sequence[Sequence[Item]] | None = None) -> np.ndarray:
    """Real renders (uint8 (N, H, W, 3)) of each spec's items (or of ``items``) with Fashion-MNIST ``split`` items."""
    from ..data import render_scene
    images, labels = load_fashion_mnist(split, cfg.fashion_root)
    rng = np.random.default_rng([seed, 13])
    return np.stack([render_scene(list(it), cfg, images, labels, rng)
                     for it in (items if items is not None else [s.items for s in specs])])


def cell_truth(items: Sequence[Sequence[Item]], cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(N, G) true class label (-1 empty) and colour index (-1 empty) per cell."""
    g = cfg.grid ** 2
    cls, col = -np.ones((len(items), g), int), -np.ones((len(items), g), int)
    for i, its in enumerate(items):
        for it in its:
            cls[i, it.cell], col[i, it.cell] = it.cls, cfg.colors.index(it.color)
    return cls, col


def validate_judge(net: CellNet, cfg: DataConfig, n_prompts: int, seed: int = 1) -> dict:
    """The judge's accuracy on renders of Fashion-MNIST *test* items (never seen in training).

    For each prompt of a suite (held-out colour-class pairs first): a positive render (the prompt's own items,
    truth = True) and a negative render (the items of another prompt of the same task, truth = GenEval's rule
    applied to the rendered items). Per task: accuracy of the verdicts over both, and recall on positives.
    Also cell-level confusion matrices (class incl. empty, colour on non-empty cells).
    """
    from ..data import make_prompt_suite
    specs = make_prompt_suite(cfg, n=n_prompts, seed=seed)
    by_task: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        by_task.setdefault(s.task, []).append(i)
    partner = {}
    for idx in by_task.values():                     # negative: the next prompt of the same task
        for j, i in enumerate(idx):
            partner[i] = idx[(j + 1) % len(idx)]
    all_items = [s.items for s in specs] + [specs[partner[i]].items for i in range(len(specs))]
    images = render_specs(specs, cfg, "test", seed, items=all_items)
    reading = read_images(net, images, cfg)
    rows = list(specs) + list(specs)
    truth = [geneval_verdict(s, items, cfg.grid) for s, items in zip(rows, all_items)]
    judged = [geneval_verdict(s, reading.items(i, cfg), cfg.grid) for i, s in enumerate(rows)]
    tasks = np.array([s.task for s in rows])
    ok, truth_a, judged_a = np.equal(truth, judged), np.array(truth), np.array(judged)
    pos = np.arange(len(rows)) < len(specs)
    per_task = {t: float(ok[tasks == t].mean()) for t in TASKS if (tasks == t).any()}
    recall = {t: float(judged_a[pos & (tasks == t)].mean()) for t in per_task}

    # cell-level confusion: class (K + 1, last = empty) and colour (non-empty cells)
    ids = class_ids(cfg)
    true_cls, true_col = cell_truth(all_items, cfg)
    lookup = {**{v: j for j, v in enumerate(ids)}, -1: len(ids)}
    to_idx = np.vectorize(lookup.__getitem__, otypes=[int])
    tc, pc = to_idx(true_cls).ravel(), to_idx(reading.cls).ravel()
    k = len(ids) + 1
    cls_conf = np.zeros((k, k), int)
    np.add.at(cls_conf, (tc, pc), 1)
    full = true_col.ravel() >= 0
    c = len(cfg.colors)
    col_conf = np.zeros((c, c), int)
    np.add.at(col_conf, (true_col.ravel()[full], reading.color.ravel()[full]), 1)
    return {
        "per_task_accuracy": per_task, "per_task_recall": recall,
        "min_task_accuracy": min(per_task.values()), "overall_accuracy": float(ok.mean()),
        "n_prompts": len(specs), "n_renders": len(rows), "negatives_true_rate": float(truth_a[~pos].mean()),
        "cell_class_accuracy": float(np.trace(cls_conf) / cls_conf.sum()),
        "cell_color_accuracy": float(np.trace(col_conf) / max(1, col_conf.sum())),
        "class_confusion": cls_conf.tolist(), "class_labels": list(cfg.classes) + ["empty"],
        "color_confusion": col_conf.tolist(), "color_labels": list(cfg.colors),
    }


# ----------------------------------------------------------------------------------------------------------
# A second judge of another architecture: is the CNN judge right on *generated* images?
# ----------------------------------------------------------------------------------------------------------

class CellMLP(nn.Module):
    """The check judge: no convolutions, the cell's pixels through fully connected layers; same heads and
    training data as :class:`CellNet`, trained independently (its own seed). Used only to measure agreement
    with the CNN judge on generated images, never for a reported metric."""

    def __init__(self, n_classes: int, n_colors: int, cell: int = 16, hidden: int = 256, feat: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * cell * cell, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, feat), nn.ReLU())
        self.cls_head = nn.Linear(feat, n_classes + 1)
        self.color_head = nn.Linear(feat, n_colors)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.cls_head(h), self.color_head(h)


def train_check_judge(cfg: DataConfig, ecfg, device=None, seed_offset: int = 1000, progress: bool = False) -> CellMLP:
    """A :class:`CellMLP` trained like the judge (same cells, steps and augmentation) with another seed."""
    import dataclasses
    net = CellMLP(len(cfg.classes), len(cfg.colors), cell_size(cfg)).to(device or "cpu")
    train_judge(net, cfg, dataclasses.replace(ecfg, seed=ecfg.seed + seed_offset), progress=progress)
    return net


def judge_agreement(judge: nn.Module, check: nn.Module, images, cfg: DataConfig, max_listed: int = 48) -> dict:
    """Cell by cell, do the two judges read generated images alike? ``class_agreement``: same class or both empty;
    ``kappa``: Cohen's kappa of that decision (agreement beyond chance); ``color_agreement``: same colour where both
    read the same item; ``item_agreement``: the whole reading (empty, or class and colour) the same. The first
    ``max_listed`` disagreements are listed as (image, cell, judge's reading, check's reading)."""
    a, b = read_images(judge, images, cfg), read_images(check, images, cfg)
    same_cls = a.cls == b.cls
    same_item = same_cls & ((a.cls < 0) | (a.color == b.color))
    both = same_cls & (a.cls >= 0)
    labels = np.union1d(a.cls.ravel(), b.cls.ravel())
    pa = np.array([(a.cls == k).mean() for k in labels])
    pb = np.array([(b.cls == k).mean() for k in labels])
    chance = float((pa * pb).sum())
    observed = float(same_cls.mean())

    def name(r, i, c):
        k = int(r.cls[i, c])
        return "empty" if k < 0 else f"{cfg.colors[int(r.color[i, c])]} {Item(k, 'x', c).name}"

    wrong = np.argwhere(~same_item)[:max_listed]
    return {"cells": int(a.cls.size), "class_agreement": observed,
            "kappa": (observed - chance) / (1 - chance) if chance < 1 else None,
            "color_agreement": float((a.color == b.color)[both].mean()) if both.any() else None,
            "item_agreement": float(same_item.mean()), "judge_item_share": float((a.cls >= 0).mean()),
            "check_item_share": float((b.cls >= 0).mean()),
            "disagreements": [(int(i), int(c), name(a, i, c), name(b, i, c)) for i, c in wrong]}
