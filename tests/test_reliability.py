"""Issue 12: nothing half-written, nothing silently wrong. Each test reproduces a failure a user met."""
from __future__ import annotations

import warnings

import pytest
import torch

from crossflow.config import get_config


@pytest.fixture(scope="module")
def smoke_model(smoke_cfg, smoke_features):
    from crossflow.models import CrossFlow
    torch.manual_seed(0)
    return CrossFlow(smoke_cfg, smoke_features.x.shape[-1], smoke_features.x.shape[1]).eval()


# ----------------------------------------------------------------------------------------------------------
# (6) prompts
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [("a red bag", "got one string"), ([], "non-empty list"),
                                         (None, "non-empty list"), (["a", None], "prompt 1 is NoneType")])
def test_bad_prompts_are_refused_clearly(smoke_cfg, smoke_model, bad, message):
    from crossflow.pipeline import text_to_image
    with pytest.raises(ValueError, match=message):
        text_to_image(smoke_model, smoke_cfg, bad, steps=1)


def test_truncated_prompts_are_counted_in_one_warning(smoke_cfg, smoke_model):
    from crossflow.pipeline import text_to_image
    long = "a red bag " * 20                                       # ~60 tokens > max_length 24
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = text_to_image(smoke_model, smoke_cfg, [long, "a red bag", long], steps=1)
    cut = [w for w in caught if "longer than text.max_length" in str(w.message)]
    assert len(images) == 3 and len(cut) == 1 and str(cut[0].message).startswith("2 of 3 prompts")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # short prompts: no warning at all
        text_to_image(smoke_model, smoke_cfg, ["a red bag"], steps=1)
