"""Small shared helpers: the cache folder, atomic writes, stable hashes, mean ± sd over seeds."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir(*parts: str) -> Path:
    """Where derived data lives (scenes, embeddings, latents, evaluator weights).

    ``$CROSSFLOW_CACHE`` if set, else ``<repo>/.cache/crossflow``. Nothing is written outside it.
    """
    root = Path(os.environ.get("CROSSFLOW_CACHE", REPO_ROOT / ".cache" / "crossflow"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stable_hash(obj, n: int = 12) -> str:
    """Hash of a JSON-able object (e.g. a config dict), stable across runs and machines."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds.

    A crash mid-write leaves the old file (or nothing) in place, never half a file; a SIGKILL can leave the
    temporary ``.<name>.<random>.tmp`` behind, which :func:`remove_orphans` cleans. The file gets the normal
    permissions of a new file (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class LockedError(RuntimeError):
    """Another process holds the lock; the message names its PID."""


@contextlib.contextmanager
def file_lock(path, blocking: bool = True, what: str = "cache entry", lock=None):
    """An exclusive lock on ``<path>.lock`` (fcntl; released by the OS if the holder dies). ``blocking``: wait
    for the holder (a cache being built: then it is read, not built twice); else raise LockedError with the
    holder's PID (a run folder). The lock file (``lock``, default ``<path>.lock``) keeps the holder's PID."""
    import fcntl
    lock = Path(lock) if lock is not None else Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not blocking:
                raise LockedError(f"{what} {path} is in use by process {holder} (lock {lock}); wait for it to "
                                  f"finish or use another folder") from None
            print(f"[crossflow] waiting for process {holder}, which is building {what} {path}", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)                                      # closing releases the flock


def remove_orphans(folder, names) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left for ``names`` in ``folder`` when a process was
    killed mid-write (call it only while no other process writes there). Returns what was removed."""
    removed = []
    for name in names:
        for orphan in Path(folder).glob(f".{name}.*.tmp"):
            orphan.unlink(missing_ok=True)
            removed.append(orphan)
    return removed


# What this process read to make its numbers: {"checkpoints": {path: sha256}, "evaluators": {name: sha256}}.
# Filled by load_model / train and by the evaluator cache; write_metrics copies it into every metrics.json.
PROVENANCE: dict[str, dict[str, str | None]] = {"checkpoints": {}, "evaluators": {}}


def record_provenance(kind: str, name: str, sha256: str | None) -> None:
    PROVENANCE.setdefault(kind, {})[name] = sha256


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for one value) over seeds."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def format_mean_std(values, fmt: str = "{:.3f}") -> str:
    """"mean ± sd" over seeds (just the mean for one seed)."""
    m, s = mean_std(values)
    return fmt.format(m) + ("" if math.isnan(s) else " ± " + fmt.format(s))
