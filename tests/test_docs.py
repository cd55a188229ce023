"""README and docs/ stay inside the repository: every relative link resolves, nothing points outside."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    missing = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists() or ROOT not in path.parents and path != ROOT:
            missing.append(target)
    assert not missing, f"{doc.name}: links that do not resolve inside the repository: {missing}"


def test_nothing_points_outside_the_repository():
    files = [*DOCS, ROOT / "Makefile", ROOT / "pyproject.toml",
             *[p for d in ("crossflow", "reproduce", "tests", "notebooks") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".ipynb", ".md")]]
    bad = [str(p.relative_to(ROOT)) for p in files
           if re.search(r"shared/docs|\.\./shared|crossflow-method\.md|offline-assets\.md", p.read_text())
           and p.name != "test_docs.py"]
    assert not bad, f"these files cite documents outside the repository (use docs/): {bad}"
