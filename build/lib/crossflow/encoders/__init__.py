from .autoencoder import build_autoencoder, decode_latents, encode_images, get_autoencoder, train_autoencoder
from .text import FrozenTextEncoder, check_prompts, embed_captions, resolve_text_model

__all__ = ["FrozenTextEncoder", "check_prompts", "embed_captions", "resolve_text_model", "build_autoencoder",
           "train_autoencoder", "get_autoencoder", "encode_images", "decode_latents"]
