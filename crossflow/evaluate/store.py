"""Train-once cache for evaluator networks: weights + the spec that made them + a sha256 checksum.

    <cache>/evaluators/<kind>-<hash(spec)>.pt     state_dict (written atomically)
    <cache>/evaluators/<kind>-<hash(spec)>.json   {"spec", "sha256", "info"}

A network is rebuilt when its files are missing, when the stored spec differs from the requested one (a hash
collision or a hand-edited file) or when the weights' checksum does not match (a truncated or corrupted file).
Why a spec rather than only a hash: the JSON beside the weights says exactly what was trained, for readers.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from ..device import resolve_device
from ..utils import atomic_path, cache_dir, file_sha256, stable_hash, write_json


def _normalise(spec: dict) -> dict:
    """JSON round trip, so tuples and lists compare equal to what was stored."""
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def cache_paths(kind: str, spec: dict) -> tuple[Path, Path]:
    key = stable_hash({"kind": kind, "spec": _normalise(spec)})
    folder = cache_dir("evaluators")
    return folder / f"{kind}-{key}.pt", folder / f"{kind}-{key}.json"


def stale_reason(kind: str, spec: dict) -> str | None:
    """Why the cached network can't be used (None = it can)."""
    weights, meta_path = cache_paths(kind, spec)
    if not (weights.exists() and meta_path.exists()):
        return "not built yet"
    meta = json.loads(meta_path.read_text())
    if meta.get("spec") != _normalise(spec):
        return "stored spec differs from the requested config"
    if meta.get("sha256") != file_sha256(weights):
        return "checksum mismatch (corrupted or partial weights file)"
    return None


def load_or_train(kind: str, spec: dict, build: Callable[[], torch.nn.Module],
                  fit: Callable[[torch.nn.Module], dict], verbose: bool = True,
                  device=None) -> tuple[torch.nn.Module, dict]:
    """Return (network in eval mode on ``device``, info). ``fit(net)`` trains in place (on ``device``) and returns
    a JSON-able info dict. The weights are stored from the CPU, so a cache is the same whichever device made it.

    ``info["cached"]`` says whether the weights were loaded (True) or trained just now (False).
    """
    weights, meta_path = cache_paths(kind, spec)
    reason = stale_reason(kind, spec)
    device = resolve_device(device)
    net = build().to(device)
    if reason is None:
        net.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        meta = json.loads(meta_path.read_text())
        return net.eval(), {**meta["info"], "cached": True, "path": str(weights), "sha256": meta["sha256"]}
    if verbose:
        print(f"[evaluators] training {kind} ({reason}) -> {weights.name}", flush=True)
    t0 = time.time()
    info = fit(net)
    info = {**info, "train_seconds": round(time.time() - t0, 1)}
    net.eval()
    with atomic_path(weights) as tmp:
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp)
    sha = file_sha256(weights)
    write_json(meta_path, {"kind": kind, "spec": _normalise(spec), "sha256": sha, "info": info})
    return net, {**info, "cached": False, "path": str(weights), "sha256": sha}
