"""Issue 12: nothing half-written, nothing silently wrong. Each test reproduces a failure a user met."""
from __future__ import annotations

import warnings

import pytest
import torch

from crossflow.config import get_config


@pytest.fixture(scope="module")
def smoke_model(smoke_cfg, smoke_features):
    from crossflow.models import CrossFlow
    torch.manual_seed(0)
    return CrossFlow(smoke_cfg, smoke_features.x.shape[-1], smoke_features.x.shape[1]).eval()


# ----------------------------------------------------------------------------------------------------------
# (6) prompts
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [("a red bag", "got one string"), ([], "non-empty list"),
                                         (None, "non-empty list"), (["a", None], "prompt 1 is NoneType")])
def test_bad_prompts_are_refused_clearly(smoke_cfg, smoke_model, bad, message):
    from crossflow.pipeline import text_to_image
    with pytest.raises(ValueError, match=message):
        text_to_image(smoke_model, smoke_cfg, bad, steps=1)


def test_truncated_prompts_are_counted_in_one_warning(smoke_cfg, smoke_model):
    from crossflow.pipeline import text_to_image
    long = "a red bag " * 20                                       # ~60 tokens > max_length 24
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = text_to_image(smoke_model, smoke_cfg, [long, "a red bag", long], steps=1)
    cut = [w for w in caught if "longer than text.max_length" in str(w.message)]
    assert len(images) == 3 and len(cut) == 1 and str(cut[0].message).startswith("2 of 3 prompts")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # short prompts: no warning at all
        text_to_image(smoke_model, smoke_cfg, ["a red bag"], steps=1)


# ----------------------------------------------------------------------------------------------------------
# (8) smaller faults
# ----------------------------------------------------------------------------------------------------------

def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    from crossflow.utils import atomic_path, write_json
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"1")
    finally:
        os.umask(old)
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "b.bin").stat().st_mode & 0o777) == oct(0o644)


def test_orphan_temporary_checkpoints_are_removed_at_the_next_start(smoke_cfg, smoke_features, tmp_path):
    from crossflow.train import train
    tmp_path.mkdir(exist_ok=True)
    orphan = tmp_path / ".checkpoint.pt.abc123.tmp"                # what a SIGKILL mid-save leaves
    orphan.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    train(smoke_cfg.replace({"train.steps": 2}), smoke_features, tmp_path, progress=False)
    assert not orphan.exists() and keep.exists()


def test_nan_message_does_not_claim_a_checkpoint(smoke_cfg, smoke_features, tmp_path):
    from dataclasses import replace
    from crossflow.train import NonFiniteLossError, train
    bad = replace(smoke_features, z1=torch.full_like(smoke_features.z1, float("nan")))
    with pytest.raises(NonFiniteLossError, match="no checkpoint had been written yet"):
        train(smoke_cfg, bad, tmp_path, progress=False)


# ----------------------------------------------------------------------------------------------------------
# (1, 2) the driver: atomic results, unknown parameters refused
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_failing_notebook_leaves_the_previous_results_whole(tmp_path):
    """Issue 12 (1): a late-cell failure used to leave seed-1 figures beside a seed-0 metrics.json, and the next
    run called them current. Now the run goes to a scratch folder and is swapped in only on success."""
    pytest.importorskip("papermill", reason="runs a notebook")
    import json
    from reproduce.run import run
    out = tmp_path / "fig4"
    params = {"run_dir": str(tmp_path / "run")}
    run("fig4", profile="smoke", out=str(out), params=params)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert str(tmp_path / ".fig4.new") not in (out / "metrics.json").read_text()     # final paths recorded
    stamp = json.loads((out / "inputs.json").read_text())
    assert stamp["params"]["out_dir"] == str(out) and stamp["history"][-1]["cpu"]     # the machine kind recorded
    with pytest.raises(SystemExit, match=r"fig4 FAILED in cell \d+ .*unchanged"):
        run("fig4", profile="smoke", out=str(out), params={**params, "n_between": "abc"}, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (tmp_path / ".fig4.failed").is_dir()
    assert not list(tmp_path.glob(".fig4.new-*")) and not list(tmp_path.glob(".fig4.old-*"))
    # and a plain re-run still knows the results are current (nothing was touched)
    run("fig4", profile="smoke", out=str(out), params=params)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unknown_notebook_parameters_are_refused(tmp_path):
    pytest.importorskip("papermill", reason="reads a notebook's parameters")
    from reproduce.run import run
    with pytest.raises(SystemExit, match="no parameter 'n_promts'; did you mean 'n_prompts'.*Its parameters: profile"):
        run("t2i", profile="smoke", out=str(tmp_path / "x"), params={"n_promts": 5})
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------------------
# (3) checksums: caches rebuilt, checkpoints refused
# ----------------------------------------------------------------------------------------------------------

def _overwrite_middle(path, n=64):
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + n] = bytes(255 - b for b in raw[mid:mid + n])
    path.write_bytes(bytes(raw))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_overwrite_middle, _truncate], ids=["overwritten", "truncated"])
@pytest.mark.cpu
def test_damaged_caches_are_rebuilt_to_the_same_values(tmp_path, monkeypatch, damage):
    from crossflow.features import prepare_features
    from crossflow.utils import cache_dir
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / "cache"))
    cfg = get_config("smoke")
    first = prepare_features(cfg, progress=False)
    files = {"latents": next(cache_dir("latents").glob("*.safetensors")),
             "text": next(cache_dir("text").glob("*.safetensors")),
             "autoencoder": next(cache_dir("autoencoder").glob("*/diffusion_pytorch_model.safetensors")),
             "scenes": next(cache_dir("scenes").glob("train-*.npz"))}
    for f in files.values():
        damage(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = prepare_features(cfg, progress=False)
    said = " ".join(str(w.message) for w in caught)
    for what in ("image latents", "caption embeddings", "autoencoder", "scenes"):
        assert f"cached {what}" in said and "rebuilding" in said, what
    assert torch.equal(first.z1, again.z1) and torch.equal(first.x, again.x)
    from crossflow.integrity import verify
    assert all(verify(f) is None for k, f in files.items() if k != "autoencoder")   # rebuilt, fresh checksums
    assert verify(files["autoencoder"].parent) is None                                 # a folder's checksum


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_overwrite_middle, _truncate], ids=["overwritten", "truncated"])
def test_damaged_checkpoint_is_refused_with_its_path(smoke_cfg, smoke_features, tmp_path, damage):
    from crossflow.integrity import IntegrityError
    from crossflow.train import CKPT, load_model, train
    cfg = smoke_cfg.replace({"train.steps": 4})
    train(cfg, smoke_features, tmp_path, progress=False)
    damage(tmp_path / CKPT)
    with pytest.raises(IntegrityError, match=f"checkpoint {tmp_path / CKPT}: .*not rebuilt silently"):
        train(cfg.replace({"train.steps": 8}), smoke_features, tmp_path, progress=False)
    with pytest.raises(IntegrityError, match="checkpoint"):
        load_model(tmp_path)


def test_a_kill_between_data_and_checksum_is_completed_not_refused(tmp_path):
    """checked_write renames the data, then its checksum; a kill in between leaves a pending checksum."""
    import os
    from crossflow.integrity import checked_write, sidecar, verify
    target = tmp_path / "checkpoint.pt"
    with checked_write(target) as tmp:
        tmp.write_bytes(b"old")
    with checked_write(target) as tmp:
        tmp.write_bytes(b"new")
    old_sidecar = sidecar(target).read_text()
    (tmp_path / ".checkpoint.pt.sha256.x1.tmp").write_text(old_sidecar)   # the new checksum, still pending
    with checked_write(tmp_path / "other") as tmp:
        tmp.write_bytes(b"old")
    sidecar(target).write_text(sidecar(tmp_path / "other").read_text())   # the stale one in place
    assert verify(target) is None and sidecar(target).read_text() == old_sidecar
    assert not list(tmp_path.glob(".checkpoint.pt.sha256.*.tmp"))
    assert os.stat(target).st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------------------
# (4) evaluators: the same spec gives the same weights; metrics.json records what was used
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.cpu
def test_rebuilt_evaluators_are_identical_and_recorded(smoke_cfg, tmp_path, monkeypatch):
    import json
    from crossflow.evaluate import get_eval_config, load_evaluators
    from crossflow.results import write_metrics
    ecfg = get_eval_config("smoke", {"judge_steps": 20, "clip_steps": 20, "judge_val_prompts": 12})
    shas = []
    for build in range(2):
        monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / f"cache{build}"))
        ev = load_evaluators(smoke_cfg, ecfg, progress=False)
        assert not ev.judge_info["cached"]
        shas.append((ev.judge_info["sha256"], ev.clip_info["sha256"]))
    assert shas[0] == shas[1], "two builds from one spec gave different weights"
    # a truncated metadata file is rebuilt, not a crash
    meta = next((tmp_path / "cache1" / "evaluators").glob("judge-*.json"))
    meta.write_text(meta.read_text()[:40])
    assert load_evaluators(smoke_cfg, ecfg, progress=False).judge_info["sha256"] == shas[0][0]
    body = json.loads(write_metrics(tmp_path / "out", {"x": 1}, smoke_cfg).read_text())
    assert body["provenance"]["evaluators"]["judge"] == shas[0][0]


# ----------------------------------------------------------------------------------------------------------
# (7) concurrency: one run per folder, caches built once
# ----------------------------------------------------------------------------------------------------------

PREPARE = """
import sys, torch
from crossflow.config import get_config
from crossflow.features import prepare_features
f = prepare_features(get_config("smoke"), progress=False)
torch.save(f.z1, sys.argv[1])
"""


@pytest.mark.slow
def test_two_processes_building_one_cache_do_not_collide(tmp_path):
    """Two prepare_features on a fresh cache used to crash 1 time in 3 (a fixed temporary folder name)."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "CROSSFLOW_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE, str(tmp_path / f"z{i}.pt")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
    assert torch.equal(torch.load(tmp_path / "z0.pt"), torch.load(tmp_path / "z1.pt"))
    assert len(list((tmp_path / "cache" / "autoencoder").glob("*/config.json"))) == 1


def test_a_second_run_in_the_same_folder_is_refused_with_the_holders_pid(smoke_cfg, smoke_features, tmp_path):
    import os
    import subprocess
    import sys
    import time
    from crossflow.train import train
    from crossflow.utils import LockedError
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from crossflow.utils import file_lock\n"
                               "with file_lock(sys.argv[1], blocking=False, what='run folder', lock=sys.argv[2]):\n"
                               "    print('locked', flush=True); time.sleep(60)\n",
                               str(tmp_path), str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"run folder {tmp_path} is in use by process {holder.pid}"):
            train(smoke_cfg.replace({"train.steps": 2}), smoke_features, tmp_path, progress=False)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    train(smoke_cfg.replace({"train.steps": 2}), smoke_features, tmp_path, progress=False)   # free again
    assert os.path.exists(tmp_path / "checkpoint.pt")


# ----------------------------------------------------------------------------------------------------------
# (9) make verify: re-derive and compare
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_verify_rederives_an_artifact_and_flags_a_moved_number(tmp_path, capsys):
    pytest.importorskip("papermill", reason="runs a notebook")
    import csv
    import os
    from reproduce.run import run
    from reproduce.verify import verify
    committed = tmp_path / "committed" / "table8"
    run("table8", profile="smoke", out=str(committed), params={"run_dir": str(tmp_path / "run")})
    assert verify("table8", "smoke", keep=str(tmp_path / "v1"), committed=str(committed)) == 0
    out = capsys.readouterr().out
    assert "numbers within the allowed spread" in out and "NO" not in out.split("[verify]")[-1]
    assert (tmp_path / "v1" / "cache").is_dir()                   # rebuilt from an empty cache
    # a committed number that no re-derivation can give is flagged
    table = next(committed.glob("*.csv"))
    rows = list(csv.DictReader(open(table)))
    rows[0]["ours"] = str(float(rows[0]["ours"]) + 0.5)
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader(), w.writerows(rows)
    before = os.environ.get("CROSSFLOW_CACHE")
    assert verify("table8", "smoke", keep=str(tmp_path / "v2"), committed=str(committed), rebuild_networks=True) == 1
    out = capsys.readouterr().out
    assert "1 moved more" in out and "CROSSFLOW_SHIPPED_WEIGHTS=0" in out
    assert os.environ.get("CROSSFLOW_CACHE") == before, "verify leaked its scratch cache into the environment"
    assert "CROSSFLOW_SHIPPED_WEIGHTS" not in os.environ, "verify leaked REBUILD into the environment"


def test_rewriting_results_does_not_make_the_code_dirty():
    """A run that rewrites results/ used to stamp its own metrics.json "-dirty" (issue 18 (6))."""
    from crossflow.train import code_version
    from reproduce.run import ROOT
    before = code_version()
    probe = ROOT / "results" / "zz-probe-results-change.txt"
    try:
        probe.write_text("a results file the run just wrote\n")
        assert code_version() == before
    finally:
        probe.unlink(missing_ok=True)


def test_results_swap_keeps_hand_written_notes(tmp_path):
    """A re-run replaces an artifact's folder whole, but keeps its README.md (notes on where it ran, e.g. a GPU)."""
    from reproduce.run import _swap_in
    final, new = tmp_path / "table3", tmp_path / ".table3.new"
    final.mkdir()
    new.mkdir()
    (final / "README.md").write_text("trained on one H200")
    (final / "stale.csv").write_text("old")
    (new / "table3.csv").write_text("new")
    _swap_in(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["README.md", "table3.csv"]
    assert (final / "README.md").read_text() == "trained on one H200" and not new.exists()


def test_results_name_their_folder_relative_to_the_repository(tmp_path):
    """Committed metrics.json / notebooks named the checkout that made them (/tmp/wt/results/...)."""
    from reproduce.run import ROOT, _shown
    assert _shown(ROOT / "results" / "table7") == "results/table7"
    assert _shown(tmp_path / "table7") == str(tmp_path / "table7")      # outside the repository: as given
