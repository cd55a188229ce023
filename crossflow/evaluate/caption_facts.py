"""An exact semantic score for captions of the scene domain (issue 17 groundwork): parse a caption back into
facts and check them against the scene it describes, which no COCO metric can do.

Facts are tuples: ("class", cls), ("color", cls, colour), ("count", cls, n), ("position", cls, cell name) and
("relation", cls_a, relation, cls_b), with ``cls`` a class name ("ankle boot"), colours from
:data:`crossflow.data.COLORS`, cell names as :func:`crossflow.data.scenes.cell_name` writes them and relations as
:func:`crossflow.data.scenes.relation` ("to the left of", "above", ...).

    parse_caption("a red sandal to the left of a blue bag")
    # {("class", "sandal"), ("color", "sandal", "red"), ("class", "bag"), ("color", "bag", "blue"),
    #  ("relation", "sandal", "to the left of", "bag")}
    scene_facts(items, grid=2)            # every fact true of a scene
    fact_scores(captions, scenes, grid)   # precision (stated facts that are true) and recall per kind

The parser reads every template of :data:`crossflow.data.scenes.TEMPLATES` exactly (a test checks each); a
generated caption outside them is parsed for whatever known words it holds, in order.
"""
from __future__ import annotations

import re
from typing import Sequence

from ..data import CLASS_NAMES, COLORS, Item
from ..data.fashion_mnist import plural
from ..data.scenes import NUMBER_WORDS, cell_name, relation

RELATIONS = ("to the left of", "to the right of", "above", "below")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "top center", "bottom center",
             "middle left", "middle right", "center")


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_CLASS = {**{plural(c): c for c in CLASS_NAMES}, **{c: c for c in CLASS_NAMES}}
_TOKEN = re.compile(r"\b(?:(?P<rel>%s)|(?P<pos>(?:at|in) the (?:%s))|(?P<num>%s)|(?P<color>%s)|(?P<cls>%s))\b" % (
    _alternation(RELATIONS), _alternation(POSITIONS), _alternation(NUMBER_WORDS[1:]), _alternation(COLORS),
    _alternation(_CLASS)))


def parse_caption(caption: str) -> set[tuple]:
    """The facts a caption states (see the module docstring)."""
    facts: set[tuple] = set()
    items: list[dict] = []                     # in order: {"cls", "color", "count"}
    pending_color = pending_count = None
    rel = None
    for m in _TOKEN.finditer(caption.lower()):
        if m["color"]:
            if items and items[-1]["color"] is None and pending_color is None and \
                    re.search(r"(colored|in)\s+$", caption.lower()[:m.start()]):
                items[-1]["color"] = m["color"]             # "a sandal colored red", "a bag in blue"
            else:
                pending_color = m["color"]
        elif m["num"]:
            pending_count = NUMBER_WORDS.index(m["num"])
        elif m["cls"]:
            items.append({"cls": _CLASS[m["cls"]], "color": pending_color, "count": pending_count,
                          "rel_before": rel})
            pending_color = pending_count = None
            rel = None
        elif m["rel"]:
            rel = m["rel"]
        elif m["pos"] and items:
            facts.add(("position", items[-1]["cls"], m["pos"].split(" the ", 1)[1]))
    for i, it in enumerate(items):
        facts.add(("class", it["cls"]))
        if it["color"]:
            facts.add(("color", it["cls"], it["color"]))
        if it["count"] is not None:
            facts.add(("count", it["cls"], it["count"]))
        if it["rel_before"] and i > 0:
            facts.add(("relation", items[i - 1]["cls"], it["rel_before"], it["cls"]))
    return facts


def scene_facts(items: Sequence[Item], grid: int) -> set[tuple]:
    """Every fact true of a scene: its classes, colours, counts per class, absolute cells, and the unambiguous
    relations between items of different classes."""
    facts: set[tuple] = set()
    for it in items:
        facts |= {("class", it.name), ("color", it.name, it.color)}
        pos = cell_name(it.cell, grid)
        if pos:
            facts.add(("position", it.name, pos))
    for name in {it.name for it in items}:
        facts.add(("count", name, sum(it.name == name for it in items)))
    for a in items:
        for b in items:
            if a is not b and a.cls != b.cls and (r := relation(a, b, grid)) is not None:
                facts.add(("relation", a.name, r, b.name))
    return facts


def fact_scores(captions: Sequence[str], scenes: Sequence[Sequence[Item]], grid: int) -> dict:
    """Per fact kind: precision (stated facts that are true of the scene) and recall of the scene's classes,
    colours and counts (what a caption of one scene can be expected to state), pooled over captions."""
    kinds = ("class", "color", "count", "position", "relation")
    stated = {k: 0 for k in kinds}
    true = {k: 0 for k in kinds}
    found = {k: 0 for k in ("class", "color", "count")}
    expected = {k: 0 for k in ("class", "color", "count")}
    for caption, items in zip(captions, scenes, strict=True):
        pred, truth = parse_caption(caption), scene_facts(items, grid)
        for f in pred:
            stated[f[0]] += 1
            true[f[0]] += f in truth
        for k in expected:
            want = {f for f in truth if f[0] == k}
            expected[k] += len(want)
            found[k] += len(want & pred)
    out = {f"precision_{k}": (true[k] / stated[k] if stated[k] else None) for k in kinds}
    out.update({f"recall_{k}": (found[k] / expected[k] if expected[k] else None) for k in expected})
    n_stated = sum(stated.values())
    out["precision"] = sum(true.values()) / n_stated if n_stated else None
    out["n"] = len(captions)
    return out
