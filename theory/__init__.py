"""Closed-form optimal denoisers and the identities they satisfy (see docs/CONTRACTS.md)."""
from theory.denoiser import Denoiser
from theory.empirical import EmpiricalDenoiser, Posterior
from theory.gaussian import GaussianDenoiser
from theory.mixture import GMMDenoiser

__all__ = ["Denoiser", "EmpiricalDenoiser", "GMMDenoiser", "GaussianDenoiser", "Posterior"]
