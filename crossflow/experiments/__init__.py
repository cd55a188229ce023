"""Many small runs of the one training function, evaluated the same way: the machinery of the comparison
notebooks (Table 3 ablations, Table 1 baseline, Figure 3 scaling).

A :class:`Job` is one row of a table at one seed: a config, the guidance settings to evaluate it with, and
optionally checkpoints to evaluate along the way. ``run_jobs(jobs)`` trains each job into its own run folder
(resumable), evaluates it with the evaluation suite and writes ``result.json`` beside the checkpoint; a job whose
``result.json`` holds the same spec is not recomputed. Jobs run in worker processes with one thread each: the
small models of these tables use a CPU core better alone than two cores together (measured in the notebooks).

Evaluation protocol (one for every table):
- a *validation* set (test-split captions ``[n_test, n_test + n_val)``) on which guidance settings are
  grid-searched: the setting with the lowest FID-domain wins;
- a *test* set (test-split captions ``[0, n_test)``) on which the chosen setting is reported: FID-domain against
  the real images of the same scenes, CLIPScore-domain, and optionally GenEval-domain on the prompt suite.
Selection never sees the test set.


Modules: ``configs`` (budgets, the matched baseline), ``pool`` (Job, Guidance, run_jobs and result reuse),
``protocol`` (one job: train, select guidance on validation, report on test; cost benchmark; loss summaries),
``stats`` (per-seed values), ``regime`` (the compute-optimal recipe study). Everything is importable from here as before.
"""
from .configs import baseline_config, experiment_config, fig3_plan, generator_parameters
from .pool import Guidance, Job, JobResult, Scores, load_result, make_job, restore_record, run_jobs, save_record
from .protocol import (benchmark_cost, evaluate_images, final_loss, geneval_score, real_fid_floor, run_job,
                       sample_images, steps_to_loss)
from .regime import (checkpoint_at, choose_point, curve_rows, doubling_trend, guidance_summary, regime_jobs, study_base,
                     target_check)
from .stats import per_seed

__all__ = ["baseline_config", "experiment_config", "fig3_plan", "generator_parameters", "Guidance", "Job",
           "restore_record", "save_record", "JobResult", "Scores", "load_result", "make_job", "run_jobs", "benchmark_cost", "evaluate_images", "final_loss", "run_job",
           "real_fid_floor", "sample_images", "steps_to_loss", "choose_point", "curve_rows", "doubling_trend", "regime_jobs", "study_base", "target_check", "geneval_score", "checkpoint_at", "guidance_summary", "per_seed"]
