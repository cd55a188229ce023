"""Frozen text encoders (transformers) and the image autoencoder (diffusers), offline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from crossflow.config import AutoencoderConfig, TextConfig
from crossflow.encoders import (FrozenTextEncoder, build_autoencoder, decode_latents, embed_captions,
                                encode_images, get_autoencoder, resolve_text_model)


@pytest.fixture(scope="module")
def minilm():
    return FrozenTextEncoder(TextConfig())


def test_packaged_minilm_loads_offline(minilm):
    x, mask = minilm.encode(["a red sandal to the left of a blue bag", "two white sneakers"])
    assert x.shape == (2, 24, 384) and mask.shape == (2, 24) and mask.dtype == torch.bool
    assert mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]        # the longer caption has more tokens
    assert mask[:, 0].all() and not mask[:, -1].any()                # padded at the end
    # different captions, different states; a caption's states don't depend on its batch neighbours
    assert not torch.allclose(x[0], x[1])
    x_alone, _ = minilm.encode(["two white sneakers"])
    assert torch.allclose(x_alone[0], x[1], atol=1e-4)


def test_embed_captions_caches(minilm, monkeypatch):
    caps = ["a green coat", "three red sandals"]
    x1, m1 = embed_captions(caps, TextConfig(), encoder=minilm)
    monkeypatch.setattr(FrozenTextEncoder, "encode", lambda *a, **k: pytest.fail("cache was not used"))
    x2, m2 = embed_captions(caps, TextConfig())
    assert torch.equal(x1, x2) and torch.equal(m1, m2)


def _save_tiny(kind: str, folder) -> str:
    """A tiny randomly initialised CLIP text / T5 model with the packaged WordPiece tokenizer, saved locally."""
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
    tok = AutoTokenizer.from_pretrained(resolve_text_model("minilm"))
    if kind == "clip":
        model = CLIPTextModel(CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=37,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             max_position_embeddings=77))
    else:
        model = T5EncoderModel(T5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                        num_heads=4))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_other_language_models_load_by_path(kind, tmp_path):
    """The loading path GPU users take for CLIP / T5 ids, exercised on tiny local models."""
    path = _save_tiny(kind, tmp_path / kind)
    enc = FrozenTextEncoder(TextConfig(model=path, max_length=12))
    expected = {"clip": "CLIPTextModel", "t5": "T5EncoderModel"}[kind]
    assert type(enc.model).__name__ == expected and enc.dim == 32
    x, mask = enc.encode(["a red sandal"])
    assert x.shape == (1, 12, 32)
    x10, _ = FrozenTextEncoder(TextConfig(model=path, max_length=12, embed_scale=10.0)).encode(["a red sandal"])
    assert torch.allclose(x10, 10 * x, atol=1e-5)                     # [code] multiplies T5 states by 10


def test_unknown_text_model_says_how_to_fix(tmp_path):
    with pytest.raises(OSError, match="minilm"):
        FrozenTextEncoder(TextConfig(model=str(tmp_path / "no-such-model")))


def test_autoencoder_from_pretrained_round_trip(tmp_path):
    """A tiny random AutoencoderKL saved with save_pretrained loads through the pretrained path."""
    cfg = AutoencoderConfig(block_out_channels=(8, 8, 16), latent_channels=4)
    vae = build_autoencoder(cfg, 32)
    vae.register_to_config(scaling_factor=0.5)
    vae.save_pretrained(tmp_path / "vae")
    loaded, scale, info = get_autoencoder(AutoencoderConfig(pretrained=str(tmp_path / "vae")))
    assert scale == 0.5 and info["source"].endswith("vae")
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    z = encode_images(loaded, images, scale)
    assert z.shape == (3, 4, 8, 8)
    assert torch.allclose(z, encode_images(vae.eval(), images, 0.5), atol=1e-5)
    out = decode_latents(loaded, z, scale)
    assert out.shape == (3, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    # a configured scaling factor wins over the stored one ([code] uses 0.23010 for SD-VAE)
    _, scale2, _ = get_autoencoder(AutoencoderConfig(pretrained=str(tmp_path / "vae"), scaling_factor=0.2301))
    assert scale2 == pytest.approx(0.2301)


@pytest.mark.slow
def test_trained_autoencoder_is_cached_with_its_measured_scale():
    cfg = AutoencoderConfig(block_out_channels=(8, 8, 8), steps=30, batch_size=16)
    rng = np.random.default_rng(0)
    images = np.zeros((64, 32, 32, 3), np.uint8)
    for im in images:                                  # simple coloured squares: learnable in 30 steps
        y, x = rng.integers(0, 20, 2)
        im[y:y + 12, x:x + 12] = rng.integers(60, 256, 3)
    vae, scale, info = get_autoencoder(cfg, images, data_key="squares")
    z = encode_images(vae, images, scale)
    assert z.std().item() == pytest.approx(1.0, rel=0.05)            # measured so that z1 has unit std
    assert info["recon_mse_probe"] < info["loss_curve"][0]            # it learned something
    again, scale_again, _ = get_autoencoder(cfg, None, data_key="squares")   # from the cache, no training
    assert scale_again == scale
    assert torch.allclose(encode_images(again, images, scale_again), z, atol=1e-5)
