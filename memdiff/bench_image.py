"""``memdiff bench image``: training and sampling throughput of the image U-Net in fp32 / bf16, eager /
compiled, against the fp32-eager baseline measured in the same run.

Training is timed through the real trainer (``sims.training.train``, EDM loss, Adam, EMA, grad clipping)
from its per-step log after warm-up steps (the log syncs the device every step, so the times are real);
sampling is EDM Heun (``num_steps`` steps, ``2 num_steps - 1`` network evaluations per image). On a
machine without CUDA it runs on CPU and says so; ``--quick`` shrinks everything to seconds.

On CPU the rates and ratios come from CPU time of this process (``time.process_time``; the training step from
one loss call to the next), which a machine shared with other jobs inflates less than wall time. ``--config``
takes the U-Net, the trainer settings, the batch, the threads and the sampler of an image grid config
(``configs/image_cpu.toml``) for the first dataset of ``--dataset``'s kind there (at its resolution), and adds
the estimated training + sampling time of one grid cell; ``--rounds`` repeats the variants in alternating order
and reports each one's medians.
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

from image_track.grid_cell import IMAGE_GRID, UNET_KEYS
from image_track.train import IMAGE_SHAPES, ImageRun, build_denoiser, build_loss, unet_preset
from image_track.unet import UNetConfig
from sims.artifacts import atomic_write_json
from sims.cell import TRAIN_KEYS
from sims.grid import load_config, train_table
from sims.samplers import generate
from sims.training import LOG, TrainConfig, train

VARIANTS = (("fp32", False, False), ("bf16", True, False), ("fp32+compile", False, True), ("bf16+compile", True, True))
TIMES = ("step_ms", "cpu_step_ms", "sample_s", "cpu_sample_s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist", choices=tuple(IMAGE_SHAPES), help="image shape and U-Net preset")
    p.add_argument("--config", default=None, help="image grid config: U-Net, trainer, batch, threads and sampler "
                   "of its [train]/[run]/[eval] for its first dataset of --dataset's kind")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: --config's, else the native one)")
    p.add_argument("--quick", action="store_true", help="tiny U-Net and sizes (a CPU smoke run)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: --config's, else 256)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    p.add_argument("--sample-batch", type=int, default=512)
    p.add_argument("--sample-steps", type=int, default=None, help="Heun steps (default: --config's, else 18)")
    p.add_argument("--variants", default=",".join(v[0] for v in VARIANTS), help="subset of " + ",".join(v[0] for v in VARIANTS))
    p.add_argument("--rounds", type=int, default=1, help="repeat the variants, alternating their order; medians")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: --config's [run] threads)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--out", default="runs/bench/image.json")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_variant(run: ImageRun, bf16: bool, compile_: bool, steps: int, warmup: int, sample_batch: int,
                  sample_steps: int) -> dict[str, Any]:
    """Time ``warmup + steps`` training steps and one warm-up plus one timed sampling batch: wall times, and on
    CPU the CPU time of this process too."""
    device = run.train.device
    c, side = run.unet.in_channels, run.unet.resolution
    data = torch.rand(max(1024, run.train.batch_size), c, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model, base_loss, stamps = build_denoiser(run), build_loss(run), []

    def loss(*a, **k):  # one call per step (one chunk): the CPU time between calls is a step's
        stamps.append(time.process_time())
        return base_loss(*a, **k)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(run.train, steps=warmup + steps, log_every=1, ckpt_every=10 ** 9, bf16=bf16,
                                  compile=compile_, out_dir=tmp, progress=False, micro_batch=None)
        result = train(model, loss, data, cfg)  # the last step (which also saves a checkpoint) goes untimed here
        rows = [json.loads(line) for line in (Path(tmp) / LOG).read_text().splitlines()]
    step_s = statistics.median(r["sec_per_step"] for r in rows[warmup:])
    cpu_step_s = statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:]))
    train_peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    model = result.ema
    if compile_:  # compile the U-Net only: samplers pass sigma as a float, which would recompile the wrapper per step
        model.net = torch.compile(model.net)
    gen = lambda n: generate(model, n, (c, side, side), steps=sample_steps,  # noqa: E731
                             batch=n, device=device, bf16=bf16)
    gen(sample_batch if cuda or compile_ else min(8, sample_batch))  # warm-up (and compilation)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    gen(sample_batch)
    _sync(device)
    sample_s, cpu_sample_s = time.perf_counter() - t0, time.process_time() - c0
    return {"step_ms": 1e3 * step_s, "cpu_step_ms": None if cuda else 1e3 * cpu_step_s,
            "sample_s": sample_s, "cpu_sample_s": None if cuda else cpu_sample_s,
            "peak_gpu_gib": train_peak if cuda else None}


def _grid_setup(path: str, kind: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(dataset entry, its [train] table, the config) of the first dataset of ``kind`` in grid config ``path``."""
    config = load_config(path, IMAGE_GRID)
    entry = next((d for d in config["datasets"] if d["kind"] == kind), None)
    if entry is None:
        raise ValueError(f"--config {path} must have a dataset of kind {kind!r} (--dataset), got kinds "
                         f"{sorted({d['kind'] for d in config['datasets']})}")
    return entry, train_table(config, entry["name"]), config


def _summary(runs: list[dict[str, Any]], batch: int, sample_batch: int, cpu: bool) -> dict[str, Any]:
    """One variant's medians over rounds and its throughputs (from CPU time on CPU, wall time on CUDA)."""
    med = {k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None for k in TIMES}
    train_s = (med["cpu_step_ms"] if cpu else med["step_ms"]) / 1e3
    sample_s = med["cpu_sample_s"] if cpu else med["sample_s"]
    return {**med, "train_images_per_s": batch / train_s, "sample_images_per_s": sample_batch / sample_s,
            "peak_gpu_gib": runs[0]["peak_gpu_gib"], "rounds": len(runs)}


def run(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    if not cuda:
        print("no GPU: running on CPU (use --quick here; GPU numbers need a CUDA machine)", flush=True)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.rounds < 1 or args.steps < 2:
        raise ValueError(f"--rounds must be >= 1 and --steps >= 2, got {args.rounds} and {args.steps}")
    native = IMAGE_SHAPES[args.dataset][1]
    grid, threads, train_kw, cell = None, args.threads, {"lr": 1e-4, "ema_decay": 0.999}, None
    if args.config:
        entry, tcfg, config = _grid_setup(args.config, args.dataset)
        side = args.resolution or entry.get("resolution", native)
        unet = UNetConfig(in_channels=IMAGE_SHAPES[args.dataset][0], resolution=side,
                          **{k: tuple(v) if isinstance(v, list) else v for k, v in tcfg.items() if k in UNET_KEYS})
        train_kw = {k: tcfg[k] for k in TRAIN_KEYS if k in tcfg and k != "steps"}
        threads = threads or config["run"].get("threads", 1)
        ecfg = config["eval"]
        cell = {"steps": tcfg.get("steps", TrainConfig.steps), "num_samples": ecfg.get("num_samples", 1000),
                "sampler_steps": ecfg.get("sampler_steps", 18)}
        grid = {"config": str(args.config), "dataset": entry["name"], **cell}
    else:
        side = args.resolution or native
        unet = unet_preset(args.dataset)
        unet = dataclasses.replace(unet, resolution=side) if side != native else unet
    batch = args.batch or train_kw.pop("batch_size", 256)
    train_kw.pop("batch_size", None)
    steps, warmup, sbatch = args.steps, args.warmup, args.sample_batch
    ssteps = args.sample_steps or (cell["sampler_steps"] if cell else 18)
    if cell is not None and ssteps != cell["sampler_steps"]:
        cell = None  # the estimate needs the grid's sampler steps
    if threads is not None:
        torch.set_num_threads(threads)
    if args.quick:
        unet = unet_preset(args.dataset, channels=16, channel_mult=(1, 2), blocks=1, attn=(side // 2,))
        unet = dataclasses.replace(unet, resolution=side)
        batch, steps, warmup, sbatch, ssteps = min(batch, 16), min(steps, 3), min(warmup, 1), min(sbatch, 16), min(ssteps, 4)
        cell = None
    chosen = [v for v in VARIANTS if v[0] in args.variants.split(",")]
    if not chosen or chosen[0][0] != "fp32":
        raise ValueError(f"variants must start with the fp32 baseline, got {args.variants!r}")
    run_cfg = ImageRun(dataset=args.dataset, unet=unet, train=TrainConfig(
        steps=1, batch_size=batch, device=device, progress=False, **train_kw))
    raw: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in chosen}
    for r in range(args.rounds):
        for name, bf16, comp in (chosen if r % 2 == 0 else chosen[::-1]):
            print(f"[{name}]" + (f" round {r + 1}/{args.rounds}" if args.rounds > 1 else "") + " ...", flush=True)
            raw[name].append(bench_variant(run_cfg, bf16, comp, steps, warmup, sbatch, ssteps))
    results = {name: _summary(runs, batch, sbatch, not cuda) for name, runs in raw.items()}
    base = results["fp32"]
    for res in results.values():
        res["train_speedup"] = res["train_images_per_s"] / base["train_images_per_s"]
        res["sample_speedup"] = res["sample_images_per_s"] / base["sample_images_per_s"]
        if cell is not None:  # training steps + the grid's samples, at the measured rates
            res["cell_s"] = cell["steps"] * batch / res["train_images_per_s"] + cell["num_samples"] / res["sample_images_per_s"]
    device_name = torch.cuda.get_device_name() if cuda else "cpu (no GPU)"
    basis = "wall time" if cuda else f"CPU time of this process, {torch.get_num_threads()} thread(s)"
    print(f"device: {device_name}; {args.dataset} {side}x{side}; batch {batch}; sampling {sbatch} images x {ssteps} "
          f"Heun steps; rates from {basis}" + (f"; medians of {args.rounds} rounds" if args.rounds > 1 else ""))
    if grid:
        print(f"U-Net and trainer of {grid['config']} (dataset {grid['dataset']!r}): {dataclasses.asdict(unet)}")
    head = f"{'variant':<14}{'step ms':>9}{'cpu ms':>9}{'train img/s':>13}{'x fp32':>8}{'sample img/s':>14}{'x fp32':>8}{'peak GiB':>10}"
    print(head + (f"{'cell min':>10}" if cell else ""))
    for name, res in results.items():
        peak = f"{res['peak_gpu_gib']:.2f}" if res["peak_gpu_gib"] is not None else "-"
        cpu_ms = f"{res['cpu_step_ms']:.1f}" if res["cpu_step_ms"] is not None else "-"
        print(f"{name:<14}{res['step_ms']:>9.1f}{cpu_ms:>9}{res['train_images_per_s']:>13.1f}{res['train_speedup']:>8.2f}"
              f"{res['sample_images_per_s']:>14.1f}{res['sample_speedup']:>8.2f}{peak:>10}"
              + (f"{res['cell_s'] / 60:>10.1f}" if cell else ""))
    if cell:
        print(f"cell min: {cell['steps']} training steps + {cell['num_samples']} samples x {ssteps} Heun steps at "
              f"these rates (one worker; the grid's readout and metrics not included)")
    atomic_write_json(args.out, {"device": device_name, "torch": torch.__version__, "dataset": args.dataset,
                                 "resolution": side, "quick": args.quick, "batch": batch, "steps": steps,
                                 "warmup": warmup, "sample_batch": sbatch, "sample_steps": ssteps,
                                 "threads": torch.get_num_threads(), "rounds": args.rounds, "time_basis": basis,
                                 "grid": grid, "unet": dataclasses.asdict(unet), "results": results, "raw": raw})
    print(f"wrote {args.out}")
    return 0
