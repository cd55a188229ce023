"""Paper-vs-ours tables, generated from metrics.json files (never from printed output).

    rows = [paper_row("Table 7", "GenEval overall", "CrossFlow", paper=0.55, paper_metric="GenEval",
                      ours=values_from(["results/table7/metrics.json"], "metrics.geneval.overall"),
                      our_metric="GenEval-domain", profile="tiny")]
    write_table(rows, "results/table7", "paper_vs_ours")      # -> paper_vs_ours.csv, paper_vs_ours.md

A row holds the paper's value and metric name beside ours (mean +- std when there are several seeds) and our
metric's name: the two are often different measurements (see reproduce.paper_numbers.METRIC_NOTES).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

COLUMNS = ("artifact", "quantity", "method", "paper", "paper_metric", "ours", "ours_n", "our_metric", "profile",
           "verdict", "note")


def get_dotted(d: Mapping, key: str):
    """``get_dotted(m, "metrics.geneval.overall")``; KeyError names the missing part."""
    node = d
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"'{key}': no '{part}' (have {sorted(node) if isinstance(node, Mapping) else node!r})")
        node = node[part]
    return node


def values_from(paths: Sequence, key: str) -> list[float]:
    """The value at ``key`` in each metrics.json of ``paths`` (one per seed)."""
    return [float(get_dotted(json.loads(Path(p).read_text()), key)) for p in paths]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std (None for a single value: one run says nothing about the spread)."""
    n = len(values)
    if not n:
        raise ValueError("no values")
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else None)


def fmt(values: Sequence[float] | float | None, digits: int = 3) -> str:
    if values is None:
        return "-"
    if isinstance(values, (int, float)):
        return f"{values:.{digits}f}"
    m, s = mean_std(values)
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def paper_row(artifact: str, quantity: str, method: str, *, paper, paper_metric: str, ours, our_metric: str,
              profile: str = "tiny", verdict: str = "", note: str = "", digits: int = 3) -> dict:
    """One table row; ``ours`` is a number or a list of per-seed numbers (or None if not measured)."""
    ours_list = None if ours is None else ([float(ours)] if isinstance(ours, (int, float)) else list(ours))
    return {"artifact": artifact, "quantity": quantity, "method": method,
            "paper": "-" if paper is None else (f"{paper:.{digits}f}" if isinstance(paper, float) else str(paper)),
            "paper_metric": paper_metric, "ours": fmt(ours_list, digits), "ours_n": len(ours_list or []),
            "our_metric": our_metric, "profile": profile, "verdict": verdict, "note": note}


def to_markdown(rows: Sequence[Mapping], columns: Sequence[str] = COLUMNS) -> str:
    cols = [c for c in columns if any(str(r.get(c, "")) not in ("", "None") for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[Mapping], out_dir, stem: str, columns: Sequence[str] = COLUMNS,
                title: str = "", notes: Sequence[str] = ()) -> dict:
    """Write ``<stem>.csv`` and ``<stem>.md`` (title, table, notes) into ``out_dir``; return their paths."""
    from crossflow.utils import atomic_path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    body = (f"## {title}\n\n" if title else "") + to_markdown(rows, columns)
    body += "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")
    with atomic_path(md_path) as tmp:
        tmp.write_text(body)
    return {"csv": str(csv_path), "md": str(md_path)}


def ordering_verdict(paper_order: Sequence[str], our_means: Mapping[str, float],
                     our_stds: Mapping[str, float | None] | None = None, k: float = 1.0) -> str:
    """Does our ordering of methods match the paper's?

    ``paper_order`` lists methods in *increasing* value of the metric as the paper reports it (for FID the
    best first; for GenEval the worst first). For each consecutive pair (a, b) the gap is ``our b - our a``
    and the noise is ``k * sqrt(std_a^2 + std_b^2)`` (seed spread). "holds": every gap > noise; "fails": some
    gap < -noise; otherwise (or when a spread is unknown, e.g. one seed) "inconclusive".
    """
    stds = our_stds or {}
    verdict = "holds"
    for a, b in zip(paper_order, paper_order[1:]):
        sa, sb = stds.get(a), stds.get(b)
        if sa is None or sb is None:
            return "inconclusive"
        gap, noise = our_means[b] - our_means[a], k * math.hypot(sa, sb)
        if gap < -noise:
            return "fails"
        if gap <= noise:
            verdict = "inconclusive"
    return verdict


def pairwise_verdict(paper: Mapping[str, float], our_means: Mapping[str, float],
                     our_stds: Mapping[str, float | None], k: float = 1.0) -> str:
    """Does every ordering the paper reports between two rows hold in ours?

    For each pair of rows whose paper values differ (ties make no claim), our difference must have the same sign
    as the paper's by more than ``k * sqrt(std_a^2 + std_b^2)``. "holds": every pair does; "fails": some pair is
    reversed by more than that; otherwise (or with unknown spread) "inconclusive". Works for lower-is-better
    and higher-is-better metrics alike, since only signs of differences are compared.
    """
    verdict, names = "holds", list(paper)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if paper[a] == paper[b]:
                continue
            sa, sb = our_stds.get(a), our_stds.get(b)
            if sa is None or sb is None:
                return "inconclusive"
            sign = 1.0 if paper[b] > paper[a] else -1.0
            gap, noise = sign * (our_means[b] - our_means[a]), k * math.hypot(sa, sb)
            if gap < -noise:
                return "fails"
            if gap <= noise:
                verdict = "inconclusive"
    return verdict


# ----------------------------------------------------------------------------------------------------------
# Paired verdicts with a stated false-alarm rate (issue 15): for the re-runs with >= 4 seeds per row
# ----------------------------------------------------------------------------------------------------------

FALSE_ALARM = 0.10          # two-sided: a 90% confidence interval of the paired mean difference


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 1 - FALSE_ALARM) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences a_i - b_i (rows trained with the same seeds), Student t."""
    from scipy import stats
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    if n < 2:
        raise ValueError("a paired interval needs at least two seeds per row")
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_verdict(a: Sequence[float], b: Sequence[float], *, paper_a: float, paper_b: float,
                   lower_is_better: bool, paper_noise: float = 0.0, level: float = 1 - FALSE_ALARM) -> dict:
    """Does our row ``a`` relate to row ``b`` as the paper's do? Paired over seeds, decided by a ``level``
    confidence interval of the mean difference (the rule is fixed before any run):

    - the paper orders them (|paper_a - paper_b| > ``paper_noise``, its own noise, e.g. 1 FID): **holds** when the
      interval lies wholly on the paper's side of 0, **fails** when wholly on the other side, else
      **inconclusive**;
    - the paper's gap is within its noise (a tie): **holds** when the interval contains 0, **fails** otherwise.

    When the two rows do not differ in truth, a directional claim comes out "holds" or "fails" with probability
    about 1 - ``level`` (5% each side at 90%), and a tie comes out "fails" with about that probability: the
    stated false-alarm rate, checked by simulation in tests/test_deps.py. "not testable" is the caller's call
    (e.g. when the regime shows no effect at all)."""
    mean, low, high = paired_interval(a, b, level)
    better = -1.0 if lower_is_better else 1.0                # orient: positive = a better than b
    lo, hi = sorted((better * low, better * high))
    paper_gap = better * (paper_a - paper_b)
    if abs(paper_a - paper_b) <= paper_noise:
        verdict, expect = ("holds" if lo <= 0 <= hi else "fails"), "tie"
    elif paper_gap > 0:
        verdict, expect = ("holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"), "a better"
    else:
        verdict, expect = ("holds" if hi < 0 else "fails" if lo > 0 else "inconclusive"), "b better"
    return {"verdict": verdict, "paper": expect, "mean_diff": mean, "interval": (low, high), "level": level,
            "seeds": len(a)}


def paired_part_verdict(paper: Mapping[str, float], ours: Mapping[str, Sequence[float]], *, lower_is_better: bool,
                        paper_noise: float = 0.0, level: float = 1 - FALSE_ALARM) -> dict:
    """One verdict for a part of a table (Table 3a-e) from :func:`paired_verdict` on every pair of its rows (rows
    trained with the same seeds): **fails** if some pair fails, **holds** if every pair holds, else
    **inconclusive**. With fewer than two seeds nothing is decided ("inconclusive"). With k pairs and no true
    differences, a spurious "fails" comes out with probability up to about k x 5% (each tie pair: 10%), so a part's
    "fails" is read with its pairs, which come with it."""
    labels = list(paper)
    if min(len(ours[k]) for k in labels) < 2:
        return {"verdict": "inconclusive", "pairs": [], "reason": "fewer than two seeds"}
    pairs = [{"a": a, "b": b, **paired_verdict(ours[a], ours[b], paper_a=paper[a], paper_b=paper[b],
                                             lower_is_better=lower_is_better, paper_noise=paper_noise, level=level)}
             for i, a in enumerate(labels) for b in labels[i + 1:]]
    words = {p["verdict"] for p in pairs}
    return {"verdict": "fails" if "fails" in words else "holds" if words == {"holds"} else "inconclusive",
            "pairs": pairs}


NOT_TESTABLE = "not testable at this scale"


def guidance_effect(none_fid: Sequence[float], guided_fid: Sequence[float], level: float = 1 - FALSE_ALARM) -> dict:
    """Is there guidance to test? Per seed, the validation FID-domain of no guidance and of the best guided setting
    (the grid's minimum); the guidance works when the paired interval of (guided - none) lies wholly below 0 (issue
    15: a guidance claim is only tested where the guidance beats scale 1 beyond the seed spread; otherwise the
    verdict is :data:`NOT_TESTABLE`)."""
    if len(none_fid) < 2:
        return {"works": False, "mean_diff": None, "interval": None, "seeds": len(none_fid),
                "reason": "fewer than two seeds"}
    mean, low, high = paired_interval(guided_fid, none_fid, level)
    return {"works": bool(high < 0), "mean_diff": mean, "interval": (low, high), "level": level, "seeds": len(none_fid)}


def interval_verdict(diffs: Sequence[float], level: float = 1 - FALSE_ALARM) -> dict:
    """A one-sided claim "the difference is positive" from paired differences (one per seed, path or prompt): a
    ``level`` t interval of their mean; **holds** when it lies wholly above 0, **fails** when wholly at or below 0,
    else **inconclusive** (fewer than two differences: inconclusive)."""
    if len(diffs) < 2:
        return {"verdict": "inconclusive", "mean_diff": float(diffs[0]) if diffs else None, "interval": None,
                "n": len(diffs), "level": level}
    mean, low, high = paired_interval(list(diffs), [0.0] * len(diffs), level)
    verdict = "holds" if low > 0 else "fails" if high <= 0 else "inconclusive"
    return {"verdict": verdict, "mean_diff": float(mean), "interval": (float(low), float(high)), "n": len(diffs),
            "level": level}


def crossover_verdict(gaps: Mapping[str, Sequence[float]], level: float = 1 - FALSE_ALARM) -> dict:
    """Figure 3's claim along one axis (issue 15 item 5). ``gaps``: {point: baseline - CrossFlow FID-domain per seed}
    in axis order (smallest size or earliest step first; positive = CrossFlow better), the same seeds at every point.

    Each point is read from its ``level`` t interval: CrossFlow **better** (wholly above 0), **worse** (wholly at or
    below 0) or **level**. The paper's shape (worse when small / early, better at ~1B and 300K steps) lies mostly
    beyond our range, so what is tested is its direction, "CrossFlow scales better": the gap grows from the first
    point to the last, the interval of (last - first) per seed: **holds** above 0, **fails** at or below 0, else
    **inconclusive** (:func:`interval_verdict`). Whether the signs cross inside our range is reported beside it."""
    labels = list(gaps)
    points = {}
    for k in labels:
        v = interval_verdict(list(gaps[k]), level)
        points[k] = {**v, "sign": {"holds": "better", "fails": "worse"}.get(v["verdict"], "level")}
    first, last = points[labels[0]]["sign"], points[labels[-1]]["sign"]
    trend = interval_verdict([b - a for a, b in zip(gaps[labels[0]], gaps[labels[-1]], strict=True)], level)
    shape = ("crossover as in the paper" if (first, last) == ("worse", "better") else
             "opposite of the paper" if (first, last) == ("better", "worse") else "no crossover in our range")
    text = (f"{shape} (CrossFlow {first} at {labels[0]}, {last} at {labels[-1]}); gap change {labels[0]} -> "
            f"{labels[-1]} {trend['mean_diff']:+.1f}" + (f", {level:.0%} interval {trend['interval'][0]:+.1f} to "
                                                         f"{trend['interval'][1]:+.1f}" if trend["interval"] else "")
            + f": scales better {trend['verdict']}")
    return {"verdict": trend["verdict"], "trend": trend, "points": points, "shape": shape, "text": text}
