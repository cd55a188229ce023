"""The shipped autoencoder and evaluators (reproduce/weights.py): seeding the cache, and that they are what the
`tiny` profile loads."""
from __future__ import annotations

import json

import pytest
import torch

from crossflow.integrity import checked_write, stored_checksum, verify
from reproduce import weights


def _ship(root, key: str, value: float):
    """A shipped evaluator entry (weights + sidecar + metadata) and an autoencoder-like folder entry."""
    (root / "evaluators").mkdir(parents=True, exist_ok=True)
    with checked_write(root / "evaluators" / f"judge-{key}.pt") as tmp:
        torch.save({"w": torch.full((3,), value)}, tmp)
    (root / "evaluators" / f"judge-{key}.json").write_text(json.dumps({"kind": "judge", "v": value}))
    with checked_write(root / "autoencoder" / key) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text(json.dumps({"v": value}))


def test_seed_cache_copies_what_is_missing_keeps_the_rest_and_names_differences(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROSSFLOW_CACHE", str(cache))
    shipped = tmp_path / "weights"
    _ship(shipped, "abc", 1.0)
    assert [e.relative_to(shipped).as_posix() for e in weights.entries(shipped)] == \
        ["autoencoder/abc", "evaluators/judge-abc.pt"]

    out = weights.seed_cache(shipped)
    assert out == {"copied": ["autoencoder/abc", "evaluators/judge-abc.pt"], "kept": [], "differs": []}
    for rel in ("autoencoder/abc", "evaluators/judge-abc.pt"):
        assert verify(cache / rel) is None                          # whole, with its checksum
        assert stored_checksum(cache / rel) == stored_checksum(shipped / rel)
    assert json.loads((cache / "evaluators" / "judge-abc.json").read_text())["v"] == 1.0
    assert not list(cache.rglob(".*seed-*"))                          # no scratch copies left behind

    assert weights.seed_cache(shipped)["kept"] == ["autoencoder/abc", "evaluators/judge-abc.pt"]

    other = tmp_path / "other"                                        # this machine trained its own: kept, named
    _ship(other, "abc", 2.0)
    capsys.readouterr()
    out = weights.seed_cache(other)
    assert out["differs"] == ["autoencoder/abc", "evaluators/judge-abc.pt"] and not out["copied"]
    assert "delete $CROSSFLOW_CACHE" in capsys.readouterr().out
    assert torch.load(cache / "evaluators" / "judge-abc.pt")["w"][0] == 1.0


def test_a_damaged_shipped_entry_is_refused_and_not_copied(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROSSFLOW_CACHE", str(cache))
    shipped = tmp_path / "weights"
    _ship(shipped, "abc", 1.0)
    path = shipped / "evaluators" / "judge-abc.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="checksum mismatch.*git checkout"):
        weights.seed_cache(shipped)
    assert not (cache / "evaluators" / "judge-abc.pt").exists()


def test_the_shipped_weights_are_whole_and_are_what_tiny_loads(tmp_path, monkeypatch):
    """If a recipe change moves a cache key, the shipped copy is silently unused and every machine trains its own
    again (scoring differently by CPU kind): re-pack weights/ from a cache built with the new recipe
    (weights/README.md)."""
    from crossflow.config import get_config
    from crossflow.encoders.autoencoder import get_autoencoder
    from crossflow.evaluate import store, suite
    from crossflow.features import data_key

    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / "cache"))
    assert weights.entries(), "weights/ is empty"
    assert all(verify(e) is None for e in weights.entries())
    assert weights.seed_cache(verbose=False)["copied"] == [f"{e.parent.name}/{e.name}" for e in weights.entries()]

    cfg = get_config("tiny")
    vae, scale, info = get_autoencoder(cfg.autoencoder, None, data_key(cfg), seed=cfg.data.seed, progress=False)
    assert info["source"] == "trained" and scale > 0             # loaded: with train_images=None it cannot train

    def load_only(kind, spec, build, fit, **kw):
        assert store.stale_reason(kind, spec) is None, f"no shipped {kind} evaluator for the tiny config"
        return store.load_or_train(kind, spec, build, fit, **kw)
    monkeypatch.setattr(suite, "load_or_train", load_only)
    ev = suite.load_evaluators(cfg, progress=False)
    shipped = weights.shipped_evaluators()
    assert shipped["judge"] == {ev.judge_info["sha256"]} and shipped["clip"] == {ev.clip_info["sha256"]}


def test_seeding_can_be_turned_off(tmp_path, monkeypatch):
    """make verify REBUILD=1 trains every network again: CROSSFLOW_SHIPPED_WEIGHTS=0 leaves the cache alone."""
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(weights.ENV_VAR, "0")
    shipped = tmp_path / "weights"
    _ship(shipped, "abc", 1.0)
    assert weights.seed_cache(shipped) == {"copied": [], "kept": [], "differs": []}
    assert not (tmp_path / "cache" / "evaluators" / "judge-abc.pt").exists()
