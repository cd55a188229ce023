"""Evaluation suite: FID (clean-fid), CLIP score, GenEval-style judge, with domain backends that are
trained here on real data when the usual networks (Inception, CLIP, Mask2Former) are not available.

See ``suite.py`` for the entry point (``load_evaluators``) and each module's docstring for what a number means.
"""
from .config import EVAL_PRESETS, EvalConfig, get_eval_config
from .fid import blur, frechet, wrong_caption_items
from .judge import Reading, geneval_summary, geneval_verdict, read_images, render_specs, validate_judge
from .store import cache_paths, load_or_train, stale_reason
from .suite import Evaluators, load_evaluators

__all__ = ["EVAL_PRESETS", "EvalConfig", "Evaluators", "Reading", "blur", "cache_paths", "frechet",
           "geneval_summary", "geneval_verdict", "get_eval_config", "load_evaluators", "load_or_train",
           "read_images", "render_specs", "stale_reason", "validate_judge", "wrong_caption_items"]
