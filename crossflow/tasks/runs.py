"""Training every (method, seed) of a pixel task once, in parallel one-thread processes on a CPU; resumable.

``train_runs(cfgs, root, workers)`` trains each config into ``root/<name>`` with :func:`crossflow.train.train`
on its task's training data (the task module's ``training_data(cfg)``); a finished run is only reloaded and an
interrupted one resumes from its checkpoint. Super-resolution and depth use it.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from ..config import to_dict
from ..device import init_worker, resolve_device
from .base import get_task


def _train_one(cfg_dict: dict, run_dir: str) -> str:
    from ..train import train
    impl = get_task(cfg_dict["task"]).impl()
    cfg = impl.config_from_dict(cfg_dict)
    train(cfg, impl.training_data(cfg), run_dir, progress=False)
    return run_dir


def train_runs(cfgs: dict, root, workers: int = 2, desc: str = "runs") -> dict[str, Path]:
    """Train every config (name -> a task config) into ``root/<name>``; ``workers`` > 1 on a CPU: that many
    one-thread processes (crossflow.device.init_worker); on a GPU one after the other."""
    from ..progress import tqdm
    from ..train import CKPT, read_checkpoint
    root = Path(root)
    dirs = {name: root / name for name in cfgs}

    def finished(name):
        ck = dirs[name] / CKPT
        return ck.exists() and read_checkpoint(ck)["step"] >= cfgs[name].train.steps

    todo = [n for n in cfgs if not finished(n)]
    bar = tqdm(total=len(cfgs), initial=len(cfgs) - len(todo), desc=desc)
    if workers <= 1 or len(todo) <= 1 or resolve_device(None).type == "cuda":
        for n in todo:
            _train_one(to_dict(cfgs[n]), str(dirs[n]))
            bar.update(1)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_worker) as pool:
            futures = {pool.submit(_train_one, to_dict(cfgs[n]), str(dirs[n])): n for n in todo}
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
    bar.close()
    return dirs
