"""Monocular depth (Tables 5 and 9): image -> depth map, in pixel space.

The paper maps an image directly to its depth map with CrossFlow: an **image VE** trained with a reconstruction
loss turns the RGB image into a Gaussian of the depth map's shape (the source z0), and the flow network carries
z0 to the depth map (the target z1); no noise, no concatenation (docs/method.md section 9). It reports in-domain
accuracy (Table 5, KITTI / NYUv2) and zero-shot accuracy with Marigold's protocol after training on synthetic
data (Table 9). Here: synthetic rooms with exact depth (:mod:`crossflow.data.rooms`, textured with the training
photos) for training and the in-domain test (rooms textured with the *test* photos), and three real images with
measured or drawn depth (:mod:`crossflow.data.real_depth`) for the zero-shot test.

Methods, one flow transformer each, same budget: ``crossflow`` (image VE -> depth), ``noise_concat`` (flow
matching from Gaussian noise with the image concatenated at the input), ``regression`` (the same network,
zeros + image in, depth out, MSE); and the training set's mean depth map as a trivial reference.

[open] choices, each a config field: the image VE is a small CNN (its reconstruction target is the RGB image, from
z0 through a small CNN decoder; L = L_FM + recon_weight * L_rec + kl_weight * KL, all trained jointly as the
Text VE is); the depth target is each map min-max normalised to [-1, 1] (the evaluation is affine-invariant, as
Marigold's, so nothing is lost); at inference z0 is sampled (seeded), as text-to-image samples it.

Evaluation (Marigold's protocol): per image, the least-squares scale and shift that best fit the prediction to
the ground truth on the valid pixels, **in depth**; the aligned prediction is clipped to the ground truth's valid
range; then AbsRel = mean |d - d*| / d*, delta1 = share of pixels with max(d / d*, d* / d) < 1.25, and RMSE.

Sections: config, data, model, sampling, metrics, verdict, runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError, FlowNetConfig, SampleConfig, TrainConfig, build_strict, to_dict, with_overrides
from ..device import randn
from ..flow import flow_matching_loss, kl_paper
from ..models.flow_transformer import FlowTransformer
from ..sampling import _t, solve
from .runs import train_runs  # noqa: F401  (depth.train_runs: the notebooks' entry point)
from ..utils import format_mean_std, mean_std  # noqa: F401  (the notebook's table cells)

METHODS = ("crossflow", "noise_concat", "regression")


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DepthDataConfig:
    size: int = 32                      # [open] image and depth side (the paper: full benchmark resolutions)
    supersample: int = 2                # rendered at size * supersample, averaged
    photo_short_side: int = 256         # texture photos resized to this shorter side
    n_train: int = 4000                 # [open] training rooms (textures from the train photos)
    n_test: int = 256                   # held-out rooms (textures from the test photos): the in-domain test
    seed: int = 0                       # room seeds: train 10^6 * seed + i, test 10^6 * seed + 500000 + i
    flip: bool = True                   # random horizontal flips of training pairs


@dataclass(frozen=True)
class ImageVEConfig:
    width: int = 32                     # [open] channels of the CNN encoder and decoder
    recon_weight: float = 1.0           # [open] L_rec weight (RGB reconstruction from z0)
    kl_weight: float = 1e-3             # [open] KL weight (the Text VE's final recipe uses 1e-3)


@dataclass(frozen=True)
class DepthObjectiveConfig:
    sigma_min: float = 1e-5             # as text-to-image ([code])
    t_mean: float = 0.0                 # logit-normal t, as text-to-image ([paper, code])
    t_std: float = 1.0


@dataclass(frozen=True)
class DepthConfig:
    task: str = "depth"
    name: str = "depth-tiny"
    profile: str = "tiny"
    method: str = "crossflow"           # "crossflow" | "noise_concat" | "regression"
    data: DepthDataConfig = field(default_factory=DepthDataConfig)
    # the text-to-image flow network's shape ([open]): patch 4 on 1 x 32 x 32 = 64 tokens
    flow: FlowNetConfig = field(default_factory=lambda: FlowNetConfig(patch_size=4))
    ve: ImageVEConfig = field(default_factory=ImageVEConfig)
    objective: DepthObjectiveConfig = field(default_factory=DepthObjectiveConfig)
    # [open] 1,000 steps at batch 64, as super-resolution: six runs fit ~35 min on 2 CPU cores
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, log_every=25, ckpt_every=500))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(steps=25, cfg_scale=1.0))  # [open] Euler-25

    @property
    def target_shape(self) -> tuple[int, int, int]:
        return (1, self.data.size, self.data.size)

    def replace(self, overrides: dict | None = None) -> "DepthConfig":
        return with_overrides(self, overrides, config_from_dict)


def config_from_dict(d: dict) -> DepthConfig:
    cfg = build_strict(DepthConfig, d)
    if cfg.task != "depth":
        raise ConfigError(f"task must be 'depth' in a DepthConfig, got {cfg.task!r}")
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r}; choose one of {METHODS}")
    if cfg.data.size % cfg.flow.patch_size:
        raise ConfigError(f"data.size={cfg.data.size} must be divisible by flow.patch_size={cfg.flow.patch_size}")
    if cfg.train.ve_pretrain_steps or cfg.train.freeze_text_ve:
        raise ConfigError("the depth task trains its image VE jointly (train.ve_pretrain_steps must be 0)")
    return cfg


def get_depth_config(profile: str = "tiny", overrides: dict | None = None) -> DepthConfig:
    """The profile's depth sizes (crossflow.profiles, field ``depth``) with dotted overrides."""
    from ..profiles import get_profile
    p = get_profile(profile)
    return DepthConfig(name=f"depth-{profile}", profile=profile).replace({**p.depth, **(overrides or {})})


# ----------------------------------------------------------------------------------------------------------
# Data: rendered rooms (cached), batches of (image, normalised depth) pairs
# ----------------------------------------------------------------------------------------------------------

def normalise(depth: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth -> each map min-max scaled to [-1, 1] (the flow's working range)."""
    lo = depth.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = depth.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return 2 * (depth - lo) / (hi - lo).clamp(min=1e-6) - 1


@dataclass
class Rooms:
    """Rendered rooms: images (N, H, W, 3) uint8 and planar depth (N, H, W) float32. As training data
    (:class:`crossflow.pairs.PairData`), ``batch`` draws rooms uniformly and flips half of them."""
    images: torch.Tensor
    depth: torch.Tensor
    photos: list[str]
    flip: bool = True
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.images)

    def to_device(self, device) -> "Rooms":
        import dataclasses
        return dataclasses.replace(self, device=torch.device(device))

    def pixels(self, idx=slice(None)) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1]."""
        return self.images[idx].permute(0, 3, 1, 2).float() / 255

    def batch(self, g: torch.Generator, batch_size: int, part: slice | None = None) -> dict:
        idx = torch.randint(len(self), (batch_size,), generator=g)
        flip = torch.rand(batch_size, generator=g) < 0.5
        if part is not None:
            idx, flip = idx[part], flip[part]
        image, depth = self.pixels(idx), self.depth[idx][:, None]
        if self.flip:
            image = torch.where(flip.view(-1, 1, 1, 1), image.flip(-1), image)
            depth = torch.where(flip.view(-1, 1, 1, 1), depth.flip(-1), depth)
        return {"image": image.to(self.device), "depth": normalise(depth).to(self.device)}


def render_rooms(cfg: DepthConfig, split: str) -> Rooms:
    """The rooms of ``split`` ("train" | "test"), rendered once and cached (crossflow.pairs.cached_tensors)."""
    from ..data.photos import load_photos
    from ..data.rooms import render, room_spec
    from ..pairs import cached_tensors
    from ..progress import tqdm
    d = cfg.data
    n = d.n_train if split == "train" else d.n_test
    offset = 10 ** 6 * d.seed + (0 if split == "train" else 500_000)
    photos = load_photos(split, d.photo_short_side)

    def build():
        pix = [p.pixels for p in photos]
        images, depths = [], []
        for i in tqdm(range(n), desc=f"render {split} rooms", leave=False):
            im, dp = render(room_spec(offset + i, len(pix)), pix, d.size, d.supersample)
            images.append(im), depths.append(dp)
        return {"images": torch.from_numpy(np.stack(images)), "depth": torch.from_numpy(np.stack(depths))}

    key = {"rooms": to_dict(d), "split": split, "photos": [p.name for p in photos], "renderer": 1}
    t = cached_tensors("depth-rooms", key, build, f"{split} rooms")
    return Rooms(t["images"].clone(), t["depth"].clone(), [p.name for p in photos], flip=d.flip and split == "train")


def training_data(cfg: DepthConfig) -> Rooms:
    return render_rooms(cfg, "train")


@dataclass
class DepthTestSet:
    name: str
    images: torch.Tensor                # (N, 3, H, W) in [0, 1]
    depth: np.ndarray                   # (N, H, W) float64, NaN = invalid
    labels: list[str]
    photos: list[str]                   # the texture photos of the rooms, or the real images' sources


def in_domain_test(cfg: DepthConfig) -> DepthTestSet:
    rooms = render_rooms(cfg, "test")
    return DepthTestSet("rooms (test photos)", rooms.pixels(), rooms.depth.double().numpy(),
                        [f"room {i}" for i in range(len(rooms))], rooms.photos)


def zero_shot_test(cfg: DepthConfig, names=None) -> DepthTestSet:
    """The real images (crossflow.data.real_depth) at the model's resolution."""
    from ..data.real_depth import REAL_IMAGES, load_real, resize_pair
    images, depths, sources = [], [], []
    names = list(names or REAL_IMAGES)
    for n in names:
        real = load_real(n)
        im, dp = resize_pair(real, cfg.data.size)
        images.append(im), depths.append(dp), sources.append(real.source)
    return DepthTestSet("real images (zero-shot)", torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255,
                        np.stack(depths), names, sources)


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------

class ImageVE(nn.Module):
    """The source encoder of depth: image (B, 3, H, W) in [0, 1] -> mu, logvar of the depth map's shape
    (B, 1, H, W), z0 = mu + sigma * eps; a decoder reconstructs the image from z0 (the reconstruction loss)."""

    def __init__(self, vcfg: ImageVEConfig, out_channels: int = 1):
        super().__init__()
        w = vcfg.width
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)   # noqa: E731
        self.enc = nn.Sequential(conv(3, w), nn.SiLU(), conv(w, w), nn.SiLU(), conv(w, w), nn.SiLU(),
                                 conv(w, 2 * out_channels))
        self.dec = nn.Sequential(conv(out_channels, w), nn.SiLU(), conv(w, w), nn.SiLU(), conv(w, 3))

    def encode(self, src, mask=None, generator=None):
        mu, logvar = self.enc(src * 2 - 1).chunk(2, dim=1)
        z0 = mu + torch.exp(0.5 * logvar) * randn(mu.shape, generator, mu.device, mu.dtype)
        return z0, mu, logvar

    def reconstruct(self, z0: torch.Tensor) -> torch.Tensor:
        return self.dec(z0)                                 # in [-1, 1] (the target of L_rec)


class DepthModel(nn.Module):
    """``method`` "crossflow": v(z_t, t) on the path from z0 = ImageVE(image) to z1 = depth; "noise_concat":
    v(z_t, t | image) from z0 ~ N(0, I), the image concatenated at the input; "regression": depth =
    net(zeros, t=0 | image), MSE."""

    def __init__(self, cfg: DepthConfig):
        super().__init__()
        self.cfg, self.method = cfg, cfg.method
        self.ve = ImageVE(cfg.ve) if cfg.method == "crossflow" else None
        self.net = FlowTransformer(cfg.flow, cfg.target_shape, cond_channels=0 if cfg.method == "crossflow" else 3)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.ve] if self.ve is not None else []

    def forward(self, batch: dict, generator=None, phase: str = "joint"):
        image, z1 = batch["image"], batch["depth"]
        if self.method == "regression":
            pred = self.net(torch.zeros_like(z1), torch.zeros(len(z1), device=z1.device), cond=image)
            loss = F.mse_loss(pred.float(), z1.float())
            return loss, {"mse": loss.detach()}
        if self.method == "crossflow":
            z0, mu, logvar = self.ve.encode(image, generator=generator)
            fm = flow_matching_loss(lambda z, t: self.net(z, t), z0, z1, self.cfg.objective, generator)
            rec = F.mse_loss(self.ve.reconstruct(z0).float(), (image * 2 - 1).float())
            kl = kl_paper(mu, logvar)
            loss = fm + self.cfg.ve.recon_weight * rec + self.cfg.ve.kl_weight * kl
            return loss, {"fm": fm.detach(), "rec": rec.detach(), "kl": kl.detach()}
        z0 = randn(z1.shape, generator, z1.device)
        fm = flow_matching_loss(lambda z, t: self.net(z, t, cond=image), z0, z1, self.cfg.objective, generator)
        return fm, {"fm": fm.detach()}


def model_from_dims(cfg: DepthConfig, dims: dict) -> DepthModel:
    return DepthModel(cfg)


def build_model(cfg: DepthConfig, data) -> tuple[DepthModel, dict]:
    return DepthModel(cfg), {"target_shape": list(cfg.target_shape)}


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: DepthModel, images: torch.Tensor, *, steps: int | None = None, solver: str | None = None,
            seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] -> predicted depth (N, H, W) in the normalised range (affine-invariant),
    on the CPU."""
    cfg = model.cfg
    steps, solver = steps or cfg.sample.steps, solver or cfg.sample.solver
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        shape = (len(x), *cfg.target_shape)
        if model.method == "regression":
            z1 = model.net(torch.zeros(shape, device=dev), torch.zeros(len(x), device=dev), cond=x)
        elif model.method == "crossflow":
            z0 = model.ve.encode(x, generator=g)[0]
            z1 = solve(lambda z, t: model.net(z, _t(z, t)), z0, solver, steps)
        else:
            z0 = randn(shape, g, dev)
            z1 = solve(lambda z, t, c=x: model.net(z, _t(z, t), cond=c), z0, solver, steps)
        out.append(z1[:, 0].float().cpu())
    return torch.cat(out)


def mean_depth_map(rooms: Rooms) -> np.ndarray:
    """The trivial reference: the training rooms' mean depth map (H, W)."""
    return rooms.depth.double().mean(0).numpy()


# ----------------------------------------------------------------------------------------------------------
# Metrics: Marigold's affine-invariant protocol
# ----------------------------------------------------------------------------------------------------------

def align(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares scale s and shift b of ``pred`` to ``gt`` on ``valid`` pixels; returns s * pred + b clipped to
    the valid ground truth's range (Marigold clips to the dataset's depth range)."""
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    A = np.stack([p, np.ones_like(p)], 1)
    (s, b), *_ = np.linalg.lstsq(A, g, rcond=None)
    return np.clip(s * pred.astype(np.float64) + b, g.min(), g.max())


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    """AbsRel, delta1 and RMSE of one prediction (H, W) after alignment; ``gt`` NaN where invalid."""
    valid = np.isfinite(gt) & (gt > 0)
    a, g = align(pred, gt, valid)[valid], gt[valid]
    ratio = np.maximum(a / g, g / np.maximum(a, 1e-12))
    return {"absrel": float(np.mean(np.abs(a - g) / g)), "delta1": float(np.mean(ratio < 1.25)),
            "rmse": float(np.sqrt(np.mean((a - g) ** 2))), "valid": int(valid.sum())}


def evaluate_depth(pred, test: DepthTestSet) -> dict:
    """Per-image metrics and their means over the test images (each image weighs the same)."""
    pred = pred.numpy() if torch.is_tensor(pred) else np.asarray(pred)
    if pred.ndim == 2:                                     # one map for every image (the mean-depth reference)
        pred = np.broadcast_to(pred, test.depth.shape)
    per = [depth_metrics(p, g) for p, g in zip(pred, test.depth)]
    out = {k: float(np.mean([r[k] for r in per])) for k in ("absrel", "delta1", "rmse")}
    out["per_image"] = {label: r for label, r in zip(test.labels, per)} if len(per) <= 16 else None
    out["n"] = len(per)
    return out


# ----------------------------------------------------------------------------------------------------------
# Verdict: "CrossFlow is competitive with the regression and noise-based baselines" (rule fixed before the runs)
# ----------------------------------------------------------------------------------------------------------

COMPETITIVE_MARGIN = 0.10     # CrossFlow's mean AbsRel at most 10% above the better baseline's (the paper's Table 5:
                              # 0.053 vs the best 0.050 on KITTI, 6% above)


def competitive_verdict(runs: dict[str, list[dict]], reference: float | None = None,
                        margin: float = COMPETITIVE_MARGIN) -> dict:
    """AbsRel, mean over seeds: CrossFlow is **competitive** (the claim holds) when its mean is at most
    (1 + margin) x the better baseline's mean, and the claim **fails** otherwise; "below every baseline seed" is
    noted when it is. ``reference``: the AbsRel of the training set's mean depth map; when neither baseline beats
    it, no method has learned anything the test can see and the claim is **not testable** at this scale. delta1
    is reported beside it but does not decide."""
    mean = {m: float(np.mean([r["absrel"] for r in runs[m]])) for m in runs}
    best = min(("regression", "noise_concat"), key=lambda m: mean[m])
    ratio = mean["crossflow"] / mean[best]
    below_all = max(r["absrel"] for r in runs["crossflow"]) < min(
        r["absrel"] for m in ("regression", "noise_concat") for r in runs[m])
    testable = reference is None or mean[best] < reference
    verdict = ("holds" if ratio <= 1 + margin else "fails") if testable else "not testable"
    text = (f"{verdict}: CrossFlow AbsRel {mean['crossflow']:.4f} vs the better baseline ({best}) "
            f"{mean[best]:.4f}: ratio {ratio:.3f} (competitive at <= {1 + margin:.2f})"
            + ("; below every baseline seed" if below_all else "")
            + ("" if testable else f"; but no baseline beats the mean depth map ({reference:.4f}): nothing learned "
               f"that this test can see"))
    return {"verdict": verdict, "ratio": ratio, "best_baseline": best, "mean_absrel": mean, "reference": reference,
            "better_than_all_seeds": below_all, "margin": margin, "text": text}


# ----------------------------------------------------------------------------------------------------------
# Runs and their evaluation
# ----------------------------------------------------------------------------------------------------------

def evaluate_runs(dirs: dict, test: DepthTestSet) -> tuple[dict[str, list[dict]], dict[str, np.ndarray]]:
    """Every trained run on ``test``: per method a list (one per seed) of metrics with seed, training time and
    checkpoint; and the first seed's predictions per method, aligned to the ground truth (for the figures)."""
    from ..train import load_model
    evals: dict[str, list[dict]] = {m: [] for m in METHODS}
    aligned: dict[str, np.ndarray] = {}
    for name, d in dirs.items():
        model, cfg, ckpt = load_model(d)
        pred = predict(model, test.images, seed=cfg.train.seed).double().numpy()
        res = evaluate_depth(pred, test)
        res.update(seed=cfg.train.seed, train_seconds=ckpt["train_seconds"], checkpoint=str(d))
        evals[cfg.method].append(res)
        if cfg.method not in aligned:
            aligned[cfg.method] = align_all(pred, test)
    return evals, aligned


def align_all(pred: np.ndarray, test: DepthTestSet) -> np.ndarray:
    """One prediction per image (or one map for all) aligned to each image's ground truth."""
    pred = np.broadcast_to(pred, test.depth.shape) if pred.ndim == 2 else pred
    return np.stack([align(p, g, np.isfinite(g) & (g > 0)) for p, g in zip(pred, test.depth)])
