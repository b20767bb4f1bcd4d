"""Closed-form optimal denoisers and the identities they satisfy (see docs/CONTRACTS.md)."""
from theory.ambient import AmbientDenoiser
from theory.denoiser import Denoiser
from theory.empirical import EmpiricalDenoiser, Posterior
from theory.gaussian import GaussianDenoiser
from theory.local import LocalPatchDenoiser
from theory.mixture import GMMDenoiser

__all__ = ["AmbientDenoiser", "Denoiser", "EmpiricalDenoiser", "GMMDenoiser", "GaussianDenoiser",
           "LocalPatchDenoiser", "Posterior"]
