"""CrossFlowPipeline: a trained text-to-image model as a diffusers pipeline (save_pretrained / from_pretrained).

    from crossflow.hub import CrossFlowPipeline
    pipe = CrossFlowPipeline.from_pretrained("demo/crossflow-tiny")      # the committed demo model
    images = pipe(["a red bag", "two green sandals"], num_inference_steps=50, guidance_scale=7.0,
                  generator=torch.Generator().manual_seed(0))            # (N, 3, H, W) in [0, 1]
    z0 = pipe.encode_prompt(["a red bag"])                               # text latents: interpolate, add, ...
    images = pipe(z0=z0)

Components (each saved in its own folder by ``save_pretrained``): ``source_encoder`` (the Text VE),
``flow`` (the flow transformer), ``vae`` (diffusers ``AutoencoderKL``), and the frozen language model's
``tokenizer`` / ``text_encoder``. The language model is **not saved** (87 MB for MiniLM): ``from_pretrained``
loads it from ``text.model`` of the source encoder's config (the packaged MiniLM by default), or takes
``tokenizer=`` / ``text_encoder=`` arguments. The two CrossFlow components are ``diffusers.ModelMixin`` wrappers
around ``crossflow.models.TextVE`` and ``FlowTransformer``; sampling and decoding are the library's own
(``generate_from_z0``, ``decode_latents``), so the pipeline gives the images ``text_to_image`` gives.
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from diffusers import AutoencoderKL, ConfigMixin, DiffusionPipeline, ModelMixin
from diffusers.configuration_utils import register_to_config

from .config import FlowNetConfig, TextConfig, TextVEConfig
from .device import module_device
from .encoders.autoencoder import decode_latents
from .models.flow_transformer import FlowTransformer
from .models.text_ve import TextVE
from .sampling import generate_from_z0


class CrossFlowTextVE(ModelMixin, ConfigMixin):
    """The source encoder (Text VE) with what it needs to read prompts: the language model's settings."""

    @register_to_config
    def __init__(self, text_ve: dict, text_dim: int, n_tokens: int, latent_shape: list, text: dict):
        super().__init__()
        self.ve = TextVE(TextVEConfig(**text_ve), text_dim, n_tokens, tuple(latent_shape))

    def encode(self, x, mask, generator=None):
        return self.ve.encode(x, mask, generator)


class CrossFlowFlowNet(ModelMixin, ConfigMixin):
    """The flow transformer v(z_t, t, indicator), with the sampling defaults it was evaluated with."""

    @register_to_config
    def __init__(self, flow: dict, latent_shape: list, sample: dict, scaling_factor: float):
        super().__init__()
        self.net = FlowTransformer(FlowNetConfig(**flow), tuple(latent_shape))


class CrossFlowPipeline(DiffusionPipeline):
    """Prompts -> images with CrossFlow: text latent z0 from the Text VE, then the flow ODE with indicator CFG."""

    model_cpu_offload_seq = "text_encoder->source_encoder->flow->vae"
    _optional_components = ["tokenizer", "text_encoder"]

    def __init__(self, source_encoder: CrossFlowTextVE, flow: CrossFlowFlowNet, vae: AutoencoderKL,
                 tokenizer=None, text_encoder=None):
        super().__init__()
        self.register_modules(source_encoder=source_encoder, flow=flow, vae=vae, tokenizer=tokenizer,
                              text_encoder=text_encoder)
        self._text = None

    # -- building --------------------------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, cfg) -> "CrossFlowPipeline":
        """A pipeline around a trained ``crossflow.models.CrossFlow`` (its EMA weights) and its autoencoder."""
        import copy

        from .features import autoencoder_for
        vae, scaling, _ = autoencoder_for(cfg, progress=False)
        ve = model.text_ve
        src = CrossFlowTextVE(text_ve=asdict(ve.cfg), text_dim=ve.proj_in.in_features, n_tokens=ve.pos.shape[1],
                              latent_shape=list(cfg.latent_shape), text=asdict(cfg.text))
        src.ve.load_state_dict(ve.state_dict())
        flow = CrossFlowFlowNet(flow=asdict(cfg.flow), latent_shape=list(cfg.latent_shape), sample=asdict(cfg.sample),
                                scaling_factor=float(scaling))
        flow.net.load_state_dict(model.net.state_dict())
        return cls(source_encoder=src.eval(), flow=flow.eval(), vae=copy.deepcopy(vae).eval())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "CrossFlowPipeline":
        """diffusers' loader, then the frozen language model of ``text.model`` when none was passed, and
        everything in float32 (the committed demo model is stored in float16 to stay small)."""
        import diffusers.utils as du
        # newer diffusers call it `dtype` (and warn about `torch_dtype`); older ones know only `torch_dtype`
        new = hasattr(getattr(du, "deprecation_utils", None), "_resolve_dtype")
        if "dtype" not in kwargs and "torch_dtype" not in kwargs:
            kwargs["dtype" if new else "torch_dtype"] = torch.float32
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def text_config(self) -> TextConfig:
        return TextConfig(**self.source_encoder.config.text)

    def _text_encoder(self):
        """The frozen language model (crossflow.encoders.FrozenTextEncoder), loaded once."""
        from .encoders.text import FrozenTextEncoder
        if self._text is None:
            dev = module_device(self.flow)
            tok, enc = self.tokenizer, self.text_encoder
            if isinstance(tok, (list, tuple)) or isinstance(enc, (list, tuple)):   # saved as "not saved"
                tok = enc = None
            self._text = FrozenTextEncoder(self.text_config, dev, tokenizer=tok, model=enc)
            self.tokenizer, self.text_encoder = self._text.tokenizer, self._text.model
        return self._text

    # -- the two steps ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """Prompts -> text latents z0 (N, c, h, w): a sample of the Text VE's Gaussian (``generator``: a CPU
        generator, default seed 0), on the pipeline's device. Latent arithmetic and interpolation act on these."""
        from .encoders.text import check_prompts, embed_captions
        prompts = check_prompts([prompt] if isinstance(prompt, str) else prompt, self.text_config)
        dev = module_device(self.flow)
        # as text_to_image embeds them (with the empty prompt, through the embedding cache): the same numbers
        x, mask = embed_captions(prompts + [""], self.text_config, encoder=self._text_encoder(), device=dev)
        x, mask = x[:-1], mask[:-1]
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        return self.source_encoder.eval().encode(x.to(dev), mask.to(dev), g)[0]

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None,
                 z0: torch.Tensor | None = None, solver: str | None = None, output_type: str = "pt"):
        """Images for ``prompt`` (or for given text latents ``z0``): float (N, 3, H, W) in [0, 1] on the CPU, or
        a list of PIL images with ``output_type="pil"``. Defaults: the model's own sampling settings."""
        sample = self.flow.config.sample
        steps = num_inference_steps or sample["steps"]
        scale = sample["cfg_scale"] if guidance_scale is None else guidance_scale
        if z0 is None:
            if prompt is None:
                raise ValueError("pass prompt (a string or a list of strings) or z0 (text latents)")
            z0 = self.encode_prompt(prompt, generator)
        z1, _ = generate_from_z0(self.flow.eval(), z0, scale=scale, steps=steps, solver=solver or sample["solver"])
        images = decode_latents(self.vae, z1, self.flow.config.scaling_factor)
        if output_type == "pil":
            from PIL import Image
            arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
            return [Image.fromarray(a) for a in arr]
        return images
