"""crossflow.data: Fashion-MNIST parsing and discovery, scene builder, COCO loader."""
from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from crossflow.config import DataConfig
from crossflow.data import fashion_mnist as fm
from crossflow.data import scenes as sc
from crossflow.data import (CLASS_NAMES, COLORS, TASKS, CocoCaptions, DatasetNotFoundError, Item, build_scenes,
                            caption_for, find_fashion_mnist, item_box, load_fashion_mnist, make_prompt_suite,
                            plural, render_scene, to_sceneset, write_idx_fixture)

SMALL = DataConfig(num_train=200, num_test=50, captions_per_scene=3)


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test writes its cache to a temp folder, never the repo's, and ignores the user's env var."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.delenv(fm.ENV_VAR, raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """The real data set where installed, else a synthetic stand-in."""
    root = fm.DEBIAN_DIR if fm._complete(fm.DEBIAN_DIR) else write_idx_fixture(tmp_path_factory.mktemp("fmnist"))
    return str(root)


@pytest.fixture(scope="module")
def train(fashion_root):
    return build_scenes(SMALL, "train", root=fashion_root)


@pytest.fixture(scope="module")
def test_split(fashion_root):
    return build_scenes(SMALL, "test", root=fashion_root)


# ----------------------------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------------------------

def test_idx_round_trip(tmp_path):
    folder = write_idx_fixture(tmp_path, n_train=30, n_test=12, seed=1)
    images, labels = load_fashion_mnist("train", root=folder)
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (30,) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(10))
    assert images.reshape(30, -1).max(1).min() > 100           # every item visible
    test_images, _ = load_fashion_mnist("test", root=folder)
    assert test_images.shape == (12, 28, 28)
    # write_idx / read_idx are inverse, plain and gzipped
    a = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    for name in ("x.idx", "x.idx.gz"):
        fm.write_idx(tmp_path / name, a)
        np.testing.assert_array_equal(fm.read_idx(tmp_path / name, ndim=3), a)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", root=folder)


def test_idx_bad_magic(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        fm.read_idx(tmp_path / "bad")
    fm.write_idx(tmp_path / "labels", np.arange(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="3-d"):
        fm.read_idx(tmp_path / "labels", ndim=3)


def test_find_torchvision_layout(tmp_path):
    write_idx_fixture(tmp_path / "FashionMNIST" / "raw", n_train=10, n_test=10)
    assert find_fashion_mnist(tmp_path, download=False) == tmp_path / "FashionMNIST" / "raw"


def test_not_found_message(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "empty")
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    with pytest.raises(DatasetNotFoundError) as err:
        find_fashion_mnist(download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "zalandoresearch/fashion-mnist" in msg and fm.ENV_VAR in msg
    assert str(tmp_path / "empty") in msg and str(tmp_path / "cache") in msg
    # an explicit root that does not exist is an error, not a fall-back to another copy (issue 12)
    write_idx_fixture(tmp_path / "other", n_train=10, n_test=10)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "other"))
    with pytest.raises(DatasetNotFoundError, match="nowhere, which does not exist.*given explicitly"):
        find_fashion_mnist(tmp_path / "nowhere", download=False)
    # the env var is honoured
    write_idx_fixture(tmp_path / "env", n_train=10, n_test=10)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path / "env"))
    assert find_fashion_mnist(download=False) == tmp_path / "env"


def test_plural():
    assert [plural(n) for n in CLASS_NAMES] == ["t-shirts", "trousers", "pullovers", "dresses", "coats",
                                                "sandals", "shirts", "sneakers", "bags", "ankle boots"]


# ----------------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------------

def test_scene_arrays(train, test_split):
    assert train.images.shape == (200, 32, 32, 3) and train.images.dtype == np.uint8
    assert len(train) == 200 and len(test_split) == 50
    assert len(train.items) == len(train.captions) == len(train.tasks) == 200
    assert all(len(c) == SMALL.captions_per_scene for c in train.captions)
    idx = train.caption_index()
    vocab = train.unique_captions()
    assert idx.shape == (200, SMALL.captions_per_scene)
    assert [vocab[j] for j in idx[7]] == train.captions[7]


def test_items_valid(train, test_split):
    for s in (train, test_split):
        for items in s.items:
            assert 1 <= len(items) <= SMALL.max_items
            assert len({it.cell for it in items}) == len(items)
            assert all(0 <= it.cell < SMALL.grid ** 2 and it.color in SMALL.colors for it in items)
    sizes = Counter(len(items) for items in train.items)
    assert set(sizes) >= {1, 2}, sizes                          # single and multi-item scenes both occur


def test_deterministic_and_seeded(fashion_root, train, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFLOW_CACHE", str(tmp_path))          # fresh cache: a real rebuild
    again = build_scenes(SMALL, "train", root=fashion_root)
    np.testing.assert_array_equal(again.images, train.images)
    assert again.captions == train.captions and again.items == train.items
    other = build_scenes(DataConfig(**{**SMALL.__dict__, "seed": 1}), "train", root=fashion_root)
    assert not np.array_equal(other.images, train.images)
    assert other.captions != train.captions


def test_cache_hit(fashion_root, train, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("rebuilt instead of loading the cache")
    monkeypatch.setattr(sc, "_generate_scenes", boom)
    cached = build_scenes(SMALL, "train", root=fashion_root)
    np.testing.assert_array_equal(cached.images, train.images)
    assert cached.items == train.items and cached.captions == train.captions and cached.tasks == train.tasks
    with pytest.raises(AssertionError, match="rebuilt"):       # a different config is a miss
        build_scenes(DataConfig(**{**SMALL.__dict__, "num_train": 20}), "train", root=fashion_root)


def _pairs(s):
    return {(it.color, CLASS_NAMES[it.cls]) for items in s.items for it in items}


def test_heldout(train, test_split):
    assert SMALL.heldout
    for pair in SMALL.heldout:
        assert pair not in _pairs(train), pair
        assert pair in _pairs(test_split), pair


def test_all_tasks_present(train):
    assert set(t for ts in train.tasks for t in ts) == set(TASKS)
    assert all(t in TASKS for ts in train.tasks for t in ts)


def _word_at(caption: str, phrase: str) -> int:
    """Position of ``phrase`` as whole words ("shirt" is not found inside "t-shirt"), -1 if absent."""
    return f" {caption} ".find(f" {phrase} ")


def _mentions(caption: str, it: Item) -> bool:
    return _word_at(caption, it.name) >= 0 or _word_at(caption, plural(it.name)) >= 0


def test_captions_true(train, test_split):
    number = {w: i for i, w in enumerate(sc.NUMBER_WORDS)}
    for s in (train, test_split):
        for items, caps, tasks in zip(s.items, s.captions, s.tasks):
            for cap, task in zip(caps, tasks):
                assert len(cap.split()) <= 16, cap
                words = cap.replace(":", "").split()
                # every class and colour word named belongs to some item
                named_colors = [w for w in words if w in COLORS]
                assert all(c in {it.color for it in items} for c in named_colors), (cap, items)
                assert all(_mentions(cap, it) for it in items), (cap, items)
                if task == "counting":
                    assert number[next(w for w in words if w in number)] == len(items), (cap, items)
                    assert len({(it.cls, it.color) for it in items}) == 1
                elif task in ("single_object", "colors"):
                    assert len(items) == 1
                    if task == "colors":
                        assert items[0].color in words, cap
                else:
                    assert len(items) == 2 and items[0].cls != items[1].cls
                if task == "color_attr":   # colour binding: each colour sits next to its own class
                    for it in items:
                        assert (f"{it.color} {it.name}" in cap or f"{it.name} in {it.color}" in cap), (cap, items)
                if task == "position":
                    # the item named first is the subject: check the relation from the cells directly
                    a, b = sorted(items, key=lambda it: _word_at(cap, it.name))
                    (ra, ca), (rb, cb) = divmod(a.cell, SMALL.grid), divmod(b.cell, SMALL.grid)
                    expected = ("to the left of" if ca < cb else "to the right of") if ra == rb else \
                        ("above" if ra < rb else "below") if ca == cb else None
                    assert expected is not None and f" {expected} " in cap, (cap, items)


def test_position_relation():
    a, b = Item(5, "red", 0), Item(8, "blue", 1)
    assert sc.relation(a, b, 2) == "to the left of" and sc.relation(b, a, 2) == "to the right of"
    assert sc.relation(Item(5, "red", 0), Item(8, "blue", 2), 2) == "above"
    assert sc.relation(Item(5, "red", 0), Item(8, "blue", 3), 2) is None      # diagonal: ambiguous
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="position"):
        caption_for([Item(5, "red", 0), Item(8, "blue", 3)], "position", rng)
    caps = {caption_for([a, b], "position", rng) for _ in range(50)}
    assert "a red sandal to the left of a blue bag" in caps
    assert "a blue bag to the right of a red sandal" in caps


def test_pixels_tinted(train):
    for i in range(40):
        for it in train.items[i]:
            y0, x0, y1, x1 = item_box(it.cell, SMALL)
            patch = train.images[i, y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
            assert patch.max() > 60, (i, it)                         # the item is visible
            mean = patch.mean(0)
            rgb = np.asarray(COLORS[it.color], np.float64)
            cos = mean @ rgb / (np.linalg.norm(mean) * np.linalg.norm(rgb))
            assert cos > 0.99, (i, it, mean)
        # nothing outside the items' boxes
        mask = np.ones((32, 32), bool)
        for it in train.items[i]:
            y0, x0, y1, x1 = item_box(it.cell, SMALL)
            mask[y0:y1, x0:x1] = False
        assert train.images[i][mask].max() == 0


def test_render_scene_and_prompt_suite(fashion_root):
    images, labels = load_fashion_mnist("test", root=fashion_root)
    suite = make_prompt_suite(SMALL, n=40, seed=0)
    assert len(suite) == 40
    assert {p.task for p in suite} == set(TASKS)
    held = {(c, CLASS_NAMES.index(k)) for c, k in SMALL.heldout}
    for color, name in SMALL.heldout:             # every held-out pair is prompted, with its colour in words
        assert any(f"{color} {name}" in p.caption or f"{name} in {color}" in p.caption or
                   f"{color} {plural(name)}" in p.caption or f"{name} colored {color}" in p.caption
                   for p in suite), (color, name)
    assert sum(sc.is_heldout(p.items, SMALL) for p in suite) >= len(held) * len(TASKS)
    # same templates as training: each prompt is one of the captions caption_for can produce
    rng = np.random.default_rng(0)
    for p in suite[:12]:
        options = {caption_for(p.items, p.task, rng) for _ in range(200)}
        assert p.caption in options
    assert make_prompt_suite(SMALL, n=40, seed=0) == suite
    img = render_scene(suite[0].items, SMALL, images, labels, np.random.default_rng(0))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.max() > 0


def test_bad_config(fashion_root):
    with pytest.raises(ValueError, match="colour"):
        build_scenes(DataConfig(colors=("red", "mauve")), "train", root=fashion_root)
    with pytest.raises(ValueError, match="item_size"):
        build_scenes(DataConfig(item_size=20), "train", root=fashion_root)
    with pytest.raises(ValueError, match="split"):
        build_scenes(SMALL, "val", root=fashion_root)


# ----------------------------------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture
def coco_dir(tmp_path):
    sizes = {"a.jpg": (40, 30), "b.png": (20, 50), "c.jpg": (16, 16), "d.jpg": (10, 10)}
    for k, (name, size) in enumerate(sizes.items()):
        Image.new("RGB", size, (60 * k, 100, 200)).save(tmp_path / name)
    ann = {
        "images": [{"id": i + 1, "file_name": n} for i, n in enumerate(sizes)],
        "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 1, "caption": "a small cat "},
                        {"image_id": 2, "caption": "a dog"}, {"image_id": 2, "caption": "dog on grass"},
                        {"image_id": 2, "caption": "a brown dog"}, {"image_id": 3, "caption": "a car"}],
    }   # d.jpg (id 4) has no caption
    (tmp_path / "captions.json").write_text(json.dumps(ann))
    return tmp_path


def test_coco_loader(coco_dir):
    with pytest.warns(UserWarning, match="skipped 1 image"):
        coco = CocoCaptions(coco_dir / "captions.json", coco_dir, image_size=8)
    assert len(coco) == 3
    image, caps = coco[0]
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert caps == ["a cat", "a small cat"]
    assert coco[1][1] == ["a dog", "dog on grass", "a brown dog"]
    s = to_sceneset(coco)
    assert s.images.shape == (3, 8, 8, 3) and len(s) == 3
    assert [len(c) for c in s.captions] == [1, 1, 1]                 # the fewest any image has
    assert s.tasks == [["coco"]] * 3 and s.items == [[], [], []]
    s2 = to_sceneset(coco, max_images=2, captions_per_image=2)
    assert s2.captions == [["a cat", "a small cat"], ["a dog", "dog on grass"]]
    assert s2.caption_index().shape == (2, 2)


def test_coco_errors(coco_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations"):
        CocoCaptions(coco_dir / "missing.json", coco_dir, 8)
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="COCO captions format"):
        CocoCaptions(tmp_path / "bad.json", coco_dir, 8)
    (coco_dir / "b.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = CocoCaptions(coco_dir / "captions.json", coco_dir, 8)
    with pytest.raises(FileNotFoundError, match="b.png"):
        coco[1]
    (tmp_path / "nocap.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                                    "annotations": []}))
    with pytest.raises(ValueError, match="no image has a caption"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CocoCaptions(tmp_path / "nocap.json", coco_dir, 8)


def test_damaged_gzip_names_the_file(tmp_path):
    """Issue 12 (8): a truncated .gz says which file it is and what to do."""
    folder = write_idx_fixture(tmp_path / "fm", n_train=10, n_test=10)
    f = folder / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz could not be read.*damaged"):
        fm.read_idx(f)
