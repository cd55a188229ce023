"""Issue 17 groundwork: the COCO caption metrics through pycocoevalcap, on hand-made pairs with known values."""
from __future__ import annotations

import pytest

from crossflow.evaluate.captions import caption_scores, java_available, spice_unavailable_reason

needs_java = pytest.mark.skipif(not java_available(), reason="no Java runtime: `make data` installs "
                                "default-jre-headless as root (pycocoevalcap's tokenizer and METEOR need it)")


@needs_java
def test_bleu_and_rouge_of_one_word_changed():
    """hyp "a red bag on the left" vs ref "a red bag on the right": n-gram precisions 5/6, 4/5, 3/4, 2/3, equal
    lengths (no brevity penalty), so BLEU-4 = (5/6 * 4/5 * 3/4 * 2/3) ** (1/4); the longest common subsequence
    is 5 of 6 words on both sides, so ROUGE-L = 5/6."""
    s = caption_scores({"1": ["a red bag on the right"]}, {"1": "a red bag on the left"})
    assert s["BLEU-1"] == pytest.approx(5 / 6, rel=1e-6)
    assert s["BLEU-4"] == pytest.approx((5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25, rel=1e-6)
    assert s["ROUGE-L"] == pytest.approx(5 / 6, rel=1e-6)
    assert 0 < s["METEOR"] < 1


@needs_java
def test_cider_of_exact_matches():
    """Exact matches of three different captions: CIDEr-D = 10 x mean over images of the mean over n = 1..4 of
    the n-gram cosine, which is 1 where the caption has n-grams and 0 where it has none: "a red bag" has no
    4-gram, so (3/4 + 1 + 1) / 3 x 10."""
    refs = {"1": ["a red bag"], "2": ["two green sandals in a row"], "3": ["a blue trouser next to a bag"]}
    s = caption_scores(refs, {k: v[0] for k, v in refs.items()})
    assert s["CIDEr"] == pytest.approx(10 * (3 / 4 + 1 + 1) / 3, rel=1e-6)
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and s["METEOR"] == pytest.approx(1.0)


@needs_java
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


# ---------------------------------------------------------------------------------------------------------
# The exact semantic score: the caption parser on every template (no Java needed)
# ---------------------------------------------------------------------------------------------------------

def _article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


@pytest.mark.parametrize("task", ["single_object", "colors", "two_object", "color_attr", "position", "counting"])
def test_parser_reads_every_template_exactly(task):
    """Every template of the task, filled for scenes of every class pair / colour: the parse states exactly the
    facts the template fills in, and all of them are true of the scene (precision 1)."""
    from crossflow.data import CLASS_NAMES, Item
    from crossflow.data.fashion_mnist import plural
    from crossflow.data.scenes import NUMBER_WORDS, TEMPLATES, cell_name, relation
    from crossflow.evaluate.caption_facts import parse_caption, scene_facts
    grid, colors = 2, ("red", "green", "blue", "yellow", "magenta", "white")
    checked = 0
    for i, ca in enumerate(range(len(CLASS_NAMES))):
        cb = (ca + 3) % len(CLASS_NAMES)
        col, col2 = colors[i % 6], colors[(i + 2) % 6]
        if task in ("single_object", "colors"):
            items = [Item(ca, col, i % 4)]
        elif task == "counting":
            items = [Item(ca, col, c) for c in range(2 + i % 3)]
        else:
            items = [Item(ca, col, 0), Item(cb, col2, 1 if i % 2 else 2)]           # same row or same column
        first, second = items[0], items[-1]
        fields = dict(a=_article(first.name), A=_article(f"{first.color} {first.name}"), cls=first.name,
                      color=first.color, b=_article(second.name), B=_article(f"{second.color} {second.name}"),
                      color2=second.color, n=NUMBER_WORDS[len(items)], plural=plural(first.name),
                      pos=cell_name(first.cell, grid), rel=relation(first, second, grid))
        for template in TEMPLATES[task]:
            caption = template.format(**fields)
            facts = parse_caption(caption)
            assert facts <= scene_facts(items, grid), (caption, facts - scene_facts(items, grid))
            named = [first] if task in ("single_object", "colors", "counting") else [first, second]
            expect = {("class", it.name) for it in named}
            if any(k in template for k in ("{A}", "{B}", "{color}")):
                expect |= {("color", first.name, first.color)}
                if any(k in template for k in ("{B}", "{color2}")):
                    expect |= {("color", second.name, second.color)}
            if "{n}" in template:
                expect.add(("count", first.name, len(items)))
            if template.startswith("one "):
                expect.add(("count", first.name, 1))
            if "{pos}" in template:
                expect.add(("position", first.name, fields["pos"]))
            if "{rel}" in template:
                expect.add(("relation", first.name, fields["rel"], second.name))
            assert facts == expect, (caption, facts ^ expect)
            checked += 1
    assert checked == len(CLASS_NAMES) * len(TEMPLATES[task])


def test_fact_scores_count_false_statements():
    from crossflow.data import Item
    from crossflow.evaluate.caption_facts import fact_scores
    scene = [Item(5, "red", 0), Item(8, "blue", 1)]                   # a red sandal left of a blue bag
    good = fact_scores(["a red sandal to the left of a blue bag"], [scene], grid=2)
    assert good["precision"] == 1.0 and good["recall_class"] == 1.0 and good["recall_color"] == 1.0
    bad = fact_scores(["a green sandal to the right of a blue bag"], [scene], grid=2)
    assert bad["precision_color"] == 0.5 and bad["precision_relation"] == 0.0 and bad["precision_class"] == 1.0


# ----------------------------------------------------------------------------------------------------------
# crossflow.tasks.caption: vocabulary, the text VAE's decoder round trip, inversion, the verdict rule
# ----------------------------------------------------------------------------------------------------------

CAPTIONS = ["a red t-shirt", "two blue bags", "a photo of a green sandal to the left of a white coat",
            "a pullover in yellow and an ankle boot in red"]


def test_vocabulary_round_trip():
    """Word pieces -> compact ids -> the same captions (hyphens rejoined); unseen pieces become [UNK]."""
    from crossflow.config import TextConfig
    from crossflow.encoders.text import _tokenizer
    from crossflow.tasks.caption import Vocabulary, token_ids
    text = TextConfig()
    raw = token_ids(CAPTIONS, text)
    vocab = Vocabulary(_tokenizer(text.model), raw)
    ids = vocab.encode(raw)
    assert int(ids.max()) < len(vocab) and vocab.decode(ids) == CAPTIONS
    unseen = vocab.encode(token_ids(["a purple hat"], text))
    assert (unseen == vocab.unk).sum() == 2 and vocab.decode(unseen) == ["a"]


def test_text_vae_decoder_round_trip_on_a_smoke_model():
    """The non-autoregressive decoder learns to read four captions back from their latents (every position at
    once, [SEP] and the padding after it included): the smoke-sized text VAE with a deterministic encoder (the
    variational one's sampled latents make exact recall a matter of training length), 600 steps."""
    import torch

    from crossflow.config import TextConfig
    from crossflow.encoders import embed_captions
    from crossflow.encoders.text import _tokenizer
    from crossflow.tasks.caption import (CaptionData, Vocabulary, fit, get_caption_config, reconstruction,
                                         token_ids, TextVAE)
    cfg = get_caption_config("smoke", {"fit.steps": 600, "fit.batch_size": 8, "fit.lr": 3e-3,
                                       "text_vae.encoder.kind": "deterministic", "text_vae.kl_weight": 0.0})
    text = TextConfig()
    x, mask = embed_captions(CAPTIONS, text)
    raw = token_ids(CAPTIONS, text)
    vocab = Vocabulary(_tokenizer(text.model), raw)
    data = CaptionData(torch.zeros(4, 4, 8, 8), torch.arange(4)[:, None], x, mask, vocab.encode(raw), vocab.ids,
                       CAPTIONS)
    vae = TextVAE(cfg.text_vae, x.shape[-1], x.shape[1], (4, 8, 8), len(vocab))
    history = fit(vae, data.batch, cfg.fit, seed=0, progress=False)
    assert history[-1]["rec"] < history[0]["rec"]
    rec = reconstruction(vae, vocab, x, mask, data.ids)
    assert rec["token_accuracy"] == 1.0 and rec["exact_match"] == 1.0, rec


def test_inversion_runs_the_text_to_image_flow_backwards():
    """With a constant velocity v = 1 the flow from z0 to z1 adds 1; run backwards from z1 it must subtract 1,
    with the conditional indicator."""
    import torch

    from crossflow.tasks.caption import invert_t2i
    seen = []

    class Net(torch.nn.Module):
        def forward(self, z, t, indicator=None):
            seen.append(indicator)
            return torch.ones_like(z)

    model = torch.nn.Module()
    model.net = Net()
    z1 = torch.randn(3, 4, 8, 8)
    assert torch.allclose(invert_t2i(model, z1, steps=5), z1 - 1, atol=1e-6)
    assert all(i is not None and bool((i == 1).all()) for i in seen)


def test_competitive_rule_is_the_stated_margin():
    from crossflow.tasks.caption import competitive_verdict
    assert competitive_verdict({"crossflow": [0.9, 0.92], "autoregressive": [1.0, 1.0]})["verdict"] == "holds"
    assert competitive_verdict({"crossflow": [0.8, 0.9], "autoregressive": [1.0, 1.0]})["verdict"] == "fails"
