"""``memdiff bench theory``: the closed-form denoisers against the matmuls they cannot do without.

Reports, in one run on this machine:

- the empirical denoiser (``theory.empirical.EmpiricalDenoiser``, exact) at several ``sigma`` and sizes,
  against its **two GEMMs**, the float32 matmuls any softmax over the training set needs (queries x items for
  the distances, weights x items for the mean), and against the float32 ``torch.cdist`` + softmax baseline;
- the patch-local denoiser (``theory.local.LocalPatchDenoiser``, MNIST-1D-sized signals) against its two
  batched GEMMs (per position, query patches x training patches and weights x centre values);
- the peak memory of one empirical call, as the growth of the peak resident set size over the call, in a
  fresh subprocess per method and ``n``, with the data and the denoiser already built;
- the total-variation error of the posterior weights at ``sigma = 0.01`` against a float64 direct-difference
  reference, on data with near neighbours (clusters of items a few ``sigma`` apart).

Times are process CPU time (all threads; robust to other load on the machine, unlike wall time), the
methods of a row timed in turn for ``--repeats`` rounds, the order reversed every round so that drift in
the machine falls on all; a row prints medians, and each ratio is the median of the rounds' ratios.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

from theory.empirical import EmpiricalDenoiser
from theory.local import LocalPatchDenoiser, extract_patches


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=str, default="10000,10000", help="training items, one per size (comma-separated)")
    parser.add_argument("--d", type=str, default="784,3072", help="dimension, one per size (comma-separated)")
    parser.add_argument("--batch", type=int, default=256, help="queries per call")
    parser.add_argument("--sigmas", type=str, default="0.01,1,30", help="comma-separated noise levels to time")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds per row (medians are printed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--chunk-size", type=int, default=16384, help="EmpiricalDenoiser chunk_size")
    parser.add_argument("--exact-top", type=int, default=8, help="EmpiricalDenoiser exact_top")
    parser.add_argument("--logit-tol", type=float, default=1e-5, help="EmpiricalDenoiser logit_tol (nats)")
    parser.add_argument("--local-n", type=int, default=3000, help="training signals of the patch-local denoiser")
    parser.add_argument("--local-length", type=int, default=40, help="signal length of the patch-local denoiser")
    parser.add_argument("--patch", type=int, default=9, help="patch size of the patch-local denoiser")
    parser.add_argument("--tv-items", type=int, default=4000, help="items of the near-neighbour accuracy test")
    parser.add_argument("--tv-queries", type=int, default=64, help="queries of the near-neighbour accuracy test")
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurement")
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long run: n=4000, d=128, batch=64, local n=500, one repeat")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)


def timed_rounds(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Process CPU seconds of every call, ``repeats`` rounds after a warm-up round, in turn, the order
    reversed every round."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(repeats):
        for name in order:
            t0 = time.process_time()
            calls[name]()
            times[name].append(time.process_time() - t0)
        order.reverse()
    return times


def median_ratio(times: dict[str, list[float]], name: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(times[name], times[base]))


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Float32 ``size^3`` matmul rate of this machine, GFLOP/s (best of ``repeats``, CPU time)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size ** 3 / min(timed_rounds({"mm": lambda: a @ b}, repeats)["mm"]) / 1e9


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


def empirical_row(n: int, d: int, batch: int, sigma: float, repeats: int, seed: int, opts: dict) -> dict:
    """Median CPU milliseconds of the two GEMMs, the exact denoiser and cdist + softmax at one size and
    ``sigma``, and the median ratios to the two GEMMs."""
    data, x = _random_problem(n, d, batch, sigma, seed)
    w = torch.softmax(torch.randn(batch, n, generator=torch.Generator().manual_seed(seed)), dim=1)
    den = EmpiricalDenoiser(data, **opts)
    times = timed_rounds({"two GEMMs": lambda: (x @ data.T, w @ data), "exact-stream": lambda: den(x, sigma),
                          "cdist+softmax": lambda: cdist_softmax(data, x, sigma)}, repeats)
    return {"n": n, "d": d, "sigma": sigma, **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()},
            **{f"{k}_ratio": median_ratio(times, k, "two GEMMs") for k in ("exact-stream", "cdist+softmax")}}


def local_row(n: int, length: int, patch: int, batch: int, sigma: float, repeats: int, seed: int) -> dict:
    """The same for the patch-local denoiser on ``n`` random signals of ``length`` (MNIST-1D-sized), against
    the batched GEMMs of all positions: query patches x training patches, weights x centre values."""
    data, x = _random_problem(n, length, batch, sigma, seed)
    den = LocalPatchDenoiser(data, patch)
    sizes = (patch,)
    qp = extract_patches(x[:, None], sizes).transpose(0, 1).contiguous()        # (M, B, P)
    tp = extract_patches(data[:, None], sizes).permute(1, 2, 0).contiguous()    # (M, P, n)
    centres = data.T[:, :, None].contiguous()                                   # (M, n, 1)
    w = torch.softmax(torch.randn(length, batch, n, generator=torch.Generator().manual_seed(seed)), dim=2)
    times = timed_rounds({"two GEMMs": lambda: (torch.bmm(qp, tp), torch.bmm(w, centres)),
                          "local-patch": lambda: den(x, sigma)}, repeats)
    return {"n": n, "length": length, "patch": patch, "sigma": sigma,
            **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()},
            "local-patch_ratio": median_ratio(times, "local-patch", "two GEMMs")}


def _sizes(args: argparse.Namespace) -> list[tuple[int, int]]:
    try:
        ns, ds = ([int(v) for v in str(getattr(args, k)).split(",")] for k in ("n", "d"))
    except ValueError:
        raise ValueError(f"--n and --d must be comma-separated positive integers, got {args.n!r} and "
                         f"{args.d!r}") from None
    if len(ns) != len(ds) or min(ns + ds) < 1:
        raise ValueError(f"--n and --d must list as many positive integers, got {args.n!r} and {args.d!r}")
    return list(zip(ns, ds))


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.n, args.d, args.batch, args.repeats, args.tv_items, args.tv_queries, args.local_n = \
            "4000", "128", 64, 1, 1000, 32, 500
    sizes = _sizes(args)
    for name in ("batch", "repeats", "threads", "chunk_size", "exact_top", "local_n", "local_length", "patch",
                 "tv_items", "tv_queries"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if not sigmas or not all(math.isfinite(s) and s > 0 for s in sigmas):
        raise ValueError(f"--sigmas must be positive numbers, got {args.sigmas!r}")
    torch.set_num_threads(args.threads)
    opts = {"chunk_size": args.chunk_size, "exact_top": args.exact_top, "logit_tol": args.logit_tol}
    out: dict = {"config": {k: v for k, v in vars(args).items()}, "threads": torch.get_num_threads(),
                 "load_average": os.getloadavg(), "torch": torch.__version__}
    print(f"memdiff bench theory: batch={args.batch} float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}; process CPU time, medians of "
          f"{args.repeats} rounds")
    mm = matmul_gflops(1024 if args.quick else 2048)
    out["matmul_gflops"] = mm
    print(f"machine float32 matmul ({1024 if args.quick else 2048}^3, best of 3): {mm:.1f} GFLOP/s\n")

    print("empirical denoiser (random N(0,1) items, queries x_i + sigma z) against its two float32 GEMMs")
    print(f"{'n':>6} {'d':>5} {'sigma':>7}  {'two GEMMs':>10} {'exact':>10} {'ratio':>6} {'cdist+softmax':>14} "
          f"{'ratio':>6}")
    out["empirical"] = []
    for n, d in sizes:
        for sigma in sigmas:
            row = empirical_row(n, d, args.batch, sigma, args.repeats, args.seed, opts)
            out["empirical"].append(row)
            print(f"{n:>6} {d:>5} {sigma:>7g}  {row['two GEMMs_ms']:>8.1f}ms {row['exact-stream_ms']:>8.1f}ms "
                  f"{row['exact-stream_ratio']:>5.2f}x {row['cdist+softmax_ms']:>12.1f}ms "
                  f"{row['cdist+softmax_ratio']:>5.2f}x")

    print(f"\npatch-local denoiser ({args.local_n} random signals of length {args.local_length}, patch {args.patch}) "
          "against its two batched float32 GEMMs")
    print(f"{'sigma':>7}  {'two GEMMs':>10} {'local':>10} {'ratio':>6}")
    out["local"] = []
    for sigma in sigmas:
        row = local_row(args.local_n, args.local_length, args.patch, args.batch, sigma, args.repeats, args.seed)
        out["local"].append(row)
        print(f"{sigma:>7g}  {row['two GEMMs_ms']:>8.1f}ms {row['local-patch_ms']:>8.1f}ms "
              f"{row['local-patch_ratio']:>5.2f}x")

    n, d = sizes[0]
    if not args.no_memory:
        mem_sizes = (max(1, n // 2), n)
        print(f"\npeak memory of one call at d = {d}, sigma={sigmas[0]:g} (growth of peak RSS over the call, VmHWM "
              "reset before it; fresh process per cell, MALLOC_MMAP_THRESHOLD_=65536; data and denoiser built before)")
        print(f"{'method':<14} " + " ".join(f"{'n=' + str(m):>12}" for m in mem_sizes))
        out["memory_mib"] = {}
        for name in ("exact-stream", "cdist+softmax"):
            mib = [_memory_in_subprocess(name, m, d, args.batch, sigmas[0], args.seed, opts) for m in mem_sizes]
            out["memory_mib"][name] = dict(zip(map(str, mem_sizes), mib))
            print(f"{name:<14} " + " ".join(f"{m:>8.1f} MiB" for m in mib))

    sigma = 0.01
    data, x = near_neighbour_problem(args.tv_items, d, args.tv_queries, sigma, args.seed)
    acc = accuracy(data, x, sigma, opts)
    out["accuracy"] = acc
    print(f"\nposterior accuracy at sigma={sigma} vs float64 direct differences: {args.tv_items} near-neighbour "
          f"items of dimension {d} (clusters of 20, ~3 sigma apart), {args.tv_queries} queries, reference entropy "
          f"{acc['reference']['entropy_mean']:.2f} nats")
    print(f"{'method':<14} {'TV mean':>10} {'TV max':>10} {'|D err| max':>12}")
    for name in ("exact-stream", "cdist+softmax"):
        r = acc[name]
        print(f"{name:<14} {r['tv_mean']:>10.2e} {r['tv_max']:>10.2e} {r['mean_err_max']:>12.2e}")
    if args.json:
        from sims.artifacts import atomic_write_json
        atomic_write_json(args.json, out)
    return 0
