"""Fashion-MNIST: find the four idx files, parse them with numpy, or write a tiny synthetic stand-in.

The scenes are built from real Fashion-MNIST items (Xiao et al. 2017). On Debian/Ubuntu the data set ships as
the package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), so nothing needs the network.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from crossflow.utils import cache_dir

# Label order of Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist#labels).
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot")

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")   # where `apt-get install dataset-fashion-mnist` puts it
ENV_VAR = "CROSSFLOW_FASHION_MNIST"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08   # idx type code for unsigned bytes, the only one Fashion-MNIST uses


class DatasetNotFoundError(FileNotFoundError):
    """Fashion-MNIST is in none of the places searched; the message says how to get it."""


def plural(name: str) -> str:
    """English plural of a class name, for counting captions ("three ankle boots", "two dresses")."""
    if name.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    return name + "s"


# ----------------------------------------------------------------------------------------------------------
# Finding the files
# ----------------------------------------------------------------------------------------------------------

def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> Path | None:
    """``folder`` (or torchvision's ``folder/FashionMNIST/raw``) if it holds all four idx files."""
    for sub in (folder, folder / "FashionMNIST" / "raw"):
        if all(_find_file(sub, name) for pair in FILES.values() for name in pair):
            return sub
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the folder holding the four Fashion-MNIST idx files (plain or ``.gz``).

    Search order: ``root``; ``$CROSSFLOW_FASHION_MNIST``; the Debian package's folder; a previous download in
    ``cache_dir("fashion-mnist")``; then, if ``download``, torchvision's downloader into that cache (online only).
    """
    searched: list[str] = []
    candidates: list[tuple[str, Path | None]] = []
    if root is not None:                       # given explicitly: used or refused, never silently replaced
        found = _complete(Path(root).expanduser())
        if found is not None:
            return found
        raise DatasetNotFoundError(
            f"data.fashion_root (or the root argument) is {root}, which "
            f"{'does not exist' if not Path(root).expanduser().exists() else 'does not hold the four idx files'} "
            f"({', '.join(n for pair in FILES.values() for n in pair)}, plain or .gz). It was given explicitly, so "
            f"nothing else is searched: fix the path, or set it to None to search ${ENV_VAR}, {DEBIAN_DIR} and "
            f"the cache.")
    if os.environ.get(ENV_VAR):
        candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR])))
    candidates.append(("Debian package dataset-fashion-mnist", Path(DEBIAN_DIR)))
    candidates.append(("previous download", None))   # the cache folder, created only if we get this far

    for what, folder in candidates:
        folder = cache_dir("fashion-mnist") if folder is None else folder.expanduser()
        found = _complete(folder)
        if found is not None:
            return found
        searched.append(f"{folder} ({what})")
    cache = cache_dir("fashion-mnist")

    if download:
        try:   # works only with internet access; any failure falls through to the explanatory error
            from torchvision.datasets import FashionMNIST
            for train in (True, False):
                FashionMNIST(str(cache), train=train, download=True)
            found = _complete(cache)
            if found is not None:
                return found
            searched.append(f"{cache} (torchvision download finished but the files are not there)")
        except Exception as e:  # noqa: BLE001 - offline, proxy, SSL...: all mean "not downloadable here"
            searched.append(f"torchvision download into {cache} failed: {type(e).__name__}: {e}")

    raise DatasetNotFoundError(
        "Fashion-MNIST was not found. Searched:\n  - " + "\n  - ".join(searched) + "\n"
        "Get it in one of these ways:\n"
        "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
        "  2. download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist into a folder, then "
        f"pass it as data.fashion_root or set ${ENV_VAR}=/that/folder\n"
        "  3. run once with internet access so torchvision can download it into the cache")


# ----------------------------------------------------------------------------------------------------------
# idx format
# ----------------------------------------------------------------------------------------------------------

def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic = 0, 0, type code, ndim; big-endian int32 sizes; data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:          # truncated or corrupt download
        raise ValueError(f"{path} could not be read ({type(e).__name__}: {e}); the file is damaged: delete it "
                         f"and get Fashion-MNIST again (see crossflow.data.find_fashion_mnist)") from e
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number {blob[:4].hex()})")
    if blob[2] != _IDX_UBYTE:
        raise ValueError(f"{path}: idx type code 0x{blob[2]:02x} is not unsigned byte (0x08)")
    if ndim is not None and blob[3] != ndim:
        raise ValueError(f"{path}: expected a {ndim}-d idx file, the magic number says {blob[3]}-d")
    dims = np.frombuffer(blob, dtype=">i4", count=blob[3], offset=4).astype(np.int64)
    start = 4 + 4 * blob[3]
    if len(blob) - start != int(np.prod(dims)):
        raise ValueError(f"{path}: header says shape {tuple(dims)} but holds {len(blob) - start} bytes")
    return np.frombuffer(blob, dtype=np.uint8, offset=start).reshape(tuple(dims))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file (gzipped if ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _check_split(split: str) -> str:
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_labels(split: str, root: str | os.PathLike | None = None) -> np.ndarray:
    """Labels only (cheap): int64 (N,)."""
    folder = find_fashion_mnist(root)
    return read_idx(_find_file(folder, FILES[_check_split(split)][1]), ndim=1).astype(np.int64)


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) of the ``train`` or ``test`` split."""
    image_name, label_name = FILES[_check_split(split)]
    folder = find_fashion_mnist(root)
    images = read_idx(_find_file(folder, image_name), ndim=3)
    labels = read_idx(_find_file(folder, label_name), ndim=1).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{folder}: label {labels.max()} out of range for Fashion-MNIST's 10 classes")
    return images, labels


# ----------------------------------------------------------------------------------------------------------
# Synthetic stand-in for tests
# ----------------------------------------------------------------------------------------------------------

def _synthetic_items(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blob-like 28x28 items whose shape depends on the class (elongation, angle), with a bright core."""
    n = len(labels)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32) - 13.5
    angle = labels * (np.pi / 10) + rng.normal(0, 0.1, n)
    sx = 3.0 + 0.6 * labels + rng.uniform(-0.5, 0.5, n)        # class sets the elongation
    sy = 9.0 - 0.5 * labels + rng.uniform(-0.5, 0.5, n)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    blob = np.exp(-0.5 * ((u / sx[:, None, None]) ** 2 + (v / sy[:, None, None]) ** 2))
    blob = blob / blob.max(axis=(1, 2), keepdims=True)
    return np.clip(blob * 255.0 + 0.5, 0, 255).astype(np.uint8)


def write_idx_fixture(folder: str | os.PathLike, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """Write four small gzipped idx files that look like Fashion-MNIST (every class present); return folder."""
    if min(n_train, n_test) < len(CLASS_NAMES):
        raise ValueError(f"need at least {len(CLASS_NAMES)} items per split so every class is present")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.uint8)
        image_name, label_name = FILES[split]
        write_idx(folder / (image_name + ".gz"), _synthetic_items(labels, rng))
        write_idx(folder / (label_name + ".gz"), labels)
    return folder
