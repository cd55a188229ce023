"""COCO-captions-format data (``captions_train2014.json`` + an image folder), for GPU users.

Only the two keys the format needs are read::

    {"images": [{"id": 1, "file_name": "a.jpg"}, ...],
     "annotations": [{"image_id": 1, "caption": "a cat on a mat"}, ...]}

Images are centre-cropped to a square and resized, as in the paper's 256x256 COCO setting.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from crossflow.data.scenes import SceneSet


def center_crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """Largest centred square, resized to ``size`` (bicubic, antialiased by PIL) -> (size, size, 3) uint8."""
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


class CocoCaptions:
    """Images with all their captions. ``coco[i] -> (uint8 (S, S, 3), list[str])``; images load lazily."""

    def __init__(self, annotations_json: str | os.PathLike, image_dir: str | os.PathLike, image_size: int):
        self.annotations_json = Path(annotations_json)
        self.image_dir = Path(image_dir)
        self.image_size = int(image_size)
        if not self.annotations_json.is_file():
            raise FileNotFoundError(f"COCO annotations file {self.annotations_json} does not exist; set "
                                    "data.coco_annotations to a captions_*.json (COCO captions format)")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder {self.image_dir} does not exist; set data.coco_images")
        try:
            data = json.loads(self.annotations_json.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.annotations_json} is not valid JSON: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise ValueError(f"{self.annotations_json} is not in COCO captions format: expected an object with "
                             "lists 'images' ({id, file_name}) and 'annotations' ({image_id, caption})")

        captions: dict = defaultdict(list)
        for j, ann in enumerate(data["annotations"]):
            if "image_id" not in ann or "caption" not in ann:
                raise ValueError(f"{self.annotations_json}: annotation #{j} lacks 'image_id' or 'caption': {ann}")
            captions[ann["image_id"]].append(str(ann["caption"]).strip())

        self.file_names: list[str] = []
        self.captions: list[list[str]] = []
        skipped = []
        for j, img in enumerate(data["images"]):
            if "id" not in img or "file_name" not in img:
                raise ValueError(f"{self.annotations_json}: image #{j} lacks 'id' or 'file_name': {img}")
            if not captions.get(img["id"]):
                skipped.append(img["file_name"])
                continue
            self.file_names.append(img["file_name"])
            self.captions.append(captions[img["id"]])
        if skipped:   # one warning for all of them, not one per image
            warnings.warn(f"{self.annotations_json}: skipped {len(skipped)} image(s) without captions, e.g. "
                          f"{skipped[0]}", stacklevel=2)
        if not self.file_names:
            raise ValueError(f"{self.annotations_json}: no image has a caption")

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[str]]:
        path = self.image_dir / self.file_names[i]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} listed in {self.annotations_json} does not exist "
                                    f"(is data.coco_images the right folder?)")
        with Image.open(path) as image:
            return center_crop_resize(image, self.image_size), list(self.captions[i])


def to_sceneset(coco: CocoCaptions, max_images: int | None = None,
                captions_per_image: int | None = None) -> SceneSet:
    """Load COCO into memory as a ``SceneSet`` (tasks ``"coco"``, no items) so training code treats it like
    the scenes. Every image keeps its first ``captions_per_image`` captions (default: the fewest any image
    has, usually 5), so ``caption_index`` stays rectangular."""
    n = len(coco) if max_images is None else min(max_images, len(coco))
    k = captions_per_image or min(len(c) for c in coco.captions[:n])
    images, captions = [], []
    for i in range(n):
        image, caps = coco[i]
        images.append(image)
        captions.append([caps[j % len(caps)] for j in range(k)])   # repeats if an image has fewer
    return SceneSet(np.stack(images) if images else np.zeros((0, coco.image_size, coco.image_size, 3), np.uint8),
                    [[] for _ in range(n)], captions, [["coco"] * k for _ in range(n)])
