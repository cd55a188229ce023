"""Papermill driver: execute an artifact's notebook headlessly into results/<artifact>/.

    python -m reproduce.run t2i                      # tiny profile -> results/t2i/
    python -m reproduce.run t2i --profile smoke --out /tmp/x
    python -m reproduce.run t2i --profile gpu        # one GPU -> results/t2i-gpu/
    python -m reproduce.run t2i -p seed 1 --force
    python -m reproduce.run status                   # which results are current, and what changed in the others

Profiles come from crossflow/profiles.py. A CUDA profile (gpu-smoke, gpu, paper) refuses to start where torch
sees no CUDA GPU, unless CROSSFLOW_DEVICE=cpu asks for the CPU explicitly.

Incremental: the hash of everything the artifact depends on (its notebook, the library definitions it uses,
followed name by name through the imports (reproduce/deps.py), pyproject and the parameters) is stored in
results/<artifact>/inputs.json with its parts; if it is unchanged and the outputs exist, nothing is recomputed,
else the driver says which parts changed. Executed notebooks keep their outputs in results/, never in notebooks/.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from crossflow.profiles import PROFILE_NAMES
from crossflow.utils import write_json

ROOT = Path(__file__).resolve().parent.parent

# artifact -> (notebook, what it reproduces)
ARTIFACTS = {
    "t2i": ("notebooks/01_text_to_image.ipynb", "Foundation: tiny CrossFlow text-to-image samples (Figure 1 analogue)"),
    "evaluators": ("notebooks/02_evaluators.ipynb", "Evaluation suite: domain FID, CLIP score, GenEval judge + validation"),
    "table7": ("notebooks/03_table7_geneval.ipynb", "Table 7 (GenEval per task) and Table 2's CrossFlow row (FID, GenEval)"),
    "fig4": ("notebooks/04_fig4_interpolation.ipynb", "Figure 4: text-latent interpolation, with smoothness numbers"),
    "table8": ("notebooks/05_table8_arithmetic.ipynb", "Figures 5/6 and Table 8: latent arithmetic and its success rate"),
    "table10": ("notebooks/06_table10_compression.ipynb", "Table 10: text compression (per-token cosine reconstruction)"),
    "table3": ("notebooks/07_table3_ablations.ipynb", "Table 3: ablations (encoder, VE loss, guidance, LM, training)"),
    "table1": ("notebooks/08_table1_baseline.ipynb", "Table 1: CrossFlow vs flow matching with cross-attention, and cost"),
    "fig3": ("notebooks/09_fig3_scaling.ipynb", "Figure 3: scaling with model size and training steps, both methods"),
    "sampler": ("notebooks/10_sampler.ipynb", "Solvers (Euler, midpoint, Heun) against NFE: fewest steps at Euler-50's quality"),
    "precision": ("notebooks/11_precision.ipynb", "The fast (bf16) training step against the committed fp32 step"),
    "table6": ("notebooks/12_table6_superresolution.ipynb", "Table 6: 4x super-resolution on real photographs"),
    "fig9": ("notebooks/13_fig9_guidance.ipynb", "Figure 9: indicator-0 samples, CFG scales and autoguidance"),
    "table5": ("notebooks/14_table5_depth.ipynb", "Table 5: monocular depth in-domain (synthetic rooms)"),
    "table9": ("notebooks/15_table9_depth_zeroshot.ipynb", "Table 9: zero-shot depth on real images (Marigold's protocol)"),
    "table4": ("notebooks/16_table4_captioning.ipynb", "Table 4: image captioning (CrossFlow, CrossFlow-T2I, autoregressive)"),
    "regime": ("notebooks/17_regime.ipynb", "Regime study: quality per CPU-minute of the main recipe's variants, against targets"),
}


def notebook_code(notebook: Path) -> str:
    """The notebook's code cells as one Python source (IPython magics and shell lines removed)."""
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join(line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()
                     if not line.lstrip().startswith(("%", "!")))


def other_task_modules(notebook: Path) -> frozenset[str]:
    """The modules of the tasks a notebook does not run: every task but those whose ``notebooks`` list it (a
    notebook no task lists is a text-to-image one). The task registry names every task's module in a string;
    these are not the notebook's dependencies."""
    from crossflow.tasks import TASKS
    rel = str(Path(notebook).resolve().relative_to(ROOT))
    mine = {name for name, t in TASKS.items() if rel in t.notebooks} or {"t2i"}
    return frozenset(t.module for name, t in TASKS.items() if name not in mine)


# the profile registry: an artifact depends on its own profile's entry, not on the others (reproduce/deps.py)
PROFILE_REGISTRY = ("crossflow.profiles", "_PROFILES")


def input_parts(notebook: Path, params: dict) -> dict[str, str]:
    """Short hashes of what an artifact depends on, by part: the notebook file, pyproject, the parameters, and
    per library module the top-level definitions the notebook uses (reproduce/deps.py), not whole files."""
    from reproduce.deps import dependencies
    sha = lambda b: hashlib.sha256(b).hexdigest()[:16]          # noqa: E731
    parts = {"notebook": sha(notebook.read_bytes()), "pyproject.toml": sha((ROOT / "pyproject.toml").read_bytes()),
             "params": sha(json.dumps(params, sort_keys=True).encode())}
    by_module: dict[str, list[str]] = {}
    profile = "tiny" if params.get("profile", "tiny") == "custom" else params.get("profile", "tiny")
    for (module, _), source in sorted(dependencies(notebook_code(notebook), unused_modules=other_task_modules(notebook),
                                                   registries={PROFILE_REGISTRY: (profile,)}).items()):
        by_module.setdefault(module, []).append(source)
    for module, sources in sorted(by_module.items()):
        parts[module] = sha("\0".join(sorted(sources)).encode())
    return parts


def parts_hash(parts: dict[str, str]) -> str:
    """The one hash of an artifact's inputs (:func:`input_parts`), stored in its inputs.json. A change elsewhere in
    the library (another artifact's code, an unused function of a module this one imports, a comment) does not
    change it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def changed_parts(old: dict, new: dict) -> list[str]:
    """The parts whose hash differs between two ``input_parts`` (added or removed ones too)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def kernel_name() -> str:
    """The project's kernel if registered (make venv does), else the default python3 kernel."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        return "crossflow" if "crossflow" in KernelSpecManager().find_kernel_specs() else "python3"
    except Exception:
        return "python3"


def notebook_parameters(notebook: Path) -> dict:
    """The values of a notebook's ``parameters`` cell (literals, or arithmetic on literals such as 1 / 3)."""
    nb = json.loads(Path(notebook).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                expr = ast.Expression(node.value)
                out[node.targets[0].id] = eval(compile(expr, "<parameters>", "eval"), {"__builtins__": {}})
    return out


def check_parameters(artifact: str, params: dict) -> None:
    """Refuse a parameter the artifact's notebook does not have (papermill would only warn and run)."""
    known = notebook_parameters(ROOT / ARTIFACTS[artifact][0])
    for name in params:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SystemExit(f"[reproduce] {artifact}: the notebook has no parameter '{name}'{hint} Its parameters: "
                             f"{', '.join(known)}")


def _shown(out_dir: Path) -> str:
    """How results name their own folder: relative to the repository when inside it ("results/table7"), so that
    committed files do not carry the path of the checkout that made them."""
    resolved = Path(out_dir).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(out_dir)


JOB_RECORDS = "jobs"   # the comparison notebooks' run_jobs(records=out / "jobs"): finished jobs' result.json


def _carry_job_records(final: Path, scratch: Path) -> None:
    """Start the scratch folder with the committed job records of the previous results, so that run_jobs
    restores those jobs instead of training them again (a fresh clone resumes a long table where it stopped).
    A record whose job spec has changed is ignored by run_jobs and overwritten. While a run is in progress its
    new records are in ``.<artifact>.new-*/jobs/``; a failed run leaves them in ``.<artifact>.failed/jobs/``."""
    records = final / JOB_RECORDS
    if records.is_dir():
        shutil.copytree(records, scratch / JOB_RECORDS)


def _swap_in(new: Path, final: Path) -> None:
    """Replace folder ``final`` by ``new`` (two renames; the old results are deleted only after the swap). A
    hand-written ``README.md`` of the old results (notes on where and how they ran) is carried over."""
    notes = final / "README.md"
    if notes.exists() and not (new / "README.md").exists():
        shutil.copy2(notes, new / "README.md")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _restore_interrupted(final: Path) -> None:
    """A driver killed between the two renames of _swap_in leaves the old results aside: put them back."""
    if not final.exists():
        for old in sorted(final.parent.glob(f".{final.name}.old-*")):
            os.replace(old, final)
            return


def run(artifact: str, profile: str = "tiny", out: str | None = None, params: dict | None = None,
        force: bool = False) -> Path:
    """Execute the artifact's notebook into a scratch folder beside ``out`` and swap it in only on success: a
    failure leaves the previous results whole (and the failed notebook in ``.<out>.failed/`` to read)."""
    import papermill as pm

    if artifact not in ARTIFACTS:
        raise SystemExit(f"unknown artifact '{artifact}'; known: {', '.join(ARTIFACTS)}")
    check_parameters(artifact, {"profile": profile, "out_dir": "", **(params or {})})
    from crossflow.device import DeviceError, check_profile_device
    try:
        device = check_profile_device(profile)
    except (DeviceError, ValueError) as e:
        raise SystemExit(f"[reproduce] {e}") from None
    nb_rel, what = ARTIFACTS[artifact]
    notebook = ROOT / nb_rel
    out_dir = Path(out) if out else ROOT / "results" / (artifact if profile == "tiny" else f"{artifact}-{profile}")
    _restore_interrupted(out_dir)
    params = {"profile": profile, "out_dir": _shown(out_dir), **(params or {})}
    stamp = out_dir / "inputs.json"
    parts = input_parts(notebook, {k: v for k, v in params.items() if k != "out_dir"})
    digest = parts_hash(parts)
    old_stamp = json.loads(stamp.read_text()) if stamp.exists() else {}
    if not force and old_stamp.get("hash") == digest and (out_dir / "metrics.json").exists():
        print(f"[reproduce] {artifact}: inputs unchanged ({digest}); results in {out_dir} are current. "
              f"Use --force to recompute.")
        return out_dir
    if old_stamp.get("parts"):
        print(f"[reproduce] {artifact}: changed since the last run: {', '.join(changed_parts(old_stamp['parts'], parts))}")
    print(f"[reproduce] {artifact} ({what}) profile={profile} device={device} -> {out_dir}", flush=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    from reproduce.weights import seed_cache
    seed_cache()                                          # the shipped autoencoder and evaluators, where not cached
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    _carry_job_records(out_dir, scratch)
    failed = out_dir.with_name(f".{out_dir.name}.failed")
    t0 = time.time()
    # the 1-minute load average before the run starts: what else was running (README's idle / under load columns)
    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    executed = scratch / Path(nb_rel).name
    tqdm_before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"                      # the kernel inherits it: no progress-bar lines in results/
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters={**params, "out_dir": str(scratch)},
                            kernel_name=kernel_name(), cwd=str(ROOT), progress_bar=sys.stderr.isatty(),
                            log_output=True)
    except BaseException as e:
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(scratch, failed)
        where = (f"cell {e.cell_index} ({e.ename}: {e.evalue})" if isinstance(e, pm.PapermillExecutionError)
                 else f"{type(e).__name__}: {e}")
        raise SystemExit(f"[reproduce] {artifact} FAILED in {where}. The results in {out_dir} are unchanged; the "
                         f"failed run is in {failed}/") from e
    finally:
        if tqdm_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_before
    wall = time.time() - t0
    # what the notebook wrote names its output folder (paths in metrics.json, the injected parameters): the
    # final one, not the scratch folder; and other paths in the checkout relative to it (papermill's input_path)
    for f in scratch.iterdir():
        if f.suffix in (".ipynb", ".json", ".md", ".csv", ".txt"):
            text = f.read_text()
            new = text.replace(str(scratch), _shown(out_dir)).replace(f"{ROOT}/", "")
            if new != text:
                f.write_text(new)
    # keep earlier executions' wall times: a re-run that reuses finished training runs takes seconds, and the
    # measurement of the full run must stay on record
    old = json.loads(stamp.read_text()) if stamp.exists() else {}
    history = old.get("history") or ([{k: old[k] for k in ("hash", "wall_seconds") if k in old}] if old else [])
    history.append({"hash": digest, "wall_seconds": round(wall, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "load_at_start": load_at_start, "cpus": os.cpu_count(), "cpu": cpu_model()})
    write_json(scratch / "inputs.json", {"hash": digest, "params": params, "wall_seconds": round(wall, 1),
                                         "notebook": nb_rel, "parts": parts, "history": history[-20:]})
    os.chmod(scratch, 0o755)                              # mkdtemp makes it 0700
    _swap_in(scratch, out_dir)
    shutil.rmtree(failed, ignore_errors=True)
    print(f"[reproduce] {artifact} done in {wall / 60:.1f} min", flush=True)
    return out_dir


def cpu_model(field: str = "model name") -> str:
    """The CPU's model name, or another /proc/cpuinfo ``field`` (e.g. "vendor_id"); else what platform knows:
    results of two CPU kinds differ in their last bits (README, Reliability: machine kind), so every execution
    records it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def other_evaluators(folder: Path, shipped: Path | None = None) -> str:
    """A note if the result in ``folder`` was scored by other evaluator networks than the shipped ones
    (``weights/evaluators``; its metrics.json provenance and job records name their sha256). Results made before the
    evaluators were shipped were scored by networks trained on the machine that made them, and another CPU kind
    trains them to other weights: a re-run gives other numbers (within ``make verify``'s spread). Empty if they
    match or nothing is shipped for that kind of network."""
    from reproduce import weights
    used: dict[str, set] = {}
    docs = [json.loads((folder / "metrics.json").read_text()).get("provenance", {}).get("evaluators", {})]
    docs += [json.loads(f.read_text()).get("evaluators_sha256") or {} for f in sorted((folder / JOB_RECORDS).glob("*.json"))]
    for d in docs:
        for kind, sha in d.items():
            if kind in ("judge", "clip") and sha:
                used.setdefault(kind, set()).add(sha)
    ref = weights.shipped_evaluators(Path(shipped or weights.SHIPPED))
    other = {k: v - ref[k] for k, v in used.items() if ref.get(k) and v - ref[k]}
    if not other:
        return ""
    return ("; scored by other evaluators than the shipped ones (" + ", ".join(
        f"{k} {', '.join(sorted(h[:8] for h in v))} vs {', '.join(sorted(h[:8] for h in ref[k]))}"
        for k, v in sorted(other.items())) + "): made before weights/ existed; a re-run gives other numbers")


def status(profile: str = "tiny", results: Path = ROOT / "results") -> list[tuple[str, str]]:
    """(artifact, state) for every artifact: "current", "stale: <changed parts>" or "not produced"; "current" says
    too whether the shipped evaluators scored it (:func:`other_evaluators`)."""
    out = []
    for artifact, (nb_rel, _) in ARTIFACTS.items():
        folder = Path(results) / (artifact if profile == "tiny" else f"{artifact}-{profile}")
        stamp = folder / "inputs.json"
        if not (stamp.exists() and (folder / "metrics.json").exists()):
            out.append((artifact, "not produced"))
            continue
        old = json.loads(stamp.read_text())
        params = {k: v for k, v in old.get("params", {"profile": profile}).items() if k != "out_dir"}
        parts = input_parts(ROOT / nb_rel, params)
        digest = parts_hash(parts)
        if old.get("hash") == digest:
            out.append((artifact, "current" + other_evaluators(folder)))
        elif old.get("parts"):
            out.append((artifact, "stale: " + ", ".join(changed_parts(old["parts"], parts))))
        else:
            out.append((artifact, "stale (written before per-part hashes were recorded)"))
    return out


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", choices=sorted(ARTIFACTS) + ["all", "status"],
                    help="an artifact, all of them, or status: which results are current and what changed")
    ap.add_argument("--profile", default="tiny", choices=PROFILE_NAMES, help="scale profile (crossflow/profiles.py)")
    ap.add_argument("--out", default=None, help="output folder (default results/<artifact>)")
    ap.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="notebook parameter (Python literal)")
    ap.add_argument("--force", action="store_true", help="recompute even if inputs are unchanged")
    a = ap.parse_args(argv)
    params = {k: _value(v) for k, v in a.p}
    if a.artifact == "status":
        for art, state in status(a.profile):
            print(f"{art:<11} {state}")
        return
    for art in (ARTIFACTS if a.artifact == "all" else [a.artifact]):
        run(art, a.profile, a.out, params, a.force)


if __name__ == "__main__":
    main()
