"""``memdiff bench sim``: training steps/s and sampling throughput of the 1D grid's default model.

Each measurement is paired with a plain baseline timed in the same run, and the ratio is printed:

- training: ``sims.training.train`` on ``EDMPrecond(net)`` with the EDM loss, EMA and clipping, against a bare
  loop (Adam on ``||F(x0 + sigma z, ln sigma / 4) - x0||^2`` with the raw net: no preconditioning, no EMA, no
  clipping, no trainer bookkeeping) twice: with the trainer's Adam (``sims.training.make_adam``, fused), which
  leaves the trainer's own overhead, and with torch's default Adam (the baseline before the trainer's Adam was
  fused). The three are timed in turn for ``--rounds`` rounds in process CPU time (the order reverses every
  round, so drift in the machine's load falls on all); the steps/s printed are medians over rounds and each
  ratio is the median of the rounds' ratios;
- sampling: ``sims.samplers.edm_heun`` on the preconditioned net, against a bare Euler loop on the raw
  net with the same number of network calls;
- architectures: the MLP (grid default) against the 1D U-Net, same steps and batch;
- parallelism: two processes with one thread each against one process with two threads;
- memorization metrics: ``sims.metrics.nearest_neighbours`` with torch's streamed candidates and with faiss's
  (``backend="torch"`` / ``"faiss"``; both then re-rank exactly in float64) on 50,000 samples against 60,000 items
  of dimension 784, against ``torch.cdist`` + ``topk`` over query chunks (float32), each in a fresh process: time
  and peak memory (faiss's row is left out when faiss is not installed).

``--config PATH`` (a grid config, ``extends`` applied) replaces all of the above by the training cost of one net of
a cell of each ``[[datasets]]`` entry, to compare recipes. Each entry's net is built from its effective ``[train]``
table (``sims.grid.train_table``: ``arch``, ``width``, ``depth``, ``channel_mult``, ``attention``) by
``sims.track1d.cell.build_net`` for its signal length (``mnist1d``: 40, ``ecg``: 140, ``gmm``: its ``dim``,
``file``: ``--length``) and trained by ``sims.training.train`` (``EDMPrecond`` and the EDM loss on 512 random
signals, the trainer path above) with the entry's ``batch_size``; the other ``[train]`` keys (learning-rate
schedule, EMA, clipping) are the trainer path's, with EMA and clipping on, as in every grid cell. Entries with the
same net and batch are timed once. All nets are timed on 1 thread, each warmed up by 5 steps, then ``--rounds``
rounds of ``--steps`` steps in turn (the order reverses every round) in process CPU time, as above. Per entry::

    ms/step   = median over rounds of (CPU seconds of the round / --steps) * 1000
    net cost = steps * ms/step / 1000   (CPU seconds to train one net; steps: the entry's train.steps)
    ratio    = net cost of --against / net cost of the entry   (> 1: this entry's net is that many times cheaper)

A cell of a method in ``eval.two_net`` trains two nets, so twice the net cost; the ratio compares recipes net for
net.

``--against`` names the reference entry (default: the costliest one). Sampling and evaluation are not counted.
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memdiff.bench_theory import in_fresh_process, peak_growth_mib
from memdiff.sim import GRID_CONFIG
from sims.artifacts import atomic_write_json
from sims.grid import load_config, train_table
from sims.losses import EDMLoss
from sims.metrics import nearest_neighbours
from sims.noise_levels import EDMLogNormal
from sims.preconditioning import EDMPrecond
from sims.samplers import edm_heun
from sims.schedules import karras_sigmas
from sims.track1d.cell import build_net
from sims.track1d.data import MNIST1D_LENGTH
from sims.track1d.ecg import ECG_LENGTH
from sims.training import TrainConfig, make_adam, train


def _net(arch: str, train_cfg: dict[str, Any], length: int) -> nn.Module:
    return build_net({**train_cfg, "arch": arch, **({"width": 16} if arch == "unet" else {})}, (length,))


LOOPS = ("trainer", "plain", "plain_default_adam")  # the training loops train_ratio times
PLAIN_ADAM = {"plain": "the trainer's Adam", "plain_default_adam": "torch's default Adam"}  # the plain loops' optimizers


def _training(arch: str, batch: int, length: int, loop: str,
              net_cfg: dict[str, Any] | None = None) -> Callable[[int], None]:
    """A function that runs a number of training steps of a fresh ``arch`` net (seed 0) on 512 random signals, by
    ``loop`` (``LOOPS``): ``sims.training.train`` (one call per run, its set-up included), or the plain loop with
    the trainer's Adam (``plain``) or torch's default Adam (``plain_default_adam``). ``net_cfg``, when given, is the
    ``[train]`` table the net is built from as it stands (``arch`` is then ignored); by default the grid's."""
    torch.manual_seed(0)
    x0 = torch.randn(512, length)
    net = build_net(net_cfg, (length,)) if net_cfg is not None \
        else _net(arch, load_config(GRID_CONFIG)["train"], length)
    if loop != "trainer":
        opt = make_adam(net.parameters(), 1e-3, torch.device("cpu")) if loop == "plain" \
            else torch.optim.Adam(net.parameters(), lr=1e-3)

        def step() -> None:
            idx = torch.randint(0, x0.shape[0], (batch,))
            sigma = torch.exp(torch.randn(batch) * 1.2 - 1.2)
            x = x0[idx]
            loss = (net(x + sigma[:, None] * torch.randn_like(x), sigma.log() / 4) - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def run_plain(steps: int) -> None:
            for _ in range(steps):
                step()

        return run_plain
    model = EDMPrecond(net, sigma_data=1.0)
    loss = EDMLoss(EDMLogNormal(), sigma_data=1.0)
    common = dict(batch_size=batch, lr=1e-3, ema_decay=0.999, progress=False, log_every=10**9, ckpt_every=10**9)

    def run_trainer(steps: int) -> None:
        train(model, loss, x0, TrainConfig(steps=steps, **common))

    return run_trainer


def _steps_per_s(run: Callable[[int], None], steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    run(steps)
    return steps / (clock() - t0)


def train_rate(arch: str, steps: int, batch: int, length: int, threads: int, plain: bool) -> float:
    """Training steps per second (after 5 warm-up steps)."""
    torch.set_num_threads(threads)
    run = _training(arch, batch, length, "plain" if plain else "trainer")
    run(5)
    return _steps_per_s(run, steps)


def timed_rounds(runs: dict[str, Callable[[int], None]], steps: int, rounds: int) -> dict[str, list[float]]:
    """Per key of ``runs``, its steps per CPU second in each of ``rounds`` rounds: every run warmed up by 5 steps,
    then all timed for ``steps`` steps in turn each round (the order reverses every round, so drift in the
    machine's load falls on all), in process CPU time on 1 thread."""
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for run in runs.values():
        run(5)
    order = list(runs)
    for r in range(rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            rates[key].append(_steps_per_s(runs[key], steps, time.process_time))
    return rates


def train_ratio(arch: str, steps: int, batch: int, length: int, rounds: int) -> dict[str, Any]:
    """The trainer against both plain loops on 1 thread, each warmed up by 5 steps, then timed for ``steps`` steps
    in turn ``rounds`` times (the order reverses every round). Per loop of ``LOOPS``: ``<loop>_steps_per_s``, the
    median rate; per plain loop also ``<loop>_ratios``, the rounds' ratios trainer / that loop, and
    ``<loop>_ratio``, their median. Timed in process CPU time, which other processes on the machine do not inflate
    (with 1 thread and nothing else running it equals wall time)."""
    torch.set_num_threads(1)
    rates = timed_rounds({loop: _training(arch, batch, length, loop) for loop in LOOPS}, steps, rounds)
    res: dict[str, Any] = {f"{loop}_steps_per_s": statistics.median(rates[loop]) for loop in LOOPS}
    for loop in LOOPS[1:]:
        res[f"{loop}_ratios"] = [t / p for t, p in zip(rates["trainer"], rates[loop])]
        res[f"{loop}_ratio"] = statistics.median(res[f"{loop}_ratios"])
    return res


@torch.no_grad()
def sample_rate(arch: str, num: int, sampler_steps: int, length: int, plain: bool) -> float:
    """Samples per second for ``sampler_steps`` Heun steps (``2 sampler_steps - 1`` network calls)."""
    torch.manual_seed(0)
    net = _net(arch, load_config(GRID_CONFIG)["train"], length).eval()
    noise = torch.randn(num, length)
    t0 = time.perf_counter()
    if plain:
        x = noise * 80.0
        sig = torch.linspace(80.0, 0.002, 2 * sampler_steps)
        for a, b in zip(sig[:-1], sig[1:]):
            x = x + (b - a) * (x - net(x, torch.full((num,), float(a.log() / 4)))) / a
    else:
        edm_heun(EDMPrecond(net, sigma_data=1.0), noise, karras_sigmas(sampler_steps))
    return num / (time.perf_counter() - t0)


def _train_job(args: tuple) -> float:
    return train_rate(*args)


def parallel_rates(arch: str, steps: int, batch: int, length: int) -> dict[str, float]:
    """Total training steps/s: two 1-thread processes at once, against one 2-thread process."""
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_train_job, [(arch, 5, batch, length, 1, False)] * 2))  # start-up and imports
        t0 = time.perf_counter()
        list(pool.map(_train_job, [(arch, steps, batch, length, 1, False)] * 2))
        two_by_one = 2 * steps / (time.perf_counter() - t0)
    one_by_two = train_rate(arch, steps, batch, length, threads=2, plain=False)
    return {"2 procs x 1 thread": two_by_one, "1 proc x 2 threads": one_by_two}


def _nn_problem(queries: int, items: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(queries, dim, generator=g), torch.randn(items, dim, generator=g)


NN_METHODS = {"cdist": "cdist+topk", "streamed": "streamed exact", "faiss": "faiss exact"}  # nn_probe's searches


def nn_probe(method: str, queries: int, items: int, dim: int, chunk: int = 1024) -> dict:
    """Seconds, peak memory growth (MiB) and the nearest item of each query for one full nearest-2 search by
    ``method`` (``NN_METHODS``): ``torch.cdist`` + ``topk`` over query chunks, or ``nearest_neighbours`` with the
    torch (``streamed``) or the faiss candidates."""
    q, x = _nn_problem(queries, items, dim)
    out: dict[str, torch.Tensor] = {}

    def search() -> None:
        if method == "cdist":
            out["idx"] = torch.cat([torch.cdist(q[i:i + chunk], x).topk(2, dim=1, largest=False).indices
                                    for i in range(0, q.shape[0], chunk)])
        else:
            out["idx"] = nearest_neighbours(q, x, k=2, backend="torch" if method == "streamed" else "faiss")[1]

    t0 = time.perf_counter()
    peak = peak_growth_mib(search)
    return {"seconds": time.perf_counter() - t0, "peak_mib": peak, "nearest": out["idx"][:, 0].tolist()}


def nn_benchmark(queries: int, items: int, dim: int) -> dict:
    """Every search of ``NN_METHODS`` at ``items / 2`` and ``items`` (fresh processes; faiss only when installed),
    keys ``<method>@<n>``. ``disagreements``, per pair ``<a>_vs_<b>`` of searches at ``items``: the rows where
    their nearest items differ, and in how many of them the float64 distance says ``a``'s or ``b``'s is nearer
    or ties."""
    methods = [m for m in NN_METHODS if m != "faiss" or importlib.util.find_spec("faiss") is not None]
    res: dict = {}
    for m in methods:
        for n in (items // 2, items):
            res[f"{m}@{n}"] = in_fresh_process("memdiff.bench_sim", f"nn_probe({m!r}, {queries}, {n}, {dim})")
    nearest = {key: torch.tensor(r.pop("nearest")) for key, r in res.items()}
    q, x = _nn_problem(queries, items, dim)
    res["disagreements"] = {}
    for i, a_name in enumerate(methods):
        for b_name in methods[:i]:
            a, b = nearest[f"{a_name}@{items}"], nearest[f"{b_name}@{items}"]
            rows = torch.nonzero(a != b).flatten()
            da = (q[rows].double() - x[a[rows]].double()).norm(dim=1)
            db = (q[rows].double() - x[b[rows]].double()).norm(dim=1)
            res["disagreements"][f"{a_name}_vs_{b_name}"] = {
                "rows": int(rows.numel()), f"{a_name}_nearer": int((da < db).sum()),
                f"{b_name}_nearer": int((db < da).sum()), "ties": int((da == db).sum())}
    return res


NET_KEYS = {"mlp": ("width", "depth"), "unet": ("width", "channel_mult", "attention")}  # what build_net reads


def _entry_length(spec: dict[str, Any], default: int) -> int:
    """The signal length of a ``[[datasets]]`` entry's items, by its kind (``default`` for a ``file``)."""
    if spec["kind"] == "mnist1d":
        return MNIST1D_LENGTH
    if spec["kind"] == "ecg":
        return ECG_LENGTH
    if spec["kind"] == "gmm":
        return int(spec.get("gmm", {}).get("dim", MNIST1D_LENGTH))  # sims.track1d.data.gaussian_mixture's default
    return default


def recipe_costs(config: dict[str, Any], steps: int, rounds: int, length: int,
                 against: str | None = None) -> dict[str, Any]:
    """The training cost of one net of every ``[[datasets]]`` entry of ``config`` (module docstring, ``--config``):
    ``entries``, one dict per entry in config order (``name``, ``arch``, ``width``, ``depth``, ``batch``,
    ``length``, ``steps``, ``timed_as``: the entry whose timing it shares, ``ms_per_step``: the median,
    ``ms_per_step_rounds``, ``net_cpu_s`` = steps * ms_per_step / 1000, ``ratio``: cost of ``against`` / this
    cost), ``against`` and ``timed``, the number of distinct nets timed. ``against`` (default: the costliest
    entry) must name an entry, else a ``ValueError`` naming ``--against`` before any timing."""
    names = [d["name"] for d in config["datasets"]]
    if against is not None and against not in names:
        raise ValueError(f"--against must name a [[datasets]] entry of the config, got {against!r}; entries: "
                         f"{', '.join(names)}")
    entries, runs, first = [], {}, {}
    for spec in config["datasets"]:
        tcfg = train_table(config, spec["name"])
        arch = tcfg.get("arch", "mlp")
        net_cfg = {"arch": arch, **{k: tcfg[k] for k in NET_KEYS.get(arch, ()) if k in tcfg}}
        batch, n_len = tcfg.get("batch_size", TrainConfig.batch_size), _entry_length(spec, length)
        key = repr((sorted(net_cfg.items()), batch, n_len))
        if key not in first:
            first[key] = spec["name"]
            runs[spec["name"]] = _training(arch, batch, n_len, "trainer", net_cfg)
        entries.append({"name": spec["name"], "arch": arch,  # width, depth None: build_net's
                        "width": net_cfg.get("width"), "depth": net_cfg.get("depth"),
                        "batch": batch, "length": n_len, "steps": tcfg.get("steps", TrainConfig.steps),
                        "timed_as": first[key]})
    rates = timed_rounds(runs, steps, rounds)
    for e in entries:
        e["ms_per_step_rounds"] = [1000.0 / r for r in rates[e["timed_as"]]]
        e["ms_per_step"] = statistics.median(e["ms_per_step_rounds"])
        e["net_cpu_s"] = e["steps"] * e["ms_per_step"] / 1000.0
    ref = next(e for e in entries if e["name"] == against) if against is not None \
        else max(entries, key=lambda e: e["net_cpu_s"])
    for e in entries:
        e["ratio"] = ref["net_cpu_s"] / e["net_cpu_s"]
    return {"entries": entries, "against": ref["name"], "timed": len(runs)}


def _run_config(args: argparse.Namespace) -> int:
    if not args.config.is_file():
        raise ValueError(f"--config must be an existing grid config file (.toml or .json), got {str(args.config)!r}")
    config = load_config(args.config)
    print(f"memdiff bench sim --config {args.config}: torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    res = recipe_costs(config, args.steps, args.rounds, args.length, args.against)
    res = {"settings": {"config": str(args.config), "steps": args.steps, "rounds": args.rounds,
                        "length_for_file_kind": args.length, "json": str(args.json)},
           "torch": torch.__version__, "load_average": os.getloadavg(), **res}
    w = max(len("entry"), *(len(e["name"]) for e in res["entries"]))
    print(f"trainer on 1 thread, {res['timed']} distinct nets timed, {args.rounds} rounds of {args.steps} steps each "
          f"(CPU time); net cost = steps x median ms/step; ratio = cost of {res['against']} / cost of the entry")
    print(f"{'entry':<{w}}  {'arch':4s} {'width':>5s} {'depth':>5s} {'batch':>5s}  {'ms/step':>8s} {'(min-max)':>17s}"
          f"  {'steps':>6s}  {'net CPU s':>10s}  {'ratio':>6s}")
    for e in res["entries"]:
        lo, hi = min(e["ms_per_step_rounds"]), max(e["ms_per_step_rounds"])
        shared = f"  (timing of {e['timed_as']})" if e["timed_as"] != e["name"] else ""
        width, depth = ("-" if v is None else str(v) for v in (e["width"], e["depth"]))
        print(f"{e['name']:<{w}}  {e['arch']:4s} {width:>5s} {depth:>5s} {e['batch']:5d}  "
              f"{e['ms_per_step']:8.2f} {f'({lo:.2f}-{hi:.2f})':>17s}  {e['steps']:6d}  {e['net_cpu_s']:10.1f}  "
              f"{e['ratio']:5.2f}x{shared}")
    if args.json:
        atomic_write_json(args.json, res)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating trainer / plain-loop timings per net")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=40,
                        help="signal length (40: MNIST-1D, 140: ECG; with --config: of 'file' entries)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--sampler-steps", type=int, default=18)
    parser.add_argument("--nn", type=int, nargs=3, default=[50_000, 60_000, 784], metavar=("QUERIES", "ITEMS", "DIM"),
                        help="nearest-neighbour metric benchmark size (0 0 0 skips it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--config", type=Path, default=None,
                        help="a grid config: time one net's training per [[datasets]] entry instead (module docstring)")
    parser.add_argument("--against", default=None, metavar="NAME",
                        help="with --config: the entry the net costs are compared with (None: the costliest)")


def run(args: argparse.Namespace) -> int:
    for name in ("steps", "rounds", "batch", "length", "samples", "sampler_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.config is not None:
        return _run_config(args)
    if args.against is not None:
        raise ValueError("--against applies with --config only")
    default = load_config(GRID_CONFIG)["train"].get("arch", "mlp")
    other = "unet" if default == "mlp" else "mlp"
    res: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}, "default_arch": default,
                           "torch": torch.__version__, "load_average": os.getloadavg()}
    print(f"memdiff bench sim: torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    rows = []
    for arch in (default, other):
        tr = train_ratio(arch, args.steps, args.batch, args.length, args.rounds)
        s_full = sample_rate(arch, args.samples, args.sampler_steps, args.length, plain=False)
        s_bare = sample_rate(arch, args.samples, args.sampler_steps, args.length, plain=True)
        res[arch] = {**tr, "samples_per_s": s_full, "plain_samples_per_s": s_bare}
        rows.append(f"{arch:5s} train  trainer {tr['trainer_steps_per_s']:8.1f} steps/s")
        rows += [f"{'':5s}        plain loop, {adam}: {tr[f'{loop}_steps_per_s']:8.1f} steps/s, trainer / plain "
                 f"{tr[f'{loop}_ratio']:.2f} (rounds: {' '.join(f'{x:.2f}' for x in tr[f'{loop}_ratios'])})"
                 for loop, adam in PLAIN_ADAM.items()]
        rows.append(f"{arch:5s} sample {s_full:8.0f}/s  plain {s_bare:8.0f}/s  ratio {s_full / s_bare:5.2f}")
    res["parallel"] = parallel_rates(default, args.steps, args.batch, args.length)
    print(f"1 thread, batch {args.batch}, length {args.length}, {args.sampler_steps} Heun steps; training: steps per "
          f"CPU second, medians of {args.rounds} rounds of {args.steps} steps:")
    print("\n".join(rows))
    print(f"default ({default}) vs {other}: training {res[default]['trainer_steps_per_s'] / res[other]['trainer_steps_per_s']:.2f}x, "
          f"sampling {res[default]['samples_per_s'] / res[other]['samples_per_s']:.2f}x")
    p = res["parallel"]
    print("parallel: " + ", ".join(f"{k}: {v:.1f} steps/s" for k, v in p.items())
          + f"  ratio {p['2 procs x 1 thread'] / p['1 proc x 2 threads']:.2f}")
    if all(args.nn):
        nq, ni, dim = args.nn
        res["nearest_neighbours"] = nn = nn_benchmark(nq, ni, dim)
        print(f"nearest 2 of {nq} samples among n items, d = {dim} (time, peak memory growth, time ratio "
              f"cdist / search):")
        for n in (ni // 2, ni):
            base = nn[f"cdist@{n}"]["seconds"]
            print(f"  n = {n}: " + " | ".join(
                f"{label} {r['seconds']:.1f} s, +{r['peak_mib']:.0f} MiB, {base / r['seconds']:.2f}x"
                for m, label in NN_METHODS.items() if (r := nn.get(f"{m}@{n}"))))
        for pair, d in nn["disagreements"].items():
            a, b = pair.split("_vs_")
            print(f"  {a} vs {b}: nearest items differ in {d['rows']} of {nq} rows; float64 distance: {a} nearer in "
                  f"{d[f'{a}_nearer']}, {b} nearer in {d[f'{b}_nearer']}, ties {d['ties']}")
    if args.json:
        atomic_write_json(args.json, res)
    return 0
