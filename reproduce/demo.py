"""make demo: see CrossFlow work in a minute, no training. Images for your prompts from the committed tiny model.

    make demo                                            # a few example prompts
    make demo PROMPTS="a red bag; two green sandals"     # your prompts, separated by ';'
    python -m reproduce.demo --prompts "a blue t-shirt at the top" --steps 50 --scale 7 --seed 0

Loads ``demo/crossflow-tiny`` (a :class:`crossflow.hub.CrossFlowPipeline` folder: Text VE, flow network and
autoencoder, float16, with ``demo/MANIFEST.json`` holding each file's sha256), writes one PNG per prompt and a
sheet of all of them to ``demo-out/``, and prints what the GenEval-domain judge (also committed, ``demo/judge``)
reads in each image: the items per grid cell, with their colours. The vocabulary of the tiny model is that of its
scenes: t-shirt, trouser, sandal, bag, ankle boot; red, green, blue, yellow, magenta, white; one to four items;
"at the top / bottom / left / right". Four colour-class pairs never appeared in training (red trouser, blue bag,
green sandal, yellow t-shirt): prompts with them test generalisation. Other words are cut or ignored. The model is
small and weak (GenEval-domain ~0.2, results/table7): expect the judge to disagree with many prompts.

``python -m reproduce.demo --export`` re-makes ``demo/`` from the main tiny run (``runs/t2i-tiny``) and the
cached judge (maintainers only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
PIPELINE = DEMO / "crossflow-tiny"
JUDGE = DEMO / "judge"
MANIFEST = DEMO / "MANIFEST.json"
EXAMPLES = ["a red bag", "two green sandals", "a blue t-shirt and a yellow ankle boot",
            "three white trousers", "a magenta sandal at the top"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files() -> list[Path]:
    return sorted(p for p in DEMO.rglob("*") if p.is_file() and p != MANIFEST)


def check_manifest() -> dict:
    """Every committed file of demo/ against its sha256 in MANIFEST.json (a clear error if one differs)."""
    if not MANIFEST.exists():
        raise SystemExit(f"{MANIFEST} is missing: the demo model is not in this checkout (git checkout demo/)")
    manifest = json.loads(MANIFEST.read_text())
    for rel, sha in manifest["sha256"].items():
        path = DEMO / rel
        if not path.exists():
            raise SystemExit(f"demo file {rel} is missing (git checkout demo/ restores it)")
        if _sha256(path) != sha:
            raise SystemExit(f"demo file {rel} does not match its checksum in {MANIFEST.name}: damaged or changed "
                             f"(git checkout demo/ restores it; maintainers re-make it with --export)")
    return manifest


def load_judge():
    import torch
    from safetensors.torch import load_file

    from crossflow.config import DataConfig, build_strict
    from crossflow.evaluate.judge import CellNet
    spec = json.loads((JUDGE / "config.json").read_text())
    net = CellNet(**spec["net"])
    net.load_state_dict(load_file(str(JUDGE / "judge.safetensors")))
    return net.eval().to(torch.float32), build_strict(DataConfig, spec["data"])


def describe(reading, i: int, data) -> str:
    from crossflow.data.scenes import cell_name
    items = reading.items(i, data)
    if not items:
        return "nothing (every cell read as empty)"
    return "; ".join(f"{it.color} {it.name} ({cell_name(it.cell, data.grid) or f'cell {it.cell}'})" for it in items)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def run(prompts: list[str], out: Path, steps: int | None, scale: float | None, seed: int) -> list[dict]:
    import torch

    from crossflow.evaluate.judge import read_images
    from crossflow.hub import CrossFlowPipeline
    from crossflow.plots import sample_grid
    from crossflow.results import savefig
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    t0 = time.time()
    diffusers_logging.disable_progress_bar(), transformers_logging.disable_progress_bar()
    manifest = check_manifest()
    pipe = CrossFlowPipeline.from_pretrained(str(PIPELINE))
    pipe.set_progress_bar_config(disable=True)
    judge, data = load_judge()
    images = pipe(prompts, num_inference_steps=steps, guidance_scale=scale,
                  generator=torch.Generator().manual_seed(seed))
    reading = read_images(judge, images, data)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (p, img) in enumerate(zip(prompts, pipe.numpy_to_pil(images.permute(0, 2, 3, 1).numpy()))):
        path = out / f"{i:02d}-{slug(p)}.png"
        img.resize((128, 128), 0).save(path)               # 32 px upscaled 4x (nearest) to be seen
        rows.append({"prompt": p, "image": str(path), "judge": describe(reading, i, data)})
    savefig(sample_grid(images, prompts, ncol=min(5, len(prompts)), title="make demo: CrossFlow tiny"),
            out / "sheet.png")
    cfg = pipe.flow.config.sample
    print(f"CrossFlow tiny demo ({manifest['model']['parameters']}; trained {manifest['model']['steps']} steps on "
          f"the Fashion-MNIST scenes; {steps or cfg['steps']} {cfg['solver']} steps, CFG "
          f"{scale if scale is not None else cfg['cfg_scale']}, seed {seed}):")
    for r in rows:
        print(f"  {r['prompt']!r}\n      -> {r['image']}\n      judge reads: {r['judge']}")
    print(f"  all together: {out / 'sheet.png'}   ({time.time() - t0:.1f} s)")
    return rows


def export(run_dir: Path, profile: str = "tiny") -> None:
    """Make demo/ from a trained run and the cached judge (float16 weights, manifest with checksums)."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from crossflow.config import to_dict
    from crossflow.evaluate import get_eval_config, load_evaluators
    from crossflow.evaluate.judge import cell_size
    from crossflow.models import count_parameters
    from crossflow.train import code_version, load_model
    model, cfg, ckpt = load_model(run_dir, map_location="cpu")
    from crossflow.hub import CrossFlowPipeline
    pipe = CrossFlowPipeline.from_model(model, cfg)
    if DEMO.exists():
        shutil.rmtree(DEMO)
    pipe.to(torch.float16).save_pretrained(str(PIPELINE))
    ecfg = get_eval_config(profile)
    ev = load_evaluators(cfg, ecfg, progress=False, device="cpu")
    JUDGE.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in ev.judge.state_dict().items()}, str(JUDGE / "judge.safetensors"))
    (JUDGE / "config.json").write_text(json.dumps({
        "net": {"n_classes": len(cfg.data.classes), "n_colors": len(cfg.data.colors),
                "cell": cell_size(cfg.data), "width": ecfg.judge_width, "feat": ecfg.judge_feat},
        "data": to_dict(cfg.data), "source_sha256": ev.judge_info["sha256"]}, indent=2) + "\n")
    last = json.loads((Path(run_dir) / "metrics.jsonl").read_text().splitlines()[-1])
    n_params = count_parameters(model.text_ve) + count_parameters(model.net)
    body = {"model": {"run": str(run_dir), "checkpoint_sha256": _sha256(Path(run_dir) / "checkpoint.pt"),
                      "profile": cfg.profile, "steps": ckpt["step"],
                      "final_loss": last["loss"], "parameters": f"{n_params / 1e6:.1f}M parameters (Text VE + flow)",
                      "stored_dtype": "float16 (loaded as float32)"},
            "code_version": code_version(), "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sha256": {str(p.relative_to(DEMO)): _sha256(p) for p in _files()}}
    MANIFEST.write_text(json.dumps(body, indent=2) + "\n")
    size = sum(p.stat().st_size for p in _files())
    print(f"wrote {DEMO} ({size / 1e6:.1f} MB): {len(body['sha256'])} files")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="", help="prompts separated by ';' (default: a few examples)")
    ap.add_argument("--out", default=str(ROOT / "demo-out"))
    ap.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's, 50)")
    ap.add_argument("--scale", type=float, default=None, help="CFG scale (default: the model's, 7)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export", metavar="RUN_DIR", nargs="?", const="runs/t2i-tiny",
                    help="maintainers: re-make demo/ from a trained run (default runs/t2i-tiny)")
    a = ap.parse_args(argv)
    if a.export:
        export(Path(a.export))
        return 0
    prompts = [p.strip() for p in a.prompts.split(";") if p.strip()] or EXAMPLES
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"                     # seconds of work: no progress-bar lines in the output
    try:
        run(prompts, Path(a.out), a.steps, a.scale, a.seed)
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before
    return 0


if __name__ == "__main__":
    sys.exit(main())
