"""Training data as (source, target) pairs, and the one on-disk cache every task's encoded data goes through.

A task's training data is anything with ``len()``, ``to_device(device)`` and ``batch(generator, batch_size,
part)`` -> dict of tensors (:class:`PairData`): text-to-image's :class:`crossflow.features.Features` (caption
token states -> image latents), super-resolution's ``SRPatches`` (low-resolution -> high-resolution crops).
What is expensive to compute once (image latents, caption token states, rendered scenes) is kept with
:func:`cached_tensors`: a safetensors file under ``cache_dir(kind)``, named by a hash of everything it depends
on, built by one process while others wait, written atomically with a checksum, rebuilt if damaged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file

from .integrity import checked_write, load_cache
from .utils import cache_dir, file_lock, stable_hash


@runtime_checkable
class PairData(Protocol):
    """What ``crossflow.train.train`` reads: (source, target) pairs, batched by the step's generator."""

    def __len__(self) -> int:
        ...

    def to_device(self, device) -> "PairData":
        ...

    def batch(self, generator: torch.Generator, batch_size: int, part: slice = slice(None)) -> dict:
        ...


def cache_path(kind: str, key) -> Path:
    """Where the cache entry of ``key`` (anything :func:`crossflow.utils.stable_hash` takes) lives."""
    return Path(cache_dir(kind)) / f"{stable_hash(key)}.safetensors"


def cached_tensors(kind: str, key, build: Callable[[], dict[str, torch.Tensor]], what: str,
                   metadata: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The named tensors of ``key``: loaded from the cache, or ``build()`` once and saved (atomic, checksummed).

    ``build`` must return exactly what is stored (e.g. already rounded to fp16), so that a cache hit and a miss
    give the same values. Two processes asking at once: one builds, the other waits and reads."""
    path = cache_path(kind, key)
    with file_lock(path):
        tensors = load_cache(path, load_file, what)                       # None: missing or damaged
        if tensors is None:
            tensors = build()
            with checked_write(path) as tmp:
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return tensors
