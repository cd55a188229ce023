"""Image captioning (Table 4): image latent -> text latent -> words, with a non-autoregressive text decoder.

The paper evolves an image latent into a text latent with CrossFlow and decodes the text latent with a
non-autoregressive decoder ("stacked transformer blocks"; never released). Here, on the text-to-image domain
(Fashion-MNIST scenes, template captions, the domain autoencoder's image latents, MiniLM's word pieces):

- **Text VAE**: a Text VE (the text-to-image one's class) over the frozen language model's token states, and a
  :class:`TokenDecoder` that reads the text latent and predicts every word-piece position at once; trained on the
  training captions (cross-entropy on the real tokens + ``kl_weight`` x KL). Its reconstruction is reported.
- **CrossFlow** (image -> text): a :class:`LatentVE` turns the image latent into a Gaussian of the text latent's
  shape (z0; no noise), the flow transformer carries z0 to the text VAE's mean latent (z1); the VAE's decoder
  reads the result. Loss L_FM + recon_weight x L_rec(image latent from z0) + kl_weight x KL, as depth's image VE.
- **CrossFlow-T2I**: the text-to-image model run backwards (t = 1 -> 0 with its conditional velocity) from the
  image latent to its text latent z0, decoded by a :class:`TokenDecoder` trained on its frozen Text VE's samples.
- **Autoregressive**: a small transformer decoder with cross-attention to the image latent, trained by teacher
  forcing, greedy decoding: the conventional reference.

Every model trains with :func:`fit` (AdamW, warm-up, gradient clipping; the same budget per method). The task is
not in ``crossflow.tasks.TASKS``: that registry holds the one-stage pairs that :func:`crossflow.train.train`
trains; captioning is two-stage (text VAE first), as in the paper.

[open] choices, each a config field: the text latent has the image latent's shape (so the same flow transformer
serves); the vocabulary is the word pieces of the training captions (+ [UNK]); z0 is sampled at inference (seeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import (ConfigError, FlowNetConfig, SampleConfig, TextVEConfig, build_strict, with_overrides)
from ..device import randn
from ..flow import flow_matching_loss, kl_paper
from ..models.flow_transformer import FlowTransformer
from ..models.text_ve import TextVE
from ..sampling import _t, solve
from ..utils import format_mean_std  # noqa: F401  (the notebook's table cells)

METHODS = ("crossflow", "crossflow_t2i", "autoregressive")


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextVAEConfig:
    encoder: TextVEConfig = field(default_factory=TextVEConfig)   # the text-to-image Text VE's tiny shape
    decoder_width: int = 128            # [open] the non-autoregressive decoder ("stacked transformer blocks")
    decoder_depth: int = 2
    heads: int = 4
    kl_weight: float = 1e-3             # [open] as the Text VE's final recipe


@dataclass(frozen=True)
class LatentVEConfig:
    width: int = 64                     # [open] channels of the CNN encoder and decoder
    recon_weight: float = 1.0           # [open] L_rec weight (the image latent from z0), as depth's image VE
    kl_weight: float = 1e-3


@dataclass(frozen=True)
class ARConfig:
    width: int = 128                    # [open] the autoregressive reference: a transformer decoder
    depth: int = 3
    heads: int = 4


@dataclass(frozen=True)
class FitConfig:
    steps: int = 1500                   # [open] per model and seed: the whole notebook fits ~45 min on 2 CPU cores
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.03
    grad_clip: float = 1.0
    log_every: int = 25


@dataclass(frozen=True)
class ObjectiveConfig:
    sigma_min: float = 1e-5             # as text-to-image ([code])
    t_mean: float = 0.0                 # logit-normal t ([paper, code])
    t_std: float = 1.0


@dataclass(frozen=True)
class CaptionConfig:
    task: str = "caption"
    name: str = "caption-tiny"
    profile: str = "tiny"               # also the text-to-image profile whose scenes, latents and captions it uses
    text_vae: TextVAEConfig = field(default_factory=TextVAEConfig)
    ve: LatentVEConfig = field(default_factory=LatentVEConfig)
    ar: ARConfig = field(default_factory=ARConfig)
    flow: FlowNetConfig = field(default_factory=lambda: FlowNetConfig(depth=4))   # [open] 64 latent tokens
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(steps=25, cfg_scale=1.0))  # [open] Euler-25
    n_test: int = 500                   # test scenes scored (from the text-to-image test split)
    n_refs: int = 5                     # reference captions per test scene (the templates give them)
    refs_seed: int = 12345              # the references' own random stream, apart from training captions

    def replace(self, overrides: dict | None = None) -> "CaptionConfig":
        return with_overrides(self, overrides, config_from_dict)


def config_from_dict(d: dict) -> CaptionConfig:
    cfg = build_strict(CaptionConfig, d)
    if cfg.task != "caption":
        raise ConfigError(f"task must be 'caption' in a CaptionConfig, got {cfg.task!r}")
    if cfg.n_refs < 1 or cfg.n_test < 1:
        raise ConfigError("n_refs and n_test must be >= 1")
    return cfg


def get_caption_config(profile: str = "tiny", overrides: dict | None = None) -> CaptionConfig:
    """The profile's captioning sizes (crossflow.profiles, field ``caption``) with dotted overrides."""
    from ..profiles import get_profile
    p = get_profile(profile)
    return CaptionConfig(name=f"caption-{profile}", profile=profile).replace({**p.caption, **(overrides or {})})


# ----------------------------------------------------------------------------------------------------------
# Data: image latents, token states and word-piece ids of the text-to-image features
# ----------------------------------------------------------------------------------------------------------

@dataclass
class CaptionData:
    """Training scenes: image latents z_img (N, c, h, w), each scene's caption indices (N, K) into the unique
    captions' token states x (U, n, d), mask (U, n) and word-piece ids (U, n) in the compact vocabulary."""
    z_img: torch.Tensor
    caption_index: torch.Tensor
    x: torch.Tensor
    mask: torch.Tensor
    ids: torch.Tensor
    vocab: list[int]                    # compact id -> the tokenizer's id
    captions: list[str]

    def batch(self, g: torch.Generator, batch_size: int) -> dict:
        idx = torch.randint(len(self.z_img), (batch_size,), generator=g)
        cap = self.caption_index[idx, torch.randint(self.caption_index.shape[1], (batch_size,), generator=g)]
        return {"z_img": self.z_img[idx], "x": self.x[cap], "mask": self.mask[cap], "ids": self.ids[cap]}


class Vocabulary:
    """The word pieces of the training captions (+ [UNK]), mapped to 0..V-1; [PAD] is 0."""

    def __init__(self, tokenizer, token_ids: torch.Tensor):
        special = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
        used = sorted(set(token_ids.flatten().tolist()) - set(special))
        self.tokenizer, self.ids = tokenizer, special + used
        self.pad, self.unk, self.cls, self.sep = 0, 1, 2, 3
        self.lookup = torch.full((len(tokenizer),), self.unk, dtype=torch.long)   # tokenizer id -> compact id
        self.lookup[torch.tensor(self.ids)] = torch.arange(len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids -> compact ids ([UNK] for word pieces the training captions never used)."""
        return self.lookup[token_ids]

    def decode(self, compact: torch.Tensor) -> list[str]:
        """Compact ids (B, n) -> caption strings: the pieces after [CLS] up to the first [SEP]."""
        out = []
        for row in compact.tolist():
            pieces = []
            for c in row[1:] if row and row[0] == self.cls else row:
                if c == self.sep:
                    break
                if c not in (self.pad, self.cls):
                    pieces.append(self.ids[c])
            text = self.tokenizer.decode(pieces, skip_special_tokens=True).strip()
            out.append(text.replace(" - ", "-"))          # the tokenizer spaces hyphens: "t - shirt"
        return out


def token_ids(captions: list[str], text_cfg) -> torch.Tensor:
    """The frozen language model's word-piece ids of ``captions`` (B, n), padded to ``text.max_length``."""
    from ..encoders.text import _tokenizer
    tok = _tokenizer(text_cfg.model)(list(captions), padding="max_length", truncation=True,
                                     max_length=text_cfg.max_length, return_tensors="pt")
    return tok["input_ids"]


def caption_data(t2i_cfg) -> tuple[CaptionData, Vocabulary]:
    """The training split of the text-to-image features as captioning data, and its vocabulary."""
    from ..encoders.text import _tokenizer
    from ..features import prepare_features
    feats = prepare_features(t2i_cfg, progress=False)
    raw = token_ids(feats.captions, t2i_cfg.text)
    vocab = Vocabulary(_tokenizer(t2i_cfg.text.model), raw)
    return CaptionData(feats.z1, feats.caption_index, feats.x, feats.mask, vocab.encode(raw), vocab.ids,
                       feats.captions), vocab


@dataclass
class CaptionTestSet:
    z_img: torch.Tensor                 # (N, c, h, w) image latents of the test scenes
    items: list                         # each scene's items (for the exact semantic score)
    refs: list[list[str]]               # n_refs true captions per scene
    grid: int


def test_set(cfg: CaptionConfig, t2i_cfg) -> CaptionTestSet:
    """The first ``n_test`` test scenes with ``n_refs`` true template captions each (their own random stream)."""
    from ..data.scenes import scene_captions
    from ..features import load_scenes, prepare_features
    scenes, z = load_scenes(t2i_cfg, "test"), prepare_features(t2i_cfg, "test", progress=False).z1
    n = min(cfg.n_test, len(scenes))
    refs = []
    for i in range(n):
        rng = np.random.default_rng([cfg.refs_seed, i])
        refs.append(scene_captions(scenes.items[i], scenes.tasks[i][0], cfg.n_refs, rng, t2i_cfg.data.grid)[0])
    return CaptionTestSet(z[:n], scenes.items[:n], refs, t2i_cfg.data.grid)


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

def _layer(width: int, heads: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)


class TokenDecoder(nn.Module):
    """Non-autoregressive text decoder: a latent (B, c, h, w) -> logits (B, n, V) of every position at once. The
    latent's h x w positions (c channels each) and n learned position queries pass through ``depth`` transformer
    blocks together; the queries' outputs are read as the tokens."""

    def __init__(self, latent_shape, n_tokens: int, vocab_size: int, width: int, depth: int, heads: int):
        super().__init__()
        c, h, w = latent_shape
        self.n_tokens = n_tokens
        self.inp = nn.Linear(c, width)
        self.pos = nn.Parameter(0.02 * torch.randn(1, h * w, width))
        self.queries = nn.Parameter(0.02 * torch.randn(1, n_tokens, width))
        self.blocks = nn.ModuleList([_layer(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z.flatten(2).transpose(1, 2)) + self.pos
        h = torch.cat([h, self.queries.expand(len(z), -1, -1)], 1)
        for blk in self.blocks:
            h = blk(h)
        return self.out(self.norm(h[:, -self.n_tokens:]))


def token_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the positions of ``mask`` (all positions when None: a non-autoregressive decoder also
    predicts the padding after [SEP], which is how it knows the caption's length)."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), ids, reduction="none")
    if mask is None:
        return ce.mean()
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum()


class TextVAE(nn.Module):
    """Text VE (token states -> mu, logvar of the latent shape) + :class:`TokenDecoder` (latent -> word pieces)."""

    def __init__(self, cfg: TextVAEConfig, text_dim: int, n_tokens: int, latent_shape, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = TextVE(cfg.encoder, text_dim, n_tokens, latent_shape)
        self.decoder = TokenDecoder(latent_shape, n_tokens, vocab_size, cfg.decoder_width, cfg.decoder_depth,
                                    cfg.heads)

    def loss(self, batch: dict, g=None):
        z, mu, logvar = self.encoder.encode(batch["x"], batch["mask"], g)
        rec = token_loss(self.decoder(z), batch["ids"])
        kl = kl_paper(mu, logvar) if logvar is not None else torch.zeros(())
        return rec + self.cfg.kl_weight * kl, {"rec": rec.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def latent(self, x, mask) -> torch.Tensor:
        """The target of the captioning flow: the encoder's mean."""
        return self.encoder(x, mask)[0]


class LatentVE(nn.Module):
    """Image side of CrossFlow captioning: image latent (B, c, h, w) -> mu, logvar of the text latent's shape,
    z0 = mu + sigma * eps; a decoder reconstructs the image latent from z0 (the reconstruction loss)."""

    def __init__(self, vcfg: LatentVEConfig, in_channels: int, out_channels: int):
        super().__init__()
        w = vcfg.width
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)   # noqa: E731
        self.enc = nn.Sequential(conv(in_channels, w), nn.SiLU(), conv(w, w), nn.SiLU(), conv(w, 2 * out_channels))
        self.dec = nn.Sequential(conv(out_channels, w), nn.SiLU(), conv(w, w), nn.SiLU(), conv(w, in_channels))

    def encode(self, z_img, generator=None):
        mu, logvar = self.enc(z_img).chunk(2, dim=1)
        return mu + torch.exp(0.5 * logvar) * randn(mu.shape, generator, mu.device, mu.dtype), mu, logvar


class CrossFlowCaptioner(nn.Module):
    """v(z_t, t) on the straight path from z0 = LatentVE(image latent) to z1 = the text VAE's latent."""

    def __init__(self, cfg: CaptionConfig, latent_shape):
        super().__init__()
        self.cfg = cfg
        self.ve = LatentVE(cfg.ve, latent_shape[0], latent_shape[0])
        self.net = FlowTransformer(cfg.flow, latent_shape)

    def loss(self, batch: dict, g=None):
        z0, mu, logvar = self.ve.encode(batch["z_img"], g)
        fm = flow_matching_loss(lambda z, t: self.net(z, t), z0, batch["z_text"], self.cfg.objective, g)
        rec = F.mse_loss(self.ve.dec(z0).float(), batch["z_img"].float())
        kl = kl_paper(mu, logvar)
        return fm + self.cfg.ve.recon_weight * rec + self.cfg.ve.kl_weight * kl, {"fm": fm.detach(),
                                                                                   "rec": rec.detach()}

    @torch.no_grad()
    def text_latent(self, z_img: torch.Tensor, g=None) -> torch.Tensor:
        z0 = self.ve.encode(z_img, g)[0]
        return solve(lambda z, t: self.net(z, _t(z, t)), z0, self.cfg.sample.solver, self.cfg.sample.steps)


class ARCaptioner(nn.Module):
    """The autoregressive reference: word pieces by a causal transformer decoder that cross-attends to the image
    latent's positions; teacher forcing in training, greedy decoding."""

    def __init__(self, acfg: ARConfig, latent_shape, n_tokens: int, vocab_size: int):
        super().__init__()
        c, h, w = latent_shape
        self.n_tokens = n_tokens
        self.img = nn.Linear(c, acfg.width)
        self.img_pos = nn.Parameter(0.02 * torch.randn(1, h * w, acfg.width))
        self.tok = nn.Embedding(vocab_size, acfg.width)
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tokens, acfg.width))
        layer = nn.TransformerDecoderLayer(acfg.width, acfg.heads, 2 * acfg.width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.dec = nn.TransformerDecoder(layer, acfg.depth)
        self.norm = nn.LayerNorm(acfg.width)
        self.out = nn.Linear(acfg.width, vocab_size)

    def logits(self, z_img: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        n = prefix.shape[1]
        mem = self.img(z_img.flatten(2).transpose(1, 2)) + self.img_pos
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=prefix.device)
        h = self.dec(self.tok(prefix) + self.pos[:, :n], mem, tgt_mask=causal, tgt_is_causal=True)
        return self.out(self.norm(h))

    def loss(self, batch: dict, g=None):
        ids, mask = batch["ids"], batch["mask"]
        ce = token_loss(self.logits(batch["z_img"], ids[:, :-1]), ids[:, 1:], mask[:, 1:])
        return ce, {"ce": ce.detach()}

    @torch.no_grad()
    def greedy(self, z_img: torch.Tensor, cls: int, sep: int) -> torch.Tensor:
        seq = torch.full((len(z_img), 1), cls, dtype=torch.long, device=z_img.device)
        done = torch.zeros(len(z_img), dtype=torch.bool, device=z_img.device)
        for _ in range(self.n_tokens - 1):
            nxt = self.logits(z_img, seq)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done |= nxt == sep
            if done.all():
                break
        return seq


# ----------------------------------------------------------------------------------------------------------
# Training: one loop for every model of this task
# ----------------------------------------------------------------------------------------------------------

def fit(module: nn.Module, batches, fc: FitConfig, seed: int, desc: str = "fit", progress: bool = True) -> list[dict]:
    """Train ``module`` (its ``loss(batch, generator)``) for ``fc.steps`` AdamW steps on ``batches(generator,
    batch_size)``; linear warm-up then constant, gradient clipping. Returns the logged history; ``module`` ends
    in eval mode."""
    from ..progress import tqdm
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=fc.lr, weight_decay=fc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, fc.warmup_steps)))
    module.train()
    history = []
    for step in tqdm(range(fc.steps), desc=desc, disable=not progress, leave=False):
        loss, terms = module.loss(batches(g, fc.batch_size), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, fc.grad_clip)
        opt.step(), sched.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{desc}: loss {loss.item()} at step {step}; lower fit.lr")
        if (step + 1) % fc.log_every == 0 or step + 1 == fc.steps:
            history.append({"step": step + 1, "loss": loss.item(), **{k: float(v) for k, v in terms.items()}})
    module.eval()
    return history


def train_crossflow(model: CrossFlowCaptioner, cfg: CaptionConfig, data: CaptionData, vae: TextVAE, seed: int,
                         progress: bool = True) -> list[dict]:
    """Train the CrossFlow captioner on the frozen text VAE's mean latents of the training captions."""
    z_text = torch.cat([vae.latent(data.x[i:i + 1024], data.mask[i:i + 1024]) for i in range(0, len(data.x), 1024)])

    def batches(g, bs):
        idx = torch.randint(len(data.z_img), (bs,), generator=g)
        cap = data.caption_index[idx, torch.randint(data.caption_index.shape[1], (bs,), generator=g)]
        return {"z_img": data.z_img[idx], "z_text": z_text[cap]}

    return fit(model, batches, cfg.fit, seed, "CrossFlow captioner", progress)


class _FrozenT2IDecoder(nn.Module):
    """A token decoder trained on samples z0 of a frozen text-to-image Text VE (CrossFlow-T2I's read-out)."""

    def __init__(self, text_ve: nn.Module, decoder: TokenDecoder):
        super().__init__()
        self.text_ve, self.decoder = text_ve.requires_grad_(False).eval(), decoder

    def loss(self, batch: dict, g=None):
        with torch.no_grad():
            z0 = self.text_ve.encode(batch["x"], batch["mask"], g)[0]
        rec = token_loss(self.decoder(z0), batch["ids"])
        return rec, {"rec": rec.detach()}


# ----------------------------------------------------------------------------------------------------------
# Captioning and scores
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def caption_crossflow(model: CrossFlowCaptioner, decoder: TokenDecoder, vocab: Vocabulary, z_img, seed: int = 0,
                      batch_size: int = 500) -> list[str]:
    g, out = torch.Generator().manual_seed(seed), []
    for i in range(0, len(z_img), batch_size):
        out += vocab.decode(decoder(model.text_latent(z_img[i:i + batch_size], g)).argmax(-1))
    return out


@torch.no_grad()
def invert_t2i(t2i_model, z_img: torch.Tensor, steps: int, solver: str = "euler") -> torch.Tensor:
    """The text-to-image flow backwards: from the image latent (t = 1) to the text latent z0 (t = 0), with the
    conditional velocity (indicator 1): ds = -dt on v(z, 1 - s)."""
    net = t2i_model.net
    ones = torch.ones(len(z_img), dtype=torch.long, device=z_img.device)
    return solve(lambda z, s: -net(z, _t(z, 1.0 - s), indicator=ones[:len(z)]), z_img, solver, steps)


@torch.no_grad()
def caption_t2i(t2i_model, decoder: TokenDecoder, vocab: Vocabulary, z_img, steps: int, solver: str = "euler",
                batch_size: int = 500) -> list[str]:
    out = []
    for i in range(0, len(z_img), batch_size):
        out += vocab.decode(decoder(invert_t2i(t2i_model, z_img[i:i + batch_size], steps, solver)).argmax(-1))
    return out


@torch.no_grad()
def caption_autoregressive(model: ARCaptioner, vocab: Vocabulary, z_img, batch_size: int = 500) -> list[str]:
    out = []
    for i in range(0, len(z_img), batch_size):
        out += vocab.decode(model.greedy(z_img[i:i + batch_size], vocab.cls, vocab.sep))
    return out


@torch.no_grad()
def reconstruction(vae: TextVAE, vocab: Vocabulary, x, mask, ids) -> dict:
    """The text VAE on held-out captions, from the mean latent: token accuracy over the real tokens and the share
    of captions reproduced exactly."""
    pred = vae.decoder(vae.latent(x, mask)).argmax(-1)
    m = mask.bool()
    tok = float((pred == ids)[m].float().mean())
    exact = float(np.mean([a == b for a, b in zip(vocab.decode(pred), vocab.decode(ids))]))
    return {"token_accuracy": tok, "exact_match": exact, "n": len(ids)}


def score_captions(captions: list[str], test: CaptionTestSet, spice: bool = True) -> dict:
    """pycocoevalcap's metrics against the references and the exact semantic score against the scenes."""
    from ..evaluate.caption_facts import fact_scores
    from ..evaluate.captions import caption_scores
    ids = [str(i) for i in range(len(captions))]
    coco = caption_scores(dict(zip(ids, test.refs)), dict(zip(ids, captions)), spice=spice)
    return {**coco, "facts": fact_scores(captions, test.items, test.grid)}


def competitive_verdict(cider: dict[str, list[float]], margin: float = 0.9, method: str = "crossflow",
                        reference: str = "autoregressive") -> dict:
    """The rule fixed before the runs: CrossFlow captioning is competitive when its mean CIDEr (over seeds) is at
    least ``margin`` x the autoregressive reference's; every seed pair is listed beside it."""
    a, b = float(np.mean(cider[method])), float(np.mean(cider[reference]))
    ratio = a / b if b > 0 else math.inf
    verdict = "holds" if ratio >= margin else "fails"
    text = (f"{verdict}: CrossFlow CIDEr {100 * a:.1f} vs autoregressive {100 * b:.1f} (x 100, as the paper; ratio "
            f"{ratio:.2f}; competitive at >= {margin:.2f}, fixed before running)")
    return {"verdict": verdict, "ratio": ratio, "margin": margin, "text": text, "means": {method: a, reference: b}}


# ----------------------------------------------------------------------------------------------------------
# One seed of every method: trained once into its run folder, then reused
# ----------------------------------------------------------------------------------------------------------

def _trained(path, module: nn.Module, train_fn) -> tuple[nn.Module, list[dict]]:
    """``module`` with the weights saved at ``path`` (checksummed), or trained by ``train_fn()`` and saved."""
    import json
    from pathlib import Path

    from ..integrity import checked_write, verify
    path = Path(path)
    if path.exists() and verify(path) is None:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return module.eval(), json.loads(path.with_suffix(".json").read_text())
    history = train_fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    with checked_write(path) as tmp:
        torch.save(module.state_dict(), tmp)
    from ..utils import write_json
    write_json(path.with_suffix(".json"), history)
    return module.eval(), history


def run_seed(cfg: CaptionConfig, data: CaptionData, vocab: Vocabulary, test: CaptionTestSet, t2i_model, seed: int,
             run_dir, held_out: dict, t2i_id: str = "", progress: bool = True) -> dict:
    """Train (or reload from ``run_dir``) the text VAE, the CrossFlow captioner, CrossFlow-T2I's decoder and the
    autoregressive captioner of one seed; caption the test scenes with each. Returns {"captions": {method: [...]},
    "reconstruction": the text VAE on ``held_out`` (x, mask, ids), "histories": {model: [...]}}. ``t2i_id`` (the
    text-to-image checkpoint's sha256) is part of the run's spec: a folder made with another spec is refused."""
    import json
    from pathlib import Path

    from ..config import to_dict
    from ..utils import write_json
    run_dir = Path(run_dir)
    spec = {"config": to_dict(cfg), "seed": seed, "t2i": t2i_id, "vocab": vocab.ids}
    if (run_dir / "spec.json").exists():
        if json.loads((run_dir / "spec.json").read_text()) != json.loads(json.dumps(spec, default=str)):
            raise ValueError(f"{run_dir} holds models of another config, seed or text-to-image model; delete it or "
                             f"use another runs_dir")
    else:
        write_json(run_dir / "spec.json", spec)
    shape, n, d, V = tuple(data.z_img.shape[1:]), data.x.shape[1], data.x.shape[-1], len(vocab)
    vae = TextVAE(cfg.text_vae, d, n, shape, V)
    vae, h_vae = _trained(run_dir / "text_vae.pt", vae, lambda: fit(vae, data.batch, cfg.fit, seed, "text VAE", progress))
    cf = CrossFlowCaptioner(cfg, shape)
    cf, h_cf = _trained(run_dir / "crossflow.pt", cf, lambda: train_crossflow(cf, cfg, data, vae, seed, progress))
    dec = TokenDecoder(shape, n, V, cfg.text_vae.decoder_width, cfg.text_vae.decoder_depth, cfg.text_vae.heads)
    wrapper = _FrozenT2IDecoder(t2i_model.text_ve, dec)
    _, h_t2i = _trained(run_dir / "t2i_decoder.pt", wrapper,
                        lambda: fit(wrapper, data.batch, cfg.fit, seed, "CrossFlow-T2I decoder", progress))
    ar = ARCaptioner(cfg.ar, shape, n, V)
    ar, h_ar = _trained(run_dir / "autoregressive.pt", ar,
                        lambda: fit(ar, data.batch, cfg.fit, seed, "autoregressive captioner", progress))
    captions = {"crossflow": caption_crossflow(cf, vae.decoder, vocab, test.z_img, seed=seed),
                "crossflow_t2i": caption_t2i(t2i_model, dec, vocab, test.z_img, cfg.sample.steps, cfg.sample.solver),
                "autoregressive": caption_autoregressive(ar, vocab, test.z_img)}
    return {"captions": captions, "reconstruction": reconstruction(vae, vocab, **held_out),
            "histories": {"text_vae": h_vae, "crossflow": h_cf, "crossflow_t2i_decoder": h_t2i,
                          "autoregressive": h_ar}}
