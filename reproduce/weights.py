"""Networks trained once and shipped with the repository, so that every machine scores alike.

The `tiny` profile's image autoencoder and its evaluator networks (the judge and the small CLIP) are trained where
first needed and cached under ``cache_dir()``. Trained on another CPU kind they come out with other weights (same
seed and code; README, Reliability: machine kind), and the same samples then score differently: FID-domain moved
by 1.7-15.4 between an Intel and an AMD machine on the same ten Figure 3 jobs. ``weights/`` holds one copy, laid
out as the cache is (``weights/<kind>/<entry>`` with its ``.sha256`` sidecar, and an evaluator's ``.json``), made
where ``weights/README.md`` says. :func:`seed_cache` copies each entry the cache lacks into it, checksum first, so
the library loads it instead of training its own; ``make data`` and every ``reproduce.run`` execution call it.

An entry the cache already has is kept, also when it differs (latents and checkpoints on that machine were made
with it); :func:`seed_cache` names it and says how to take the shipped one. A config whose cache key has no shipped
entry (other profiles, a changed recipe) trains as before.

    python -m reproduce.weights             # seed the cache; lists what it copied and what differs

``CROSSFLOW_SHIPPED_WEIGHTS=0`` turns the seeding off (every network is then trained where first needed, as
before; ``make verify ... REBUILD=1`` uses it to check that they are rebuilt alike).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from crossflow.integrity import sidecar, stored_checksum, verify
from crossflow.utils import cache_dir, file_lock

SHIPPED = Path(__file__).resolve().parents[1] / "weights"
ENV_VAR = "CROSSFLOW_SHIPPED_WEIGHTS"                 # "0": do not seed the cache


def entries(shipped: Path = SHIPPED) -> list[Path]:
    """The shipped entries: each file or folder with a checksum sidecar, as ``<kind>/<name>`` paths."""
    return sorted(s.with_name(s.name[: -len(".sha256")]) for s in shipped.glob("*/*.sha256"))


def shipped_evaluators(shipped: Path = SHIPPED) -> dict[str, set[str]]:
    """The shipped evaluator networks' sha256 by kind ({"judge": {...}, "clip": {...}}), from their sidecars."""
    out: dict[str, set[str]] = {}
    for entry in entries(shipped):
        if entry.parent.name == "evaluators":
            out.setdefault(entry.name.split("-")[0], set()).add(stored_checksum(entry))
    return out


def _companions(entry: Path) -> list[Path]:
    """Files that travel with an entry: an evaluator's metadata (``judge-<key>.pt`` -> ``judge-<key>.json``)."""
    meta = entry.with_name(entry.name.split(".")[0] + ".json")
    return [meta] if meta != entry and meta.exists() else []


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or folder to ``dst`` atomically (a scratch copy beside it, then one rename)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.seed-", dir=dst.parent))
    try:
        if src.is_dir():
            shutil.copytree(src, tmp / src.name)
        else:
            shutil.copy2(src, tmp / src.name)
        os.replace(tmp / src.name, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seed_cache(shipped: Path = SHIPPED, verbose: bool = True) -> dict[str, list[str]]:
    """Copy every shipped entry the cache lacks into it. Returns {"copied": [...], "kept": [...], "differs": [...]}
    of ``<kind>/<name>`` entries; a damaged shipped entry raises ``RuntimeError`` (nothing of it is copied)."""
    out: dict[str, list[str]] = {"copied": [], "kept": [], "differs": []}
    if os.environ.get(ENV_VAR) == "0":
        if verbose:
            print(f"[weights] {ENV_VAR}=0: the cache is not seeded; networks missing from it are trained here")
        return out
    for entry in entries(shipped):
        kind, name = entry.parent.name, entry.name
        reason = verify(entry)
        if reason is not None:
            raise RuntimeError(f"shipped weights {entry}: {reason}; restore them with `git checkout -- {entry.parent}`")
        dest = cache_dir(kind) / name
        with file_lock(dest, what=f"{kind} cache entry"):          # a process training this entry finishes first
            if dest.exists():
                same = stored_checksum(dest) == stored_checksum(entry)
                out["kept" if same else "differs"].append(f"{kind}/{name}")
                continue
            for extra in _companions(entry):
                _copy(extra, dest.with_name(extra.name))
            _copy(entry, dest)
            _copy(sidecar(entry), sidecar(dest))                     # last: the entry counts only once it is whole
            out["copied"].append(f"{kind}/{name}")
    if verbose:
        if out["copied"]:
            print(f"[weights] copied into the cache from {shipped.name}/: {', '.join(out['copied'])}")
        if out["differs"]:
            print(f"[weights] this machine's cache has its own {', '.join(out['differs'])}, not the shipped ones: "
                  f"results made here are scored by other evaluators than the committed ones. To use the shipped "
                  f"ones, delete $CROSSFLOW_CACHE (or .cache/crossflow) and run `make data`.")
    return out


if __name__ == "__main__":
    seed_cache()
