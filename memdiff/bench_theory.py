"""``memdiff bench theory``: the streamed exact EmpiricalDenoiser against a float32 cdist + softmax baseline.

Reports, in one run on this machine: the float32 matmul rate (a square matmul timed here); throughput
(queries/s) and effective GFLOP/s (``2 B n d`` per call) of both methods at several ``sigma``; the peak
memory each needs for one call, as the growth of the peak resident set size over the
call, in a fresh subprocess per method and ``n``, with the data and the denoiser already built; and the
total-variation error of the posterior weights at ``sigma = 0.01`` against a float64 direct-difference
reference, on data with near neighbours (clusters of items a few ``sigma`` apart).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Callable

import torch
from torch import Tensor

from theory.empirical import EmpiricalDenoiser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=60000, help="training items")
    parser.add_argument("--d", type=int, default=784, help="dimension")
    parser.add_argument("--batch", type=int, default=256, help="queries per call")
    parser.add_argument("--sigmas", type=str, default="0.01,1,30", help="comma-separated noise levels to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method and sigma (best is kept)")
    parser.add_argument("--chunk-size", type=int, default=16384, help="EmpiricalDenoiser chunk_size")
    parser.add_argument("--exact-top", type=int, default=8, help="EmpiricalDenoiser exact_top")
    parser.add_argument("--logit-tol", type=float, default=1e-5, help="EmpiricalDenoiser logit_tol (nats)")
    parser.add_argument("--tv-items", type=int, default=4000, help="items of the near-neighbour accuracy test")
    parser.add_argument("--tv-queries", type=int, default=64, help="queries of the near-neighbour accuracy test")
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurement")
    parser.add_argument("--quick", action="store_true", help="seconds-long run: n=4000, d=128, batch=64, one repeat")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)


def _best_time(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Float32 ``size^3`` matmul rate of this machine, GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size ** 3 / _best_time(lambda: a @ b, repeats) / 1e9


def cdist_softmax(data: Tensor, x: Tensor, sigma: float) -> Tensor:
    """The baseline: float32 ``torch.cdist``, squared, softmax, weighted mean (materialises (B, n))."""
    return torch.softmax(-torch.cdist(x, data).square() / (2 * sigma ** 2), dim=1) @ data


def _random_problem(n: int, d: int, batch: int, sigma: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(n, d, generator=g)
    idx = torch.randint(0, n, (batch,), generator=g)
    return data, data[idx] + sigma * torch.randn(batch, d, generator=g)


def _method(name: str, data: Tensor, opts: dict) -> Callable[[Tensor, float], Tensor]:
    if name == "exact-stream":
        return EmpiricalDenoiser(data, **opts)
    return lambda x, s: cdist_softmax(data, x, s)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_growth_mib(call: Callable[[], object]) -> float:
    """Peak resident-memory growth (MiB) over ``call()``; allocate its inputs first.

    Linux: the peak (``VmHWM``) is reset to the current RSS through ``/proc/self/clear_refs`` just before
    the call, so the growth is the call's own working memory. Elsewhere: ``ru_maxrss`` growth (a lower bound).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
        call()
        return (_status_kib("VmHWM") - before) / 1024.0
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        call()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0


def memory_probe(name: str, n: int, d: int, batch: int, sigma: float, seed: int, opts: dict) -> float:
    """:func:`peak_growth_mib` of one denoiser call, data and denoiser built first (run in a fresh process)."""
    data, x = _random_problem(n, d, batch, sigma, seed)
    method = _method(name, data, opts)
    return peak_growth_mib(lambda: method(x, sigma))


def in_fresh_process(module: str, expr: str):
    """``expr`` (a JSON-able Python expression over ``module``'s names) evaluated in a fresh interpreter with
    this process's torch thread count, so peak-memory probes start clean."""
    code = (f"import json, torch; from {module} import *; torch.set_num_threads({torch.get_num_threads()}); "
            f"print(json.dumps({expr}))")
    # A fixed mmap threshold makes glibc return every large freed buffer at once, so RSS tracks live memory
    # (its default dynamic threshold keeps freed buffers on the heap and RSS then drifts with fragmentation).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_in_subprocess(name: str, n: int, d: int, batch: int, sigma: float, seed: int, opts: dict) -> float:
    return float(in_fresh_process("memdiff.bench_theory", f"memory_probe({name!r}, {n}, {d}, {batch}, {sigma}, {seed}, {opts!r})"))


def near_neighbour_problem(n: int, d: int, queries: int, sigma: float, seed: int) -> tuple[Tensor, Tensor]:
    """Clusters of 20 items around unit-variance centres, items ~3 sigma apart; queries ``x_i + sigma z``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(1, n // 20), d, generator=g, dtype=torch.float64)
    data = centres[torch.arange(n) % centres.shape[0]] + 3 * sigma * torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    data = data.float()
    x = data[torch.randint(0, n, (queries,), generator=g)] + sigma * torch.randn(queries, d, generator=g)
    return data, x


def reference_weights(data: Tensor, x: Tensor, sigma: float, chunk: int = 256) -> Tensor:
    """Float64 posterior weights from direct differences, streamed over items."""
    x64 = x.to(torch.float64)
    logits = torch.cat([-(x64[:, None] - data[lo:lo + chunk].to(torch.float64)[None]).square().sum(-1) / (2 * sigma ** 2)
                        for lo in range(0, data.shape[0], chunk)], dim=1)
    return torch.softmax(logits, dim=1)


def accuracy(data: Tensor, x: Tensor, sigma: float, opts: dict) -> dict[str, dict[str, float]]:
    """TV of the weights and max error of the mean against the float64 reference, for both methods."""
    ref = reference_weights(data, x, sigma)
    ref_mean = ref @ data.to(torch.float64)
    den = EmpiricalDenoiser(data, **opts)
    dist = torch.cdist(x, data).square()
    base_w = torch.softmax(-dist / (2 * sigma ** 2), dim=1)
    result = {}
    for name, w, mean in (("exact-stream", den.weights(x, sigma), den(x, sigma)),
                          ("cdist+softmax", base_w, base_w @ data)):
        tv = 0.5 * (w.to(torch.float64) - ref).abs().sum(1)
        result[name] = {"tv_mean": tv.mean().item(), "tv_max": tv.max().item(),
                        "mean_err_max": (mean.to(torch.float64) - ref_mean).abs().max().item()}
    result["reference"] = {"entropy_mean": (-(ref * ref.clamp_min(1e-300).log()).sum(1)).mean().item()}
    return result


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.n, args.d, args.batch, args.repeats, args.tv_items, args.tv_queries = 4000, 128, 64, 1, 1000, 32
    for name in ("n", "d", "batch", "repeats", "chunk_size", "exact_top", "tv_items", "tv_queries"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if not sigmas or not all(math.isfinite(s) and s > 0 for s in sigmas):
        raise ValueError(f"--sigmas must be positive numbers, got {args.sigmas!r}")
    opts = {"chunk_size": args.chunk_size, "exact_top": args.exact_top, "logit_tol": args.logit_tol}
    methods = ("exact-stream", "cdist+softmax")
    flops = 2 * args.batch * args.n * args.d
    out: dict = {"config": {k: v for k, v in vars(args).items()}, "threads": torch.get_num_threads(),
                 "load_average": os.getloadavg()}
    print(f"memdiff bench theory: n={args.n} d={args.d} batch={args.batch} float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    mm = matmul_gflops(1024 if args.quick else 2048)
    out["matmul_gflops"] = mm
    print(f"machine float32 matmul ({1024 if args.quick else 2048}^3, best of 3): {mm:.1f} GFLOP/s\n")

    print("throughput (random N(0,1) items, queries x_i + sigma z; effective GFLOP/s = 2 B n d / call)")
    print(f"{'sigma':>8}  {'method':<14} {'queries/s':>10} {'GFLOP/s':>8} {'of matmul':>9}")
    out["throughput"] = []
    for sigma in sigmas:
        data, x = _random_problem(args.n, args.d, args.batch, sigma, args.seed)
        for name in methods:
            method = _method(name, data, opts)
            t = _best_time(lambda: method(x, sigma), args.repeats)
            row = {"sigma": sigma, "method": name, "queries_per_s": args.batch / t, "gflops": flops / t / 1e9}
            out["throughput"].append(row)
            print(f"{sigma:>8g}  {name:<14} {row['queries_per_s']:>10.1f} {row['gflops']:>8.1f} {row['gflops'] / mm:>8.0%}")
        del data, x

    if not args.no_memory:
        sizes = (max(1, args.n // 2), args.n)
        print(f"\npeak memory of one call at sigma={sigmas[0]:g} (growth of peak RSS over the call, VmHWM reset "
              "before it; fresh process per cell, MALLOC_MMAP_THRESHOLD_=65536; data and denoiser built before)")
        print(f"{'method':<14} " + " ".join(f"{'n=' + str(n):>12}" for n in sizes))
        out["memory_mib"] = {}
        for name in methods:
            mib = [_memory_in_subprocess(name, n, args.d, args.batch, sigmas[0], args.seed, opts) for n in sizes]
            out["memory_mib"][name] = dict(zip(map(str, sizes), mib))
            print(f"{name:<14} " + " ".join(f"{m:>8.1f} MiB" for m in mib))

    sigma = 0.01
    data, x = near_neighbour_problem(args.tv_items, args.d, args.tv_queries, sigma, args.seed)
    acc = accuracy(data, x, sigma, opts)
    out["accuracy"] = acc
    print(f"\nposterior accuracy at sigma={sigma} vs float64 direct differences: {args.tv_items} near-neighbour "
          f"items (clusters of 20, ~3 sigma apart), {args.tv_queries} queries, reference entropy "
          f"{acc['reference']['entropy_mean']:.2f} nats")
    print(f"{'method':<14} {'TV mean':>10} {'TV max':>10} {'|D err| max':>12}")
    for name in methods:
        r = acc[name]
        print(f"{name:<14} {r['tv_mean']:>10.2e} {r['tv_max']:>10.2e} {r['mean_err_max']:>12.2e}")
    if args.json:
        from sims.artifacts import atomic_write_json
        atomic_write_json(args.json, out)
    return 0
