"""reproduce/deps.py: an artifact is stale when a definition it uses changes, and only then."""
from __future__ import annotations

import textwrap
from pathlib import Path

from reproduce.deps import dependencies

NOTEBOOK = "from pkg.plots import used_plot\nfrom pkg import tasks\nused_plot()\ntasks.run()\n"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))


def _package(root: Path) -> None:
    _write(root, {
        "pkg/__init__.py": '"""doc"""\nfrom .plots import used_plot, other_plot\n',
        "pkg/plots.py": """
            from .util import helper
            SIZE = 3

            def used_plot():
                return helper(SIZE)

            def other_plot():
                return 2
            """,
        "pkg/util.py": """
            def helper(n):
                return n + 1

            def unused(n):
                return n
            """,
        "pkg/tasks.py": """
            import importlib
            REGISTRY = {}

            def register(f):
                REGISTRY[f.__name__] = f
                return f

            @register
            def alpha():
                return 1

            def run():
                return importlib.import_module("pkg.impl").go()
            """,
        "pkg/impl.py": "def go():\n    return 0\n",
    })


def _deps(root: Path) -> dict:
    return dependencies(NOTEBOOK, root=root, packages=("pkg",))


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    f = root / rel
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new))


def test_unused_definitions_and_comments_do_not_count(tmp_path):
    _package(tmp_path)
    before = _deps(tmp_path)
    _edit(tmp_path, "pkg/plots.py", "return 2", "return 3  # another figure")     # a function it does not use
    _edit(tmp_path, "pkg/util.py", "return n\n", "return -n\n")
    _edit(tmp_path, "pkg/util.py", "return n + 1", "return n + 1  # a comment")   # formatting only
    (tmp_path / "pkg" / "plots.py").write_text((tmp_path / "pkg" / "plots.py").read_text() + "\n\ndef new(): pass\n")
    assert _deps(tmp_path) == before


def test_used_definitions_count_through_modules(tmp_path):
    _package(tmp_path)
    for rel, old, new in [("pkg/util.py", "return n + 1", "return n + 2"),          # used transitively
                          ("pkg/plots.py", "SIZE = 3", "SIZE = 4"),                 # a constant it reads
                          ("pkg/tasks.py", "return 1", "return 5"),                 # registered on import
                          ("pkg/impl.py", "return 0", "return 9"),                  # imported by its name as a string
                          ("pkg/__init__.py", '"""doc"""\n', '"""doc"""\nprint("side effect")\n')]:
        before = _deps(tmp_path)
        _edit(tmp_path, rel, old, new)
        assert _deps(tmp_path) != before, rel


def test_driver_hash_follows_the_parts(tmp_path):
    """run.py's hash and the parts it names when something changed."""
    from reproduce.run import ARTIFACTS, ROOT, changed_parts, input_parts
    nb = ROOT / ARTIFACTS["table6"][0]
    parts = input_parts(nb, {"profile": "smoke"})
    assert {"notebook", "pyproject.toml", "params", "crossflow.tasks.sr"} <= set(parts)
    # another profile: the parameters and the registry entry the artifact now reads
    assert changed_parts(parts, input_parts(nb, {"profile": "tiny"})) == ["crossflow.profiles", "params"]
    assert changed_parts(parts, input_parts(nb, {"profile": "smoke", "seed": 1})) == ["params"]


def test_status_lists_every_artifact(tmp_path):
    """`make status`: one state per artifact; a stamp of the current inputs reads "current", another "stale"."""
    import json

    from reproduce.run import ARTIFACTS, ROOT, input_parts, parts_hash, status
    rows = dict(status())
    assert set(rows) == set(ARTIFACTS)
    assert all(s == "not produced" or s.startswith(("current", "stale")) for s in rows.values())
    folder = tmp_path / "table9-smoke"
    folder.mkdir()
    params = {"profile": "smoke"}
    parts = input_parts(ROOT / ARTIFACTS["table9"][0], params)
    digest = parts_hash(parts)
    (folder / "metrics.json").write_text("{}")
    (folder / "inputs.json").write_text(json.dumps({"hash": digest, "params": params, "parts": parts}))
    assert dict(status("smoke", tmp_path))["table9"] == "current"
    (folder / "inputs.json").write_text(json.dumps({"hash": "0", "params": params, "parts": {**parts, "params": "x"}}))
    assert dict(status("smoke", tmp_path))["table9"] == "stale: params"
    assert dict(status("smoke", tmp_path))["table5"] == "not produced"


def test_status_names_results_scored_by_other_evaluators(tmp_path):
    """Results scored by other evaluator networks than the shipped ones (weights/; before they were shipped, each
    machine trained its own) say so; with the same networks, or none shipped of that kind, they do not."""
    import json

    from reproduce.run import ARTIFACTS, ROOT, input_parts, other_evaluators, parts_hash, status
    folder = tmp_path / "table9-smoke"
    (folder / "jobs").mkdir(parents=True)
    params = {"profile": "smoke"}
    parts = input_parts(ROOT / ARTIFACTS["table9"][0], params)
    (folder / "inputs.json").write_text(json.dumps({"hash": parts_hash(parts), "params": params, "parts": parts}))
    (folder / "metrics.json").write_text(json.dumps({"provenance": {"evaluators": {"clip": "c" * 64}}}))
    (folder / "jobs" / "a-s0.json").write_text(json.dumps({"evaluators_sha256": {"judge": "a" * 64, "clip": "c" * 64}}))
    shipped = tmp_path / "weights"
    ev = shipped / "evaluators"
    ev.mkdir(parents=True)
    assert other_evaluators(folder, shipped) == ""                                  # nothing shipped
    (ev / "judge-123.pt.sha256").write_text("a" * 64 + "  judge-123.pt\n")
    (ev / "clip-456.pt.sha256").write_text("c" * 64 + "  clip-456.pt\n")
    assert other_evaluators(folder, shipped) == ""                                  # the same networks
    (ev / "judge-123.pt.sha256").write_text("b" * 64 + "  judge-123.pt\n")
    note = other_evaluators(folder, shipped)
    assert note.startswith("; scored by other evaluators") and "judge aaaaaaaa vs bbbbbbbb" in note
    assert "clip" not in note
    # the repository's own: the judge shipped in weights/ is not "a" * 64, so status says it
    assert dict(status("smoke", tmp_path))["table9"].startswith("current; scored by other evaluators than the shipped")


def test_modules_named_in_strings_can_be_declared_unused(tmp_path):
    """The task registry names every task's module in a string; an artifact of another task does not depend on
    them (run.py declares them unused), while explicit imports still count."""
    _package(tmp_path)
    before = dependencies(NOTEBOOK, root=tmp_path, packages=("pkg",), unused_modules=frozenset({"pkg.impl"}))
    _edit(tmp_path, "pkg/impl.py", "return 0", "return 9")
    assert dependencies(NOTEBOOK, root=tmp_path, packages=("pkg",), unused_modules=frozenset({"pkg.impl"})) == before
    code = NOTEBOOK + "from pkg.impl import go\ngo()\n"
    before = dependencies(code, root=tmp_path, packages=("pkg",), unused_modules=frozenset({"pkg.impl"}))
    _edit(tmp_path, "pkg/impl.py", "return 9", "return 8")
    assert dependencies(code, root=tmp_path, packages=("pkg",), unused_modules=frozenset({"pkg.impl"})) != before


def test_a_registry_counts_with_the_callers_entries_only(tmp_path):
    """The profile registry: a tiny artifact does not depend on the gpu entry (adding or editing another profile
    leaves it current), but does on its own entry and on what that entry uses."""
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/profiles.py": """
        BASE = {"steps": 10}
        OTHER_SIZES = {"steps": 99}
        _PROFILES = {"tiny": dict(BASE, width=64), "gpu": dict(OTHER_SIZES, width=512)}
        PROFILES = dict(_PROFILES)
        """})
    code = "from pkg.profiles import PROFILES\nPROFILES['tiny']\n"
    deps = lambda keys: dependencies(code, root=tmp_path, packages=("pkg",),              # noqa: E731
                                     registries={("pkg.profiles", "_PROFILES"): keys})
    tiny, gpu = deps(("tiny",)), deps(("gpu",))
    assert "BASE" in str(tiny) and "OTHER_SIZES" not in str(tiny) and "OTHER_SIZES" in str(gpu)
    _edit(tmp_path, "pkg/profiles.py", "width=512)}", "width=1024), 'new': dict(BASE)}")
    _edit(tmp_path, "pkg/profiles.py", '"steps": 99', '"steps": 98')
    assert deps(("tiny",)) == tiny and deps(("gpu",)) != gpu
    _edit(tmp_path, "pkg/profiles.py", '"steps": 10', '"steps": 11')
    assert deps(("tiny",)) != tiny
    assert "OTHER_SIZES" in str(dependencies(code, root=tmp_path, packages=("pkg",)))   # no registry: everything


def test_text_to_image_artifacts_do_not_depend_on_the_pixel_tasks():
    from reproduce.run import ARTIFACTS, ROOT, input_parts
    t2i = input_parts(ROOT / ARTIFACTS["table7"][0], {"profile": "tiny"})
    assert "crossflow.tasks.t2i" in t2i and not {"crossflow.tasks.sr", "crossflow.tasks.depth"} & set(t2i)
    table5 = input_parts(ROOT / ARTIFACTS["table5"][0], {"profile": "tiny"})
    assert "crossflow.tasks.depth" in table5 and "crossflow.tasks.sr" not in table5


def test_claims_scoreboard_lists_every_claim_with_a_recorded_verdict(tmp_path):
    """REPORT.md's scoreboard: one row per claim; a verdict the artifact recorded (read, never decided), or
    "missing" for an artifact not produced."""
    import json

    from reproduce.paper_numbers import CLAIMS
    from reproduce.run import ARTIFACTS
    from reproduce.summary import scoreboard
    assert [c["id"] for c in CLAIMS] == list(range(1, len(CLAIMS) + 1))
    assert all(c["artifact"] in ARTIFACTS for c in CLAIMS)
    empty = scoreboard(tmp_path)
    assert empty.count("| **missing** |") == len(CLAIMS)
    (tmp_path / "table6").mkdir()
    (tmp_path / "table6" / "metrics.json").write_text(json.dumps({"metrics": {"verdict": {
        "verdict": "fails", "text": "fails: crossflow vs noise_concat: PSNR loses"}}}))
    board = scoreboard(tmp_path)
    row = next(line for line in board.splitlines() if "super-resolution" in line)
    assert "**fails**" in row and "PSNR loses" in row and board.count("| **missing** |") == len(CLAIMS) - 1
    # the same claim at another profile is shown beside the tiny verdict
    (tmp_path / "table6-gpu-short").mkdir()
    (tmp_path / "table6-gpu-short" / "metrics.json").write_text(json.dumps({"metrics": {"verdict": {
        "verdict": "holds", "text": "holds: PSNR beats"}}}))
    row = next(line for line in scoreboard(tmp_path).splitlines() if "super-resolution" in line)
    assert "**fails**" in row and "at [gpu-short](table6-gpu-short/): **holds** (PSNR beats)" in row


def test_report_states_the_main_model_targets(tmp_path):
    """REPORT.md names the regime study's target check (issue 15), read from its metrics.json."""
    import json

    from reproduce.summary import regime_targets
    assert regime_targets(tmp_path) == ""
    (tmp_path / "regime").mkdir()
    (tmp_path / "regime" / "metrics.json").write_text(json.dumps({"metrics": {
        "targets": {"fid_ratio": 2.0, "geneval": 0.55, "budget_minutes": 45},
        "chosen": {"point": "recipe", "step": 2800, "cpu_minutes": 33.2},
        "target_check": {"fid_ratio": 3.1, "fid_met": False, "geneval": 0.31, "geneval_met": False}}}))
    line = regime_targets(tmp_path)
    assert "3.10x the real-vs-real floor" in line and line.count("**not met**") == 2 and "recipe, 2800 steps" in line


def test_paired_verdict_rule_and_its_false_alarm_rate():
    """reproduce.report.paired_verdict: the obvious cases, then its null behaviour: two rows with no true
    difference come out holds/fails about 10% of the time at the 90% level (4 seeds, 4,000 simulated tables)."""
    import numpy as np

    from reproduce.report import paired_verdict
    kw = {"paper_a": 10.0, "paper_b": 12.0, "lower_is_better": True}            # the paper: a better (lower)
    assert paired_verdict([10, 11, 10.5, 10.2], [12, 13, 12.4, 12.1], **kw)["verdict"] == "holds"
    assert paired_verdict([12, 13, 12.4, 12.1], [10, 11, 10.5, 10.2], **kw)["verdict"] == "fails"
    assert paired_verdict([10, 13, 11, 12], [12, 11, 12, 11], **kw)["verdict"] == "inconclusive"
    tie = {"paper_a": 24.33, "paper_b": 23.79, "lower_is_better": True, "paper_noise": 1.0}
    assert paired_verdict([10, 13, 11, 12], [12, 11, 12, 11], **tie)["verdict"] == "holds"
    rng = np.random.default_rng(0)
    n_sim, alarms, tie_alarms = 4000, 0, 0
    for _ in range(n_sim):
        seed_effect = rng.normal(0, 5, 4)                                      # shared by both rows (paired)
        a, b = seed_effect + rng.normal(0, 1, 4), seed_effect + rng.normal(0, 1, 4)
        alarms += paired_verdict(a, b, **kw)["verdict"] != "inconclusive"
        tie_alarms += paired_verdict(a, b, **tie)["verdict"] == "fails"
    assert 0.08 <= alarms / n_sim <= 0.12, alarms / n_sim
    assert 0.08 <= tie_alarms / n_sim <= 0.12, tie_alarms / n_sim


def test_part_verdict_and_the_guidance_gate():
    """A part of Table 3 fails if any pair fails and holds only if every pair holds; guidance is testable only when
    its best scale beats no guidance on validation beyond the paired interval."""
    from reproduce.report import guidance_effect, paired_part_verdict
    paper = {"x": 30.0, "y": 25.0, "z": 24.5}                                   # y vs z: a tie (within 1 FID)
    good = {"x": [40, 41, 42, 43], "y": [30, 31, 33, 33], "z": [30.5, 30, 33, 33.2]}
    assert paired_part_verdict(paper, good, lower_is_better=True, paper_noise=1.0)["verdict"] == "holds"
    flipped = {**good, "x": [20, 21, 22, 23]}
    res = paired_part_verdict(paper, flipped, lower_is_better=True, paper_noise=1.0)
    assert res["verdict"] == "fails" and len(res["pairs"]) == 3
    one_seed = {k: v[:1] for k, v in good.items()}
    assert paired_part_verdict(paper, one_seed, lower_is_better=True)["verdict"] == "inconclusive"
    works = guidance_effect([400, 420, 410, 405], [380, 401, 392, 384])
    assert works["works"] is True and works["mean_diff"] < 0
    flat = guidance_effect([400, 420, 410, 405], [404, 426, 413, 410])          # the gpu-short pattern: worse
    assert flat["works"] is False and guidance_effect([400], [380])["works"] is False


def test_interval_verdict():
    from reproduce.report import interval_verdict
    assert interval_verdict([0.2, 0.3, 0.25, 0.28])["verdict"] == "holds"
    assert interval_verdict([-0.2, -0.3, -0.25, -0.28])["verdict"] == "fails"
    assert interval_verdict([0.2, -0.3, 0.25, -0.28])["verdict"] == "inconclusive"
    assert interval_verdict([1, 0, 1, 1, 0, 1] * 30)["verdict"] == "holds"          # binary outcomes, n = 180
    assert interval_verdict([0.5])["verdict"] == "inconclusive"


def test_crossover_verdict_reads_points_and_the_trend():
    """Figure 3: each point by its interval, the claim by the change of the gap from the first point to the last;
    with no true change the trend comes out holds or fails about 10% of the time (3 seeds, 90% interval)."""
    import numpy as np

    from reproduce.report import crossover_verdict
    up = crossover_verdict({"XS": [-30, -28, -33], "M": [-10, -12, -8], "XL": [20, 22, 19]})
    assert up["verdict"] == "holds" and up["shape"] == "crossover as in the paper"
    assert [p["sign"] for p in up["points"].values()] == ["worse", "worse", "better"]
    down = crossover_verdict({"XS": [5, 4, 6], "XL": [-20, -22, -19]})
    assert down["verdict"] == "fails" and down["shape"] == "opposite of the paper"
    level = crossover_verdict({"step 900": [1, -2, 3], "step 2800": [2, -1, 0]})
    assert level["verdict"] == "inconclusive" and level["shape"] == "no crossover in our range"
    rng = np.random.default_rng(1)
    calls = [crossover_verdict({"a": list(rng.normal(-5, 3, 3)), "b": list(rng.normal(-5, 3, 3))})["verdict"]
             for _ in range(3000)]
    assert 0.07 <= sum(c != "inconclusive" for c in calls) / len(calls) <= 0.13


def test_scripts_define_everything_before_their_main_block():
    """`python -m reproduce.X` runs the `if __name__ == "__main__"` block where it stands: a function defined
    below it does not exist yet when main() runs (a NameError that importing the module in a test never sees)."""
    import ast

    from reproduce.run import ROOT
    for f in sorted((ROOT / "reproduce").glob("*.py")) + sorted((ROOT / "crossflow").rglob("*.py")):
        body = ast.parse(f.read_text()).body
        mains = [i for i, n in enumerate(body) if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        if mains:
            after = [n for n in body[mains[0] + 1:] if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Assign))]
            assert not after, f"{f.relative_to(ROOT)}: {[getattr(n, 'name', 'assignment') for n in after]} after the main block"
