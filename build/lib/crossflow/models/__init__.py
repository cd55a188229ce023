from .flow_transformer import FlowTransformer, count_parameters, has_cross_attention
from .text_ve import TextVE
from .towers import ImageTower, TextDecoder, TextTower

__all__ = ["FlowTransformer", "TextVE", "ImageTower", "TextTower", "TextDecoder", "count_parameters",
           "has_cross_attention"]
from .crossflow import CrossFlow  # noqa: E402

__all__.append("CrossFlow")
