"""Real photographs that ship offline, for the pixel tasks (super-resolution; later depth).

Two sources, both installed without the network: the photos bundled in the ``scikit-image==0.26.0`` wheel (read
as files from its ``data`` folder: ``skimage.data`` would fetch the others) and the sample images of Debian's
``opencv-doc`` (``apt-get install opencv-doc``). The list below is explicit, so that the split never depends on
what else a folder holds: colour photographs only. Left out, with the reason: grayscale images (camera, moon,
coins, basketball1/2), renders and synthetic shapes (blox, Blender_Suzanne, pic1-6, logos, text), a painting
(starry_night), and the Middlebury pairs (motorcycle, aloe), kept unseen for the depth task's zero-shot test.

The split is by photo, never by patch. The test photos are named: OpenCV's butterfly (the Set5 image) and baboon
(the Set14 image), fruits, building, smarties and scikit-image's chelsea. Near-duplicate pairs (aero1/3,
leuvenA/B, graf1/3, rubberwhale1/2) stay on one side.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")

# (source, file name)
TRAIN_PHOTOS = (
    ("skimage", "astronaut.png"), ("skimage", "coffee.png"), ("skimage", "rocket.jpg"),
    ("skimage", "hubble_deep_field.jpg"), ("skimage", "retina.jpg"), ("skimage", "ihc.png"),
    ("opencv", "HappyFish.jpg"), ("opencv", "aero1.jpg"), ("opencv", "aero3.jpg"), ("opencv", "apple.jpg"),
    ("opencv", "home.jpg"), ("opencv", "leuvenA.jpg"), ("opencv", "leuvenB.jpg"), ("opencv", "messi5.jpg"),
    ("opencv", "orange.jpg"), ("opencv", "graf1.png"), ("opencv", "graf3.png"), ("opencv", "squirrel_cls.jpg"),
    ("opencv", "stuff.jpg"), ("opencv", "rubberwhale1.png"), ("opencv", "rubberwhale2.png"),
    ("opencv", "ela_original.jpg"), ("opencv", "board.jpg"),
)
TEST_PHOTOS = (
    ("opencv", "butterfly.jpg"), ("opencv", "baboon.jpg"), ("opencv", "fruits.jpg"), ("skimage", "chelsea.png"),
    ("opencv", "building.jpg"), ("opencv", "smarties.png"),
)


class PhotosNotFoundError(FileNotFoundError):
    """A photo of the list is missing; the message says which package brings it."""


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise PhotosNotFoundError("scikit-image is not installed: pip install 'scikit-image==0.26.0' (its wheel "
                                  "bundles the photos; it is in the project's dependencies)")
    return Path(spec.origin).parent / "data"


def photo_path(source: str, name: str) -> Path:
    folder = skimage_data_dir() if source == "skimage" else OPENCV_DIR
    path = folder / name
    if not path.is_file():
        how = ("pip install 'scikit-image==0.26.0' (later versions may stop bundling it)" if source == "skimage"
               else "apt-get install opencv-doc (as root; `make data` does it)")
        raise PhotosNotFoundError(f"photo {name} not found at {path}: {how}")
    return path


@dataclass(frozen=True)
class Photo:
    name: str
    source: str
    pixels: np.ndarray            # (H, W, 3) uint8, resized so that the shorter side is ``short_side``


def load_photos(split: str, short_side: int) -> list[Photo]:
    """The photos of ``split`` ("train" | "test"), RGB, resized (PIL bicubic, antialiased) to ``short_side``."""
    from PIL import Image
    listing = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}[split]
    out = []
    for source, name in listing:
        with Image.open(photo_path(source, name)) as im:
            im = im.convert("RGB")
            scale = short_side / min(im.size)
            size = (max(short_side, round(im.size[0] * scale)), max(short_side, round(im.size[1] * scale)))
            out.append(Photo(name=Path(name).stem, source=source,
                             pixels=np.asarray(im.resize(size, Image.BICUBIC), dtype=np.uint8).copy()))
    return out


def grid_patches(photo: Photo, size: int, max_patches: int, offset: int = 0) -> np.ndarray:
    """Non-overlapping ``size`` x ``size`` crops on a regular grid (shifted by ``offset`` pixels), at most
    ``max_patches`` of them spread evenly over the grid: (N, size, size, 3) uint8. Deterministic."""
    h, w = photo.pixels.shape[:2]
    ys = range(offset, h - size + 1, size)
    xs = range(offset, w - size + 1, size)
    cells = [(y, x) for y in ys for x in xs]
    if len(cells) > max_patches:
        cells = [cells[i] for i in np.linspace(0, len(cells) - 1, max_patches).round().astype(int)]
    return np.stack([photo.pixels[y:y + size, x:x + size] for y, x in cells])
