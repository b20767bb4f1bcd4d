"""``memdiff image {train,eval,paired,classifier,grid}``: the image track from the command line.

    memdiff image classifier --dataset fashion-mnist                 # train + cache the feature CNN
    memdiff image train --n 300 --loss hybrid_ambient --sigma-n 0.2 --out runs/img/amb300
    memdiff image train --n 300 --loss epsilon --noise ci_t --interval 0 0.6 --out runs/img/ci300
    memdiff image eval --run runs/img/amb300 --num-samples 5000
    memdiff image paired --n 300 --loss edm --out runs/img/paired300    # train if needed, then theory vs net
    torchrun --standalone --nproc_per_node=8 -m memdiff.cli image train ... # multi-GPU (DDP)
    memdiff image grid --config configs/image_cpu.toml --out runs/image_grid --only 'digits-n100-*'  # resumable

Loss and noise-level names are those of the one registry, ``sims.methods``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from image_track.evaluate import FEATURES, EvalConfig, evaluate_run
from image_track.features import DEFAULT_CACHE, ClassifierConfig, feature_net
from image_track.grid_cell import IMAGE_GRID, run_image_grid
from image_track.paired import PairedConfig, paired_run
from image_track.train import ImageRun, init_distributed, train_image_model, unet_preset
from memdiff.sim import add_grid_arguments, grid_command
from sims.artifacts import REPO_ROOT
from sims.grid import load_config
from sims.methods import LOSSES, NOISE_LAWS
from sims.training import TrainConfig

GRID_CONFIG = REPO_ROOT / "configs" / "image_cpu.toml"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Flags that define a training run (data, loss, noise levels, U-Net, optimisation)."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "cifar10", "digits"))
    g.add_argument("--data-path", default=None, help="folder / archive (default: the Debian Fashion-MNIST folder)")
    g.add_argument("--n", type=int, default=300, help="training subset size (rest held out)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the subset draw and of the fixed ambient noise")
    g = p.add_argument_group("loss")
    g.add_argument("--loss", default="edm", choices=LOSSES)
    g.add_argument("--noise", default="edm_lognormal", choices=NOISE_LAWS, help="noise-level law")
    g.add_argument("--sigma-n", type=float, default=None, help="ambient corruption level (ambient, hybrid_ambient)")
    g.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="confidence interval of the CI laws: on t/T (ci_t) or on ln sigma (ci_log_sigma), e.g. -1.5 3")
    g.add_argument("--sigma-data", type=float, default=0.5)
    g = p.add_argument_group("U-Net (defaults: the dataset's preset)")
    g.add_argument("--channels", type=int, default=None)
    g.add_argument("--channel-mult", type=_ints, default=None, help="e.g. 1,2,2")
    g.add_argument("--blocks", type=int, default=None)
    g.add_argument("--attn", type=_ints, default=None, help="attention resolutions, e.g. 14")
    g.add_argument("--dropout", type=float, default=None)
    g.add_argument("--embedding", default=None, choices=("positional", "fourier"))
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=20000)
    g.add_argument("--batch", type=int, default=128)
    g.add_argument("--micro-batch", type=int, default=None, help="gradient-accumulation chunk (and unit of randomness)")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--lr-warmup", type=int, default=1000, help="linear warm-up steps")
    g.add_argument("--ema-halflife-kimg", type=float, default=50.0, help="EMA half-life in thousands of images")
    g.add_argument("--ema-rampup", type=float, default=0.05, help="cap the half-life at this share of images seen")
    g.add_argument("--grad-clip", type=float, default=1.0)
    g.add_argument("--xflip", action="store_true", help="random horizontal flips (x0 and its noisy copy together)")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, batch order, noise levels and noise")
    g.add_argument("--ckpt-every", type=int, default=1000)
    g.add_argument("--log-every", type=int, default=100)
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default=None, help="default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA; works on CPU too)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace, out_dir: str | None, device: str) -> ImageRun:
    unet = unet_preset(args.dataset, channels=args.channels, channel_mult=args.channel_mult, blocks=args.blocks,
                       attn=args.attn, dropout=args.dropout, embedding=args.embedding)
    train = TrainConfig(steps=args.steps, batch_size=args.batch, micro_batch=args.micro_batch, lr=args.lr,
                        lr_warmup_steps=args.lr_warmup, ema_halflife_images=args.ema_halflife_kimg * 1000,
                        ema_rampup=args.ema_rampup, grad_clip=args.grad_clip if args.grad_clip > 0 else None,
                        xflip=args.xflip, seed=args.seed, ckpt_every=args.ckpt_every, log_every=args.log_every,
                        device=device, bf16=args.bf16, compile=args.compile, out_dir=out_dir,
                        progress=not args.no_progress)
    noise = {"kind": args.noise, **({"interval": list(args.interval)} if args.interval is not None else {})}
    return ImageRun(dataset=args.dataset, data_path=args.data_path, n=args.n, data_seed=args.data_seed, loss=args.loss,
                    noise=noise, sigma_n=args.sigma_n, sigma_data=args.sigma_data, unet=unet, train=train)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--num-samples", type=int, default=1000)
    g.add_argument("--sample-steps", type=int, default=18, help="EDM Heun steps")
    g.add_argument("--sample-batch", type=int, default=256)
    g.add_argument("--sample-seed", type=int, default=1)
    g.add_argument("--features", default="classifier", choices=FEATURES)
    g.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the feature classifier is cached")
    g.add_argument("--classifier-epochs", type=int, default=ClassifierConfig.epochs)


def eval_config(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(num_samples=args.num_samples, sample_steps=args.sample_steps, sample_batch=args.sample_batch,
                      sample_seed=args.sample_seed, features=args.features, cache_dir=args.cache_dir,
                      classifier_epochs=args.classifier_epochs, use_ema=not getattr(args, "no_ema", False))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("train", help="train a U-Net on a seeded subset (resumable)", formatter_class=fmt)
    add_run_arguments(p)
    p.add_argument("--out", required=True, help="run folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    g.add_argument("--overwrite", action="store_true",
                   help="move a run already in the folder aside (to FOLDER.old-TIMESTAMP) and start afresh")
    p = sub.add_parser("eval", help="sample a trained run; FD, memorization, nearest-neighbour grid", formatter_class=fmt)
    p.add_argument("--run", required=True, help="run folder written by `memdiff image train`")
    p.add_argument("--device", default=None)
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights instead of the EMA")
    add_eval_arguments(p)
    p = sub.add_parser("paired", help="closed-form theory on the training subset vs the trained net (one JSON, one figure)",
                       formatter_class=fmt)
    add_run_arguments(p)
    add_eval_arguments(p)
    p.add_argument("--config", default=None, help="a run.json to take the run from (overrides the run flags)")
    p.add_argument("--out", required=True, help="run folder (trained here unless it holds a finished run)")
    p.add_argument("--num-sigmas", type=int, default=13, help="noise levels of the readout grid")
    p.add_argument("--readout-items", type=int, default=256, help="train and test items per noise level")
    p.add_argument("--gen-pool", type=int, default=10000, help="held-out images behind the generalizing D_gen")
    p = sub.add_parser("classifier", help="train and cache the feature classifier on the full training split",
                       formatter_class=fmt)
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "cifar10", "digits"))
    p.add_argument("--data-path", default=None)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--epochs", type=int, default=ClassifierConfig.epochs)
    p.add_argument("--device", default=None)
    p = sub.add_parser("grid", help="train and evaluate the cells of an image grid config (resumable)",
                       formatter_class=fmt)
    p.add_argument("--config", type=Path, default=GRID_CONFIG, help="image grid config (.toml/.json)")
    p.add_argument("--out", type=Path, default=Path("runs/image_grid"), help="output folder")
    add_grid_arguments(p, "digits-n100-*")


def run(args: argparse.Namespace) -> int:
    if args.action == "grid":
        return grid_command("memdiff image grid", load_config(args.config, IMAGE_GRID), args.out, args, run_image_grid)
    device = init_distributed() if args.device is None else args.device
    if args.action == "train":
        result = train_image_model(run_from_args(args, args.out, device), resume=args.resume,
                                   overwrite=args.overwrite)
        print(f"trained to step {result.step}, last loss {result.last_loss:.4g}; run folder {args.out}")
    elif args.action == "eval":
        report = evaluate_run(args.run, eval_config(args), device)
        print(json.dumps(report["summary"], indent=2))
    elif args.action == "paired":
        run = run_from_args(args, args.out, device)
        if args.config:  # the run from a run.json, trained into --out on this device
            run = ImageRun.from_dict(json.loads(Path(args.config).read_text()))
            run.train = dataclasses.replace(run.train, out_dir=args.out, device=device)
        cfg = PairedConfig(num_sigmas=args.num_sigmas, readout_items=args.readout_items, gen_pool=args.gen_pool,
                           eval=eval_config(args))
        report = paired_run(run, cfg, device)
        print(json.dumps(report["summary"], indent=2))
    else:
        fn = feature_net(args.dataset, args.data_path, args.cache_dir, ClassifierConfig(epochs=args.epochs),
                         device=device, progress=True)
        print(fn.name)
    return 0
