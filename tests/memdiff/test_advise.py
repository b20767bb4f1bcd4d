"""memdiff advise: its levels and its rule against independent computations on Gaussian populations whose answer is
known (docs/THEORY.md §3.8), the advice as method specs the grid accepts, the files it writes and its one-line
errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from image_track.data import FASHION_MNIST_DIR
from memdiff.advise import SCHEDULE, AdviseConfig, advise, intervals, load, lowest_safe_level
from memdiff.cli import entry, main
from memdiff.theory_run import noisy_copies, population
from sims.artifacts import REPO_ROOT
from sims.grid import check_config, load_config
from sims.methods import build_method
from sims.noise_levels import ConfidenceIntervalGaussian
from theory import GMMDenoiser
from theory.denoiser import log_sigma_grid
from theory.diagnostics import collapse_sigma_isotropic


def isotropic_world(d: int, n: int, clusters: int, spread: float, separation: float = 20.0):
    """``clusters`` (1 or 2) isotropic Gaussians ``N(mu_k, spread^2 I)``, means ``+-separation`` on one axis: the
    population, its exact denoiser as the reference, ``n`` training and 300 held-out draws."""
    means = torch.zeros(clusters, d, dtype=torch.float64)
    means[:, 0] = torch.tensor([separation, -separation][:clusters]) if clusters == 2 else 0.0
    covs = (spread ** 2 * torch.eye(d, dtype=torch.float64)).expand(clusters, d, d).clone()
    gmm = GMMDenoiser(torch.full((clusters,), 1 / clusters, dtype=torch.float64), means, covs)
    g = torch.Generator().manual_seed(0)
    train, test = gmm.sample(n, g).float(), gmm.sample(300, g).float()
    return population(train, test, None, "exact", gmm), means


def independent_necessity_level(pop, sigmas) -> float:
    """Where ``M = 1 - L_train(D_emp) / L_train(D_gen)`` falls through 1/2 (§3.2), with a dense softmax over every
    training item, four noise draws each, and linear interpolation in ``log sigma``."""
    x0 = pop.train.double()
    m = []
    for s in sigmas:
        gen, emp_err, ref_err = torch.Generator().manual_seed(1), 0.0, 0.0
        for _ in range(4):
            x = x0 + s * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
            w = torch.softmax(-torch.cdist(x, x0).square() / (2 * s * s), dim=1)
            emp_err += float((w @ x0 - x0).square().sum())
            ref_err += float((pop.gen(x, float(s)) - x0).square().sum())
        m.append(1 - emp_err / ref_err)
    k = np.flatnonzero(np.array(m) >= 0.5)[-1]
    t = (m[k] - 0.5) / (m[k] - m[k + 1])
    return float(np.exp(np.log(sigmas[k]) + t * np.log(sigmas[k + 1] / sigmas[k])))


def independent_safe_level(pop, means, spread: float, switches, max_copy_share: float) -> float:
    """The lowest safe ``sigma_n`` from the exact probability flow of the reference, no sampler: the ambient optimum
    delivers the noisy copies ``y_i`` at ``sigma_n`` (§2.4), and the Gaussian flow of the item's cluster
    ``mu + (x - mu) sqrt((s^2 + sigma^2) / (s^2 + sigma_n^2))`` takes ``y_i`` to
    ``mu + s (y_i - mu) / sqrt(s^2 + sigma_n^2)`` at ``sigma = 0``; a copy is ``d_1 / d_2 < 1/3`` (§6.3)."""
    x0, shares = pop.train.double(), []
    for s_n in switches:
        y = noisy_copies(pop.train, s_n, 0).double()
        mu = means[torch.cdist(y, means).argmin(1)]
        final = mu + spread / math.sqrt(spread ** 2 + s_n ** 2) * (y - mu)
        d = torch.cdist(final, x0).topk(2, largest=False).values
        shares.append(float((d[:, 0] / d[:, 1] < 1 / 3).double().mean()))
    return lowest_safe_level(switches, shares, max_copy_share)


CLUSTERS = {"d": 16, "n": 200, "clusters": 2, "spread": 0.5}  # sigma_M (~0.6) above the ambient level (0.3)
LOW_DIM = {"d": 3, "n": 600, "clusters": 1, "spread": 1.0}  # the ambient level (0.3) above sigma_M (~0.11)
SWITCHES = [0.05, 0.08, 0.3, 1.0]


def advice_on(world: dict) -> tuple[dict, object, torch.Tensor, AdviseConfig]:
    pop, means = isotropic_world(**world)
    cfg = AdviseConfig(data="gmm", n=world["n"], sigmas=log_sigma_grid(0.03, 3.0, 13).tolist(), switches=SWITCHES,
                       samples=128)
    return advise(pop, cfg), pop, means, cfg


@pytest.fixture(scope="module")
def clusters():
    return advice_on(CLUSTERS)


def test_two_separated_clusters_advise_the_necessity_crossing(clusters):
    advice, pop, means, cfg = clusters
    ev = advice["evidence"]
    # collapse of n items in two far-apart clusters: log 2 + (d/2) log(1 + s^2 / sigma^2) = log n (§3.5)
    assert advice["sigma_c"] == pytest.approx(collapse_sigma_isotropic(100, 16, 0.25), rel=0.06)
    sigma_m = independent_necessity_level(pop, np.array(cfg.sigmas))
    assert ev["sigma_M"] == pytest.approx(sigma_m, rel=0.1)
    assert ev["sigma_A"] == independent_safe_level(pop, means, 0.5, SWITCHES, 0.1) == 0.3
    assert advice["sigma_n"] == float(f"{ev['sigma_M']:.3g}") == pytest.approx(sigma_m, rel=0.1)


def test_a_low_dimensional_gaussian_advises_the_ambient_level():
    advice, pop, means, cfg = advice_on(LOW_DIM)
    ev = advice["evidence"]
    assert advice["sigma_c"] == pytest.approx(collapse_sigma_isotropic(600, 3, 1.0), rel=0.06)
    assert ev["sigma_M"] == pytest.approx(independent_necessity_level(pop, np.array(cfg.sigmas)), rel=0.1)
    assert ev["sigma_M"] < 0.2
    assert advice["sigma_n"] == ev["sigma_A"] == independent_safe_level(pop, means, 1.0, SWITCHES, 0.1) == 0.3


def test_grids_that_miss_the_levels_and_unscaled_data_are_named():
    pop, _ = isotropic_world(**LOW_DIM)  # sigma_M ~ 0.11, sigma_A ~ 0.3
    for sigmas, switches, message in (([1.0, 3.0], SWITCHES, "--sigmas must reach down"),
                                      ([0.01, 0.03], SWITCHES, "--sigmas must reach up"),
                                      ([0.03, 1.0], [0.01], "--switches must reach")):
        with pytest.raises(ValueError, match=message):
            advise(pop, AdviseConfig(data="gmm", sigmas=sigmas, switches=switches, num_items=64, samples=16))
    with pytest.raises(ValueError, match="DATA must have a scale near 1"):
        intervals(500.0)


def test_the_safe_level_needs_every_larger_level_safe():
    assert lowest_safe_level([0.1, 0.2, 0.4, 0.8], [0.9, 0.05, 0.3, 0.02], 0.1) == 0.8  # the dip at 0.2 ignored
    assert lowest_safe_level([0.8, 0.1, 0.4], [0.0, 0.5, 0.1], 0.1) == 0.4  # unsorted levels, share == threshold
    assert lowest_safe_level([0.1, 0.2], [0.0, 0.0], 0.1) == 0.1
    assert math.isnan(lowest_safe_level([0.1, 0.2], [0.0, 0.5], 0.1))


def test_blown_up_samples_are_counted_as_diverged_not_as_safe_non_copies():
    from memdiff.advise import sample_shares

    train = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    samples = torch.tensor([[0.01, 0.0],           # a copy of item 0
                            [2.0, 2.0],            # between items: a non-copy
                            [900.0, 0.0],          # blown up: d_1 = 896 > limit
                            [float("nan"), 0.0]])  # not finite
    shares = sample_shares(samples, train, limit=50.0)
    assert shares == {"copy_share": 0.25, "diverged_share": 0.5,
                      "nn_distance": pytest.approx((0.01 + 8 ** 0.5) / 2)}
    nothing = sample_shares(torch.full((2, 2), float("inf")), train, limit=50.0)
    assert nothing["copy_share"] == 0 and nothing["diverged_share"] == 1 and math.isnan(nothing["nn_distance"])


def test_a_level_whose_samples_diverge_is_not_safe(monkeypatch):
    import memdiff.advise as advise_module

    pop, _ = isotropic_world(**LOW_DIM)
    cfg = AdviseConfig(data="gmm", n=LOW_DIM["n"], sigmas=log_sigma_grid(0.03, 3.0, 13).tolist(), switches=SWITCHES,
                       samples=16)
    blown_up = {"sigma_n": SWITCHES, "copy_share": [0.9, 0.0, 0.0, 0.0], "diverged_share": [0.0, 0.0, 0.5, 0.0],
                "nn_distance": [1.0] * 4}  # no copies at 0.08 and 0.3, but half of 0.3's samples blew up
    monkeypatch.setattr(advise_module, "ambient_sweep", lambda pop, cfg, progress=None: blown_up)
    assert advise(pop, cfg)["evidence"]["sigma_A"] == 1.0  # not 0.08: the level above it, 0.3, is unsafe


def test_the_advice_is_a_set_of_method_specs_the_grid_accepts(clusters):
    advice = clusters[0]
    sigma_n, ci, methods = advice["sigma_n"], advice["ci"], advice["config_snippet"]["methods"]
    ambient, *cis = json.loads(json.dumps(methods))
    built = build_method(ambient)
    assert ambient["loss"] == "hybrid_ambient" and built.loss.sigma_n == sigma_n and built.needs_noisy_copies
    assert {(m["noise"]["kind"], m["name"].rsplit("_", 1)[1]) for m in cis} == {
        (k, r) for k in ("ci_t", "ci_log_sigma") for r in ("low", "high")}
    for m in cis:
        law, reading, kind = build_method(m).levels, m["name"].rsplit("_", 1)[1], m["noise"]["kind"]
        assert isinstance(law, ConfidenceIntervalGaussian)
        assert law.space == {"ci_t": "t", "ci_log_sigma": "log_sigma"}[kind]
        assert [law.c_l, law.c_h] == m["noise"]["interval"] == ci[reading][kind]
    u, b = ci["high"]["ci_t"][0], ci["high"]["ci_log_sigma"][0]
    assert ci["low"]["ci_t"] == [0.0, u] and ci["high"]["ci_t"][1] == 1.0 and ci["low"]["ci_log_sigma"][1] == b
    assert SCHEDULE.sigma(round(u * SCHEDULE.T)).item() == pytest.approx(sigma_n, rel=0.01)  # the step nearest sigma_n
    assert math.exp(b) == pytest.approx(sigma_n, rel=1e-3)
    assert advice["evidence"]["share_above_sigma_n"][cis[1]["name"]] > 0.95  # ci_ddpm_high
    grid = load_config(REPO_ROOT / "configs" / "sim_smoke.toml")
    check_config({**grid, "methods": methods, "datasets": [{**d, "methods": "all"} for d in grid["datasets"]]})


TINY = ["--test", "40", "--pool", "300", "--num-items", "32", "--samples", "16", "--steps", "6",
        "--sigmas", "0.05", "0.5", "5", "50", "--switches", "0.1", "1", "10"]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("MEMDIFF_DEBUG", raising=False)  # user errors as one line


def error_line(argv: list[str], capsys) -> str:
    """What the console command prints on stderr for ``argv``, which must end with exit status 2."""
    with pytest.raises(SystemExit, match="^2$"):
        entry(argv)
    return capsys.readouterr().err


def test_advise_writes_the_advice_and_refuses_to_overwrite_it(tmp_path, capsys):
    out = tmp_path / "gmm"
    assert main(["advise", "gmm", "--n", "30", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    advice = json.loads((out / "advice.json").read_text())
    assert f"rule: sigma_n = max(sigma_M, sigma_A) = {advice['sigma_n']:g}" in printed
    assert "low-noise reading" in printed and "high-noise reading" in printed and "not yet confirmed" in printed
    assert advice["config"]["data"] == "gmm" and advice["seed"] == 0 and advice["git_revision"] and advice["command"]
    assert set(advice) >= {"sigma_n", "ci", "sigma_c", "evidence", "config_snippet", "reasoning"}
    assert (out / "advice.png").stat().st_size > 10_000 and not list(tmp_path.glob(".*"))
    before = (out / "advice.json").read_text()
    err = error_line(["advise", "gmm", "--n", "30", "--out", str(out), *TINY], capsys)
    assert err.startswith("memdiff: error: --out") and "--overwrite" in err and err.count("\n") == 1
    assert (out / "advice.json").read_text() == before
    assert main(["advise", "gmm", "--n", "30", "--seed", "1", "--out", str(out), "--overwrite", *TINY]) == 0
    assert json.loads((out / "advice.json").read_text())["seed"] == 1


def test_advise_reads_a_users_file(tmp_path, capsys):
    path = tmp_path / "my signals.npy"
    np.save(path, np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32))
    assert main(["advise", str(path), "--n", "50", "--out", str(tmp_path / "out"), "--format", "json", *TINY]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice == json.loads((tmp_path / "out" / "advice.json").read_text())
    assert advice["evidence"]["reference"] == "wiener" and advice["evidence"]["d"] == 8
    assert advice["config_snippet"]["methods"][0]["name"] == "advised_my_signals_n50_ambient"


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_is_advised_at_the_grids_resolution(tmp_path, capsys):
    cfg = AdviseConfig(data="fashion-mnist", n=30, test=40, pool=300, resolution=14)
    pop = load(cfg)
    assert pop.train.shape == (30, 196) and cfg.tag == "fashion_mnist_14px_n30"
    assert main(["advise", "fashion-mnist", "--resolution", "14", "--n", "30", "--out", str(tmp_path / "out"),
                 "--format", "json", *TINY]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["evidence"]["d"] == 196 and advice["config"]["resolution"] == 14
    assert advice["config_snippet"]["methods"][0]["name"] == "advised_fashion_mnist_14px_n30_ambient"


@pytest.mark.parametrize("argv, message", [
    (["mnist2d"], ("DATA must be one of mnist1d, ecg, gmm, digits, fashion-mnist or the path of an existing file, "
                   "got 'mnist2d'; did you mean 'mnist1d'?")),
    (["digits", "--n", "1700"], "n + test must leave a pool of digits items (< 1797), got 2200"),
    (["gmm", "--n", "1"], "n must be an integer >= 2, got 1"),
    (["digits", "--resolution", "4"], ("resolution must be unset, or for fashion-mnist a divisor of 28 (1, 2, 4, 7, "
                                        "14, 28), got 4 for DATA 'digits'")),
    (["fashion-mnist", "--resolution", "5"], ("resolution must be unset, or for fashion-mnist a divisor of 28 (1, 2, "
                                               "4, 7, 14, 28), got 5 for DATA 'fashion-mnist'"))])
def test_bad_input_is_one_line_naming_the_argument(tmp_path, capsys, argv, message):
    assert error_line(["advise", *argv, "--out", str(tmp_path / "out")], capsys) == f"memdiff: error: {message}\n"
    assert not (tmp_path / "out").exists()
