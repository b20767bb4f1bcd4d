"""Theory-test fixtures: float64 brute-force references written independently of the package code."""
from __future__ import annotations

import math

import pytest
import torch


def _empirical_reference(data: torch.Tensor, x: torch.Tensor, sigma) -> dict[str, torch.Tensor]:
    """Posterior over items by direct float64 differences: weights, mean, log-normalizer, log-density."""
    d64 = data.reshape(data.shape[0], -1).to(torch.float64)
    x64 = x.reshape(x.shape[0], -1).to(torch.float64)
    s = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
    logits = -((x64[:, None, :] - d64[None]) ** 2).sum(-1) / (2 * s[:, None] ** 2)
    w = torch.softmax(logits, dim=1)
    log_z = torch.logsumexp(logits, dim=1)
    dim = d64.shape[1]
    return {"weights": w, "mean": (w @ d64).reshape(x.shape), "log_z": log_z,
            "log_density": log_z - math.log(data.shape[0]) - 0.5 * dim * torch.log(2 * math.pi * s ** 2),
            "entropy": -(w * torch.log(w.clamp_min(1e-300))).sum(1)}


@pytest.fixture
def empirical_reference():
    return _empirical_reference


def near_neighbour_data(n: int, d: int, clusters: int, spread: float, seed: int = 0) -> torch.Tensor:
    """``clusters`` unit-variance centres with ``n / clusters`` items each at distance ~``spread`` from them."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g, dtype=torch.float64)
    return centres[torch.arange(n) % clusters] + spread * torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)


@pytest.fixture
def near_neighbours():
    return near_neighbour_data
