"""make verify ARTIFACT=<name>: re-derive a committed result from nothing and compare it.

    python -m reproduce.verify t2i                      # tiny: fresh caches and runs in a scratch folder
    python -m reproduce.verify table7 --keep /tmp/v     # keep the scratch folder (runs, caches, results)

``make reproduce`` on a fresh clone finds the committed results current (their inputs did not change) and
recomputes nothing. This re-runs the artifact's notebook through the driver into a scratch folder, with an empty
cache (scenes and caption embeddings are rebuilt; the autoencoder and evaluators are the shipped ones of
``weights/``, or rebuilt too with ``--rebuild-networks``) and empty run folders (every model is trained again),
then prints each number beside the committed one and the paper's, with the allowed build-to-build spread, and
exits non-zero if a number moved by more than that.

Allowed spread (decided before any re-derivation was run; a rebuild on the same machine type retrains the
autoencoder and the evaluators, and the earlier fresh-clone runs moved FID-domain by 8-9%, README):
- FID-domain: 20% relative;
- GenEval-domain and other success rates in [0, 1]: 0.10 absolute (binomial noise at ~200 images is ~0.03);
- CLIPScore-domain: 0.02 absolute;
- everything else (losses, accuracies, ratios): 25% relative. Wall times and sizes of the machine are not checked.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from reproduce.run import ARTIFACTS, ROOT, notebook_parameters, run
from reproduce.weights import ENV_VAR as SHIPPED_ENV

SPREAD = {"FID-domain": ("rel", 0.20), "GenEval-domain": ("abs", 0.10), "CLIPScore-domain": ("abs", 0.02)}
DEFAULT_SPREAD = ("rel", 0.25)
RATE_SPREAD = ("abs", 0.10)                 # any other number in [0, 1]: a rate or an accuracy


def allowed(metric: str, committed: float) -> float:
    """The largest build-to-build move accepted for ``committed`` (a number of metric ``metric``)."""
    if metric in SPREAD:
        kind, tol = SPREAD[metric]
    else:
        kind, tol = RATE_SPREAD if 0.0 <= committed <= 1.0 else DEFAULT_SPREAD
    return tol if kind == "abs" else tol * abs(committed)


def _checked(key: str) -> bool:
    """Not timings, counts or sizes: they describe the run, not its result."""
    return not (key.startswith("n_") or key.endswith(("_n", "params", "steps")) or key in ("n", "threads")
                or "wall" in key or "seconds" in key)


def _float(x) -> float | None:
    try:
        v = float(x)
        return v if v == v else None
    except (TypeError, ValueError):
        return None


def table_rows(folder: Path) -> dict[tuple, dict]:
    """Rows of the paper-vs-ours CSVs (columns paper / ours / our_metric), keyed by their labels."""
    rows = {}
    for f in sorted(folder.glob("*.csv")):
        with open(f) as fh:
            for r in csv.DictReader(fh):
                if "ours" in r and "paper" in r:
                    key = (f.stem, r.get("artifact", ""), r.get("quantity", ""), r.get("method", ""),
                           r.get("paper_metric", ""))
                    rows.setdefault(key, r)
    return rows


def metric_leaves(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics dict ("a.b.c" -> value), without timings and sizes."""
    out = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(metric_leaves(v, f"{name}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and _checked(k):
            out[name] = float(v)
    return out


def compare(committed: Path, derived: Path) -> list[dict]:
    """One row per number: the paper's, the committed, the re-derived, the difference, the allowed spread."""
    out = []
    a, b = table_rows(committed), table_rows(derived)
    for key, r in a.items():
        c, d = _float(r["ours"]), _float(b.get(key, {}).get("ours"))
        if c is None:
            continue
        metric = r.get("our_metric", "")
        tol = allowed(metric, c)
        out.append({"what": " / ".join(k for k in key[1:4] if k), "metric": metric, "paper": r.get("paper", ""),
                    "committed": c, "derived": d, "allowed": tol,
                    "ok": d is not None and abs(d - c) <= tol})
    if not out:                                          # no paper-vs-ours table: the metrics themselves
        ma = metric_leaves(json.loads((committed / "metrics.json").read_text())["metrics"])
        mb = metric_leaves(json.loads((derived / "metrics.json").read_text())["metrics"])
        for name, c in ma.items():
            d = mb.get(name)
            tol = allowed("", c)
            out.append({"what": name, "metric": "", "paper": "", "committed": c, "derived": d, "allowed": tol,
                        "ok": d is not None and abs(d - c) <= tol})
    return out


def report(artifact: str, rows: list[dict]) -> str:
    lines = [f"{'number':<48} {'metric':<17} {'paper':>8} {'committed':>11} {'re-derived':>11} {'allowed':>9}  ok"]
    for r in rows:
        d = "missing" if r["derived"] is None else f"{r['derived']:.4g}"
        lines.append(f"{r['what'][:48]:<48} {r['metric'][:17]:<17} {str(r['paper'])[:8]:>8} {r['committed']:>11.4g} "
                     f"{d:>11} {'±' + format(r['allowed'], '.3g'):>9}  {'yes' if r['ok'] else 'NO'}")
    bad = sum(not r["ok"] for r in rows)
    lines.append(f"[verify] {artifact}: {len(rows) - bad} of {len(rows)} numbers within the allowed spread"
                 + ("" if not bad else f"; {bad} moved more (see NO)"))
    return "\n".join(lines)


def write_report(artifact: str, profile: str, rows: list[dict], text: str) -> None:
    """results/verify/<artifact>[-<profile>].{json,txt}: what the last re-derivation gave, with its provenance."""
    from crossflow.results import environment_info
    from crossflow.utils import atomic_path, write_json
    name = artifact if profile == "tiny" else f"{artifact}-{profile}"
    folder = ROOT / "results" / "verify"
    write_json(folder / f"{name}.json", {"artifact": artifact, "profile": profile, "rows": rows,
                                         "passed": all(r["ok"] for r in rows), "environment": environment_info()})
    env = environment_info()
    networks = ("autoencoder and evaluators rebuilt" if os.environ.get(SHIPPED_ENV) == "0" else
                "the shipped autoencoder and evaluators")
    with atomic_path(folder / f"{name}.txt") as tmp:
        tmp.write_text(f"make verify ARTIFACT={artifact} PROFILE={profile}: re-derived from an empty cache "
                       f"({networks}) on "
                       f"{env['time']} (code {env['code_version']}, {env['platform']})\n\n{text}\n")


def verify(artifact: str, profile: str = "tiny", keep: str | None = None, committed: str | None = None,
           rebuild_networks: bool = False) -> int:
    committed_dir = Path(committed) if committed else ROOT / "results" / (
        artifact if profile == "tiny" else f"{artifact}-{profile}")
    if not (committed_dir / "metrics.json").exists():
        raise SystemExit(f"[verify] no committed result in {committed_dir}; run make reproduce-{artifact} first")
    scratch = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=f"crossflow-verify-{artifact}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    old_cache = os.environ.get("CROSSFLOW_CACHE")
    os.environ["CROSSFLOW_CACHE"] = str(scratch / "cache")      # nothing reused but the shipped networks
    old_shipped = os.environ.get(SHIPPED_ENV)
    if rebuild_networks:
        os.environ[SHIPPED_ENV] = "0"                             # the autoencoder and evaluators trained here too
    known = notebook_parameters(ROOT / ARTIFACTS[artifact][0])
    params = {k: str(scratch / "runs" / k) for k in ("run_dir", "runs_dir") if k in known}
    print(f"[verify] {artifact} ({profile}): re-deriving into {scratch} with an empty cache", flush=True)
    try:
        out = run(artifact, profile=profile, out=str(scratch / "results" / artifact), params=params, force=True)
        rows = compare(committed_dir, out)
        text = report(artifact, rows)
        print(text)
        if committed is None:                             # a check of the committed results: keep its report
            write_report(artifact, profile, rows, text)
        return 0 if all(r["ok"] for r in rows) else 1
    finally:                                              # leave this process's environment as it was
        for var, value in (("CROSSFLOW_CACHE", old_cache), (SHIPPED_ENV, old_shipped)):
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    from crossflow.profiles import PROFILE_NAMES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", choices=sorted(ARTIFACTS))
    ap.add_argument("--profile", default="tiny", choices=PROFILE_NAMES)
    ap.add_argument("--keep", default=None, help="scratch folder to keep (default: a temporary one, deleted)")
    ap.add_argument("--committed", default=None, help="the results folder to compare with (default: results/)")
    ap.add_argument("--rebuild-networks", action="store_true",
                    help="train the autoencoder and evaluators here too instead of using the shipped ones (weights/)")
    a = ap.parse_args(argv)
    return verify(a.artifact, a.profile, a.keep, a.committed, a.rebuild_networks)


if __name__ == "__main__":
    sys.exit(main())
