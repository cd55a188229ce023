"""Collect every artifact's paper-vs-ours tables into results/REPORT.md (generated; never edit by hand).

    python -m reproduce.summary                      # tiny: results/<artifact>/ -> results/REPORT.md
    python -m reproduce.summary --profile gpu        # results/<artifact>-gpu/ -> results/REPORT-gpu.md

For each artifact of reproduce.run.ARTIFACTS with results: what it reproduces, the profile that made it, the
measured wall time of its last execution, its Markdown tables (written by the notebook from metrics.json) and
its figures.
"""
from __future__ import annotations

import json
from pathlib import Path

from crossflow.profiles import PROFILE_NAMES
from crossflow.utils import atomic_path
from reproduce.report import NOT_TESTABLE
from reproduce.run import ARTIFACTS, ROOT


def result_folder(artifact: str, profile: str = "tiny", results: Path = ROOT / "results") -> Path:
    """Where reproduce.run writes an artifact of a profile (the tiny profile's results are the committed ones)."""
    return results / (artifact if profile == "tiny" else f"{artifact}-{profile}")


def _recorded_verdict(claim: dict, metrics: dict) -> tuple[str, str]:
    """(verdict, evidence) as the artifact recorded them in its metrics.json; "no formal verdict" where it
    recorded numbers and a note only. Nothing is decided here."""
    m = metrics.get("metrics", metrics)
    art = claim["artifact"]
    if art == "table3":
        v = m.get("verdicts", {})
        p = claim["part"]
        found = {k.split("_", 1)[1]: val for k, val in v.items() if k.startswith(f"{p}_")}
        if not found:
            return "no formal verdict", ""
        words = set(found.values())
        overall = ("holds" if words == {"holds"} else "fails" if "fails" in words else
                   NOT_TESTABLE if words == {NOT_TESTABLE} else "inconclusive")
        return overall, ", ".join(f"{k}: {val}" for k, val in sorted(found.items()))
    if art == "fig9":
        v = m.get("verdicts", {}).get(claim["key"], {})
        word = v.get("verdict", "no formal verdict")
        word = "inconclusive (recorded: mixed)" if word == "mixed" else word
        ev = {"indicator0_plausible": lambda: f"item share {v['indicator0']:.3f} vs real {v['real']:.3f}",
              "cfg_beats_ag": lambda: f"best CFG FID-domain {v['best_cfg']['fid']:.1f} / GenEval-domain "
                                      f"{v['best_cfg']['geneval']:.3f}; best AG {v['best_ag']['fid']:.1f} / "
                                      f"{v['best_ag']['geneval']:.3f}"}
        try:
            return word, ev[claim["key"]]()
        except (KeyError, TypeError):
            return word, ""
    if isinstance(m.get("verdict"), dict) and "verdict" in m["verdict"]:       # table5, table6, table7, table9
        word, text = m["verdict"]["verdict"], m["verdict"].get("text", "").split(": ", 1)[-1]
        return word, text.removeprefix(f"{word}: ")
    if art == "fig3" and isinstance(m.get("verdict"), dict):
        return "no formal verdict", f"sizes: {m['verdict'].get('size')}; steps: {m['verdict'].get('steps')}"
    if art == "table1":
        cf, base = m.get("crossflow", [{}])[0].get("test", {}), m.get("baseline", [{}])[0].get("test", {})
        if cf and base:
            return "no formal verdict", (f"FID-domain {cf['fid']:.1f} vs {base['fid']:.1f}, CLIPScore-domain "
                                         f"{cf['clip']:.3f} vs {base['clip']:.3f} (one seed)")
    if art == "table7" and "geneval" in m:
        g = m["geneval"]["overall"] if isinstance(m["geneval"], dict) else m["geneval"]
        return "no formal verdict", (f"GenEval-domain {g:.3f}; FID-domain {m['fid']:.1f} (real-vs-real floor "
                                     f"{m['fid_real_floor']:.1f})")
    return "no formal verdict", "numbers and a note only (see the artifact)"


def scoreboard(results: Path = ROOT / "results", profile: str = "tiny") -> str:
    """The claims table at the top of REPORT.md: every claim of reproduce.paper_numbers.CLAIMS with the verdict its
    artifact recorded, the evidence, the paper's numbers, and whether the artifact's results are current."""
    from reproduce.paper_numbers import CLAIMS
    from reproduce.run import status
    states = dict(status(profile, results))
    rows = ["| # | claim (paper) | paper | verdict here | evidence here | artifact | results |",
            "|---|---|---|---|---|---|---|"]
    counts: dict[str, int] = {}
    for c in CLAIMS:
        folder = result_folder(c["artifact"], profile, results)
        if not (folder / "metrics.json").exists():
            verdict, evidence, link, state = "missing", "not produced yet", c["artifact"], "-"
        else:
            verdict, evidence = _recorded_verdict(c, json.loads((folder / "metrics.json").read_text()))
            link = f"[{c['artifact']}]({folder.name}/)"
            state = states.get(c["artifact"], "-")
            state = ("stale inputs" if state.startswith("stale") else
                     "current, scored by other evaluators" if "other evaluators" in state else state)
        counts[verdict] = counts.get(verdict, 0) + 1
        if profile == "tiny":                            # the same claim tested at another profile, if it was
            for other in PROFILE_NAMES:
                folder_o = result_folder(c["artifact"], other, results)
                if other != "tiny" and (folder_o / "metrics.json").exists():
                    v_o, e_o = _recorded_verdict(c, json.loads((folder_o / "metrics.json").read_text()))
                    evidence += f"; at [{other}]({folder_o.name}/): **{v_o}** ({e_o})"
        rows.append(f"| {c['id']} | {c['claim']} | {c['paper']} | **{verdict}** | {evidence.replace('|', '/')} | "
                    f"{link} | {state} |")
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return ("## Claims scoreboard\n\n"
            f"{len(CLAIMS)} claims: {summary}. Each verdict is the one its artifact recorded by a rule fixed before "
            "it ran (see the artifact's notes); \"no formal verdict\" = the artifact reports numbers and a note "
            "only; \"stale inputs\" = the code the artifact depends on changed since it ran (`make status` says "
            "what; text-to-image results are bit-identical through this version's refactors, a test checks it); "
            "\"current, scored by other evaluators\" = made before the evaluator networks were shipped "
            "(`weights/`), with the judge and CLIP of the machine that made it, so a re-run scores it otherwise. "
            f"These are {profile}-profile answers, not the paper's scale.\n\n" + "\n".join(rows) + "\n")


def regime_targets(results: Path = ROOT / "results", profile: str = "tiny") -> str:
    """One paragraph under the scoreboard: whether the regime study's chosen recipe meets the main model's targets
    (issue 15), from results/regime/metrics.json; empty when the study has not run at this profile."""
    path = result_folder("regime", profile, results) / "metrics.json"
    if not path.exists():
        return ""
    m = json.loads(path.read_text())["metrics"]
    c, t, chosen = m.get("target_check"), m["targets"], m.get("chosen")
    if not c:
        return f"\n**Main-model targets** ([regime]({path.parent.name}/)): nothing trained within the budget.\n"
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return (f"\n**Main-model targets** (issue 15; [regime study]({path.parent.name}/), one seed): the best recipe "
            f"within {t['budget_minutes']:g} training minutes ({chosen['point']}, {chosen['step']} steps, "
            f"{chosen['cpu_minutes']:.0f} CPU-min) has FID-domain {c['fid_ratio']:.2f}x the real-vs-real floor "
            f"(target <= {t['fid_ratio']:g}x: {met(c['fid_met'])}) and GenEval-domain {c['geneval']:.3f} (target >= "
            f"{t['geneval']:g}: {met(c['geneval_met'])}).\n")


def build(results: Path = ROOT / "results", profile: str = "tiny") -> str:
    parts = ["# Paper vs ours: every artifact\n",
             "Generated by `python -m reproduce.summary` from the files in `results/`. Our numbers come from the "
             "profile named beside them (never the paper's setting) and often use different metric networks; "
             "see each table's notes.\n\n", scoreboard(results, profile), regime_targets(results, profile)]
    others = sorted(p.name for p in Path(results).glob("REPORT-*.md"))
    if profile == "tiny" and others:
        parts.append("\nOther profiles' reports (their own scoreboards): " + ", ".join(f"[{o}]({o})" for o in others)
                     + ".\n")
    for artifact, (notebook, what) in ARTIFACTS.items():
        folder = result_folder(artifact, profile, results)
        if not (folder / "metrics.json").exists():
            make = f"make reproduce-{artifact}" + ("" if profile == "tiny" else f" PROFILE={profile}")
            parts.append(f"\n## {artifact}: {what}\n\nNot produced yet (`{make}`).\n")
            continue
        metrics = json.loads((folder / "metrics.json").read_text())
        stamp = json.loads((folder / "inputs.json").read_text()) if (folder / "inputs.json").exists() else {}
        wall = stamp.get("wall_seconds")
        longest = max([h.get("wall_seconds") or 0 for h in stamp.get("history", [])] + [wall or 0])
        timing = (f"; last execution {wall / 60:.1f} min" if wall else "") + \
                 (f" (longest recorded, e.g. a fresh run: {longest / 60:.1f} min)" if wall and longest > 2 * wall else "")
        parts.append(f"\n## {artifact}: {what}\n\nProfile **{metrics.get('profile')}**; notebook `{notebook}`{timing}.\n")
        for md in sorted(folder.glob("*.md")):
            parts.append("\n" + md.read_text().replace("## ", "### ", 1))
        figures = sorted(p.name for p in folder.glob("*.png"))
        if figures:
            parts.append("\nFigures: " + ", ".join(f"[{f}]({folder.name}/{f})" for f in figures) + "\n")
    return "".join(parts)


def main(argv=None):
    import argparse
    from crossflow.profiles import PROFILE_NAMES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", choices=PROFILE_NAMES)
    a = ap.parse_args(argv)
    out = ROOT / "results" / ("REPORT.md" if a.profile == "tiny" else f"REPORT-{a.profile}.md")
    with atomic_path(out) as tmp:
        tmp.write_text(build(profile=a.profile))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
