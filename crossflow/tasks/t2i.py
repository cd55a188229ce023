"""Text -> image, the task the library was built around: its pieces live in crossflow.models / encoders /
features; this module is what crossflow.train needs to build and reload its model (the task interface)."""
from __future__ import annotations

from ..config import config_from_dict  # noqa: F401  (the task interface: config_from_dict(d) -> its config)
from ..models import CrossFlow


def model_from_dims(cfg, dims: dict):
    """CrossFlow: the Text VE (the source encoder), the flow network and the towers of its encoder loss."""
    return CrossFlow(cfg, **dims)


def build_model(cfg, features):
    dims = {"text_dim": features.x.shape[-1], "n_tokens": features.x.shape[1]}
    return model_from_dims(cfg, dims), dims
