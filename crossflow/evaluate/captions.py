"""Caption metrics of COCO, through pycocoevalcap (the groundwork of Table 4, captioning).

    scores = caption_scores({"img1": ["a red bag", "one red bag"]}, {"img1": "a red bag"})
    # {"BLEU-1": ..., "BLEU-4": ..., "METEOR": ..., "ROUGE-L": ..., "CIDEr": ..., "SPICE": None, "unavailable": {...}}

As the COCO caption evaluation does: captions are lower-cased and split by Stanford's PTBTokenizer (a jar shipped
in the pycocoevalcap wheel), punctuation removed, then BLEU-1..4 (corpus level), METEOR 1.5 (a jar), ROUGE-L and
CIDEr-D (its document frequencies from the references of the evaluated set). The tokenizer and METEOR run on
Java: ``make data`` installs a headless JRE as root when ``java`` is missing, and :class:`JavaMissingError` says
how otherwise. SPICE needs Stanford CoreNLP 3.6.0's jars, which pycocoevalcap downloads on first use and which no
registry reachable here serves: it is reported as unavailable, with the reason, unless the jars are already in
pycocoevalcap's ``spice/lib`` folder (then it runs).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


class JavaMissingError(RuntimeError):
    """pycocoevalcap's tokenizer and METEOR need a Java runtime."""


def java_available() -> bool:
    return shutil.which("java") is not None


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run here, else why not."""
    import pycocoevalcap                                 # a namespace package: no __file__
    lib = Path(list(pycocoevalcap.__path__)[0]) / "spice" / "lib"
    missing = [j for j in SPICE_JARS if not (lib / j).is_file()]
    if not java_available():
        return "no Java runtime"
    if missing:
        return (f"Stanford CoreNLP jars missing from {lib} ({', '.join(missing)}): pycocoevalcap downloads them on "
                f"first use, which needs the internet (no package registry serves them); copy them there to enable "
                f"SPICE")
    return None


def caption_scores(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, str], *, spice: bool = True) -> dict:
    """COCO caption metrics of one hypothesis per id against its references (same ids). Returns BLEU-1..4,
    METEOR, ROUGE-L, CIDEr (CIDEr-D, x1 scale as pycocoevalcap reports it; the paper's tables multiply by 100),
    SPICE (None when unavailable) and ``unavailable`` {metric: reason}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if set(refs) != set(hyps):
        raise ValueError("refs and hyps must have the same ids")
    if not java_available():
        raise JavaMissingError("pycocoevalcap's PTB tokenizer and METEOR need Java: `apt-get install -y "
                               "default-jre-headless` as root (`make data` does it), or put a JRE's `java` on PATH")
    ids = sorted(refs)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs[i]] for i in ids})
    res = tok.tokenize({i: [{"caption": hyps[i]}] for i in ids})
    out: dict = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    meteor = Meteor()                                     # a java subprocess, ended when the object is deleted
    out["METEOR"] = float(meteor.compute_score(gts, res)[0])
    del meteor
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    reason = spice_unavailable_reason() if spice else "not asked for"
    out["SPICE"], out["unavailable"] = None, {}
    if reason is None:
        from pycocoevalcap.spice.spice import Spice
        out["SPICE"] = float(Spice().compute_score(gts, res)[0])
    else:
        out["unavailable"]["SPICE"] = reason
    return out
