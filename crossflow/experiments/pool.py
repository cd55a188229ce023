"""Jobs and the job pool: one row of a table at one seed, run once in one-thread worker processes and
reused when its result.json holds the same spec (crossflow.experiments)."""
from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import torch

from ..config import Config, config_from_dict, to_dict
from ..device import default_device, init_worker
from ..progress import tqdm
from ..utils import stable_hash


# ----------------------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Guidance:
    """One way to sample: ``kind`` "none" | "indicator" (CrossFlow CFG) | "text" (the baseline's null-text CFG) |
    "autoguidance" (an under-trained checkpoint at ``guide_fraction`` of training is the weak guide)."""
    kind: str = "none"
    scale: float = 1.0
    guide_fraction: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "none"
        g = f", guide at {self.guide_fraction:g} of training" if self.kind == "autoguidance" else ""
        return f"{self.kind} {self.scale:g}{g}"


@dataclass(frozen=True)
class Job:
    row: str                           # the table row, e.g. "a/deterministic"
    config: dict                       # to_dict(Config)
    seed: int
    run_dir: str
    guidance: tuple = (Guidance(),)    # settings grid-searched on the validation set (one = no search)
    eval_at: tuple = ()                # extra steps at which the (EMA) model is also evaluated on the test set
    geneval: bool = False              # also GenEval-domain on the prompt suite (chosen guidance)
    eval_text: dict = field(default_factory=dict)   # TextConfig of the evaluators (the CLIP score's LM)
    # {"n_test", "n_val"} caption counts of the evaluation sets; empty: the profile's ``eval_sizes``
    eval_sizes: dict = field(default_factory=dict)

    @property
    def cfg(self) -> Config:
        return config_from_dict(self.config)

    @property
    def eval_cfg(self) -> Config:
        """The config the evaluators are built from: the job's, with the evaluators' text encoder."""
        cfg = self.cfg
        return cfg.replace({f"text.{k}": v for k, v in self.eval_text.items()}) if self.eval_text else cfg

    def spec_hash(self) -> str:
        # an empty eval_sizes is left out, so that jobs recorded before the field existed keep their hash
        return stable_hash({k: v for k, v in asdict(self).items()
                            if k != "run_dir" and not (k == "eval_sizes" and not v)})


@dataclass(frozen=True)
class Scores:
    """Metrics of one sampling setting on one image set: FID-domain, CLIPScore-domain, and for the chosen
    setting on the test set GenEval-domain (overall and per task). ``guidance`` / ``label`` say how the images
    were sampled (absent for the chosen test scores: see :attr:`JobResult.chosen`)."""
    fid: float
    clip: float
    guidance: Guidance | None = None
    label: str | None = None
    geneval: float | None = None
    geneval_per_task: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Scores":
        g = d.get("guidance")
        return cls(d["fid"], d["clip"], Guidance(**g) if g is not None else None, d.get("label"), d.get("geneval"),
                   d.get("geneval_per_task"))

    def to_dict(self) -> dict:
        """The layout of result.json: guidance and label first, absent fields left out."""
        out = {"guidance": asdict(self.guidance), "label": self.label} if self.guidance is not None else {}
        out |= {"fid": self.fid, "clip": self.clip}
        if self.geneval is not None:
            out |= {"geneval": self.geneval, "geneval_per_task": self.geneval_per_task}
        return out


@dataclass(frozen=True)
class JobResult:
    """What a finished job measured (its ``result.json``, typed). ``test``: the chosen guidance's test scores;
    ``test_by_guidance``: each kind's best setting on the test set (Table 3c reports each); ``search``: the
    validation grid; ``curve``: test scores along training ({"step", "fid", "clip", "train_seconds"}, + "geneval" when the job has it); ``history``: the loss log."""
    row: str
    seed: int
    spec_hash: str
    profile: str
    test: Scores
    test_by_guidance: dict[str, Scores]
    chosen: Guidance
    search: tuple[Scores, ...]
    curve: tuple[dict, ...]
    n_test: int
    n_val: int
    train_steps: int
    train_seconds: float
    sample_seconds_per_image: dict[str, float]
    params: dict[str, int]                 # {"flow": ..., "text_ve": ...}
    history: tuple[dict, ...]
    checkpoint: str
    checkpoint_sha256: str | None
    evaluators_sha256: dict
    sampler: dict
    seconds: float
    threads: int

    @property
    def chosen_label(self) -> str:
        return self.chosen.label

    @property
    def n_params(self) -> int:
        """Generator parameters: flow network + Text VE."""
        return self.params["flow"] + self.params["text_ve"]

    @classmethod
    def from_dict(cls, d: dict) -> "JobResult":
        scalar = {k: d[k] for k in ("row", "seed", "spec_hash", "profile", "n_test", "n_val", "train_steps",
                                    "train_seconds", "sample_seconds_per_image", "params", "checkpoint",
                                    "checkpoint_sha256", "evaluators_sha256", "sampler", "seconds", "threads")}
        return cls(**scalar, test=Scores.from_dict(d["test"]),
                   test_by_guidance={k: Scores.from_dict(v) for k, v in d["test_by_guidance"].items()},
                   chosen=Guidance(**d["chosen_guidance"]), search=tuple(Scores.from_dict(r) for r in d["search"]),
                   curve=tuple(d["curve"]), history=tuple(d["history"]))

    def to_dict(self) -> dict:
        """The result.json layout (unchanged since results were first written: old runs are reused)."""
        return {
            "row": self.row, "seed": self.seed, "spec_hash": self.spec_hash, "profile": self.profile,
            "test": self.test.to_dict(), "test_by_guidance": {k: v.to_dict() for k, v in self.test_by_guidance.items()},
            "chosen_guidance": asdict(self.chosen), "chosen_label": self.chosen_label,
            "search": [r.to_dict() for r in self.search], "curve": list(self.curve), "n_test": self.n_test,
            "n_val": self.n_val, "train_steps": self.train_steps, "train_seconds": self.train_seconds,
            "sample_seconds_per_image": self.sample_seconds_per_image, "params": self.params,
            "history": list(self.history), "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
            "evaluators_sha256": self.evaluators_sha256, "sampler": self.sampler, "seconds": self.seconds,
            "threads": self.threads,
        }


def make_job(row: str, cfg: Config, seed: int, root, guidance: Sequence[Guidance] = (Guidance(),),
             eval_at: Sequence[int] = (), geneval: bool = False, eval_cfg: Config | None = None,
             eval_sizes: dict | None = None) -> Job:
    """A job for ``cfg`` at training seed ``seed`` (``train.seed`` is replaced), run in ``root/<row>-s<seed>``.
    ``eval_sizes`` ({"n_test": ..., "n_val": ...}) replaces the profile's evaluation set sizes."""
    cfg = cfg.replace({"train.seed": int(seed)})
    name = row.replace("/", "_").replace(" ", "_")
    sizes = {k: int(v) for k, v in (eval_sizes or {}).items()}
    if set(sizes) - {"n_test", "n_val"}:
        raise ValueError(f"eval_sizes takes n_test and n_val, not {sorted(set(sizes) - {'n_test', 'n_val'})}")
    return Job(row, to_dict(cfg), int(seed), str(Path(root) / f"{name}-s{seed}"), tuple(guidance),
               tuple(int(s) for s in eval_at), geneval, asdict((eval_cfg or cfg).text), sizes)


def run_jobs(jobs: Sequence[Job], workers: int = 2, log=None, force: bool = False, records=None) -> list[JobResult]:
    """Run every job (results in the order given). ``workers`` > 1: that many one-thread processes on the CPU;
    on CUDA (crossflow.device.default_device()) ``workers`` processes (at least one per visible GPU) take the
    GPUs round-robin: several small models share a GPU well, since their steps are launch-bound. Jobs start seed
    by seed, so an interrupted table holds whole seeds.

    Finished jobs (``result.json`` with the same spec) are read back, not rerun; interrupted ones resume
    from their last checkpoint. ``log``: a file path that gets one line per finished job (tail -f it).
    ``records``: a folder committed with the results (e.g. results/table3/jobs) that keeps every finished job's
    result.json as ``<run folder name>.json``; a job recorded there with the same spec is restored into its run
    folder instead of rerun, so a fresh clone (or another machine) resumes a long table where it stopped.

    A finished result (record or run folder) is reused only if it was scored by the evaluator networks this
    machine has (:func:`evaluators_sha256`): they are trained here, and another CPU kind trains them (and the
    autoencoder) to other weights, so results of two machines must not share a table. Such jobs are rerun
    whole, with a warning; an old run folder is kept beside as ``<run>.other-evaluators-<judge sha256[:8]>``."""
    from ..evaluate import load_evaluators
    from .protocol import _CACHE, _features, _features_key, run_job
    text_key = lambda j: json.dumps(j.eval_text, sort_keys=True)  # noqa: E731
    here = {k: evaluators_sha256(load_evaluators(j.eval_cfg, progress=False))   # builds them if missing
            for k, j in {text_key(j): j for j in jobs}.items()}
    if not force:
        other = [(j, theirs) for j in jobs if (theirs := set_aside_other_evaluators(j, here[text_key(j)], records))]
        if other:
            judges = sorted({(t.get("judge") or "?")[:8] for _, t in other})
            warnings.warn(f"{len(other)} finished job(s) were scored by other evaluator networks (judge "
                          f"{', '.join(judges)}; this machine's: {(next(iter(here.values()))['judge'] or '?')[:8]}), "
                          f"made on another kind of machine; they are rerun so that one table shares one set of "
                          f"evaluators: {', '.join(f'{j.row} s{j.seed}' for j, _ in other)}", stacklevel=2)
        if records is not None:
            for j in jobs:
                restore_record(j, records, here[text_key(j)])
    todo = sorted((j for j in jobs if force or load_result(j) is None), key=lambda j: j.seed)
    for j in {_features_key(j.cfg): j for j in todo}.values():   # warm each cache once here, not in every worker
        _features(j.cfg)
    _CACHE.clear()
    done: dict[str, JobResult] = {}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="jobs")

    def finish(job, res):
        done[job.run_dir] = res
        if records is not None:
            save_record(job, records)
        bar.update(1)
        if log:
            with open(log, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {job.row} seed {job.seed}: "
                        f"{json.dumps(res.test.to_dict(), default=float)} ({res.seconds:.0f} s)\n")

    ctx, gpus = get_context("spawn"), None
    if default_device().type == "cuda":
        workers = max(workers, torch.cuda.device_count())
        gpus = ctx.Queue()
        for i in range(workers):
            gpus.put(i % torch.cuda.device_count())
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            finish(job, run_job(job, force=force))
    else:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(gpus,)) as pool:
            futures = {pool.submit(run_job, job, force): job for job in todo}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    finish(job, fut.result())
                except Exception as e:
                    raise RuntimeError(f"job {job.row} (seed {job.seed}, {job.run_dir}) failed: {e}") from e
    bar.close()
    if records is not None:                              # jobs finished before records were kept
        for j in jobs:
            save_record(j, records)
    return [done.get(j.run_dir) or load_result(j) for j in jobs]


def _record_path(job: Job, records) -> Path:
    return Path(records) / f"{Path(job.run_dir).name}.json"


def save_record(job: Job, records) -> None:
    """Copy the job's finished result.json into ``records`` (atomically; unchanged records are not rewritten)."""
    src, dst = Path(job.run_dir) / "result.json", _record_path(job, records)
    if src.exists() and (not dst.exists() or dst.read_bytes() != src.read_bytes()):
        from ..utils import atomic_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            Path(tmp).write_bytes(src.read_bytes())


def evaluators_sha256(ev) -> dict:
    """The evaluator networks that score a job, as its result records them: their sha256 (None: not a file)."""
    return {"judge": ev.judge_info.get("sha256"), "clip": ev.clip_info.get("sha256")}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError:                                   # truncated
        return None


def _scored_by(job: Job, records=None) -> dict | None:
    """The evaluators of the job's finished result: its run folder's, else its record's (same spec only)."""
    for path in [Path(job.run_dir) / "result.json"] + ([_record_path(job, records)] if records is not None else []):
        res = _read(path)
        if res is not None and res.get("spec_hash") == job.spec_hash():
            return res.get("evaluators_sha256")
    return None


def set_aside_other_evaluators(job: Job, evaluators: dict, records=None) -> dict | None:
    """The evaluators of the job's finished result (run folder, else record) if they are not ``evaluators``,
    else None. Its run folder, if any, is then moved to ``<run>.other-evaluators-<judge[:8]>`` (kept, not
    deleted) so that the job is rerun whole: its checkpoint lives in another machine's latent space."""
    theirs = _scored_by(job, records)
    if theirs is None or theirs == evaluators:
        return None
    run = Path(job.run_dir)
    if run.exists():
        aside = run.with_name(f"{run.name}.other-evaluators-{(theirs.get('judge') or 'none')[:8]}")
        while aside.exists():
            aside = aside.with_name(aside.name + "+")
        run.rename(aside)
    return theirs


def restore_record(job: Job, records, evaluators: dict | None = None) -> bool:
    """Put the recorded result of ``job`` into its run folder if the run has none and the record's spec matches
    (a record of another spec is left alone: the job runs), and, given ``evaluators``, only if the record was
    scored by them. True if restored."""
    res = _read(_record_path(job, records))
    if load_result(job) is not None or res is None or res.get("spec_hash") != job.spec_hash():
        return False
    if evaluators is not None and res.get("evaluators_sha256") != evaluators:
        return False
    from ..utils import write_json
    write_json(Path(job.run_dir) / "result.json", res)
    return True


def load_result(job: Job) -> JobResult | None:
    """The job's finished result if its result.json holds the same spec; None if missing, unreadable or other."""
    path = Path(job.run_dir) / "result.json"
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except ValueError:                                   # truncated: the job is evaluated again
        return None
    return JobResult.from_dict(res) if res.get("spec_hash") == job.spec_hash() else None

