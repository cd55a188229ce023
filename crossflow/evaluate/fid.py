"""FID through clean-fid: Inception features where the weights exist, domain features here.

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to two feature sets. The paper
reports FID-30K with InceptionV3 on COCO; that network cannot be downloaded here, and Inception features of
32x32 scenes upsampled to 299x299 say little anyway. The domain backend uses the penultimate features of the
GenEval judge (a CNN trained on real renders only), concatenated over the grid cells, and clean-fid's own
``frechet_distance``. clean-fid's folder pipeline is not used for it: it resizes every 32x32 image to 299x299,
which is slow on a CPU and pointless for a 16x16-cell network.
"""
from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from cleanfid.fid import frechet_distance

from ..device import resolve_device
from .judge import as_float_images


def frechet(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two (N, D) feature sets (clean-fid's ``frechet_distance`` on their means and covariances)."""
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError("FID needs at least two samples per set")
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    try:
        return float(frechet_distance(*stats))
    except TypeError as e:           # clean-fid 0.1.35 passes disp= to scipy's sqrtm, which newer SciPy removed
        if "disp" not in str(e):
            raise
        return _frechet_distance_new_scipy(*stats)


def _frechet_distance_new_scipy(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """clean-fid's ``frechet_distance`` (same formula and the same eps retry) for SciPy without ``disp``
    (found on a GPU machine with a newer SciPy; where clean-fid works this is never called)."""
    from scipy import linalg
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@torch.no_grad()
def inception_features(images, batch_size: int = 64, device=None) -> np.ndarray:
    """clean-fid's InceptionV3 pool features in its "clean" mode (PIL bicubic resize to 299). Needs the
    Inception weights (clean-fid downloads them once; offline it fails with clean-fid's own error)."""
    from cleanfid.features import build_feature_extractor
    from cleanfid.resize import make_resizer
    device = resolve_device(device)
    model = build_feature_extractor("clean", device, use_dataparallel=False)
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    x = (as_float_images(images).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (N, H, W, 3)
    out = []
    for i in range(0, len(x), batch_size):
        batch = np.stack([resize(im) for im in x[i:i + batch_size]])                          # float 0..255
        out.append(model(torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)).cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------------------------------------
# Degradations for the metric's own validation
# ----------------------------------------------------------------------------------------------------------

def blur(images, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of float images (N, 3, H, W) in [0, 1]."""
    k = 2 * int(np.ceil(2 * sigma)) + 1
    return TF.gaussian_blur(as_float_images(images), [k, k], [sigma, sigma])


def wrong_caption_items(items_per_image, cfg, cls_index: int = 0):
    """Each image's items with every class replaced by one class (``data.classes[cls_index]``): renders of a
    caption that is wrong for the image (right layout and colours, wrong objects), as a model that ignores
    the object words would produce."""
    from ..data import Item, class_ids
    k = class_ids(cfg)[cls_index]
    return [[Item(k, it.color, it.cell) for it in items] for items in items_per_image]
