"""Train-once cache for evaluator networks: weights + the spec that made them, checksummed like every cache.

    <cache>/evaluators/<kind>-<hash(spec)>.pt          state_dict (crossflow.integrity.checked_write)
    <cache>/evaluators/<kind>-<hash(spec)>.pt.sha256   its sha256
    <cache>/evaluators/<kind>-<hash(spec)>.json        {"spec", "sha256", "info"} (written last: marks it complete)

A network is rebuilt when its files are missing or unreadable, when the stored spec differs from the requested
one (a hash collision or a hand-edited file) or when the weights' checksum does not match (a truncated or
corrupted file). A rebuild gives the same weights: torch is seeded with the spec's seed before the network is
built (its initial weights) and again by the training function. Why a spec rather than only a hash: the JSON
beside the weights says exactly what was trained, for readers.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from ..device import resolve_device
from ..integrity import checked_write, load_cache, remove, stored_checksum, verify, write_checksum
from ..utils import cache_dir, file_lock, file_sha256, record_provenance, stable_hash, write_json


def _normalise(spec: dict) -> dict:
    """JSON round trip, so tuples and lists compare equal to what was stored."""
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def cache_paths(kind: str, spec: dict) -> tuple[Path, Path]:
    key = stable_hash({"kind": kind, "spec": _normalise(spec)})
    folder = cache_dir("evaluators")
    return folder / f"{kind}-{key}.pt", folder / f"{kind}-{key}.json"


def _meta(meta_path: Path) -> dict | None:
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError):                         # missing, truncated or not JSON
        return None


def stale_reason(kind: str, spec: dict) -> str | None:
    """Why the cached network can't be used (None = it can)."""
    weights, meta_path = cache_paths(kind, spec)
    if not (weights.exists() and meta_path.exists()):
        return "not built yet"
    meta = _meta(meta_path)
    if meta is None:
        return "unreadable metadata (truncated or not JSON)"
    if meta.get("spec") != _normalise(spec):
        return "stored spec differs from the requested config"
    reason = verify(weights)
    if reason == "no checksum" and meta.get("sha256") == file_sha256(weights):
        write_checksum(weights)                           # a cache from before sidecars: its JSON vouches for it
        reason = None
    if reason is not None:
        return f"weights: {reason}"
    return None


def load_or_train(kind: str, spec: dict, build: Callable[[], torch.nn.Module],
                  fit: Callable[[torch.nn.Module], dict], verbose: bool = True,
                  device=None, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Return (network in eval mode on ``device``, info). ``fit(net)`` trains in place (on ``device``) and returns
    a JSON-able info dict. The weights are stored from the CPU, so a cache is the same whichever device made it.

    ``info["cached"]`` says whether the weights were loaded (True) or trained just now (False); ``info["sha256"]``
    is the weights' checksum (recorded in every metrics.json written by this process).
    """
    weights, meta_path = cache_paths(kind, spec)
    with file_lock(weights, what=f"{kind} evaluator"): # two processes: one trains, the other reads
        reason = stale_reason(kind, spec)
        device = resolve_device(device)
        state = None
        if reason is None:
            state = load_cache(weights, lambda p: torch.load(p, map_location=device, weights_only=True),
                               f"{kind} evaluator weights")
            reason = None if state is not None else "unreadable weights"
        torch.manual_seed(seed)                               # the same spec builds the same initial weights
        net = build().to(device)
        if state is not None:
            net.load_state_dict(state)
            meta = _meta(meta_path)
            record_provenance("evaluators", kind, meta["sha256"])
            return net.eval(), {**meta["info"], "cached": True, "path": str(weights), "sha256": meta["sha256"]}
        if verbose:
            print(f"[evaluators] training {kind} ({reason}) -> {weights.name}", flush=True)
        remove(weights)
        meta_path.unlink(missing_ok=True)
        t0 = time.time()
        info = fit(net)
        info = {**info, "train_seconds": round(time.time() - t0, 1)}
        net.eval()
        # through a file object: torch.save given a path writes that (random, temporary) name into the archive, so the
        # same weights would get another sha256 on every build
        with checked_write(weights) as tmp, open(tmp, "wb") as f:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, f)
        sha = stored_checksum(weights)
        write_json(meta_path, {"kind": kind, "spec": _normalise(spec), "sha256": sha, "info": info})
        record_provenance("evaluators", kind, sha)
        return net, {**info, "cached": False, "path": str(weights), "sha256": sha}
