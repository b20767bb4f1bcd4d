"""``memdiff image paired``: closed-form theory and a trained U-Net on the very same training subset.

One command, one JSON (``paired.json``) and one figure (``paired_figure.png``), for one configuration (data, n,
loss, sigma_n or interval, seed):

- the trained model (trained here, resumably, unless the run folder already holds the finished run);
- its per-noise-level readout ``r(sigma) = E||D_theta - D_emp||^2 / E||D_gen - D_emp||^2``
  (``sims.readout.paired_readout``) with ``D_emp`` the empirical denoiser of the training subset and
  ``D_gen`` the empirical denoiser of a large disjoint held-out pool, plus the memorization necessity
  ``M(sigma)`` and the train / test losses of all three; for ambient losses also ``r`` against the
  ambient optimum ``theory.AmbientDenoiser`` on the fixed noisy copies (``sigma > sigma_n``);
- the closed-form diagnostics of ``theory`` on that subset (on CPU: ``theory.diagnostics`` draws its
  noise there): per-sigma losses / necessity / concentration,
  collapse and speciation levels, and the copy rate of closed-form generation;
- the model's sample quality and memorization (``evaluate.evaluate_samples``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from image_track.evaluate import EvalConfig, evaluate_samples, feature_space, on_device, sample_model
from image_track.train import ImageRun, load_run, load_split, train_image_model
from sims.artifacts import atomic_write_json, provenance, save_figure
from sims.generation import generation_table
from sims.readout import Reference, copy_onset, paired_readout
from theory import diagnostics
from theory.ambient import AmbientDenoiser
from theory.denoiser import check_positive_int, log_sigma_grid
from theory.empirical import EmpiricalDenoiser
from theory.switch import SwitchDenoiser


@dataclass(frozen=True)
class PairedConfig:
    """The readout of a paired run: ``num_sigmas`` levels evenly in ``log sigma`` over EDM's sampling range
    [0.002, 80], ``readout_items`` train and test items per level, a ``gen_pool`` of held-out images behind
    the generalizing ``D_gen``; and how the model is sampled and read (``eval``)."""

    num_sigmas: int = 13
    readout_items: int = 256
    gen_pool: int = 10000
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for name in ("num_sigmas", "readout_items", "gen_pool"):
            check_positive_int(getattr(self, name), name)


def gen_pool_and_test(held: Tensor, num_test: int, max_pool: int) -> tuple[Tensor, Tensor]:
    """Split the held-out pool into disjoint ``(D_gen pool, test items)``: the last ``num_test`` are the
    tests, the first ``max_pool`` of the rest the pool of the generalizing empirical denoiser."""
    if held.shape[0] < num_test + 2 or max_pool < 2:
        raise ValueError(f"held-out pool must hold more than {num_test + 1} items and max_pool must be >= 2, "
                         f"got {held.shape[0]} and {max_pool}")
    return held[:-num_test][:max_pool], held[-num_test:]


def paired_run(run: ImageRun, cfg: PairedConfig, device: str) -> dict[str, Any]:
    """Train (or reuse) ``run``, then write ``paired.json`` and ``paired_figure.png`` into its folder."""
    out = Path(run.train.out_dir)
    train_image_model(run, resume=True)  # a no-op when the run is already finished
    _, model = load_run(out, device, use_ema=cfg.eval.use_ema)
    split = load_split(run)
    pool, test = gen_pool_and_test(split.held, cfg.readout_items, cfg.gen_pool)
    ref = Reference.of(pool)  # a Wiener fit of the pool: it does not memorize (docs/THEORY.md §3.7)
    net, emp, gen = (on_device(d, device) for d in (model, EmpiricalDenoiser(split.train.to(device)), ref.denoiser))
    sigmas = log_sigma_grid(0.002, 80.0, cfg.num_sigmas)
    readout = paired_readout(net, emp, gen, split.train, test, sigmas, num_items=cfg.readout_items, seed=run.data_seed)
    result: dict[str, Any] = {
        "run": run.to_dict(),
        "readout": readout.to_dict(),
        "copy_onset_sigma": copy_onset(readout.sigma, readout.ratio),
        "d_gen": f"Wiener denoiser fitted on {pool.shape[0]} held-out images",
    }
    amb = AmbientDenoiser(split.y, split.sigma_n) if split.y is not None else None
    if amb is not None:
        above = sigmas[sigmas > split.sigma_n * 1.001]
        r_amb = paired_readout(net, on_device(AmbientDenoiser(split.y.to(device), split.sigma_n), device), gen,
                               split.train, test, above, num_items=cfg.readout_items, seed=run.data_seed)
        result["ambient_readout"] = r_amb.to_dict()
    result["theory"] = _theory_diagnostics(split.train, test, pool, sigmas, EmpiricalDenoiser(split.train), ref,
                                           amb, cfg.readout_items, cfg.eval.num_samples, run.data_seed)
    features = feature_space(cfg.eval, run.dataset, run.data_path, device)
    samples = sample_model(model, tuple(split.train.shape[1:]), cfg.eval, device)
    result["evaluation"] = evaluate_samples(samples, split, features)
    result["summary"] = {"copy_onset_sigma": result["copy_onset_sigma"], **result["evaluation"]["summary"]}
    atomic_write_json(out / "paired.json", {**result, "provenance": provenance(run.to_dict(), run.train.seed)})
    _figure(result, split.sigma_n, out / "paired_figure.png", run)  # its sidecar: paired_figure.json
    return result


def _theory_diagnostics(train: Tensor, test: Tensor, pool: Tensor, sigmas: np.ndarray, emp, ref: Reference, amb,
                        num_items: int, num_samples: int, seed: int) -> dict[str, Any]:
    """Closed forms on the training subset: ``theory.diagnostics.diagnose`` per noise level (losses,
    necessity, gap, posterior concentration of the empirical / generalizing / ambient optima), the
    collapse level (excess-entropy root with the held-out pool as population draws, ``n`` = subset size),
    the speciation level, and the copy rate of closed-form generation (``sims.generation``)."""
    gen = ref.denoiser
    table = diagnostics.diagnose(train, test, gen, sigmas, ambient=amb, emp=emp, num_items=num_items, seed=seed)
    dens = {"empirical": emp, "generalizing": gen} | ({"ambient_switch": SwitchDenoiser(amb, emp, amb.sigma_n * 1.001)}
                                                       if amb is not None else {})
    copies = generation_table(dens, train, num_samples=num_samples, seed=seed)
    return {"table": table.to_dict(orient="list"),
            "collapse_sigma": ref.sigma_c(pool, train.shape[0], seed),
            "speciation_sigma": diagnostics.speciation_sigma(train),
            "closed_form_generation": copies.to_dict(orient="list")}


def _figure(result: dict[str, Any], sigma_n: float | None, path: Path, run: ImageRun) -> None:
    import matplotlib.pyplot as plt  # lazily: training ranks never load a plotting backend

    r = result["readout"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.semilogx(r["sigma"], r["ratio"], "o-", label=r"$r(\sigma)$ vs $D_{emp}$")
    a.semilogx(r["sigma"], r["necessity"], "s--", label=r"necessity $M(\sigma)$")
    if "ambient_readout" in result:
        ra = result["ambient_readout"]
        a.semilogx(ra["sigma"], ra["ratio"], "^-", label=r"$r(\sigma)$ vs ambient optimum")
    for s, style, label in ((sigma_n, ":", r"$\sigma_n$"), (result["copy_onset_sigma"], "-.", "copy onset"),
                            (result["theory"].get("collapse_sigma"), "--", r"collapse $\sigma_C$")):
        if s is not None and np.isfinite(s):
            a.axvline(s, color="grey", ls=style, lw=1, label=label)
    a.set_xlabel(r"$\sigma$")
    finite = [v for v in (*r["ratio"], *r["necessity"]) if np.isfinite(v)]
    a.set_ylim(-0.05, min(max([1.2, *finite]) * 1.05, 5.0))  # r can be large for a poor net: cap the view
    a.legend(fontsize=7)
    a.set_title("trained net vs memorizer", fontsize=9)
    for key, style in (("net", "-"), ("emp", "--"), ("gen", ":")):
        b.loglog(r["sigma"], r[f"{key}_train"], style, label=f"{key} train")
        b.loglog(r["sigma"], r[f"{key}_test"], style, marker=".", label=f"{key} test")
    b.set_xlabel(r"$\sigma$")
    b.set_ylabel("per-coordinate MSE")
    b.legend(fontsize=7, ncol=2)
    ev = result["evaluation"]["summary"]
    fig.suptitle(f"{run.dataset} n={run.n} loss={run.loss} noise={run.noise['kind']}"
                 + (f" sigma_n={run.sigma_n}" if run.sigma_n else "")
                 + f" | FD={ev['fd']:.3g} ({ev['features']}) | memorized={ev['memorized_share']:.3f}", fontsize=8)
    save_figure(fig, path, run.to_dict(), run.train.seed)
    plt.close(fig)
