"""make bench: how fast training and sampling run, against the hardware's own peak measured in the same run.

    python -m reproduce.bench                      # CPU (and CUDA when present); -> results/bench/bench.{json,md}
    python -m reproduce.bench --quick              # fewer repetitions, no shape grid, no thread study (tests)
    python -m reproduce.bench --device cuda --widths 384,1280   # on a GPU: the tiny and the paper widths

What it measures (every number from this run; nothing is copied):

1. **Peaks**: matrix products of the shapes a tiny step multiplies, in fp32 and bf16 (and TF32 on a GPU); the
   best of them is "the peak" every percentage below refers to.
2. **Training step** of a profile's recipe (default tiny), with synthetic batches of its real shapes, as
   ``crossflow.train`` runs it (autocast, backward, clipping, AdamW, EMA), for the recipe with the fp32 step and for the
   speed options one by one (``train.mixed_precision``, ``flow.attention``, ``train.fused_optimizer``,
   ``train.compile``): ms per step, samples/s, FLOPs per sample (``FlopCounterMode``, the committed model's
   count for every variant, so GFLOP/s compare like for like), achieved GFLOP/s, % of the fp32 and bf16 peaks.
   The time split (flow network, Text VE, image tower forward + backward; optimizer; EMA; data) of the committed
   and the fastest variants is timed part by part.
3. **Sampling** per image with CFG (two passes per step) at the recipe's solver and steps, fp32 vs bf16.
4. **Threads** (CPU): the committed step with 1 and 2 threads, alone and with the other core busy, with
   OpenMP's default spin-waiting and with ``OMP_WAIT_POLICY=PASSIVE`` (each in a fresh process).
5. **Shapes**: a grid of patch size x width x batch, for the fast step (``FAST_STEP``).

Timings are medians of repeated steps after warm-up; on a shared machine they move, the ratios to the peak
measured minutes apart move less. This is a benchmark, not a test: nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The recipe's network with the fp32 step (crossflow.profiles.FP32_STEP, the Config defaults; bench_training starts
# from it, since the tiny recipe itself trains with the fast step), then the speed options of issue 13 (config
# overrides). The bf16 rows add one option each;
# the last row is crossflow.profiles.FAST_STEP (a test checks). Compiling is measured in fp32 only: in bf16 on a
# CPU inductor's kernels give non-finite gradients (train() refuses it; see crossflow/profiles.py).
VARIANTS = {
    "fp32 step": {},
    "fp32 + compiled flow net": {"train.compile": True},
    "bf16 autocast": {"train.mixed_precision": "bf16"},
    "+ math attention": {"train.mixed_precision": "bf16", "flow.attention": "math"},
    "+ fused AdamW": {"train.mixed_precision": "bf16", "flow.attention": "math", "train.fused_optimizer": True},
}


def machine() -> dict:
    import torch
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
           "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
           "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    from crossflow.train import code_version
    out["code_version"] = code_version()
    return out


def _median_time(fn, reps: int, warmup: int, device) -> float:
    from crossflow.device import synchronize
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ----------------------------------------------------------------------------------------------------------
# 1. Peaks
# ----------------------------------------------------------------------------------------------------------

def matmul_peaks(device, quick: bool) -> dict:
    """GFLOP/s of (M x K) @ (K x N) per dtype and shape; "peak" = the best shape of each dtype."""
    import torch
    shapes = [(4096, 128, 512), (4096, 512, 128), (4096, 256, 1024)]
    if device.type == "cuda":
        shapes = [(8192, 8192, 8192), (16384, 1280, 5120)]
    rows = []
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for name, dtype in dtypes.items():
        for M, K, N in shapes:
            a = torch.randn(M, K, device=device, dtype=dtype)
            b = torch.randn(K, N, device=device, dtype=dtype)
            t = _median_time(lambda: a @ b, reps=5 if quick else 15, warmup=3, device=device)
            rows.append({"dtype": name, "shape": [M, K, N], "gflops": 2 * M * K * N / t / 1e9})
    if device.type == "cuda":                               # TF32 tensor cores for fp32 products
        torch.backends.cuda.matmul.allow_tf32 = True
        M, K, N = shapes[0]
        a, b = torch.randn(M, K, device=device), torch.randn(K, N, device=device)
        t = _median_time(lambda: a @ b, reps=10, warmup=3, device=device)
        torch.backends.cuda.matmul.allow_tf32 = False
        rows.append({"dtype": "tf32", "shape": [M, K, N], "gflops": 2 * M * K * N / t / 1e9})
    peak = {d: max(r["gflops"] for r in rows if r["dtype"] == d) for d in {r["dtype"] for r in rows}}
    return {"rows": rows, "peak": peak}


# ----------------------------------------------------------------------------------------------------------
# 2. Training step
# ----------------------------------------------------------------------------------------------------------

TEXT_DIM = 384                                             # all-MiniLM-L6-v2's width (the tiny text encoder)


def synthetic_features(cfg, n_scenes: int = 2048):
    """A Features object of the recipe's shapes with random contents (speed does not depend on the values)."""
    import torch
    from crossflow.features import Features
    g = torch.Generator().manual_seed(0)
    n, s = cfg.text.max_length, cfg.data.image_size
    n_caps = n_scenes
    mask = torch.zeros(n_caps, n, dtype=torch.bool)
    mask[:, :12] = True                                    # captions of ~12 tokens, padded to max_length
    return Features(x=torch.randn(n_caps, n, TEXT_DIM, generator=g), mask=mask,
                    caption_index=torch.arange(n_caps).view(n_scenes, 1),
                    z1=torch.randn(n_scenes, *cfg.latent_shape, generator=g),
                    pixels=torch.randint(0, 256, (n_scenes, s, s, 3), dtype=torch.uint8, generator=g),
                    null_x=torch.zeros(1, n, TEXT_DIM), null_mask=torch.zeros(1, n, dtype=torch.bool),
                    captions=[""] * n_caps)


def train_flops_per_sample(cfg, feats) -> float:
    """Training FLOPs per sample (forward + backward) of ``cfg``'s model, counted by FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.models import CrossFlow
    torch.manual_seed(0)
    model = CrossFlow(cfg, TEXT_DIM, cfg.text.max_length)
    batch = feats.batch(torch.Generator().manual_seed(0), cfg.train.batch_size)
    with FlopCounterMode(display=False) as fc:
        loss, _ = model(batch, torch.Generator().manual_seed(1))
        loss.backward()
    return fc.get_total_flops() / cfg.train.batch_size


def _split(stepper, reps: int, device) -> dict:
    """Seconds per step of each part: data, each network's forward + backward, optimizer, EMA."""
    import torch
    b = stepper.batch()
    m, amp = stepper.model, stepper.amp
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(b["z1"].shape, device=device)
    t = torch.rand(b["z1"].shape[0], device=device)
    ind = torch.ones(b["z1"].shape[0], dtype=torch.long, device=device)

    def fb(f):
        def run():
            with torch.autocast(**amp):
                out = f()
            (out if torch.is_tensor(out) else out[0]).float().pow(2).mean().backward()
        return run
    parts = {
        "data (batch gather)": stepper.batch,
        "flow network fwd+bwd": fb(lambda: m.net(z0, t, indicator=ind)),
        "Text VE fwd+bwd": fb(lambda: m.text_ve.encode(b["x"], b["mask"], gen)[0]),
        "image tower fwd+bwd": fb(lambda: m.image_tower(b["pixels"])),
        "optimizer (clip + AdamW)": stepper.optimizer,
        "EMA": stepper.ema_update,
    }
    out = {k: _median_time(f, reps, 2, device) for k, f in parts.items()}
    return out


MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "convolution", "_linear_pointwise",
              "mkldnn_convolution", "convolution_backward", "_scaled_dot_product")


def matmul_share(stepper, steps: int = 3) -> dict:
    """Where a step's time goes, by operator (torch.profiler, self time): the share spent in matrix products and
    convolutions (what the matrix units can speed up) and the largest other operators (what bounds the rest)."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(2):
        stepper.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            stepper.step()
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows) or 1.0
    is_mm = lambda name: any(name.split("::")[-1].startswith(op) for op in MATMUL_OPS)  # noqa: E731
    mm = sum(t for k, t in rows if is_mm(k))
    others = sorted(((k, t) for k, t in rows if not is_mm(k)), key=lambda kt: -kt[1])[:6]
    return {"matmul_share": mm / total, "ms_per_step_profiled": total / 1000 / steps,
            "top_other_ops": [{"op": k, "share": t / total} for k, t in others]}


def bench_training(profile: str, device, peaks: dict, quick: bool, variants=None) -> dict:
    import torch
    from crossflow.config import get_config
    from crossflow.profiles import FP32_STEP
    from crossflow.train import TrainStep
    base = get_config(profile, dict(FP32_STEP))        # every row's options apply to the fp32 step
    feats = synthetic_features(base)
    flops = train_flops_per_sample(base, feats)
    reps = 3 if quick else 8
    rows = []
    variants = dict(variants or VARIANTS)
    if device.type == "cuda" and variants == VARIANTS:      # on a GPU inductor's bf16 kernels can be tried
        from crossflow.profiles import FAST_STEP
        variants["+ compiled flow net (bf16)"] = {**FAST_STEP, "train.compile": True}
    for name, over in variants.items():
        cfg = base.replace(over)
        st = TrainStep(cfg, feats, device)                  # train()'s own step (crossflow.train)
        warm = 3 + (4 if cfg.train.compile else 0)
        t0 = time.perf_counter()
        st.step()                                           # the first step compiles (when asked)
        first = time.perf_counter() - t0
        sec = _median_time(st.step, reps, warm, device)
        finite = all(bool(torch.isfinite(p).all()) for p in st.model.parameters())
        B = cfg.train.batch_size
        row = {"variant": name, "overrides": over, "ms_per_step": 1000 * sec, "samples_per_s": B / sec,
               "gflop_per_sample": flops / 1e9, "gflops": flops * B / sec / 1e9,
               "first_step_s": first, "weights_finite": finite}
        for d, p in peaks["peak"].items():
            row[f"pct_{d}_peak"] = 100 * row["gflops"] / p
        rows.append(row)
        print(f"  train {name:24s} {row['ms_per_step']:8.1f} ms/step  {row['gflops']:7.1f} GFLOP/s  "
              f"{row.get('pct_bf16_peak', 0):5.1f}% of bf16 peak{'' if finite else '  NON-FINITE WEIGHTS'}",
              flush=True)
    splits, ops = {}, {}
    if not quick:
        for name in (next(iter(VARIANTS)), list(VARIANTS)[-1]):
            st = TrainStep(base.replace(VARIANTS[name]), feats, device)
            for _ in range(3):
                st.step()
            splits[name] = {k: 1000 * v for k, v in _split(st, reps, device).items()}
            if device.type == "cpu":
                ops[name] = matmul_share(st)
    return {"profile": profile, "batch_size": base.train.batch_size, "flops_per_sample": flops, "rows": rows,
            "split_ms": splits, "operators": ops}


# ----------------------------------------------------------------------------------------------------------
# 3. Sampling
# ----------------------------------------------------------------------------------------------------------

def bench_sampling(profile: str, device, peaks: dict, quick: bool, n_images: int = 64) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from crossflow.config import get_config
    from crossflow.models import CrossFlow
    from crossflow.sampling import generate
    base = get_config(profile)
    feats = synthetic_features(base)
    x, mask = feats.x[:n_images].to(device), feats.mask[:n_images].to(device)
    steps, scale = base.sample.steps, base.sample.cfg_scale
    rows = []
    flops = None
    for name, over, amp in (("fp32", {}, False), ("bf16 autocast", {}, True),
                            ("bf16 autocast + math attention", {"flow.attention": "math"}, True)):
        cfg = base.replace(over)
        torch.manual_seed(0)
        model = CrossFlow(cfg, TEXT_DIM, cfg.text.max_length).to(device).eval()

        def run():
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                return generate(model, x, mask, scale=scale, steps=steps, solver=cfg.sample.solver, seed=0)
        if flops is None:
            with FlopCounterMode(display=False) as fc:
                _, nfe = run()
            flops = fc.get_total_flops() / n_images
        sec = _median_time(run, 2 if quick else 3, 1, device)
        row = {"variant": name, "images_per_s": n_images / sec, "ms_per_image": 1000 * sec / n_images,
               "gflop_per_image": flops / 1e9, "gflops": flops * n_images / sec / 1e9, "nfe": nfe}
        for d, p in peaks["peak"].items():
            row[f"pct_{d}_peak"] = 100 * row["gflops"] / p
        rows.append(row)
        print(f"  sample {name:32s} {row['ms_per_image']:7.2f} ms/image  {row['gflops']:7.1f} GFLOP/s", flush=True)
    return {"profile": profile, "batch": n_images, "solver": base.sample.solver, "steps": steps, "cfg_scale": scale,
            "rows": rows}


# ----------------------------------------------------------------------------------------------------------
# 4. Threads (CPU): each setting in a fresh process, because OpenMP reads its settings once at start
# ----------------------------------------------------------------------------------------------------------

_THREAD_CHILD = r"""
import sys, time, statistics, torch
torch.set_num_threads(int(sys.argv[1]))
from crossflow.train import TrainStep
from reproduce.bench import synthetic_features
from crossflow.config import get_config
cfg = get_config(sys.argv[2])
st = TrainStep(cfg, synthetic_features(cfg, 512), torch.device("cpu"))
for _ in range(2): st.step()
ts = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); st.step(); ts.append(time.perf_counter() - t)
print(statistics.median(ts))
"""


def bench_threads(profile: str, reps: int = 6) -> list[dict]:
    rows = []
    for load in (False, True):
        hog = None
        if load:                                            # the other core busy, as with two jobs at once
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for policy in ("(unset)", "PASSIVE"):
                for threads in (1, 2):
                    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
                    if policy != "(unset)":
                        env["OMP_WAIT_POLICY"] = policy
                    out = subprocess.run([sys.executable, "-c", _THREAD_CHILD, str(threads), profile, str(reps)],
                                         cwd=ROOT, env=env, capture_output=True, text=True)
                    if out.returncode:
                        raise RuntimeError(out.stderr[-2000:])
                    sec = float(out.stdout.strip().splitlines()[-1])
                    rows.append({"threads": threads, "omp_wait_policy": policy, "other_core_busy": load,
                                 "ms_per_step": 1000 * sec})
                    print(f"  threads {threads}, OMP_WAIT_POLICY {policy:8s}, other core "
                          f"{'busy' if load else 'idle'}: {1000 * sec:7.1f} ms/step", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return rows


# ----------------------------------------------------------------------------------------------------------
# 5. Shapes
# ----------------------------------------------------------------------------------------------------------

def bench_grid(profile: str, device, peaks: dict, widths, patches, batches) -> list[dict]:
    import torch
    from crossflow.config import get_config
    from crossflow.train import TrainStep
    fast = {k: v for k, v in VARIANTS[list(VARIANTS)[-1]].items() if k != "train.compile"}
    rows = []
    for patch in patches:
        for width in widths:
            for batch in batches:
                heads = max(1, width // 32)
                cfg = get_config(profile, {**fast, "flow.patch_size": patch, "flow.width": width,
                                           "flow.heads": heads, "train.batch_size": batch})
                feats = synthetic_features(cfg, max(512, batch))
                # FLOPs of the same shapes in the committed formulation, as in the training section
                flops = train_flops_per_sample(cfg.replace({"flow.attention": "sdpa", "train.mixed_precision": "no"}),
                                               feats)
                st = TrainStep(cfg, feats, device)
                sec = _median_time(st.step, 2, 1, device)
                row = {"patch": patch, "width": width, "batch": batch, "tokens": (cfg.latent_shape[1] // patch) ** 2,
                       "ms_per_step": 1000 * sec, "samples_per_s": batch / sec, "gflop_per_sample": flops / 1e9,
                       "gflops": flops * batch / sec / 1e9}
                for d, p in peaks["peak"].items():
                    row[f"pct_{d}_peak"] = 100 * row["gflops"] / p
                rows.append(row)
                print(f"  grid patch {patch} width {width:4d} batch {batch:4d}: {row['samples_per_s']:8.1f} "
                      f"samples/s, {row['gflops']:7.1f} GFLOP/s", flush=True)
                del st
                torch.manual_seed(0)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------

def _pct(r, d):
    v = r.get(f"pct_{d}_peak")
    return "-" if v is None else f"{v:.1f}%"


def markdown(res: dict) -> str:
    m = res["machine"]
    L = [f"# make bench ({res['device']})", "",
         f"Made by `{res['command']}` on {res['date']}, code {m['code_version']}: {m['cpu']}, {m['cores']} cores"
         f"{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']}; {res['threads_used']} thread(s) unless stated; "
         f"OMP_WAIT_POLICY {m['omp_wait_policy']}; load average at start {m['load_average']}.", "",
         "## Peaks (matrix products, this run)", "", "| dtype | M x K x N | GFLOP/s |", "|---|---|---|"]
    for r in res["peaks"]["rows"]:
        L.append(f"| {r['dtype']} | {' x '.join(map(str, r['shape']))} | {r['gflops']:.0f} |")
    L += ["", "Peak = best shape per dtype: " + ", ".join(f"{d} {v:.0f} GFLOP/s"
                                                         for d, v in sorted(res["peaks"]["peak"].items())), ""]
    tr = res["training"]
    L += [f"## Training step ({tr['profile']} recipe, batch {tr['batch_size']}, "
          f"{tr['flops_per_sample'] / 1e9:.3f} GFLOP per sample forward + backward)", "",
          "The recipe with the fp32 step, compiling in fp32, then bf16 with one more option per row; the last row is the fast "
          "step (`crossflow.profiles.FAST_STEP`). Config overrides in bench.json. FLOPs are the committed model's "
          "for every row.", "",
          "| variant | ms/step | samples/s | GFLOP/s | % fp32 peak | % bf16 peak | first step (s) | weights finite |",
          "|---|---|---|---|---|---|---|---|"]
    for r in tr["rows"]:
        L.append(f"| {r['variant']} | {r['ms_per_step']:.0f} | {r['samples_per_s']:.0f} | {r['gflops']:.0f} | "
                 f"{_pct(r, 'fp32')} | {_pct(r, 'bf16')} | {r['first_step_s']:.1f} | "
                 f"{'yes' if r.get('weights_finite', True) else 'NO'} |")
    if tr["split_ms"]:
        names = list(tr["split_ms"])
        L += ["", "Time split, ms per step, each part timed alone (they do not add up exactly to a step):", "",
              "| part | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for part in tr["split_ms"][names[0]]:
            L.append(f"| {part} | " + " | ".join(f"{tr['split_ms'][n][part]:.1f}" for n in names) + " |")
    for name, o in tr.get("operators", {}).items():
        top = ", ".join(f"{x['op'].split('::')[-1]} {100 * x['share']:.0f}%" for x in o["top_other_ops"])
        L += ["", f"Operators of the {name!r} step (torch.profiler, self time): {100 * o['matmul_share']:.0f}% in "
                  f"matrix products and convolutions; the largest others: {top}."]
    sa = res.get("sampling")
    if sa:
        L += ["", f"## Sampling ({sa['profile']} recipe: {sa['solver']} {sa['steps']} steps, CFG {sa['cfg_scale']}, "
                  f"batch {sa['batch']}; Text VE + flow network, decoder not included)", "",
              "| variant | ms/image | images/s | GFLOP/image | GFLOP/s | % bf16 peak |", "|---|---|---|---|---|---|"]
        for r in sa["rows"]:
            L.append(f"| {r['variant']} | {r['ms_per_image']:.2f} | {r['images_per_s']:.1f} | "
                     f"{r['gflop_per_image']:.2f} | {r['gflops']:.0f} | {_pct(r, 'bf16')} |")
    th = res.get("threads")
    if th:
        L += ["", "## Threads (committed step, each in a fresh process; 'busy' = another process spins on a core)",
              "", "| threads | OMP_WAIT_POLICY | other core | ms/step |", "|---|---|---|---|"]
        for r in th:
            L.append(f"| {r['threads']} | {r['omp_wait_policy']} | {'busy' if r['other_core_busy'] else 'idle'} | "
                     f"{r['ms_per_step']:.0f} |")
    gr = res.get("grid")
    if gr:
        L += ["", "## Shapes (the fast step, `FAST_STEP`)", "",
              "| patch | tokens | width | batch | samples/s | GFLOP/sample | GFLOP/s | % bf16 peak |",
              "|---|---|---|---|---|---|---|---|"]
        for r in gr:
            L.append(f"| {r['patch']} | {r['tokens']} | {r['width']} | {r['batch']} | {r['samples_per_s']:.0f} | "
                     f"{r['gflop_per_sample']:.3f} | {r['gflops']:.0f} | {_pct(r, 'bf16')} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m reproduce.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", help="whose recipe to time (default tiny)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: $CROSSFLOW_DEVICE or auto)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the CPU timings (default 1)")
    ap.add_argument("--quick", action="store_true", help="few repetitions; no split, threads or grid")
    ap.add_argument("--no-threads", action="store_true", help="skip the thread study")
    ap.add_argument("--no-grid", action="store_true", help="skip the shape grid")
    ap.add_argument("--widths", default="128,256,384")
    ap.add_argument("--patches", default="1,2")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--out", default=None, help="folder (default results/bench, results/bench-cuda on a GPU)")
    a = ap.parse_args(argv)
    import torch
    from crossflow.device import resolve_device
    from crossflow.utils import atomic_path, write_json
    device = resolve_device(a.device)
    if device.type == "cpu":
        torch.set_num_threads(a.threads)
    out = Path(a.out) if a.out else ROOT / "results" / ("bench" if device.type == "cpu" else f"bench-{device.type}")
    res = {"device": str(device), "machine": machine(), "threads_used": torch.get_num_threads(),
           "command": "python -m reproduce.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    print(f"[bench] {res['machine']['cpu']} / {device}; peaks", flush=True)
    res["peaks"] = matmul_peaks(device, a.quick)
    print("  " + ", ".join(f"{d} peak {v:.0f} GFLOP/s" for d, v in res["peaks"]["peak"].items()), flush=True)
    print("[bench] training step", flush=True)
    res["training"] = bench_training(a.profile, device, res["peaks"], a.quick)
    print("[bench] sampling", flush=True)
    res["sampling"] = bench_sampling(a.profile, device, res["peaks"], a.quick)
    if device.type == "cpu" and not (a.quick or a.no_threads):
        print("[bench] threads", flush=True)
        res["threads"] = bench_threads(a.profile)
    if not (a.quick or a.no_grid):
        print("[bench] shape grid", flush=True)
        ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
        res["grid"] = bench_grid(a.profile, device, res["peaks"], ints(a.widths), ints(a.patches), ints(a.batches))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", res)
    with atomic_path(out / "bench.md") as tmp:
        tmp.write_text(markdown(res))
    print(f"[bench] wrote {out / 'bench.md'} and bench.json", flush=True)
    return res


if __name__ == "__main__":
    main()
