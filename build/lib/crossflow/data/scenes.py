"""Compositional scenes: tinted Fashion-MNIST items on a grid, with true template captions.

A scene is a black ``image_size`` square split into ``grid x grid`` cells; each item is a Fashion-MNIST image
resized to ``item_size`` and tinted by a colour (pixel = intensity / 255 * RGB), centred in its own cell.
Scene contents are chosen so that every GenEval task type (Ghosh et al. 2023) has true captions:

    single_object  1 item                                  "a photo of a sandal", "a red sandal at the top left"
    colors         1 item                                  "a photo of a red sandal"
    two_object     2 items of different classes            "a photo of a sandal and a bag"
    color_attr     2 items of different classes & colours  "a red sandal and a blue bag"
    position       2 items in the same row or column       "a red sandal to the left of a green bag"
    counting       2..max_items items, same class & colour "three red sandals"

Every caption describes the whole scene, so it is true for it. Colour-class pairs in ``cfg.heldout`` never
occur in training scenes; the test split contains each of them, and ``make_prompt_suite`` builds prompts with
them, to measure compositional generalisation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from crossflow.config import DataConfig
from crossflow.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist, load_labels, plural
from crossflow.integrity import checked_write, load_cache
from crossflow.utils import cache_dir, file_lock, stable_hash, write_json

SCENES_VERSION = 1   # bump when the generator changes, so old caches are not reused

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
SPLIT_IDS = {"train": 0, "test": 1}

# Tint palette. Saturated and far apart so a small classifier can tell them apart after the autoencoder.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "cyan": (0, 255, 255),
    "orange": (255, 140, 0),
    "purple": (140, 0, 255),
}

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Item:
    """One object of a scene: Fashion-MNIST class index, colour name, cell index (row-major)."""
    cls: int
    color: str
    cell: int

    @property
    def name(self) -> str:
        return CLASS_NAMES[self.cls]


@dataclass
class SceneSet:
    """N scenes: images (N, H, W, 3) uint8 and, per scene, its items, captions and each caption's task."""
    images: np.ndarray
    items: list[list[Item]]
    captions: list[list[str]]
    tasks: list[list[str]]

    def __len__(self) -> int:
        return len(self.images)

    def unique_captions(self) -> list[str]:
        """Sorted unique caption strings (what a text encoder needs to embed once)."""
        return sorted({c for caps in self.captions for c in caps})

    def caption_index(self, vocab: Sequence[str] | None = None) -> np.ndarray:
        """(N, K) int64 indices of each scene's captions into ``vocab`` (default ``unique_captions()``)."""
        vocab = self.unique_captions() if vocab is None else vocab
        lookup = {c: i for i, c in enumerate(vocab)}
        counts = {len(caps) for caps in self.captions}
        if len(counts) > 1:
            raise ValueError(f"scenes carry different numbers of captions {sorted(counts)}; caption_index needs "
                             "the same number per scene")
        return np.array([[lookup[c] for c in caps] for caps in self.captions], dtype=np.int64).reshape(
            len(self.captions), -1)

    def subset(self, idx) -> "SceneSet":
        idx = np.arange(len(self))[idx]
        return SceneSet(self.images[idx], [self.items[i] for i in idx], [self.captions[i] for i in idx],
                        [self.tasks[i] for i in idx])


class PromptSpec(NamedTuple):
    """An evaluation prompt: its caption, GenEval task, and the items that make it true (render_scene)."""
    caption: str
    task: str
    items: list[Item]


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------

def cell_size(cfg: DataConfig) -> int:
    return cfg.image_size // cfg.grid


def item_box(cell: int, cfg: DataConfig) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the item placed in ``cell``: centred in the cell, the grid centred on the canvas."""
    size = cell_size(cfg)
    margin = (cfg.image_size - size * cfg.grid) // 2
    pad = (size - cfg.item_size) // 2
    r, c = divmod(cell, cfg.grid)
    y0, x0 = margin + r * size + pad, margin + c * size + pad
    return y0, x0, y0 + cfg.item_size, x0 + cfg.item_size


def cell_name(cell: int, grid: int) -> str | None:
    """'top left' ... for grids up to 3x3; None beyond (absolute-position captions are then skipped)."""
    if grid == 1:
        return "center"
    rows = {2: ("top", "bottom"), 3: ("top", "middle", "bottom")}.get(grid)
    cols = {2: ("left", "right"), 3: ("left", "center", "right")}.get(grid)
    if rows is None:
        return None
    r, c = divmod(cell, grid)
    if rows[r] == "middle" and cols[c] == "center":
        return "center"
    return f"{rows[r]} {cols[c]}"


def relation(a: Item, b: Item, grid: int) -> str | None:
    """Where ``a`` is relative to ``b`` when unambiguous (same row or same column), else None."""
    ra, ca = divmod(a.cell, grid)
    rb, cb = divmod(b.cell, grid)
    if ra == rb and ca != cb:
        return "to the left of" if ca < cb else "to the right of"
    if ca == cb and ra != rb:
        return "above" if ra < rb else "below"
    return None


# ----------------------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------------------

# {a}/{b}: noun phrase without colour ("a sandal"), {A}/{B}: with colour ("a red sandal"). A template that
# uses {A}, {B} or {color} mentions the colour of every item it names.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "single_object": ("a photo of {a}", "{A} at the {pos}", "one {color} {cls} in the {pos}",
                      "a single {color} {cls}", "{A} on a black background"),
    "colors": ("a photo of {A}", "{A}", "{a} colored {color}", "{a} in {color}"),
    "two_object": ("a photo of {a} and {b}", "{A} next to {B}", "{A} with {B}", "a photo of {A} with {B}"),
    "color_attr": ("a photo of {A} and {B}", "{A} and {B}", "{a} in {color} and {b} in {color2}"),
    "position": ("a photo of {a} {rel} {b}", "{A} {rel} {B}", "a photo of {A} {rel} {B}"),
    "counting": ("a photo of {n} {plural}", "{n} {color} {plural}", "a photo of {n} {color} {plural}",
                 "exactly {n} {color} {plural}"),
}


def _uses_color(template: str) -> bool:
    return any(k in template for k in ("{A}", "{B}", "{color}"))


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption_tasks(items: Sequence[Item], grid: int) -> list[str]:
    """The tasks whose templates give a true caption for these items (captions describe the whole scene)."""
    if len(items) == 1:
        return ["single_object", "colors"]
    if len({(it.cls, it.color) for it in items}) == 1 and len(items) < len(NUMBER_WORDS):
        return ["counting"]
    if len(items) == 2 and items[0].cls != items[1].cls:
        tasks = ["two_object", "color_attr"]
        if relation(items[0], items[1], grid) is not None:
            tasks.append("position")
        return tasks
    return []


def caption_for(items: Sequence[Item], task: str, rng: np.random.Generator, grid: int = 2,
                require_color: bool = False) -> str:
    """A random true caption of ``task`` for ``items``; ``require_color`` keeps templates naming all colours."""
    if task not in caption_tasks(items, grid):
        raise ValueError(f"task {task!r} has no true caption for items {list(items)} "
                         f"(possible: {caption_tasks(items, grid)})")
    templates = [t for t in TEMPLATES[task]
                 if (not require_color or _uses_color(t)) and ("{pos}" not in t or cell_name(0, grid))]
    template = templates[rng.integers(len(templates))]

    first, second = items[0], items[-1]
    if len(items) == 2 and rng.random() < 0.5:   # either item may come first
        first, second = second, first
    fields = dict(
        a=_article(first.name), A=_article(f"{first.color} {first.name}"), cls=first.name,
        color=first.color, b=_article(second.name), B=_article(f"{second.color} {second.name}"),
        color2=second.color, n=NUMBER_WORDS[len(items)], plural=plural(first.name),
    )
    if "{pos}" in template:
        fields["pos"] = cell_name(first.cell, grid)
    if task == "position":
        fields["rel"] = relation(first, second, grid)
    return template.format(**fields)


def scene_captions(items: Sequence[Item], task: str, k: int, rng: np.random.Generator,
                   grid: int) -> tuple[list[str], list[str]]:
    """``k`` true captions: the first of the scene's own ``task``, the rest of any task the scene supports."""
    possible = caption_tasks(items, grid)
    captions, tasks = [], []
    for j in range(k):
        for _attempt in range(20):       # prefer distinct captions; small scenes may not have k of them
            t = task if j == 0 else possible[rng.integers(len(possible))]
            c = caption_for(items, t, rng, grid)
            if c not in captions:
                break
        captions.append(c)
        tasks.append(t)
    return captions, tasks


# ----------------------------------------------------------------------------------------------------------
# Choosing scene contents
# ----------------------------------------------------------------------------------------------------------

def class_ids(cfg: DataConfig) -> list[int]:
    """Fashion-MNIST label indices of the classes in use (``data.classes``)."""
    return [CLASS_NAMES.index(name) for name in cfg.classes]


def _validate(cfg: DataConfig) -> None:
    bad = [c for c in cfg.classes if c not in CLASS_NAMES]
    if bad or not cfg.classes:
        raise ValueError(f"data.classes has unknown class(es) {bad}; known: {CLASS_NAMES}")
    unused = [p for p in cfg.heldout if len(p) == 2 and p[1] not in cfg.classes]
    if unused:
        raise ValueError(f"data.heldout names classes not in data.classes: {unused}")
    unknown = [c for c in cfg.colors if c not in COLORS]
    if unknown:
        raise ValueError(f"data.colors has unknown colour(s) {unknown}; known: {sorted(COLORS)}")
    for pair in cfg.heldout:
        if len(pair) != 2 or pair[0] not in COLORS or pair[1] not in CLASS_NAMES:
            raise ValueError(f"data.heldout entry {pair!r} must be (colour, class name) with a colour from "
                             f"{sorted(COLORS)} and a class from {CLASS_NAMES}")
    if cfg.item_size > cell_size(cfg):
        raise ValueError(f"data.item_size={cfg.item_size} does not fit a {cell_size(cfg)}-pixel cell "
                         f"(image_size={cfg.image_size}, grid={cfg.grid})")
    if cfg.max_items < 1:
        raise ValueError("data.max_items must be at least 1")


def scene_tasks(cfg: DataConfig) -> tuple[str, ...]:
    """Scene types possible under ``cfg`` (multi-item types need room for two items)."""
    if min(cfg.max_items, cfg.grid ** 2) < 2:
        return ("single_object", "colors")
    return TASKS


def heldout_pairs(cfg: DataConfig) -> list[tuple[str, int]]:
    """Held-out (colour, class index) pairs whose colour is in use."""
    return [(color, CLASS_NAMES.index(name)) for color, name in cfg.heldout if color in cfg.colors]


def is_heldout(items: Sequence[Item], cfg: DataConfig) -> bool:
    """True if any item is a held-out colour-class pair (never seen in training)."""
    held = set(heldout_pairs(cfg))
    return any((it.color, it.cls) in held for it in items)


def _aligned_cells(cell: int, grid: int) -> list[int]:
    r, c = divmod(cell, grid)
    return [r * grid + j for j in range(grid) if j != c] + [i * grid + c for i in range(grid) if i != r]


def sample_items(task: str, cfg: DataConfig, rng: np.random.Generator, allowed: Sequence[tuple[str, int]],
                 first: tuple[str, int] | None = None) -> list[Item]:
    """Random items for a scene of ``task`` using (colour, class) pairs from ``allowed`` (``first`` forced)."""
    cells = cfg.grid ** 2

    def pick(exclude_cls=None, exclude_color=None) -> tuple[str, int]:
        options = [p for p in allowed if p[1] != exclude_cls and p[0] != exclude_color]
        if not options:                                  # e.g. a single colour: drop the colour constraint
            options = [p for p in allowed if p[1] != exclude_cls]
        return options[rng.integers(len(options))]

    color, cls = first if first is not None else pick()
    if task in ("single_object", "colors"):
        return [Item(cls, color, int(rng.integers(cells)))]
    if task == "counting":
        n = int(rng.integers(2, min(cfg.max_items, cells, len(NUMBER_WORDS) - 1) + 1))
        return [Item(cls, color, int(c)) for c in sorted(rng.choice(cells, size=n, replace=False))]
    # two items of different classes
    color2, cls2 = pick(exclude_cls=cls, exclude_color=color if task == "color_attr" else None)
    if task == "position":
        a = int(rng.integers(cells))
        options = _aligned_cells(a, cfg.grid)
        b = int(options[rng.integers(len(options))])
    else:
        a, b = (int(c) for c in rng.choice(cells, size=2, replace=False))
    return [Item(cls, color, a), Item(cls2, color2, b)]


def make_prompt_suite(cfg: DataConfig, n: int = 48, seed: int = 0) -> list[PromptSpec]:
    """``n`` evaluation prompts: first every held-out pair in every task, then novel random combinations.

    Held-out prompts always name colours (otherwise the held-out pair would not be in the text). The order
    rotates tasks across held-out pairs so that any prefix is spread over tasks and pairs.
    """
    _validate(cfg)
    rng = np.random.default_rng([seed, 2])
    all_pairs = [(c, k) for c in cfg.colors for k in class_ids(cfg)]
    tasks = scene_tasks(cfg)
    held = heldout_pairs(cfg)
    specs: list[PromptSpec] = []
    for r in range(len(tasks)):
        for p, pair in enumerate(held):
            task = tasks[(p + r) % len(tasks)]
            items = sample_items(task, cfg, rng, all_pairs, first=pair)
            specs.append(PromptSpec(caption_for(items, task, rng, cfg.grid, require_color=True), task, items))
    i = 0
    while len(specs) < n:
        task = tasks[i % len(tasks)]
        items = sample_items(task, cfg, rng, all_pairs)
        specs.append(PromptSpec(caption_for(items, task, rng, cfg.grid), task, items))
        i += 1
    return specs[:n]


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------

def resize_items(images: np.ndarray, size: int) -> np.ndarray:
    """(M, 28, 28) uint8 -> (M, size, size) float32 intensities in [0, 1] (antialiased bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)[:, None]
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp_(0, 1).numpy()


def _paint(canvas: np.ndarray, intensity: np.ndarray, item: Item, cfg: DataConfig) -> None:
    y0, x0, y1, x1 = item_box(item.cell, cfg)
    rgb = np.asarray(COLORS[item.color], dtype=np.float32)
    canvas[y0:y1, x0:x1] = intensity[..., None] * rgb


def _to_uint8(canvas: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def render_scene(items: Sequence[Item], cfg: DataConfig, item_images: np.ndarray, item_labels: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Render one scene (H, W, 3) uint8, each item a random Fashion-MNIST image of its class from the arrays
    given (for evaluation: the test split, ``load_fashion_mnist("test")``)."""
    picks = []
    for it in items:
        pool = np.flatnonzero(item_labels == it.cls)
        if not len(pool):
            raise ValueError(f"no Fashion-MNIST image of class {it.cls} ({it.name}) to render")
        picks.append(pool[rng.integers(len(pool))])
    canvas = np.zeros((cfg.image_size, cfg.image_size, 3), np.float32)
    for it, intensity in zip(items, resize_items(item_images[picks], cfg.item_size) if picks else []):
        _paint(canvas, intensity, it, cfg)
    return _to_uint8(canvas)


# ----------------------------------------------------------------------------------------------------------
# Building a split (cached)
# ----------------------------------------------------------------------------------------------------------

_SCENE_FIELDS = ("image_size", "grid", "item_size", "max_items", "captions_per_scene", "classes", "colors",
                 "heldout", "seed")


def _generate_scenes(cfg: DataConfig, split: str, images: np.ndarray, labels: np.ndarray) -> SceneSet:
    """Sample items and captions for every scene, then render them in one pass."""
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS[split]])
    n = cfg.num_train if split == "train" else cfg.num_test
    tasks = scene_tasks(cfg)
    held = set(heldout_pairs(cfg))
    all_pairs = [(c, k) for c in cfg.colors for k in class_ids(cfg)]
    allowed = all_pairs if split == "test" else [p for p in all_pairs if p not in held]
    if not allowed:
        raise ValueError("data.heldout removes every colour-class pair from training")

    # The test split shows every held-out pair in every scene type, at random positions of the split.
    forced: dict[int, tuple[str, tuple[str, int]]] = {}
    if split == "test" and held:
        combos = [(t, p) for t in tasks for p in heldout_pairs(cfg)]
        slots = rng.choice(n, size=min(n, len(combos)), replace=False)
        forced = {int(s): combos[j] for j, s in enumerate(slots)}

    by_class = [np.flatnonzero(labels == k) for k in range(len(CLASS_NAMES))]
    for k, pool in enumerate(by_class):
        if k in class_ids(cfg) and not len(pool):
            raise ValueError(f"Fashion-MNIST {split} split has no image of class {k} ({CLASS_NAMES[k]})")

    all_items, all_captions, all_tasks, picks = [], [], [], []
    for i in range(n):
        task, first = forced.get(i, (tasks[rng.integers(len(tasks))], None))
        items = sample_items(task, cfg, rng, allowed, first=first)
        caps, caps_tasks = scene_captions(items, task, cfg.captions_per_scene, rng, cfg.grid)
        picks.extend(by_class[it.cls][rng.integers(len(by_class[it.cls]))] for it in items)
        all_items.append(items)
        all_captions.append(caps)
        all_tasks.append(caps_tasks)

    # Resize every chosen item at once (one interpolate call), then paint them cell by cell.
    intensities = resize_items(images[np.asarray(picks, dtype=np.int64)], cfg.item_size)
    canvas = np.zeros((n, cfg.image_size, cfg.image_size, 3), np.float32)
    j = 0
    for i, items in enumerate(all_items):
        for it in items:
            _paint(canvas[i], intensities[j], it, cfg)
            j += 1
    return SceneSet(_to_uint8(canvas), all_items, all_captions, all_tasks)


def scenes_cache_key(cfg: DataConfig, split: str, labels: np.ndarray) -> str:
    """Hash of everything that changes the scenes: the relevant config fields, split, generator version and
    a fingerprint of the Fashion-MNIST labels (so a synthetic fixture never shares a cache with the real data)."""
    fields = {f: getattr(cfg, f) for f in _SCENE_FIELDS}
    fields["num"] = cfg.num_train if split == "train" else cfg.num_test
    fingerprint = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]
    return stable_hash({"scenes": fields, "split": split, "version": SCENES_VERSION, "data": fingerprint})


def build_scenes(cfg: DataConfig, split: str, root: str | None = None) -> SceneSet:
    """The ``train`` or ``test`` scenes of ``cfg``, from the disk cache if built before."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _validate(cfg)
    root = root if root is not None else cfg.fashion_root
    labels = load_labels(split, root)
    key = scenes_cache_key(cfg, split, labels)
    folder = cache_dir("scenes")
    npz_path, json_path = folder / f"{split}-{key}.npz", folder / f"{split}-{key}.json"
    with file_lock(npz_path):                            # two processes: one builds, the other reads
        if json_path.exists():
            cached = load_cache(npz_path, lambda p: _load(p, json_path), "scenes")   # None: missing or damaged
            if cached is not None:
                return cached

        images, labels = load_fashion_mnist(split, root)
        scenes = _generate_scenes(cfg, split, images, labels)
        # json first, npz last: the npz's presence marks a complete entry
        write_json(json_path, {
            "config": {**dataclasses.asdict(cfg), "split": split, "version": SCENES_VERSION},
            "items": [[[it.cls, it.color, it.cell] for it in items] for items in scenes.items],
            "captions": scenes.captions,
            "tasks": scenes.tasks,
        })
        with checked_write(npz_path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz
            np.savez_compressed(f, images=scenes.images)
        return scenes


def _load(npz_path: Path, json_path: Path) -> SceneSet:
    with np.load(npz_path) as z:
        images = z["images"]
    meta = json.loads(json_path.read_text())
    items = [[Item(int(c), str(col), int(cell)) for c, col, cell in scene] for scene in meta["items"]]
    return SceneSet(images, items, meta["captions"], meta["tasks"])
