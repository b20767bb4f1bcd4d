"""``memdiff bench image``: training and sampling throughput of the image U-Net in fp32 / bf16, eager /
compiled, against the fp32-eager baseline measured in the same run.

Training is timed through the real trainer (``sims.training.train``, EDM loss, Adam, EMA, grad clipping)
from its per-step log after warm-up steps (the log syncs the device every step, so the times are real);
sampling is EDM Heun (``num_steps`` steps, ``2 num_steps - 1`` network evaluations per image). On a
machine without CUDA it runs on CPU and says so; ``--quick`` shrinks everything to seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from image_track.train import IMAGE_SHAPES, ImageRun, build_denoiser, build_loss, unet_preset
from sims.artifacts import atomic_write_json
from sims.samplers import generate
from sims.training import LOG, TrainConfig, train

VARIANTS = (("fp32", False, False), ("bf16", True, False), ("fp32+compile", False, True), ("bf16+compile", True, True))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist", choices=tuple(IMAGE_SHAPES), help="image shape and U-Net preset")
    p.add_argument("--quick", action="store_true", help="tiny U-Net and sizes (a CPU smoke run)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="timed training steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    p.add_argument("--sample-batch", type=int, default=512)
    p.add_argument("--sample-steps", type=int, default=18)
    p.add_argument("--variants", default=",".join(v[0] for v in VARIANTS), help="subset of " + ",".join(v[0] for v in VARIANTS))
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--out", default="runs/bench/image.json")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_variant(run: ImageRun, bf16: bool, compile_: bool, steps: int, warmup: int, sample_batch: int,
                  sample_steps: int) -> dict[str, Any]:
    """Time ``warmup + steps`` training steps and one warm-up plus one timed sampling batch."""
    device = run.train.device
    c, side = run.unet.in_channels, run.unet.resolution
    data = torch.rand(max(1024, run.train.batch_size), c, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(run.train, steps=warmup + steps, log_every=1, ckpt_every=10 ** 9, bf16=bf16,
                                  compile=compile_, out_dir=tmp, progress=False)
        result = train(build_denoiser(run), build_loss(run), data, cfg)
        rows = [json.loads(line) for line in (Path(tmp) / LOG).read_text().splitlines()]
    step_s = statistics.median(r["sec_per_step"] for r in rows[warmup:])
    train_peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    model = result.ema
    if compile_:  # compile the U-Net only: samplers pass sigma as a float, which would recompile the wrapper per step
        model.net = torch.compile(model.net)
    gen = lambda: generate(model, sample_batch, (c, side, side), steps=sample_steps,  # noqa: E731
                           batch=sample_batch, device=device, bf16=bf16)
    gen()  # warm-up (and compilation)
    _sync(device)
    t0 = time.perf_counter()
    gen()
    _sync(device)
    sample_s = time.perf_counter() - t0
    return {"step_ms": 1e3 * step_s, "train_images_per_s": run.train.batch_size / step_s,
            "sample_images_per_s": sample_batch / sample_s,
            "peak_gpu_gib": train_peak if cuda else None}


def run(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        print("no GPU: running on CPU (use --quick here; GPU numbers need a CUDA machine)", flush=True)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch, steps, warmup, sbatch, ssteps = args.batch, args.steps, args.warmup, args.sample_batch, args.sample_steps
    unet = unet_preset(args.dataset)
    if args.quick:
        half = IMAGE_SHAPES[args.dataset][1] // 2
        unet = unet_preset(args.dataset, channels=16, channel_mult=(1, 2), blocks=1, attn=(half,))
        batch, steps, warmup, sbatch, ssteps = min(batch, 16), min(steps, 3), min(warmup, 1), min(sbatch, 16), min(ssteps, 4)
    chosen = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    if not chosen or chosen[0][0] != "fp32":
        raise ValueError(f"variants must start with the fp32 baseline, got {args.variants!r}")
    run_cfg = ImageRun(dataset=args.dataset, unet=unet, train=TrainConfig(
        steps=1, batch_size=batch, lr=1e-4, device=device, ema_decay=0.999, progress=False))
    results: dict[str, dict[str, Any]] = {}
    for name, bf16, comp in chosen:
        print(f"[{name}] ...", flush=True)
        results[name] = bench_variant(run_cfg, bf16, comp, steps, warmup, sbatch, ssteps)
    base = results["fp32"]
    for r in results.values():
        r["train_speedup"] = r["train_images_per_s"] / base["train_images_per_s"]
        r["sample_speedup"] = r["sample_images_per_s"] / base["sample_images_per_s"]
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu (no GPU)"
    head = f"{'variant':<14}{'step ms':>10}{'train img/s':>13}{'x fp32':>8}{'sample img/s':>14}{'x fp32':>8}{'peak GiB':>10}"
    print(f"device: {device_name}; batch {batch}; sampling {sbatch} images x {ssteps} Heun steps")
    print(head)
    for name, r in results.items():
        peak = f"{r['peak_gpu_gib']:.2f}" if r["peak_gpu_gib"] is not None else "-"
        print(f"{name:<14}{r['step_ms']:>10.1f}{r['train_images_per_s']:>13.1f}{r['train_speedup']:>8.2f}"
              f"{r['sample_images_per_s']:>14.1f}{r['sample_speedup']:>8.2f}{peak:>10}")
    atomic_write_json(args.out, {"device": device_name, "torch": torch.__version__, "dataset": args.dataset,
                                 "quick": args.quick, "batch": batch, "steps": steps, "warmup": warmup,
                                 "sample_batch": sbatch, "sample_steps": ssteps, "unet": dataclasses.asdict(unet),
                                 "results": results})
    print(f"wrote {args.out}")
    return 0
