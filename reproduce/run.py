"""Papermill driver: execute an artifact's notebook headlessly into results/<artifact>/.

    python -m reproduce.run t2i                      # tiny profile -> results/t2i/
    python -m reproduce.run t2i --profile smoke --out /tmp/x
    python -m reproduce.run t2i -p seed 1 --force

Incremental: the hash of everything the artifact depends on (its notebook, the library source, the driver,
pyproject and the parameters) is stored in results/<artifact>/inputs.json; if it is unchanged and the outputs
exist, nothing is recomputed. Executed notebooks keep their outputs in results/, never in notebooks/.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# artifact -> (notebook, what it reproduces)
ARTIFACTS = {
    "t2i": ("notebooks/01_text_to_image.ipynb", "Foundation: tiny CrossFlow text-to-image samples (Figure 1 analogue)"),
}


def inputs_hash(notebook: Path, params: dict) -> str:
    h = hashlib.sha256()
    files = [notebook, ROOT / "pyproject.toml", Path(__file__)] + sorted((ROOT / "crossflow").rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:16]


def kernel_name() -> str:
    """The project's kernel if registered (make venv does), else the default python3 kernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        return "crossflow" if "crossflow" in KernelSpecManager().find_kernel_specs() else "python3"
    except Exception:
        return "python3"


def run(artifact: str, profile: str = "tiny", out: str | None = None, params: dict | None = None,
        force: bool = False) -> Path:
    import papermill as pm

    if artifact not in ARTIFACTS:
        raise SystemExit(f"unknown artifact '{artifact}'; known: {', '.join(ARTIFACTS)}")
    nb_rel, what = ARTIFACTS[artifact]
    notebook = ROOT / nb_rel
    out_dir = Path(out) if out else ROOT / "results" / (artifact if profile == "tiny" else f"{artifact}-{profile}")
    params = {"profile": profile, "out_dir": str(out_dir), **(params or {})}
    stamp = out_dir / "inputs.json"
    digest = inputs_hash(notebook, {k: v for k, v in params.items() if k != "out_dir"})
    if not force and stamp.exists() and json.loads(stamp.read_text()).get("hash") == digest \
            and (out_dir / "metrics.json").exists():
        print(f"[reproduce] {artifact}: inputs unchanged ({digest}); results in {out_dir} are current. "
              f"Use --force to recompute.")
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[reproduce] {artifact} ({what}) profile={profile} -> {out_dir}", flush=True)
    t0 = time.time()
    executed = out_dir / Path(nb_rel).name
    pm.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name=kernel_name(),
                        cwd=str(ROOT), progress_bar=sys.stderr.isatty(), log_output=True)
    wall = time.time() - t0
    stamp.write_text(json.dumps({"hash": digest, "params": params, "wall_seconds": round(wall, 1),
                                 "notebook": nb_rel}, indent=2) + "\n")
    print(f"[reproduce] {artifact} done in {wall / 60:.1f} min", flush=True)
    return out_dir


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", choices=sorted(ARTIFACTS) + ["all"])
    ap.add_argument("--profile", default="tiny", choices=["smoke", "tiny", "paper"])
    ap.add_argument("--out", default=None, help="output folder (default results/<artifact>)")
    ap.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="notebook parameter (Python literal)")
    ap.add_argument("--force", action="store_true", help="recompute even if inputs are unchanged")
    a = ap.parse_args(argv)
    params = {k: _value(v) for k, v in a.p}
    for art in (ARTIFACTS if a.artifact == "all" else [a.artifact]):
        run(art, a.profile, a.out, params, a.force)


if __name__ == "__main__":
    main()
