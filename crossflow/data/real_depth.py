"""Real photographs with depth ground truth, for the zero-shot test of the depth task (never used in training).

Three images, all installed offline:

- ``motorcycle``: Middlebury 2014 "Motorcycle" left view and its float disparity, bundled in the
  ``scikit-image==0.26.0`` wheel (``data/motorcycle_left.png``, ``motorcycle_disp.npz``; ``inf`` = unknown).
- ``aloe``: Middlebury 2006 "Aloe" left view (``aloeL.jpg``) and its disparity (``aloeGT.png``, 0 = unknown),
  from Debian's ``opencv-doc`` sample data.
- ``quokka``: the photo and its dense depth map inside the ``imgaug==0.4.0`` wheel (``imgaug/quokka.jpg``,
  ``quokka_depth_map_halfres.png``), read from the wheel as a zip file (imgaug itself does not import on
  numpy 2). imgaug stores 255 = nearest, 0 = furthest; the map is drawn, not measured.

Depth convention: **relative depth**, defined up to an unknown scale (and, for the quokka, shift), which the
affine-invariant evaluation (Marigold's protocol) removes. Disparity d gives depth 1/d (depth = focal x
baseline / d; the constant is absorbed by the fitted scale). The quokka's value v gives depth 2 - v/255 (imgaug's
own "0 = nearest" depth, shifted to [1, 2] so that relative errors are defined).

Resolution: the model sees ``size`` x ``size`` images, so every image is centre-cropped to a square and
area-resized (PIL box filter) to ``size``; the ground truth is resized the same way over its valid pixels only
(the mean of the valid depths in each output pixel's footprint), and an output pixel is valid when at least half
of its footprint is.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import REPO_ROOT
from .photos import OPENCV_DIR, PhotosNotFoundError, skimage_data_dir

IMGAUG_WHEEL = "imgaug-0.4.0-py2.py3-none-any.whl"
REAL_IMAGES = ("motorcycle", "aloe", "quokka")


def downloads_dir() -> Path:
    """``$CROSSFLOW_DOWNLOADS`` or ``<repo>/.cache/downloads``: files fetched from a package index."""
    return Path(os.environ.get("CROSSFLOW_DOWNLOADS", REPO_ROOT / ".cache" / "downloads"))


def imgaug_wheel(fetch: bool = True) -> Path:
    """The imgaug 0.4.0 wheel (its files only; nothing is installed): found in :func:`downloads_dir`, or fetched
    there with ``pip download --no-deps`` (the PyPI registry is reachable here and for online users)."""
    path = downloads_dir() / IMGAUG_WHEEL
    if not path.is_file() and fetch:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "imgaug==0.4.0", "-d",
                        str(path.parent)], check=False, capture_output=True)
    if not path.is_file():
        raise PhotosNotFoundError(f"{IMGAUG_WHEEL} not found in {path.parent}: run `{sys.executable} -m pip "
                                  f"download --no-deps imgaug==0.4.0 -d {path.parent}` (make data does it)")
    return path


@dataclass(frozen=True)
class DepthImage:
    name: str
    source: str                  # where it comes from, in words
    image: np.ndarray            # (H, W, 3) uint8, full resolution
    depth: np.ndarray            # (H, W) float64 relative depth, NaN where unknown


def _rgb(data: bytes | Path) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _gray(data: bytes | Path) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


def load_real(name: str) -> DepthImage:
    """One of :data:`REAL_IMAGES` at full resolution; PhotosNotFoundError (saying how to get it) if absent."""
    if name == "motorcycle":
        folder = skimage_data_dir()
        disp_path = folder / "motorcycle_disp.npz"
        if not disp_path.is_file():
            raise PhotosNotFoundError(f"{disp_path} not found: pip install 'scikit-image==0.26.0'")
        disp = np.load(disp_path)["arr_0"].astype(np.float64)
        valid = np.isfinite(disp) & (disp > 0)
        depth = np.where(valid, 1.0 / np.where(valid, disp, 1.0), np.nan)
        return DepthImage(name, "Middlebury 2014 (scikit-image)", _rgb(folder / "motorcycle_left.png"), depth)
    if name == "aloe":
        left, gt = OPENCV_DIR / "aloeL.jpg", OPENCV_DIR / "aloeGT.png"
        if not (left.is_file() and gt.is_file()):
            raise PhotosNotFoundError(f"{left} / {gt} not found: apt-get install opencv-doc (as root; make data)")
        disp = _gray(gt)
        valid = disp > 0
        depth = np.where(valid, 1.0 / np.where(valid, disp, 1.0), np.nan)
        return DepthImage(name, "Middlebury 2006 (opencv-doc)", _rgb(left), depth)
    if name == "quokka":
        with zipfile.ZipFile(imgaug_wheel()) as z:
            image = _rgb(z.read("imgaug/quokka.jpg"))
            v = _gray(z.read("imgaug/quokka_depth_map_halfres.png"))
        from PIL import Image
        v = np.asarray(Image.fromarray(v.astype(np.float32), mode="F").resize(image.shape[1::-1], Image.BILINEAR),
                       dtype=np.float64)                  # the map is half resolution: bring it to the photo's
        return DepthImage(name, "imgaug 0.4.0 wheel (drawn depth map)", image, 2.0 - v / 255.0)
    raise KeyError(f"unknown real depth image {name!r}; known: {REAL_IMAGES}")


def centre_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y:y + s, x:x + s]


def resize_pair(img: DepthImage, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 image and (size, size) depth (NaN = invalid), as the module docstring says."""
    from PIL import Image
    image = np.asarray(Image.fromarray(centre_square(img.image)).resize((size, size), Image.BOX), dtype=np.uint8)
    depth = centre_square(img.depth)
    valid = np.isfinite(depth)

    def box(a):
        return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.BOX),
                          dtype=np.float64)
    frac = box(valid.astype(np.float64))
    total = box(np.where(valid, depth, 0.0))
    out = np.where(frac >= 0.5, total / np.maximum(frac, 1e-12), np.nan)
    return image, out
