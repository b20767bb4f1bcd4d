"""One device-agnostic trainer for every track: Adam + EMA, atomic checkpoints, exact resume, JSONL log, DDP, bf16.

Every random draw is a pure function of ``(seed, step, chunk)``: the data order (an epoch-wise permutation
seeded by ``(seed, epoch)``, drawn ``ORDER_BLOCK`` steps at a time), the x-flips, the loss's noise levels and
noise (one ``torch.Generator`` per run, reseeded per chunk) and dropout (the global RNG of the device reseeded
per chunk). A chunk is ``micro_batch`` consecutive items of the global batch, so a resumed run, a one-process
run and a W-process DDP run with the same ``micro_batch`` all see the same numbers. Gradients are the global
per-sample mean: each chunk's loss sum is divided by the global batch size (times W, because DDP averages
gradients over ranks).

No step reads a value back from the device except log steps (the loss and gradient norm) and checkpoints; the
batch indices go to the device once per ``ORDER_BLOCK`` steps. Adam is torch's fused kernel on CPU and CUDA
(``make_adam``); clipping and the EMA are one foreach call each over parameter lists built once.

GPU: ``device="cuda"``, ``bf16=True`` (autocast of forward and loss; weights, Adam and EMA stay float32),
``compile=True`` (``torch.compile`` of the DDP-wrapped model). Multi-GPU: launch with ``torchrun``; when
``torch.distributed`` is initialised the model is wrapped in ``DistributedDataParallel``, rank ``r``
takes chunks ``r*k .. (r+1)*k-1`` of each global batch and only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sims.artifacts import atomic_write, atomic_write_text
from theory.denoiser import check_finite
from theory.seeding import derive_seed, seeded_generator

LossFn = Callable[..., Tensor]  # loss(denoiser, x0, y=None, generator=None) -> (B,) per-sample losses
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "ema", "optimizer", "rng", "step", "data")  # what _save writes (and "config")
LOG = "log.jsonl"
_PERM, _FLIP, _DROPOUT, _LOSS = 1, 2, 3, 4  # domain tags that keep the derived seeds of each use apart
LR_DECAYS = ("none", "cosine")
ORDER_BLOCK = 64  # steps whose batch indices are drawn at once
FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where torch.optim.Adam(fused=True) runs


@dataclass
class TrainConfig:
    """Training hyper-parameters. The learning rate rises linearly over ``lr_warmup_steps`` and then, with
    ``lr_decay = "cosine"``, falls as ``lr (1 + cos(pi t)) / 2`` to 0 at the last step (``t``: the share of the
    steps after warm-up done; ``lr_at``). ``ema_halflife_images`` (EDM style) overrides ``ema_decay`` when set:
    the per-step decay is ``0.5 ** (batch_size / halflife)``, with the half-life capped at
    ``ema_rampup * images_seen`` when ``ema_rampup`` is set. ``micro_batch`` (default: the per-rank batch)
    is the gradient-accumulation chunk and the unit of randomness."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    lr_warmup_steps: int = 0
    lr_decay: str = "none"
    ema_decay: float = 0.999
    ema_halflife_images: float | None = None
    ema_rampup: float | None = None
    grad_clip: float | None = 1.0
    micro_batch: int | None = None
    xflip: bool = False
    ckpt_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    out_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {list(LR_DECAYS)}, got {self.lr_decay!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_halflife_images is not None and not self.ema_halflife_images > 0:
            raise ValueError(f"ema_halflife_images must be > 0 or None, got {self.ema_halflife_images}")
        if self.ema_rampup is not None and not self.ema_rampup > 0:
            raise ValueError(f"ema_rampup must be > 0 or None, got {self.ema_rampup}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.micro_batch is not None and (self.micro_batch < 1 or self.batch_size % self.micro_batch):
            raise ValueError(f"micro_batch must divide batch_size={self.batch_size}, got {self.micro_batch}")


@dataclass
class TrainResult:
    model: nn.Module  # the trained (unwrapped) model
    ema: nn.Module  # its exponential moving average, in eval mode
    step: int
    last_loss: float


def batch_indices(n: int, seed: int, step: int, batch_size: int) -> Tensor:
    """Indices of step ``step``'s global batch: positions ``step*B .. step*B+B-1`` of the stream of
    epoch-wise permutations of ``range(n)``, epoch ``e`` permuted by a generator seeded from ``(seed, e)``."""
    return batch_index_block(n, seed, step, 1, batch_size)[0]


def batch_index_block(n: int, seed: int, start: int, steps: int, batch_size: int) -> Tensor:
    """``(steps, B)``: row ``i`` is ``batch_indices(n, seed, start + i, B)``, each epoch's permutation drawn once."""
    first, stop = start * batch_size, (start + steps) * batch_size
    e0 = first // n
    stream = torch.cat([torch.randperm(n, generator=seeded_generator(_PERM, seed, e))
                        for e in range(e0, (stop - 1) // n + 1)])
    return stream[first - e0 * n:stop - e0 * n].view(steps, batch_size)


def make_adam(params: Iterable[Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """The trainer's optimizer: ``torch.optim.Adam`` with its fused kernel on CPU and CUDA (the same update as
    the default per-tensor loop up to float rounding, several times faster), torch's default elsewhere."""
    return torch.optim.Adam(params, lr=lr, fused=True if device.type in FUSED_ADAM_DEVICES else None)


def lr_at(config: TrainConfig, step: int) -> float:
    """The learning rate of (0-based) ``step``: linear warm-up, then constant or cosine decay (``TrainConfig``)."""
    warm = min(1.0, (step + 1) / config.lr_warmup_steps) if config.lr_warmup_steps else 1.0
    if config.lr_decay == "none" or step < config.lr_warmup_steps:
        return config.lr * warm
    t = (step - config.lr_warmup_steps) / max(1, config.steps - config.lr_warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def ema_beta(config: TrainConfig, step: int) -> float:
    """The EMA decay applied after step ``step`` (0-based)."""
    if config.ema_halflife_images is None:
        return config.ema_decay
    halflife = config.ema_halflife_images
    if config.ema_rampup is not None:
        halflife = min(halflife, (step + 1) * config.batch_size * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(halflife, 1e-8))


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _chunks(config: TrainConfig, world: int) -> tuple[int, int]:
    """(micro-batch size, chunks per rank)."""
    micro = config.micro_batch or config.batch_size // world
    if config.batch_size % world or config.batch_size % micro or (config.batch_size // micro) % world:
        raise ValueError(f"batch_size={config.batch_size} must split into micro_batch={micro} chunks "
                         f"whose number is a multiple of the world size {world}")
    return micro, config.batch_size // micro // world


def _check_data(x0: Tensor, y: Tensor | None) -> None:
    if not torch.is_tensor(x0) or not x0.is_floating_point() or x0.ndim < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a floating-point tensor of shape (N, ...) with N >= 1, "
                         f"got {getattr(x0, 'shape', type(x0).__name__)}")
    check_finite(x0, "x0")
    if y is not None:
        if not torch.is_tensor(y) or y.shape != x0.shape:
            raise ValueError(f"y must be a tensor of x0's shape {tuple(x0.shape)}, got {getattr(y, 'shape', y)}")
        check_finite(y, "y")


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _data_state(config: TrainConfig, n: int, step: int) -> dict[str, int]:
    return {"seed": config.seed, "n": n, "batch_size": config.batch_size, "samples_seen": step * config.batch_size}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a killed run logs past it)."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def load_checkpoint(path: str | Path, model: nn.Module | None = None, ema: nn.Module | None = None,
                    map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint (a file, or a run folder holding ``checkpoint.pt``); load weights into
    ``model`` / ``ema`` when given. Returns the raw checkpoint dict. A truncated or corrupt file, or one
    that is not a checkpoint of :func:`train`, is a ``ValueError`` naming it. ``mmap=True`` reads the
    tensors lazily: a cheap check of a checkpoint before anything is written beside it."""
    path = Path(path)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.exists():
        raise ValueError(f"checkpoint path must exist, got {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError, OSError, EOFError or pickle errors, by where the damage is
        reason = (str(e).splitlines() or [""])[0]
        raise ValueError(f"checkpoint {path} cannot be read (truncated or corrupt?): {type(e).__name__}: {reason}") from e
    missing = sorted(set(CHECKPOINT_KEYS) - set(ckpt)) if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise ValueError(f"checkpoint {path} must be a checkpoint of sims.training.train; it lacks {missing}")
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    return ckpt


def train(model: nn.Module, loss: LossFn, x0: Tensor, config: TrainConfig, y: Tensor | None = None,
          resume: bool = False) -> TrainResult:
    """Train ``model`` (a denoiser module ``model(x, sigma)``, e.g. ``EDMPrecond(net)``) to minimise the
    mean over items of ``loss(model, x0[i], y=y[i], generator=g)`` with Adam, keeping an EMA copy.
    ``resume=True`` continues from ``config.out_dir/checkpoint.pt`` when it exists."""
    _check_data(x0, y)
    rank, world = _world()
    micro, per_rank = _chunks(config, world)
    device = torch.device(config.device)
    out = Path(config.out_dir) if config.out_dir else None
    if resume and out is None:
        raise ValueError("config.out_dir must be set when resume=True")

    model = model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = make_adam(model.parameters(), config.lr, device)
    start = 0
    if resume and (out / CHECKPOINT).exists():
        ckpt = load_checkpoint(out, model, ema, map_location=device)
        if ckpt["data"]["seed"] != config.seed or ckpt["data"]["n"] != x0.shape[0] \
                or ckpt["data"]["batch_size"] != config.batch_size:
            raise ValueError(f"config (seed, data size, batch_size) must match the checkpoint's data order "
                             f"{ckpt['data']}, got seed={config.seed}, n={x0.shape[0]}, batch_size={config.batch_size}")
        opt.load_state_dict(ckpt["optimizer"])
        _set_rng_states(ckpt["rng"])
        start = ckpt["step"]
        if rank == 0:
            _truncate_log(out / LOG, start)

    ddp = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    wrapped: nn.Module = ddp or model
    if config.compile:
        wrapped = torch.compile(wrapped, backend=config.compile_backend)

    x0_dev = x0.to(device)
    y_dev = y.to(device) if y is not None else None
    writer = rank == 0 and out is not None
    last_loss, t_last = float("nan"), time.perf_counter()
    bar = None
    if config.progress and rank == 0 and start < config.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=start, desc="train", dynamic_ncols=True)

    model.train()
    params, ema_update = list(model.parameters()), _EMA(ema, model)
    chunks = range(rank * per_rank, (rank + 1) * per_rank)
    gen = torch.Generator(device=device)  # the loss's generator, reseeded per chunk
    logged = start
    for step in range(start, config.steps):
        if (step - start) % ORDER_BLOCK == 0:
            order = batch_index_block(x0.shape[0], config.seed, step, min(ORDER_BLOCK, config.steps - step),
                                      config.batch_size).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(config, step)
        opt.zero_grad(set_to_none=True)
        done = step + 1
        log_now = done % config.log_every == 0 or done == config.steps
        loss_sum = _accumulate(wrapped, ddp, loss, x0_dev, y_dev, config, step, order[(step - start) % ORDER_BLOCK],
                               gen, chunks, micro, 1.0 / (config.batch_size // world),  # DDP averages over ranks
                               log_now)
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = _clip(grads, config.grad_clip) if config.grad_clip is not None else None
        opt.step()
        ema_update(ema_beta(config, step))

        if log_now:
            if world > 1:
                dist.all_reduce(loss_sum)
            last_loss = loss_sum.item() / config.batch_size
            if not math.isfinite(last_loss):
                raise FloatingPointError(f"training loss is {last_loss} at step {done}: lower lr or enable grad_clip")
            now = time.perf_counter()
            norm = grad_norm if grad_norm is not None else _grad_norm(grads)  # the gradients opt.step left as they were
            rec = {"step": done, "loss": last_loss, "grad_norm": float(norm), "lr": opt.param_groups[0]["lr"],
                   "ema_beta": ema_beta(config, step), "sec_per_step": (now - t_last) / (done - logged),
                   "images_per_s": (done - logged) * config.batch_size / max(now - t_last, 1e-9)}
            t_last, logged = now, done
            if writer:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / LOG, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.4g}")
        if writer and (done % config.ckpt_every == 0 or done == config.steps):
            _save(out / CHECKPOINT, model, ema, opt, done, config, x0.shape[0])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if world > 1:
        _check_replicas(model)
    model.eval()
    return TrainResult(model=model, ema=ema, step=max(start, config.steps), last_loss=last_loss)


def _accumulate(wrapped: nn.Module, ddp: nn.Module | None, loss: LossFn, x0: Tensor, y: Tensor | None,
                config: TrainConfig, step: int, idx: Tensor, gen: torch.Generator, chunks: range, micro: int,
                scale: float, want_loss: bool) -> Tensor | None:
    """Backpropagate ``scale * sum of per-sample losses`` over this rank's chunks of step ``step``'s global
    batch ``idx`` (on the device; DDP syncs on the last chunk only); return the float64 loss sum when ``want_loss``, else
    None. Randomness is keyed by ``(seed, step, chunk)``: flips, dropout (the device's global RNG) and the
    loss's generator ``gen``."""
    device = x0.device
    flips = torch.rand(config.batch_size, generator=seeded_generator(_FLIP, config.seed, step)) < 0.5 \
        if config.xflip else None
    loss_sum = torch.zeros((), device=device, dtype=torch.float64) if want_loss else None
    for c in chunks:
        sel = slice(c * micro, (c + 1) * micro)
        xb, yb = _augment(x0, y, idx[sel], flips[sel].to(device) if flips is not None else None)
        _seed_global(device, derive_seed(_DROPOUT, config.seed, step, c))
        gen.manual_seed(derive_seed(_LOSS, config.seed, step, c))
        with ddp.no_sync() if ddp is not None and c != chunks[-1] else contextlib.nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext():
                per_sample = loss(wrapped, xb, y=yb, generator=gen)
            per_sample = per_sample.float()
            (per_sample.sum() * scale).backward()
        if loss_sum is not None:
            loss_sum += per_sample.detach().double().sum()
    return loss_sum


def _seed_global(device: torch.device, seed: int) -> None:
    """Seed the global RNG that dropout on ``device`` draws from. On CPU that is the CPU generator alone
    (``torch.manual_seed`` seeds it too, and every accelerator, at many times the cost); elsewhere
    ``torch.manual_seed``."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _augment(x0: Tensor, y: Tensor | None, idx: Tensor, flips: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Gather a chunk and mirror the chosen items along the last axis (x0 and its noisy copy alike)."""
    xb = x0[idx]
    yb = y[idx] if y is not None else None
    if flips is not None:
        m = flips.reshape(-1, *([1] * (xb.ndim - 1)))
        xb = torch.where(m, xb.flip(-1), xb)
        yb = torch.where(m, yb.flip(-1), yb) if yb is not None else None
    return xb, yb


@torch.no_grad()
def _check_replicas(model: nn.Module) -> None:
    """Raise if any rank's weights differ from rank 0's (DDP must keep replicas bit-identical)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    same = torch.tensor([int(torch.equal(flat, ref))], device=flat.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    if not same.item():
        raise RuntimeError("DDP replicas diverged: some rank's weights differ from rank 0's")


def _grad_norm(grads: list[Tensor]) -> Tensor:
    """The global 2-norm of ``grads`` (the 2-norm of the per-tensor 2-norms), without a host sync."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _clip(grads: list[Tensor], max_norm: float) -> Tensor:
    """Scale ``grads`` in place by ``min(1, max_norm / (norm + 1e-6))`` and return the norm before clipping:
    ``nn.utils.clip_grad_norm_``'s update, as one foreach norm and one foreach multiply (no host sync)."""
    norm = _grad_norm(grads)
    if grads:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


class _EMA:
    """``ema <- beta * ema + (1 - beta) * model`` for parameters (one foreach lerp); buffers are copied. The
    tensor lists are built once: both modules must keep their parameters and buffers as tensors updated in
    place (as optimizers, ``load_state_dict`` and batch norm do)."""

    def __init__(self, ema: nn.Module, model: nn.Module) -> None:
        self.ema, self.model = list(ema.parameters()), [p.detach() for p in model.parameters()]
        self.buffers = list(zip(ema.buffers(), model.buffers()))

    @torch.no_grad()
    def __call__(self, beta: float) -> None:
        torch._foreach_lerp_(self.ema, self.model, 1.0 - beta)
        for be, b in self.buffers:
            be.copy_(b)


def _save(path: Path, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, step: int,
          config: TrainConfig, n: int) -> None:
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
             "rng": _rng_states(), "step": step, "data": _data_state(config, n, step),
             "config": dataclasses.asdict(config)}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
