"""One mechanism for every file the library saves or caches: atomic writes with a sha256 beside them.

    with checked_write(path) as tmp:         # a file or a folder (e.g. a diffusers save_pretrained)
        torch.save(state, tmp)               # -> path, and path.sha256 ("<hex>  <name>", as sha256sum writes)

    value = load_cache(path, load_file, "caption embeddings")   # None: missing, damaged or unreadable -> rebuild
    state = load_checked(path, torch.load, "checkpoint")        # damaged -> IntegrityError naming the file

Caches (scenes, latents, caption embeddings, the autoencoder, evaluator weights) are rebuilt when their checksum
does not match, is missing, or the file cannot be read; the bad copy is deleted with a warning, so a later run
does not fail the same way. Checkpoints are never rebuilt silently: a mismatch or an unreadable checkpoint raises
:class:`IntegrityError` with its path and what to do (a checkpoint written before checksums existed is accepted
with a warning, and its checksum is written then).

Crash safety: the data and its checksum are renamed into place one after the other; a process killed between
the two renames leaves the new file and a pending ``.<name>.sha256.<random>.tmp`` beside it, which
:func:`verify` recognises and completes instead of calling the file damaged.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from .utils import _umask, atomic_path, file_sha256

SUFFIX = ".sha256"


class IntegrityError(RuntimeError):
    """A saved file (a checkpoint) is damaged or unreadable; the message names it and says what to do."""


def sidecar(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def digest(path) -> str:
    """sha256 of a file; of a folder: over its files' relative paths and contents, in sorted order."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode())
    return h.hexdigest()


def _pending(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}{SUFFIX}.*.tmp"))


@contextlib.contextmanager
def checked_write(path):
    """Yield a temporary path beside ``path`` (a file to write, or a folder name to create); on success it
    becomes ``path`` and its sha256 is written to ``path.sha256``. On failure nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.rmdir()                                           # a free name: the writer creates a file or a folder
    try:
        yield tmp
        sha = digest(tmp)
        fd, side_tmp = tempfile.mkstemp(prefix=f".{path.name}{SUFFIX}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(f"{sha}  {path.name}\n")
        mode = 0o666 & ~_umask()                           # the usual permissions, as atomic_path gives
        if tmp.is_dir():
            if path.exists():
                shutil.rmtree(path)
            os.chmod(tmp, mode | 0o111 & ~_umask())
        else:
            os.chmod(tmp, mode)
        os.chmod(side_tmp, mode)
        os.replace(tmp, path)                             # 1. the data
        os.replace(side_tmp, sidecar(path))               # 2. its checksum (a kill in between: see verify)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_checksum(path) -> str:
    """Write ``path.sha256`` for an existing file or folder (e.g. one saved before checksums existed)."""
    sha = digest(path)
    with atomic_path(sidecar(path)) as tmp:
        tmp.write_text(f"{sha}  {Path(path).name}\n")
    return sha


def stored_checksum(path) -> str | None:
    side = sidecar(path)
    try:
        return side.read_text().split()[0]
    except (OSError, IndexError):
        return None


def verify(path) -> str | None:
    """Why ``path`` can't be trusted ("missing", "no checksum", "checksum mismatch ..."), or None if it can."""
    path = Path(path)
    if not path.exists():
        return "missing"
    expected = stored_checksum(path)
    actual = digest(path)
    if expected == actual:
        return None
    for pending in _pending(path):                        # killed between the two renames of checked_write
        try:
            if pending.read_text().split()[:1] == [actual]:
                os.replace(pending, sidecar(path))
                return None
        except FileNotFoundError:                         # another process completed it first
            return verify(path)
    if expected is None:
        return "no checksum"
    return f"checksum mismatch (stored {expected[:12]}, file {actual[:12]}): damaged or partly overwritten"


def remove(path) -> None:
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)


def load_cache(path, load: Callable, what: str):
    """``load(path)`` of a verified cache file; None (after deleting the bad copy, with a warning) if it is
    missing, has a wrong checksum, or cannot be read: the caller rebuilds it. A cache written before checksums
    existed is adopted if it loads (its checksum is written then), so existing caches keep their results."""
    path = Path(path)
    reason = verify(path)
    if reason in (None, "no checksum"):
        try:
            value = load(path)
            if reason == "no checksum":
                write_checksum(path)
            return value
        except Exception as e:                            # truncated safetensors, bad zip, pickle EOF, ...
            reason = f"unreadable ({type(e).__name__}: {e})"
    if reason != "missing":
        warnings.warn(f"cached {what} {path} is not usable ({reason}); deleting and rebuilding it", stacklevel=3)
        remove(path)
    return None


def load_checked(path, load: Callable, what: str = "checkpoint"):
    """``load(path)`` of a saved file that is never rebuilt (a checkpoint): IntegrityError if it is damaged."""
    path = Path(path)
    reason = verify(path)
    advice = (f"It is a {what}, so it is not rebuilt silently: restore it from a copy, or delete {path} (and "
              f"{sidecar(path).name}) to start that run over")
    if reason == "no checksum":
        warnings.warn(f"{what} {path} has no checksum (written before checksums existed); using it and writing one",
                      stacklevel=3)
    elif reason is not None:
        raise IntegrityError(f"{what} {path}: {reason}. {advice}")
    try:
        value = load(path)
    except Exception as e:
        raise IntegrityError(f"{what} {path} cannot be read ({type(e).__name__}: {e}). {advice}") from e
    if reason == "no checksum":
        write_checksum(path)
    return value
