"""Training data: compositional Fashion-MNIST scenes (the default) and a COCO-captions loader."""
from crossflow.data.coco import CocoCaptions, center_crop_resize, to_sceneset
from crossflow.data.fashion_mnist import (CLASS_NAMES, DatasetNotFoundError, find_fashion_mnist,
                                          load_fashion_mnist, load_labels, plural, read_idx, write_idx,
                                          write_idx_fixture)
from crossflow.data.scenes import (COLORS, TASKS, Item, PromptSpec, SceneSet, build_scenes, caption_for,
                                   caption_tasks, cell_name, is_heldout, class_ids, item_box, make_prompt_suite,
                                   render_scene, sample_items, scene_captions)

__all__ = [
    "CLASS_NAMES", "COLORS", "TASKS", "CocoCaptions", "DatasetNotFoundError", "Item", "PromptSpec", "SceneSet",
    "build_scenes", "caption_for", "caption_tasks", "cell_name", "center_crop_resize", "find_fashion_mnist",
    "is_heldout", "class_ids", "item_box", "load_fashion_mnist", "load_labels", "make_prompt_suite", "plural", "read_idx",
    "render_scene", "sample_items", "scene_captions", "to_sceneset", "write_idx", "write_idx_fixture",
]
