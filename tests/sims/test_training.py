"""The shared trainer: exact resume, determinism, gradient scaling under accumulation, EMA, bf16/compile paths."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sims.training import (ORDER_BLOCK, TrainConfig, batch_index_block, batch_indices, ema_beta, load_checkpoint,
                           make_adam, train)
from theory.seeding import derive_seed


class TinyDenoiser(nn.Module):
    """``D(x, sigma) = x + MLP([x, log sigma])``: a stand-in for ``EDMPrecond(net)``."""

    def __init__(self, d: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + 1, 16), nn.SiLU(), nn.Dropout(dropout), nn.Linear(16, d))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]).log()[:, None]
        return x + self.net(torch.cat([x, s], dim=1))


def mse_loss(denoiser, x0, y=None, generator=None):
    """Plain denoising MSE with log-normal sigma, all randomness from ``generator`` (test stand-in)."""
    sigma = (torch.randn(x0.shape[0], generator=generator) * 1.2 - 1.2).exp()
    x = x0 + sigma[:, None] * torch.randn(x0.shape, generator=generator)
    return ((denoiser(x, sigma) - x0) ** 2).mean(dim=1)


def fixed_sigma_loss(denoiser, x0, y=None, generator=None):
    """A loss with no randomness at all, so chunking the batch cannot change it."""
    return ((denoiser(x0 * 1.5, torch.ones(x0.shape[0])) - x0) ** 2).mean(dim=1)


def data(n: int = 20) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(0))


def fresh(seed: int = 0, dropout: float = 0.0) -> TinyDenoiser:
    torch.manual_seed(seed)
    return TinyDenoiser(dropout=dropout)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=8, lr=1e-2, ema_decay=0.9, ckpt_every=4, log_every=2, progress=False)
    return TrainConfig(**{**base, **kw})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_identical_and_other_seed_differs():
    a = train(fresh(dropout=0.2), mse_loss, data(), cfg())
    b = train(fresh(dropout=0.2), mse_loss, data(), cfg())
    c = train(fresh(dropout=0.2), mse_loss, data(), cfg(seed=1))
    assert same_weights(a.model, b.model) and same_weights(a.ema, b.ema)
    assert not same_weights(a.model, c.model)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    """Kill at step 7 (last checkpoint at 4), resume in a fresh object: same weights, EMA, Adam state and log."""
    full = train(fresh(dropout=0.2), mse_loss, data(), cfg(out_dir=str(tmp_path / "full")))
    calls = {"n": 0}

    def dying_loss(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("simulated kill")
        return mse_loss(*args, **kw)

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(fresh(dropout=0.2), dying_loss, data(), cfg(out_dir=str(run), xflip=True))
    assert load_checkpoint(run)["step"] == 4
    assert max(json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()) == 6
    resumed = train(fresh(seed=123, dropout=0.2), mse_loss, data(), cfg(out_dir=str(run), xflip=True), resume=True)
    straight = train(fresh(dropout=0.2), mse_loss, data(), cfg(out_dir=str(tmp_path / "straight"), xflip=True))
    assert resumed.step == 8
    assert same_weights(resumed.model, straight.model) and same_weights(resumed.ema, straight.ema)
    assert not same_weights(resumed.model, full.model)  # x-flip changed the data, so the check has teeth
    ra, sa = load_checkpoint(run)["optimizer"]["state"], load_checkpoint(tmp_path / "straight")["optimizer"]["state"]
    assert all(torch.equal(ra[k]["exp_avg_sq"], sa[k]["exp_avg_sq"]) for k in sa)
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]


def test_resume_checks_data_order_and_needs_out_dir(tmp_path):
    train(fresh(), mse_loss, data(), cfg(out_dir=str(tmp_path), steps=4))
    with pytest.raises(ValueError, match="seed"):
        train(fresh(), mse_loss, data(), cfg(out_dir=str(tmp_path), seed=5), resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        train(fresh(), mse_loss, data(), cfg(), resume=True)


def test_accumulation_gives_the_full_batch_mean():
    """micro_batch splits the batch into chunks; with a noise-free loss the result is the full-batch one."""
    whole = train(fresh(), fixed_sigma_loss, data(), cfg(steps=3, lr=1e-3, grad_clip=None))
    parts = train(fresh(), fixed_sigma_loss, data(), cfg(steps=3, lr=1e-3, grad_clip=None, micro_batch=2))
    for p, q in zip(whole.model.parameters(), parts.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_first_step_matches_hand_computed_adam_and_ema():
    """Step 1 by hand: gradient of the batch mean, Adam's first update is -lr * sign(g), EMA lerps."""
    model, x = fresh(), data()
    config = cfg(steps=1, grad_clip=None, ema_decay=0.75)
    ref = fresh()
    idx = batch_indices(x.shape[0], config.seed, 0, config.batch_size)
    fixed_sigma_loss(ref, x[idx]).mean().backward()
    out = train(model, fixed_sigma_loss, x, config)
    for p0, p, pe in zip(ref.parameters(), out.model.parameters(), out.ema.parameters()):
        expected = p0.detach() - config.lr * p0.grad / (p0.grad.abs() + 1e-8)
        torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pe, 0.75 * p0.detach() + 0.25 * p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad_clip", [None, 0.01])
def test_training_equals_a_direct_loop_with_clipping_and_ema(tmp_path, grad_clip):
    """Past one block of batch indices, with lr warm-up: the trainer's weights, EMA and logged gradient norms are
    those of a direct loop (clip_grad_norm_, ema = beta ema + (1 - beta) p)."""
    steps, x = ORDER_BLOCK + 3, data()
    config = cfg(steps=steps, grad_clip=grad_clip, ema_decay=0.8, lr_warmup_steps=5, log_every=1,
                 out_dir=str(tmp_path))
    ref = fresh()
    ema = [p.detach().clone() for p in ref.parameters()]
    opt = make_adam(ref.parameters(), config.lr, torch.device("cpu"))
    norms = []
    for step in range(steps):
        opt.param_groups[0]["lr"] = config.lr * min(1.0, (step + 1) / config.lr_warmup_steps)
        opt.zero_grad(set_to_none=True)
        fixed_sigma_loss(ref, x[batch_indices(x.shape[0], config.seed, step, config.batch_size)]).mean().backward()
        norms.append(float(nn.utils.clip_grad_norm_(ref.parameters(), grad_clip or float("inf"))))
        opt.step()
        ema = [0.8 * e + 0.2 * p.detach() for e, p in zip(ema, ref.parameters())]
    out = train(fresh(), fixed_sigma_loss, x, config)
    assert same_weights(out.model, ref)
    for pe, e in zip(out.ema.parameters(), ema):
        torch.testing.assert_close(pe, e, rtol=1e-6, atol=1e-7)
    logged = [json.loads(line)["grad_norm"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(norms, rel=1e-6)
    if grad_clip is not None:
        assert min(norms) > grad_clip  # clipping acted at every step, so the check has teeth


def test_batch_index_block_rows_are_the_steps_batches():
    n, b = 7, 3
    block = batch_index_block(n, 5, 2, 9, b)  # steps 2..10: 27 indices over 5 epochs
    assert torch.equal(block, torch.stack([batch_indices(n, 5, s, b) for s in range(2, 11)]))


def test_batch_indices_are_epoch_permutations():
    n, b = 7, 3
    stream = torch.cat([batch_indices(n, 0, s, b) for s in range(7)])  # 21 = 3 epochs
    for e in range(3):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
    assert torch.equal(batch_indices(n, 0, 4, b), stream[12:15])
    assert not torch.equal(batch_indices(n, 1, 0, b), batch_indices(n, 0, 0, b))
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_ema_halflife_in_images():
    c = TrainConfig(batch_size=10, ema_halflife_images=100.0)
    assert ema_beta(c, 0) == pytest.approx(0.5 ** 0.1)
    assert ema_beta(c, 0) ** 10 == pytest.approx(0.5)  # 100 images later the weight has halved
    ramp = TrainConfig(batch_size=10, ema_halflife_images=100.0, ema_rampup=0.5)
    assert ema_beta(ramp, 0) == pytest.approx(0.5 ** 2)  # half-life capped at 0.5 * 10 images seen
    assert ema_beta(ramp, 1000) == pytest.approx(0.5 ** 0.1)


def test_bf16_autocast_and_compile_paths_run_on_cpu():
    a = train(fresh(), mse_loss, data(), cfg(steps=2, bf16=True))
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in a.model.parameters())
    eager = train(fresh(), mse_loss, data(), cfg(steps=2))
    compiled = train(fresh(), mse_loss, data(), cfg(steps=2, compile=True, compile_backend="eager"))
    for p, q in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("kw, name", [(dict(steps=0), "steps"), (dict(lr=-1.0), "lr"), (dict(ema_decay=1.0), "ema_decay"),
                                      (dict(micro_batch=3), "micro_batch"), (dict(grad_clip=0.0), "grad_clip"),
                                      (dict(seed=-1), "seed")])
def test_config_rejects_bad_values(kw, name):
    with pytest.raises(ValueError, match=name):
        cfg(**kw)


def test_bad_data_rejected():
    with pytest.raises(ValueError, match="x0"):
        train(fresh(), mse_loss, torch.full((4, 3), float("nan")), cfg())
    with pytest.raises(ValueError, match="y"):
        train(fresh(), mse_loss, data(), cfg(), y=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x0"):
        train(fresh(), mse_loss, torch.zeros(0, 3), cfg())
