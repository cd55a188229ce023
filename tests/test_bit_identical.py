"""Refactors keep CPU results bit-identical: smoke-run fingerprints against a golden file.

``tests/golden/cpu_fingerprints-<CPU vendor>.json`` holds them per CPU kind: the Intel file was written by the code
of commit a264284 (the one that made the Intel-made ``results/``), before the device work of issue 11; the AMD file
by the code that made the AMD-made ones (2026-11-27; ``commit`` in the file). Each entry is the sha256 of the
exact bytes of something a run produces on the CPU: the image latents, the trained weights (raw and EMA) of
CrossFlow and of the noise + cross-attention baseline, their sampled images, text latents and a Table 10 text
autoencoder. If a change moves any of them by one bit, this test fails and says which.

Floating-point results depend on the torch build, the CPU kind and the data, so the golden file is keyed by the
torch version, the CPU vendor (an AMD machine gives other bits than an Intel one; measured 2026-11-27) and a hash
of the Fashion-MNIST files in use; where no file matches, the test is skipped with the reason (write one there with
``python -m tests.test_bit_identical --write`` from a commit whose results you trust).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN_DIR = Path(__file__).parent / "golden"
pytestmark = pytest.mark.slow


def _sha(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    return h.hexdigest()[:16]


def _sha_state(module) -> str:
    sd = module.state_dict()
    return _sha(*[sd[k] for k in sorted(sd)])


def data_key() -> str:
    """Hash of the Fashion-MNIST files the data loader finds (real or the tests' synthetic stand-in)."""
    from crossflow.data import find_fashion_mnist
    root = find_fashion_mnist(download=False)
    h = hashlib.sha256()
    for f in sorted(root.iterdir()):
        if "ubyte" in f.name:
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def fingerprints(tmp: Path) -> dict[str, str]:
    """Everything a smoke text-to-image run makes on the CPU, as short sha256s."""
    from crossflow.compression import COMPRESSION_PRESETS, train_text_autoencoder
    from crossflow.config import get_config
    from crossflow.features import prepare_features
    from crossflow.latent_ops import text_latents
    from crossflow.pipeline import text_to_image
    from crossflow.train import train

    cfg = get_config("smoke")
    feats = prepare_features(cfg, progress=False)
    out = {"z1": _sha(feats.z1), "text_x": _sha(feats.x)}
    prompts = ["a red sandal", "two blue bags and a green trouser"]
    res = train(cfg, feats, tmp / "crossflow", progress=False)
    out["crossflow_raw"] = _sha_state(res.raw_model)
    out["crossflow_ema"] = _sha_state(res.model)
    out["crossflow_images"] = _sha(text_to_image(res.model, cfg, prompts, steps=3, scale=2.0, seed=3))
    out["crossflow_z0"] = _sha(text_latents(res.model, cfg, prompts, seed=5))
    base_cfg = cfg.replace({"objective.source": "noise", "flow.cross_attention": True, "train.steps": 8})
    base = train(base_cfg, feats, tmp / "baseline", progress=False)
    out["baseline_ema"] = _sha_state(base.model)
    out["baseline_images"] = _sha(text_to_image(base.model, base_cfg, prompts, steps=3, scale=2.0, seed=3))
    enc, dec, _ = train_text_autoencoder(cfg, feats.x[:64], feats.mask[:64], "variational",
                                         COMPRESSION_PRESETS["smoke"], progress=False)
    out["text_autoencoder"] = _sha_state(enc) + _sha_state(dec)
    return out


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ... (the driver's reader of /proc/cpuinfo)."""
    from reproduce.run import cpu_model
    return cpu_model("vendor_id")


def golden_path(vendor: str) -> Path:
    return GOLDEN_DIR / f"cpu_fingerprints-{vendor}.json"


def test_cpu_results_are_bit_identical_to_the_golden_run(tmp_path, monkeypatch):
    # a cache of its own: an autoencoder cached by another test, trained with another thread count, holds other
    # bits (oneDNN convolutions sum in a thread-dependent order), and the golden run trained its own
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / "cache"))
    here = {"torch": torch.__version__, "cpu_vendor": cpu_vendor(), "data": data_key()}
    path = golden_path(here["cpu_vendor"])
    if not path.exists():
        pytest.skip(f"no golden fingerprints for CPU vendor {here['cpu_vendor']} (tests/golden/: "
                    f"{', '.join(sorted(p.name for p in GOLDEN_DIR.glob('*.json')))})")
    golden = json.loads(path.read_text())
    made = {k: golden.get(k) for k in here}
    if made != here:
        pytest.skip(f"golden fingerprints were made with {made}, this machine has {here}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                     # the golden run used one thread
    try:
        got = fingerprints(tmp_path)
    finally:
        torch.set_num_threads(threads)
    moved = {k: (golden["fingerprints"].get(k), v) for k, v in got.items() if golden["fingerprints"].get(k) != v}
    assert not moved, f"CPU results changed (golden, now): {moved}"


if __name__ == "__main__":          # python -m tests.test_bit_identical --write
    import os
    import subprocess
    import tempfile
    os.environ.setdefault("CROSSFLOW_CACHE", tempfile.mkdtemp(prefix="crossflow-golden-"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        fp = fingerprints(Path(d))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    body = {"torch": torch.__version__, "cpu_vendor": cpu_vendor(), "data": data_key(), "commit": commit,
            "fingerprints": fp}
    print(json.dumps(body, indent=2))
    if "--write" in sys.argv:
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden_path(body["cpu_vendor"]).write_text(json.dumps(body, indent=2) + "\n")
