"""The task interfaces and the registry (crossflow.tasks)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SourceEncoder(Protocol):
    """Source modality -> z0 of the target latent's shape. ``mu`` / ``logvar`` are the Gaussian's parameters of a
    variational encoder (``logvar`` None for a deterministic one: then z0 = mu). The Text VE is one; the bicubic
    upsampler of super-resolution another."""

    def encode(self, src, mask=None, generator=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        ...


@runtime_checkable
class TargetCodec(Protocol):
    """Target modality <-> z1. The image autoencoder is one (latent space), :class:`PixelCodec` another."""

    def encode(self, target) -> torch.Tensor:
        ...

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        ...


class PixelCodec:
    """Identity codec of pixel-space tasks: images in [0, 1] <-> z1 in [-1, 1] (the flow's working range)."""

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        return target * 2 - 1

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        return ((z1 + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    source: str                  # the source modality and its encoder, in words
    target: str                  # the target modality and its codec, in words
    paper: str                   # which of the paper's tables and figures it reproduces
    module: str                  # the module with build_model(cfg, data), model_from_dims(cfg, dims), config_from_dict(d)
                                 # (and training_data(cfg) for crossflow.tasks.runs)
    notebooks: tuple[str, ...]

    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)


TASKS = MappingProxyType({
    "t2i": Task("t2i", "text -> image", "caption tokens of a frozen language model -> Text VE (variational)",
                "image latent of the domain autoencoder (diffusers AutoencoderKL)",
                "Tables 1, 3, 7, 8, 10; Figures 3, 4, 9", "crossflow.tasks.t2i",
                ("notebooks/01_text_to_image.ipynb", "notebooks/13_fig9_guidance.ipynb")),
    "sr": Task("sr", "low resolution -> high resolution (4x)", "bicubic-upsampled low-resolution pixels",
               "high-resolution pixels (PixelCodec)", "Table 6", "crossflow.tasks.sr",
               ("notebooks/12_table6_superresolution.ipynb",)),
    "depth": Task("depth", "image -> depth map", "RGB image -> image VE (variational, trained with RGB "
                  "reconstruction)", "depth map in pixels, min-max normalised per map", "Tables 5 and 9",
                  "crossflow.tasks.depth", ("notebooks/14_table5_depth.ipynb", "notebooks/15_table9_depth_zeroshot.ipynb")),
})


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(TASKS)}")
    return TASKS[name]


def task_of(cfg) -> Task:
    """The task a config belongs to: its ``task`` field; text-to-image's Config has none (it came first)."""
    return get_task(getattr(cfg, "task", "t2i"))
