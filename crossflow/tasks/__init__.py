"""Tasks: one registry of the modality pairs CrossFlow is trained on.

A task names its dataset, its **source encoder** (``encode(src, mask, generator) -> (z0, mu, logvar)``, z0 of
the target latent's shape), its **target codec** (``encode(target) -> z1``, ``decode(z1) -> target``), its
encoder losses and its evaluators. The objective is the same for all of them
(:func:`crossflow.flow.flow_matching_loss` of z0, z1 and the flow network) and so is the training loop
(:func:`crossflow.train.train`, which asks the task to build the model). Adding a task = one module here
(build_model, model_from_dims, config_from_dict) + one registry entry + a notebook; docs/architecture.md says how.

    >>> from crossflow.tasks import TASKS
    >>> sorted(TASKS)
    ['depth', 'sr', 't2i']
"""
from .base import TASKS, PixelCodec, SourceEncoder, TargetCodec, Task, get_task, task_of

__all__ = ["TASKS", "Task", "SourceEncoder", "TargetCodec", "PixelCodec", "get_task", "task_of"]
