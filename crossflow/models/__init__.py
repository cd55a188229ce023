from .flow_transformer import FlowTransformer, count_parameters, has_cross_attention
from .text_ve import TextVE
from .towers import ENC_LOSSES, EncoderLoss, ImageTower, TextDecoder, TextTower

__all__ = ["FlowTransformer", "TextVE", "ImageTower", "TextTower", "TextDecoder", "ENC_LOSSES", "EncoderLoss", "count_parameters",
           "has_cross_attention"]
from .crossflow import CrossFlow  # noqa: E402

__all__.append("CrossFlow")
