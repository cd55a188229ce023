"""Issue 17 groundwork: the COCO caption metrics through pycocoevalcap, on hand-made pairs with known values."""
from __future__ import annotations

import pytest

from crossflow.evaluate.captions import caption_scores, java_available, spice_unavailable_reason

pytestmark = pytest.mark.skipif(not java_available(), reason="no Java runtime: `make data` installs "
                                "default-jre-headless as root (pycocoevalcap's tokenizer and METEOR need it)")


def test_bleu_and_rouge_of_one_word_changed():
    """hyp "a red bag on the left" vs ref "a red bag on the right": n-gram precisions 5/6, 4/5, 3/4, 2/3, equal
    lengths (no brevity penalty), so BLEU-4 = (5/6 * 4/5 * 3/4 * 2/3) ** (1/4); the longest common subsequence
    is 5 of 6 words on both sides, so ROUGE-L = 5/6."""
    s = caption_scores({"1": ["a red bag on the right"]}, {"1": "a red bag on the left"})
    assert s["BLEU-1"] == pytest.approx(5 / 6, rel=1e-6)
    assert s["BLEU-4"] == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25, rel=1e-6)
    assert s["ROUGE-L"] == pytest.approx(5 / 6, rel=1e-6)
    assert 0 < s["METEOR"] < 1


def test_cider_of_exact_matches():
    """Exact matches of three different captions: CIDEr-D = 10 x mean over images of the mean over n = 1..4 of
    the n-gram cosine, which is 1 where the caption has n-grams and 0 where it has none: "a red bag" has no
    4-gram, so (3/4 + 1 + 1) / 3 x 10."""
    refs = {"1": ["a red bag"], "2": ["two green sandals in a row"], "3": ["a blue trouser next to a bag"]}
    s = caption_scores(refs, {k: v[0] for k, v in refs.items()})
    assert s["CIDEr"] == pytest.approx(10 * (3 / 4 + 1 + 1) / 3, rel=1e-6)
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and s["METEOR"] == pytest.approx(1.0)


def test_spice_is_reported_unavailable_with_its_reason():
    reason = spice_unavailable_reason()
    s = caption_scores({"1": ["a red bag"]}, {"1": "a red bag"})
    if reason is None:
        assert s["SPICE"] is not None
    else:
        assert s["SPICE"] is None and "SPICE" in s["unavailable"] and "CoreNLP" in s["unavailable"]["SPICE"]


def test_ids_must_match():
    with pytest.raises(ValueError, match="same ids"):
        caption_scores({"1": ["a"]}, {"2": "a"})
