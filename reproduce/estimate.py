"""How long `make reproduce PROFILE=<profile>` takes on a GPU: counted FLOPs x an effective throughput.

    python -m reproduce.estimate --profile gpu         # -> results/estimate-gpu/estimate.{json,md}

For every artifact, the training FLOPs (steps x batch x FLOPs per training sample, counted with
``torch.utils.flop_counter.FlopCounterMode`` on a real forward + backward of each model) and the sampling FLOPs
(images x NFE x FLOPs per forward) of its budget: model sizes and steps from crossflow/profiles.py, the numbers of
seeds, rows, guidance settings and images from the notebooks' ``parameters`` cells (read, not copied). The
hours follow from an effective throughput: measured by ``make gpu-check`` (its gpu-step stage, the gpu profile's
real training step) when results/gpu-check/report.json exists, else the two stated assumptions below. Small
models reach a small fraction of a GPU's peak, so the assumptions are deliberately low. Only the networks'
FLOPs are counted: data loading, evaluator features and Python overhead are not (the evaluators are small).
"""
from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

import torch

from crossflow.config import Config, ConfigError, get_config
from crossflow.profiles import PROFILE_NAMES, get_profile
import reproduce.run as run_module
from reproduce.run import ARTIFACTS, ROOT

# effective bf16 throughput assumed without a measurement [open]: ~10% and ~3% of an H100's dense bf16 peak
# (989 TFLOP/s); the tiny step reaches under 10% of this CPU's bf16 peak, small GPU models do no better
ASSUMED_TFLOPS = {"likely": 100.0, "pessimistic": 30.0}


def notebook_parameters(artifact: str) -> dict:
    """The values of an artifact notebook's ``parameters`` cell."""
    return run_module.notebook_parameters(ROOT / ARTIFACTS[artifact][0])


@lru_cache(maxsize=None)
def _flops(cfg_json: str, text_dim: int = 384, batch: int = 4) -> tuple[float, float]:
    """(training FLOPs per sample, one forward pass of the flow network per sample) of a config."""
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.config import config_from_dict
    from crossflow.models import CrossFlow
    cfg = config_from_dict(json.loads(cfg_json))
    c, h, w = cfg.latent_shape
    n, s = cfg.text.max_length, cfg.data.image_size
    torch.manual_seed(0)
    model = CrossFlow(cfg, text_dim, n)
    batch_ = {"x": torch.randn(batch, n, text_dim), "mask": torch.ones(batch, n, dtype=torch.bool),
              "z1": torch.randn(batch, c, h, w), "pixels": torch.rand(batch, 3, s, s) * 2 - 1,
              "null_x": torch.zeros(1, n, text_dim), "null_mask": torch.ones(1, n, dtype=torch.bool)}
    with FlopCounterMode(display=False) as fc:
        loss, _ = model(batch_, torch.Generator().manual_seed(0))
        loss.backward()
    train = fc.get_total_flops() / batch
    kw = ({"context": batch_["x"], "context_mask": batch_["mask"]} if cfg.flow.cross_attention
          else {"indicator": torch.ones(batch, dtype=torch.long)})
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.net(batch_["z1"], torch.full((batch,), 0.5), **kw)
    return train, fc.get_total_flops() / batch


def flops(cfg: Config) -> tuple[float, float]:
    from crossflow.config import to_json
    return _flops(to_json(cfg))


def _train(cfg: Config, runs: int = 1) -> float:
    return runs * cfg.train.steps * cfg.train.batch_size * flops(cfg)[0]


def _sample(cfg: Config, images: float, guided: bool = True) -> float:
    return images * cfg.sample.steps * (2 if guided else 1) * flops(cfg)[1]


def artifact_flops(profile: str) -> dict[str, dict]:
    """{artifact: {"train": FLOPs, "sample": FLOPs, "what": str}} for the profile's budgets."""
    from crossflow.evaluate import get_eval_config
    from crossflow.experiments import baseline_config, experiment_config, fig3_plan
    p, main, ev = get_profile(profile), get_config(profile), get_eval_config(profile)
    sizes = p.eval_sizes
    out = {}
    nb = notebook_parameters("t2i")
    out["t2i"] = {"train": _train(main), "sample": _sample(main, nb["n_prompts"] * (1 + len(nb["sweep_scales"]))),
                  "what": f"main model, {main.train.steps} steps x batch {main.train.batch_size}"}
    out["evaluators"] = {"train": 0.0, "sample": 0.0, "what": "judge + domain CLIP (small CNNs, not counted)"}
    out["table7"] = {"train": 0.0, "sample": _sample(main, ev.fid_samples + ev.n_prompts * ev.samples_per_prompt),
                     "what": f"{ev.fid_samples} FID images + {ev.n_prompts} x {ev.samples_per_prompt} GenEval images"}
    nb = notebook_parameters("fig4")
    out["fig4"] = {"train": 0.0, "sample": _sample(main, 2 * len(nb["pairs"]) * (nb["n_between"] + 2)),
                   "what": "interpolation paths"}
    nb = notebook_parameters("table8")
    out["table8"] = {"train": 0.0, "sample": _sample(main, 3 * nb["n_per_kind"] * 2), "what": "arithmetic + control"}
    out["table10"] = {"train": 0.0, "sample": 0.0, "what": "three text autoencoders (small, not counted)"}

    exp = experiment_config(profile)
    nb = notebook_parameters("table3")
    seeds, n_lm = len(nb["seeds"]), len(nb["language_models"])
    settings = 1 + len(nb["cfg_scales"]) + len(nb["ag_scales"]) * len(nb["ag_fractions"])
    distinct = 9 + max(0, n_lm - 3)                                   # the notebook's 9 distinct models at 3 LMs
    per_job_images = sizes["n_val"] * settings + sizes["n_test"] * 3 + ev.n_prompts * ev.samples_per_prompt
    out["table3"] = {"train": _train(exp, distinct * seeds), "sample": _sample(exp, distinct * seeds * per_job_images),
                     "what": f"{distinct} models x {seeds} seeds, {exp.train.steps} steps x batch {exp.train.batch_size}"}
    nb = notebook_parameters("table1")
    base = baseline_config(exp)
    seeds, scales = len(nb["seeds"]), len(nb["cfg_scales"])
    imgs = seeds * (sizes["n_val"] * scales + sizes["n_test"] + ev.n_prompts * ev.samples_per_prompt)
    out["table1"] = {"train": _train(exp, seeds) + _train(base, seeds),
                     "sample": _sample(exp, imgs) + _sample(base, imgs),
                     "what": f"CrossFlow + baseline x {seeds} seed(s)"}
    nb = notebook_parameters("fig3")
    steps, plan = fig3_plan(profile)
    steps = steps or exp.train.steps
    seeds, scales = len(nb["seeds"]), len(nb["cfg_scales"])
    train = sample = 0.0
    for i, ov in enumerate(plan.values()):
        cf = exp.replace({**ov, "train.steps": steps})
        imgs = seeds * (sizes["n_val"] * scales + sizes["n_test"] * (1 + (len(nb["curve_fractions"]) if i == len(plan) - 1 else 0)))
        for c in (cf, baseline_config(cf)):
            train += _train(c, seeds)
            sample += _sample(c, imgs)
    out["fig3"] = {"train": train, "sample": sample,
                   "what": f"{len(plan)} sizes x 2 methods x {seeds} seeds, {steps} steps"}

    gen_images = ev.n_prompts * ev.samples_per_prompt                 # GenEval-domain images per setting
    nb = notebook_parameters("sampler")
    n_fid = min(nb["n_fid"], ev.fid_samples)
    evals = sum(nb["nfes"]) * len(nb["solvers"]) + 50 * (len(nb["seeds"]) - 1) + 4 * (len(nb["seeds"]) - 1)
    out["sampler"] = {"train": 0.0, "sample": 2 * evals * (n_fid + gen_images) * flops(main)[1],
                      "what": f"{len(nb['solvers'])} solvers x {len(nb['nfes'])} NFEs + Euler-50 seeds, "
                              f"{n_fid + gen_images} images each"}
    nb = notebook_parameters("precision")
    short = main.replace({"train.steps": nb["steps"]})
    n_fid = min(nb["n_fid"], ev.fid_samples)
    runs = len(nb["seeds"]) + 1
    out["precision"] = {"train": _train(short, runs), "sample": _sample(main, runs * (n_fid + gen_images)),
                        "what": f"{runs} runs x {nb['steps']} steps"}
    from crossflow.tasks import sr
    nb = notebook_parameters("table6")
    scfg = sr.get_sr_config(profile)
    sr_train, sr_forward = _sr_flops(scfg)
    seeds, n_test = len(nb["seeds"]), 6 * scfg.data.test_patches_per_photo
    out["table6"] = {"train": 3 * seeds * scfg.train.steps * scfg.train.batch_size * sr_train,
                     "sample": seeds * n_test * (2 * scfg.sample.steps + 1) * sr_forward,
                     "what": f"3 methods x {seeds} seeds, {scfg.train.steps} steps x batch {scfg.train.batch_size}"}
    from crossflow.tasks import depth
    dcfg = depth.get_depth_config(profile)
    d_train, d_forward = _depth_flops(dcfg)
    for art in ("table5", "table9"):
        nb = notebook_parameters(art)
        seeds = len(nb["seeds"])
        n_test = dcfg.data.n_test if art == "table5" else 3
        out[art] = {"train": 3 * seeds * dcfg.train.steps * dcfg.train.batch_size * d_train if art == "table5" else 0.0,
                    "sample": seeds * n_test * (2 * dcfg.sample.steps + 1) * d_forward,
                    "what": (f"3 methods x {seeds} seeds, {dcfg.train.steps} steps x batch {dcfg.train.batch_size}"
                             if art == "table5" else "Table 5's runs on 3 real images")}
    from crossflow.tasks import caption
    ccfg, nb = caption.get_caption_config(profile), notebook_parameters("table4")
    c_train, c_forward = _caption_flops(ccfg, main)
    seeds = len(nb["seeds"])
    out["table4"] = {"train": seeds * ccfg.fit.steps * ccfg.fit.batch_size * c_train,
                     "sample": seeds * ccfg.n_test * 2 * ccfg.sample.steps * c_forward,
                     "what": f"4 models x {seeds} seeds, {ccfg.fit.steps} steps x batch {ccfg.fit.batch_size}"}
    nb = notebook_parameters("fig9")
    from crossflow.profiles import FAST_SAMPLER
    n_fid = min(nb["n_fid"], ev.fid_samples)
    settings = len(nb["cfg_scales"]) + len(nb["ag_scales"])
    fast = main.replace(dict(FAST_SAMPLER))
    out["fig9"] = {"train": nb["guide_fraction"] * _train(main),
                   # midpoint: 2 evaluations per step; + indicator-0 and scale-1 sets (one pass each)
                   "sample": 2 * _sample(fast, settings * (n_fid + gen_images)) + 2 * _sample(fast, 2 * n_fid, False),
                   "what": f"the guide ({nb['guide_fraction']:g} of the main run) + {settings} guidance settings"}
    nb = notebook_parameters("regime")
    fast = main.replace(dict(nb["sampler"] or FAST_SAMPLER))
    evals = 2 if fast.sample.solver in ("midpoint", "heun") else 1          # network evaluations per solver step
    train = sample = 0.0
    try:
        cfs = [main.replace({**pt["overrides"], "train.steps": int(round(max(pt["lengths"]) * main.train.steps))})
               for pt in nb["points"].values()]
    except ConfigError as e:                    # the default points vary the tiny recipe; another profile passes its own
        out["regime"] = {"train": 0.0, "sample": 0.0, "what": f"not counted: the notebook's default points do not apply "
                                                              f"to this profile ({e}); pass points for it"}
        return out
    for point, cf in zip(nb["points"].values(), cfs):
        train += _train(cf)
        images = nb["n_val"] * (1 + len(nb["cfg_scales"])) + len(point["lengths"]) * (nb["n_test"] + gen_images)
        sample += evals * _sample(cf.replace({"sample.solver": fast.sample.solver, "sample.steps": fast.sample.steps}),
                                  images)
    if nb["confirm_steps"]:
        sample += _sample(main.replace({"sample.steps": nb["confirm_steps"]}), nb["n_test"] + gen_images)
    out["regime"] = {"train": train, "sample": sample,
                     "what": f"{len(nb['points'])} variants of the main recipe, each evaluated at several lengths"}
    return out


def _sr_flops(cfg, batch: int = 4) -> tuple[float, float]:
    """(training FLOPs per sample, one flow-network forward per sample) of a super-resolution config."""
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.tasks.sr import SRModel
    torch.manual_seed(0)
    model = SRModel(cfg.replace({"method": "noise_concat"}))          # the widest input of the three
    P, s = cfg.data.patch, cfg.data.scale
    b = {"hr": torch.rand(batch, 3, P, P), "lr": torch.rand(batch, 3, P // s, P // s)}
    with FlopCounterMode(display=False) as fc:
        loss, _ = model(b, torch.Generator().manual_seed(0))
        loss.backward()
    train = fc.get_total_flops() / batch
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.net(torch.rand(batch, 3, P, P), torch.full((batch,), 0.5), cond=torch.rand(batch, 3, P, P))
    return train, fc.get_total_flops() / batch


def _depth_flops(cfg, batch: int = 4) -> tuple[float, float]:
    """(training FLOPs per sample of the costliest method, CrossFlow with its image VE; one flow-network forward
    per sample with the image concatenated) of a depth config."""
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.tasks.depth import DepthModel
    torch.manual_seed(0)
    S = cfg.data.size
    b = {"image": torch.rand(batch, 3, S, S), "depth": torch.rand(batch, 1, S, S) * 2 - 1}
    with FlopCounterMode(display=False) as fc:
        loss, _ = DepthModel(cfg.replace({"method": "crossflow"}))(b, torch.Generator().manual_seed(0))
        loss.backward()
    train = fc.get_total_flops() / batch
    net = DepthModel(cfg.replace({"method": "noise_concat"})).net
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(torch.rand(batch, 1, S, S), torch.full((batch,), 0.5), cond=torch.rand(batch, 3, S, S))
    return train, fc.get_total_flops() / batch


def _caption_flops(cfg, t2i_cfg, batch: int = 4, text_dim: int = 384) -> tuple[float, float]:
    """(training FLOPs per sample of the text VAE, the CrossFlow captioner and the autoregressive captioner
    together, twice the text VAE's for CrossFlow-T2I's decoder; one flow-network forward per sample)."""
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.tasks import caption
    torch.manual_seed(0)
    shape, n, V = t2i_cfg.latent_shape, t2i_cfg.text.max_length, 100
    b = {"x": torch.randn(batch, n, text_dim), "mask": torch.ones(batch, n, dtype=torch.bool),
         "ids": torch.randint(V, (batch, n)), "z_img": torch.randn(batch, *shape), "z_text": torch.randn(batch, *shape)}
    models = [caption.TextVAE(cfg.text_vae, text_dim, n, shape, V), caption.TextVAE(cfg.text_vae, text_dim, n, shape, V),
              caption.CrossFlowCaptioner(cfg, shape), caption.ARCaptioner(cfg.ar, shape, n, V)]
    with FlopCounterMode(display=False) as fc:
        for m in models:
            m.loss(b, torch.Generator().manual_seed(0))[0].backward()
    with torch.no_grad(), FlopCounterMode(display=False) as fw:
        models[2].net(b["z_img"], torch.full((batch,), 0.5))
    return fc.get_total_flops() / batch, fw.get_total_flops() / batch


def measured_tflops(profile_report: Path = ROOT / "results" / "gpu-check" / "report.json") -> dict | None:
    """Effective TFLOP/s of the gpu profile's training step as make gpu-check measured it, if it ran."""
    if not profile_report.exists():
        return None
    rep = json.loads(profile_report.read_text())
    row = next((r for r in rep["stages"] if r["stage"] == "gpu-step"), None)
    if row is None or "step_seconds" not in row:
        return None
    gpu = get_config("gpu")
    tflops = gpu.train.batch_size * flops(gpu)[0] / row["step_seconds"] / 1e12
    return {"measured": tflops, "device": rep["machine"].get("gpu"), "report": str(profile_report.relative_to(ROOT))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu", choices=PROFILE_NAMES)
    a = ap.parse_args(argv)
    from crossflow.utils import atomic_path, write_json
    per = artifact_flops(a.profile)
    meas = measured_tflops()
    rates = {**({"measured": meas["measured"]} if meas else {}), **ASSUMED_TFLOPS}
    total = sum(v["train"] + v["sample"] for v in per.values())
    out = ROOT / "results" / f"estimate-{a.profile}"
    body = {"profile": a.profile, "tflops": rates, "measured_from": meas, "assumed": ASSUMED_TFLOPS,
            "artifacts": {k: {**v, "hours": {r: (v["train"] + v["sample"]) / (t * 1e12) / 3600 for r, t in rates.items()}}
                          for k, v in per.items()},
            "total_pflop": total / 1e15,
            "total_hours": {r: total / (t * 1e12) / 3600 for r, t in rates.items()}}
    write_json(out / "estimate.json", body)
    cols = list(rates)
    lines = [f"# Estimated GPU time of `make reproduce PROFILE={a.profile}`", "",
             "Generated by `python -m reproduce.estimate --profile " + a.profile + "`: network FLOPs counted with "
             "FlopCounterMode, divided by an effective throughput (" + ", ".join(
                 f"{r} {t:.0f} TFLOP/s" for r, t in rates.items()) + (
                 f"; measured by make gpu-check on {meas['device']}" if meas else
                 "; both assumed, no make gpu-check report yet") + "). Not counted: data, evaluators, overhead.", "",
             "| artifact | budget | train PFLOP | sample PFLOP | " + " | ".join(f"h ({c})" for c in cols) + " |",
             "|---|---|---:|---:|" + "---:|" * len(cols)]
    for k, v in body["artifacts"].items():
        lines.append(f"| {k} | {v['what']} | {v['train'] / 1e15:.1f} | {v['sample'] / 1e15:.2f} | "
                     + " | ".join(f"{v['hours'][c]:.2f}" for c in cols) + " |")
    lines.append(f"| **all** | | {sum(v['train'] for v in per.values()) / 1e15:.1f} | "
                 f"{sum(v['sample'] for v in per.values()) / 1e15:.2f} | "
                 + " | ".join(f"**{body['total_hours'][c]:.1f}**" for c in cols) + " |")
    with atomic_path(out / "estimate.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
