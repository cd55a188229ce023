"""The evaluation suite: load (or train once) the evaluator networks and compute FID, CLIP score, GenEval.

    ev = load_evaluators(cfg)                       # cached under cache_dir("evaluators")
    ev.geneval(images, specs)                       # {"overall", "per_task", ...}
    ev.clip_score(images, captions)                 # {"mean", "std", "n"}
    ev.fid(images_a, images_b)                      # {"value", "n_a", "n_b"}
    ev.metric_info()                                # name + backend of every metric, for metrics.json

Every number carries its metric's name: "FID-domain", "CLIPScore-domain", "GenEval-domain" here; the paper's
FID-30K (Inception, COCO), CLIP score (ViT) and GenEval (Mask2Former detector) are different measurements.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..config import Config
from ..data import PromptSpec
from ..device import resolve_device
from .clip import HFClip, build_clip, domain_clip_score, embed_scene_captions, retrieval_accuracy, train_clip
from .config import EvalConfig, get_eval_config
from .fid import frechet, inception_features
from .judge import build_judge, geneval_score, read_images, train_judge, validate_judge
from .store import load_or_train

JUDGE_VERSION = 1      # bump when the judge's training code changes, so old caches are rebuilt
CLIP_VERSION = 1


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily set torch's intra-op threads (0 = unchanged); restored on exit."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _data_spec(cfg: Config) -> dict:
    return {**dataclasses.asdict(cfg.data), "fashion_root": None}   # where the files live does not matter


@dataclass
class Evaluators:
    cfg: Config
    ecfg: EvalConfig
    judge: torch.nn.Module
    judge_info: dict
    clip: object                       # DomainCLIP or HFClip
    clip_info: dict
    device: torch.device = torch.device("cpu")   # where the evaluator networks run (inputs are moved there)

    # -- metrics -------------------------------------------------------------------------------------------
    def geneval(self, images, specs: Sequence[PromptSpec]) -> dict:
        return geneval_score(self.judge, images, specs, self.cfg.data)

    def clip_scores(self, images, captions: Sequence[str]) -> np.ndarray:
        if isinstance(self.clip, HFClip):
            return self.clip.score(images, captions)
        return domain_clip_score(self.clip, images, captions, self.cfg)

    def clip_score(self, images, captions: Sequence[str]) -> dict:
        s = self.clip_scores(images, captions)
        return {"mean": float(s.mean()), "std": float(s.std()), "n": len(s)}

    def item_share(self, images) -> float:
        """The share of grid cells the judge reads as an item (not empty): Figure 9's plausibility reading."""
        return float((read_images(self.judge, images, self.cfg.data).cls >= 0).mean())

    def features(self, images) -> np.ndarray:
        if self.ecfg.fid_backend == "inception":
            return inception_features(images, device=self.device)
        return read_images(self.judge, images, self.cfg.data).features

    def fid(self, images_a, images_b=None, feats_b: np.ndarray | None = None) -> dict:
        """FID between two image sets (or images and precomputed reference features ``feats_b``)."""
        fb = self.features(images_b) if feats_b is None else feats_b
        return {"value": frechet(self.features(images_a), fb), "n_a": len(images_a), "n_b": len(fb)}

    # -- provenance ----------------------------------------------------------------------------------------
    def metric_info(self) -> dict:
        """Name and backend of each metric, to be written beside every number."""
        feat = self.cfg.data.grid ** 2 * self.ecfg.judge_feat
        fid = ({"name": "FID-Inception", "backend": "clean-fid InceptionV3 features (clean mode, 299 px) + "
                                                    "clean-fid frechet_distance"}
               if self.ecfg.fid_backend == "inception" else
               {"name": "FID-domain", "backend": f"clean-fid frechet_distance on judge-CNN penultimate features "
                                                 f"({self.cfg.data.grid ** 2} cells x {self.ecfg.judge_feat} = "
                                                 f"{feat}-d), judge trained on real train renders"})
        clip = ({"name": "CLIPScore", "backend": f"transformers CLIPModel {self.ecfg.clip_model}, raw cosine"}
                if isinstance(self.clip, HFClip) else
                {"name": "CLIPScore-domain", "backend": "contrastive image CNN + text head over frozen "
                                                        f"{self.cfg.text.model} token states, trained on real "
                                                        "train (image, caption) pairs; raw cosine"})
        gen = {"name": "GenEval-domain", "backend": "per-cell CNN judge (class or empty, colour) trained on real "
                                                    "renders; GenEval's six task rules on the grid",
               "judge_min_task_accuracy": self.judge_info.get("validation", {}).get("min_task_accuracy")}
        return {"fid": fid, "clip_score": clip, "geneval": gen}


def load_evaluators(cfg: Config, ecfg: EvalConfig | None = None, progress: bool = True,
                    device=None) -> Evaluators:
    """The evaluators for ``cfg``'s data on ``device`` (default: crossflow.device.default_device()): loaded from
    the cache, or trained once there (and validated) and cached."""
    ecfg = ecfg or get_eval_config(cfg.profile)
    device = resolve_device(device)
    if cfg.data.source != "scenes":
        raise NotImplementedError("the domain evaluators need data.source='scenes'; for COCO use the Inception "
                                  "and CLIP backends (fid_backend='inception', clip_model=...) and real GenEval")
    e = dataclasses.asdict(ecfg)
    with torch_threads(ecfg.threads):
        def fit_judge(net):
            info = train_judge(net, cfg.data, ecfg, progress)
            return {**info, "validation": validate_judge(net, cfg.data, ecfg.judge_val_prompts)}

        judge_keys = [k for k in e if k.startswith("judge_")] + ["seed"]
        judge, judge_info = load_or_train(
            "judge", {"version": JUDGE_VERSION, "data": _data_spec(cfg), "eval": {k: e[k] for k in judge_keys}},
            lambda: build_judge(cfg.data, ecfg), fit_judge, verbose=progress, device=device, seed=ecfg.seed)

        if ecfg.clip_model:
            return Evaluators(cfg, ecfg, judge, judge_info, HFClip(ecfg.clip_model, device),
                              {"source": ecfg.clip_model, "cached": True}, device)
        from ..encoders import embed_captions
        text_dim = embed_captions([""], cfg.text, device=device)[0].shape[-1]
        def fit_clip(net):
            from ..features import load_scenes
            train_scenes = load_scenes(cfg, "train")
            x, mask = embed_scene_captions(train_scenes, cfg, device)
            info = train_clip(net, train_scenes, x, mask, ecfg, progress)
            return {**info, "retrieval": retrieval_accuracy(net, load_scenes(cfg, "test"), cfg)}

        clip_keys = [k for k in e if k.startswith("clip_")] + ["seed"]
        clip, clip_info = load_or_train(
            "clip", {"version": CLIP_VERSION, "data": _data_spec(cfg), "text": dataclasses.asdict(cfg.text),
                     "text_dim": text_dim, "eval": {k: e[k] for k in clip_keys}},
            lambda: build_clip(cfg, ecfg, text_dim), fit_clip, verbose=progress, device=device, seed=ecfg.seed)
    return Evaluators(cfg, ecfg, judge, judge_info, clip, clip_info, device)


# ----------------------------------------------------------------------------------------------------------
# The metrics' own validation
# ----------------------------------------------------------------------------------------------------------

def metric_sanity(ev: Evaluators, n_fid: int | None = None, n_prompts: int | None = None, seed: int = 0,
                  data=None, blur_sigma: float = 1.0) -> dict:
    """Each metric on real images against broken versions of them; a trustworthy metric orders them right.

    FID: real test vs real train (the floor at this sample size) < blurred test vs train, and < renders of a
    wrong caption (every object replaced by one class) vs train. CLIP score and GenEval: real images with
    their own captions / prompts > the same images with another image's caption / prompt (rolled by one).
    ``data`` (a DataConfig) replaces ``ev.cfg.data`` for the image sets only, e.g. larger splits for tests.
    """
    from ..data import build_scenes, make_prompt_suite
    from .fid import blur, wrong_caption_items
    from .judge import render_specs
    dcfg = data or ev.cfg.data
    train, test = build_scenes(dcfg, "train"), build_scenes(dcfg, "test")
    n = min(n_fid or ev.ecfg.fid_samples, len(test), len(train))
    rng = np.random.default_rng([seed, 17])
    ti, ri = rng.choice(len(test), n, replace=False), rng.choice(len(train), n, replace=False)
    real, f_ref = test.images[ti], ev.features(train.images[ri])
    wrong = render_specs([], dcfg, "test", seed, items=wrong_caption_items([test.items[i] for i in ti], dcfg))
    fid = {"real_test_vs_train": ev.fid(real, feats_b=f_ref)["value"],
           "blurred_test_vs_train": ev.fid(blur(real, blur_sigma), feats_b=f_ref)["value"],
           "wrong_caption_vs_train": ev.fid(wrong, feats_b=f_ref)["value"], "n": n, "blur_sigma": blur_sigma}

    caps = [test.captions[i][0] for i in ti]
    match, shuf = ev.clip_scores(real, caps), ev.clip_scores(real, caps[1:] + caps[:1])
    clip = {"matched": float(match.mean()), "shuffled": float(shuf.mean()),
            "matched_wins": float((match > shuf).mean()), "n": n}

    specs = make_prompt_suite(dcfg, n=n_prompts or ev.ecfg.n_prompts, seed=seed)
    renders = render_specs(specs, dcfg, "test", seed)
    g_match, g_shuf = ev.geneval(renders, specs), ev.geneval(np.roll(renders, 1, axis=0), specs)
    geneval = {"matched": g_match["overall"], "shuffled": g_shuf["overall"], "matched_per_task": g_match["per_task"],
               "shuffled_per_task": g_shuf["per_task"], "n": len(specs)}
    return {"fid": fid, "clip_score": clip, "geneval": geneval}
