"""Super-resolution (Table 6): low resolution -> high resolution (4x) on real photographs, in pixel space.

The paper maps a bicubic-upsampled 64 px image to the 256 px image with CrossFlow (source = the upsampled image,
target = the high-resolution one; no noise, no concatenation) and compares it with flow matching from noise with
the upsampled image concatenated, a regression network and bicubic upsampling (docs/method.md section 9). Here:
32 x 32 patches of the photographs of :mod:`crossflow.data.photos` and their 8 x 8 versions, the same flow
transformer for every learned method, trained with the same budget.

[open] Pixels or the domain autoencoder's latent: **pixels**. The autoencoder was trained on Fashion-MNIST scenes;
on photo patches its own reconstruction error would cap every method's PSNR (the notebook measures that cap), and
the paper's task is in pixel space as well. Patches of 32 x 32 x 3 in patches of 4 give the flow transformer 64
tokens, the same sequence length as the text-to-image model's 4 x 8 x 8 latent.

Nothing here is text-specific: the task uses crossflow.flow.flow_matching_loss, crossflow.train.train,
crossflow.sampling.solve and crossflow.models.FlowTransformer.

Sections: config, data, model, sampling, metrics (PSNR / SSIM / FID with a patch network), verdict.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError, FlowNetConfig, SampleConfig, TrainConfig, build_strict, to_dict, with_overrides
from ..data.photos import Photo, grid_patches, load_photos
from ..device import resolve_device
from ..device import randn
from ..flow import flow_matching_loss
from ..models.flow_transformer import FlowTransformer
from ..sampling import _t, solve
from ..utils import format_mean_std, mean_std  # noqa: F401  (the notebook's table cells)
from .base import PixelCodec
from .runs import train_runs  # noqa: F401  (sr.train_runs: the notebook's entry point)

METHODS = ("crossflow", "noise_concat", "regression")


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SRDataConfig:
    short_side: int = 256               # [open] photos resized (PIL bicubic) to this shorter side before cropping
    patch: int = 32                     # [open] high-resolution patch side; [paper] 256 (64 -> 256)
    scale: int = 4                      # [paper] 4x
    test_patches_per_photo: int = 64    # [open] grid crops per test photo (6 photos: 384 patches)
    flip: bool = True                   # [open] random horizontal flips of the training crops


@dataclass(frozen=True)
class SRObjectiveConfig:
    sigma_min: float = 1e-5             # as text-to-image ([code])
    t_mean: float = 0.0                 # logit-normal t, as text-to-image ([paper, code])
    t_std: float = 1.0


@dataclass(frozen=True)
class SRFeatureConfig:
    """The FID feature network: a small CNN that learns which training photo a patch comes from (no download)."""
    width: int = 32
    feat_dim: int = 64                  # features for FID; fewer than the test patches, so the covariance is full
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass(frozen=True)
class SRConfig:
    task: str = "sr"
    name: str = "sr-tiny"
    profile: str = "tiny"
    method: str = "crossflow"           # "crossflow" | "noise_concat" | "regression"
    data: SRDataConfig = field(default_factory=SRDataConfig)
    # the text-to-image flow network's shape ([open]), patch 4 on 3 x 32 x 32 pixels = 64 tokens
    flow: FlowNetConfig = field(default_factory=lambda: FlowNetConfig(patch_size=4))
    objective: SRObjectiveConfig = field(default_factory=SRObjectiveConfig)
    # [open] 1,000 steps at batch 64: six runs (3 methods x 2 seeds) fit ~30 min on 2 CPU cores
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, log_every=25, ckpt_every=500))
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(steps=25, cfg_scale=1.0))  # [open] Euler-25
    features: SRFeatureConfig = field(default_factory=SRFeatureConfig)

    @property
    def target_shape(self) -> tuple[int, int, int]:
        return (3, self.data.patch, self.data.patch)

    def replace(self, overrides: dict | None = None) -> "SRConfig":
        return with_overrides(self, overrides, config_from_dict)


def config_from_dict(d: dict) -> SRConfig:
    cfg = build_strict(SRConfig, d)
    if cfg.task != "sr":
        raise ConfigError(f"task must be 'sr' in an SRConfig, got {cfg.task!r}")
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r}; choose one of {METHODS}")
    if cfg.data.patch % cfg.data.scale or cfg.data.patch % cfg.flow.patch_size:
        raise ConfigError(f"data.patch={cfg.data.patch} must be divisible by data.scale={cfg.data.scale} and "
                          f"flow.patch_size={cfg.flow.patch_size}")
    if cfg.train.ve_pretrain_steps or cfg.train.freeze_text_ve:
        raise ConfigError("super-resolution has no encoder to pre-train (train.ve_pretrain_steps must be 0)")
    return cfg


def get_sr_config(profile: str = "tiny", overrides: dict | None = None) -> SRConfig:
    """The profile's super-resolution sizes (crossflow.profiles, field ``sr``) with dotted overrides."""
    from ..profiles import get_profile
    p = get_profile(profile)
    return SRConfig(name=f"sr-{profile}", profile=profile).replace({**p.sr, **(overrides or {})})


# ----------------------------------------------------------------------------------------------------------
# Data: random crops of the training photos, a fixed grid of test crops
# ----------------------------------------------------------------------------------------------------------

def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, H/scale, W/scale): bicubic with antialiasing (PIL's resampling, as
    torch implements it; BasicSR uses MATLAB's imresize, which differs slightly), clamped to [0, 1]."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline and CrossFlow's source: (B, 3, h, w) -> (B, 3, h*scale, w*scale), clamped."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


class BicubicSource:
    """The source encoder of super-resolution: z0 = the bicubic upsampling of the low-resolution image, in the
    pixel codec's range. Deterministic (logvar None), as in the paper: no noise."""

    def __init__(self, scale: int):
        self.scale, self.codec = scale, PixelCodec()

    def encode(self, src, mask=None, generator=None):
        mu = self.codec.encode(upsample(src, self.scale))
        return mu, mu, None


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255


@dataclass
class SRPatches:
    """Training pairs drawn on the fly: each batch crops ``patch`` x ``patch`` squares at random places of random
    training photos (seeded by the step's generator), flips half of them, and makes their low-resolution
    versions. ``batch(g, B, part)`` / ``to_device`` are what crossflow.train needs of a data set."""
    photos: list[torch.Tensor]          # (3, H, W) uint8 each
    names: list[str]
    patch: int
    scale: int
    flip: bool = True
    device: torch.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.photos)

    def to_device(self, device) -> "SRPatches":
        return dataclasses.replace(self, device=torch.device(device))

    def crops(self, g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n random crops, (n, 3, patch, patch) in [0, 1], and the photo index of each."""
        idx = torch.randint(len(self.photos), (n,), generator=g)
        u = torch.rand(n, 3, generator=g)
        out = torch.empty(n, 3, self.patch, self.patch)
        for i, (k, (uy, ux, uf)) in enumerate(zip(idx.tolist(), u.tolist())):
            img = self.photos[k]
            y = int(uy * (img.shape[1] - self.patch + 1))
            x = int(ux * (img.shape[2] - self.patch + 1))
            crop = img[:, y:y + self.patch, x:x + self.patch].float() / 255
            out[i] = crop.flip(-1) if self.flip and uf < 0.5 else crop
        return out, idx

    def batch(self, g: torch.Generator, batch_size: int, part: slice | None = None) -> dict:
        hr, _ = self.crops(g, batch_size)
        if part is not None:
            hr = hr[part]
        lr = downsample(hr, self.scale)
        return {"hr": hr.to(self.device), "lr": lr.to(self.device)}


def training_patches(cfg: SRConfig) -> SRPatches:
    photos = load_photos("train", cfg.data.short_side)
    return SRPatches(photos=[torch.from_numpy(p.pixels).permute(2, 0, 1).contiguous() for p in photos],
                     names=[p.name for p in photos], patch=cfg.data.patch, scale=cfg.data.scale, flip=cfg.data.flip)


@dataclass
class SRTestSet:
    hr: torch.Tensor                    # (N, 3, P, P) in [0, 1]
    lr: torch.Tensor                    # (N, 3, P/s, P/s)
    photo: list[str]                    # the photo each patch comes from
    hr_shifted: torch.Tensor            # crops of the same photos half a patch away: the real-vs-real FID floor
    photos: list[Photo]


def test_set(cfg: SRConfig) -> SRTestSet:
    photos = load_photos("test", cfg.data.short_side)
    P, k = cfg.data.patch, cfg.data.test_patches_per_photo
    hr, names, shifted = [], [], []
    for p in photos:
        crops = grid_patches(p, P, k)
        hr.append(crops)
        names += [p.name] * len(crops)
        shifted.append(grid_patches(p, P, k, offset=P // 2))
    hr_t = _to_float(np.concatenate(hr))
    return SRTestSet(hr=hr_t, lr=downsample(hr_t, cfg.data.scale), photo=names,
                     hr_shifted=_to_float(np.concatenate(shifted)), photos=photos)


# ----------------------------------------------------------------------------------------------------------
# Model: one flow transformer, three ways of using it
# ----------------------------------------------------------------------------------------------------------

class SRModel(nn.Module):
    """``method`` "crossflow": v(z_t, t) on the path from z0 = upsampled LR to z1 = HR (no noise, no
    concatenation); "noise_concat": v(z_t, t | upsampled LR) on the path from z0 ~ N(0, I), the LR image
    concatenated at the input; "regression": HR = upsampled LR + net(upsampled LR, t=0), MSE (a residual
    regression with the same backbone)."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.cfg, self.method = cfg, cfg.method
        self.source, self.codec = BicubicSource(cfg.data.scale), PixelCodec()
        self.net = FlowTransformer(cfg.flow, cfg.target_shape, cond_channels=3 if cfg.method == "noise_concat" else 0)

    def encoder_modules(self) -> list[nn.Module]:
        return []                                         # nothing to freeze: the source encoder has no weights

    def forward(self, batch: dict, generator=None, phase: str = "joint"):
        z1 = self.codec.encode(batch["hr"])
        up = self.source.encode(batch["lr"])[0]
        if self.method == "regression":
            pred = up + self.net(up, torch.zeros(len(up), device=up.device))
            loss = F.mse_loss(pred.float(), z1.float())
            return loss, {"mse": loss.detach()}
        if self.method == "crossflow":
            loss = flow_matching_loss(lambda z, t: self.net(z, t), up, z1, self.cfg.objective, generator)
        else:
            z0 = randn(z1.shape, generator, z1.device)
            loss = flow_matching_loss(lambda z, t: self.net(z, t, cond=up), z0, z1, self.cfg.objective, generator)
        return loss, {"fm": loss.detach()}


def model_from_dims(cfg: SRConfig, dims: dict) -> SRModel:
    return SRModel(cfg)


def build_model(cfg: SRConfig, features) -> tuple[SRModel, dict]:
    return SRModel(cfg), {"target_shape": list(cfg.target_shape)}


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def super_resolve(model: SRModel, lr: torch.Tensor, *, steps: int | None = None, solver: str | None = None,
                  seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Low-resolution patches (N, 3, h, w) in [0, 1] -> high-resolution (N, 3, H, W) in [0, 1], on the CPU."""
    cfg = model.cfg
    steps, solver = steps or cfg.sample.steps, solver or cfg.sample.solver
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(lr), batch_size):
        up = model.source.encode(lr[i:i + batch_size].to(dev))[0]
        if model.method == "regression":
            z1 = up + model.net(up, torch.zeros(len(up), device=dev))
        elif model.method == "crossflow":
            z1 = solve(lambda z, t: model.net(z, _t(z, t)), up, solver, steps)
        else:
            z0 = randn(up.shape, g, dev)
            z1 = solve(lambda z, t, c=up: model.net(z, _t(z, t), cond=c), z0, solver, steps)
        out.append(model.codec.decode(z1).cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------------
# Metrics: PSNR and SSIM on Y (BasicSR's convention), FID with a patch network trained here
# ----------------------------------------------------------------------------------------------------------

def quantize(images: torch.Tensor) -> np.ndarray:
    """[0, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3), as saving the images would."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def rgb_to_y(images: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float64 Y of ITU-R BT.601 on the 16-235 scale (BasicSR's ``rgb2ycbcr(y_only)``)."""
    x = images.astype(np.float64) / 255
    return 16.0 + x @ np.array([65.481, 128.553, 24.966])


def mse_y(pred: np.ndarray, ref: np.ndarray, crop: int) -> np.ndarray:
    """Per-image mean squared error on Y (0-255 scale) with ``crop`` pixels cut from every border; uint8
    (N, H, W, 3) inputs."""
    a, b = (rgb_to_y(x)[:, crop:-crop or None, crop:-crop or None] for x in (pred, ref))
    return ((a - b) ** 2).reshape(len(a), -1).mean(1)


def psnr_from_mse(mse) -> np.ndarray:
    return 10 * np.log10(255.0 ** 2 / np.maximum(np.asarray(mse, dtype=np.float64), 1e-10))


def psnr_y(pred: np.ndarray, ref: np.ndarray, crop: int) -> np.ndarray:
    """Per-image PSNR (dB) on Y with ``crop`` pixels cut from every border (BasicSR's calculate_psnr with
    test_y_channel=True)."""
    return psnr_from_mse(mse_y(pred, ref, crop))


def ssim_y(pred: np.ndarray, ref: np.ndarray, crop: int) -> np.ndarray:
    """Per-image SSIM on Y (Wang et al. 2004: Gaussian window sigma 1.5, 11 x 11, K1 0.01, K2 0.03, data range
    255, as BasicSR), through scikit-image's implementation, after the border crop."""
    from skimage.metrics import structural_similarity
    a, b = (rgb_to_y(x)[:, crop:-crop or None, crop:-crop or None] for x in (pred, ref))
    return np.array([structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=255.0) for x, y in zip(a, b)])


class PatchNet(nn.Module):
    """Which training photo is this 32 x 32 patch from? Its penultimate layer gives the FID features."""

    def __init__(self, fcfg: SRFeatureConfig, n_classes: int):
        super().__init__()
        w = fcfg.width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(), nn.AvgPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.AvgPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * w, fcfg.feat_dim), nn.GELU())
        self.head = nn.Linear(fcfg.feat_dim, n_classes)

    def forward(self, x):                                  # x in [0, 1]
        return self.head(self.body(x * 2 - 1))

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
        self.eval()
        dev = next(self.parameters()).device
        return torch.cat([self.body(images[i:i + batch_size].to(dev) * 2 - 1).cpu()
                          for i in range(0, len(images), batch_size)]).double().numpy()


def feature_network(cfg: SRConfig, patches: SRPatches, progress: bool = False) -> tuple[PatchNet, dict]:
    """The FID feature network, trained once per (data, feature config) and cached (safetensors + checksum)."""
    from safetensors.torch import load_file, save_file

    from ..integrity import checked_write, load_checked, stored_checksum
    from ..progress import tqdm
    from ..utils import cache_dir, record_provenance, stable_hash
    fcfg = cfg.features
    key = stable_hash({"features": to_dict(fcfg), "data": to_dict(cfg.data), "photos": patches.names})
    path = cache_dir("sr-features") / f"patchnet-{key}.safetensors"
    dev = resolve_device(None)
    torch.manual_seed(fcfg.seed)
    net = PatchNet(fcfg, len(patches))
    info = {"path": str(path), "key": key}
    if path.exists():
        net.load_state_dict(load_checked(path, load_file, "SR feature network"))
    else:
        net = net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=fcfg.lr)
        g = torch.Generator().manual_seed(fcfg.seed)
        correct = []
        for step in tqdm(range(fcfg.steps), desc="SR feature network", disable=not progress):
            x, y = patches.crops(g, fcfg.batch_size)
            logits = net(x.to(dev))
            loss = F.cross_entropy(logits, y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct.append(float((logits.argmax(1).cpu() == y).float().mean()))
        info["train_accuracy_last_100"] = float(np.mean(correct[-100:]))
        with checked_write(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    info["sha256"] = stored_checksum(path)
    record_provenance("evaluators", str(path), info["sha256"])
    return net.to(dev).eval(), info


def evaluate_sr(pred: torch.Tensor, test: SRTestSet, net: PatchNet, crop: int) -> dict:
    """PSNR-Y and SSIM-Y per test photo (its patches taken together: PSNR of their pooled MSE, as if the photo
    were one image; flat patches would otherwise give ~60 dB and dominate a mean over patches), then the mean over
    the photos; FID between the patches' features and the HR test patches' (n = all test patches)."""
    from ..evaluate.fid import frechet
    p, r = quantize(pred), quantize(test.hr)
    mse, ssim = mse_y(p, r, crop), ssim_y(p, r, crop)
    feats = net.features(torch.from_numpy(p).permute(0, 3, 1, 2).float() / 255)
    per_photo = {}
    for name in dict.fromkeys(test.photo):
        m = np.array([n == name for n in test.photo])
        per_photo[name] = {"psnr": float(psnr_from_mse(mse[m].mean())), "ssim": float(ssim[m].mean())}
    return {"psnr": float(np.mean([v["psnr"] for v in per_photo.values()])),
            "ssim": float(np.mean([v["ssim"] for v in per_photo.values()])),
            "fid": frechet(feats, net.features(test.hr)), "per_photo": per_photo, "n": len(pred)}


# ----------------------------------------------------------------------------------------------------------
# Verdict: "direct mapping beats noise + concatenation" (rule fixed before the runs)
# ----------------------------------------------------------------------------------------------------------

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "fid": False}


def direct_vs_concat_verdict(runs: dict[str, list[dict]], a: str = "crossflow", b: str = "noise_concat") -> dict:
    """Per metric: ``a`` *beats* ``b`` when every seed of ``a`` is better than every seed of ``b`` (the seed
    ranges do not overlap), *loses* in the mirror case, else *tie* (within the seed spread). The claim **holds**
    when ``a`` beats ``b`` on all three of PSNR, SSIM and FID; **fails** when ``b`` beats ``a`` on at least
    two; otherwise it is **not shown** at this scale."""
    per = {}
    for m, higher in HIGHER_IS_BETTER.items():
        va, vb = [r[m] for r in runs[a]], [r[m] for r in runs[b]]
        if (min(va) > max(vb)) if higher else (max(va) < min(vb)):
            per[m] = "beats"
        elif (max(va) < min(vb)) if higher else (min(va) > max(vb)):
            per[m] = "loses"
        else:
            per[m] = "tie"
    wins, losses = sum(v == "beats" for v in per.values()), sum(v == "loses" for v in per.values())
    verdict = "holds" if wins == 3 else "fails" if losses >= 2 else "not shown"
    text = (f"{verdict}: {a} vs {b}: " + ", ".join(f"{m.upper()} {v}" for m, v in per.items()) +
            f" (seed ranges compared; {len(runs[a])} vs {len(runs[b])} seeds)")
    return {"verdict": verdict, "per_metric": per, "text": text}


# ----------------------------------------------------------------------------------------------------------
# Runs: every (method, seed) trained once (crossflow.tasks.runs), on training_data(cfg)
# ----------------------------------------------------------------------------------------------------------

training_data = training_patches                          # the task interface: training_data(cfg) -> PairData
