"""Derived seeds: every random stream in memdiff is a pure function of a few integers (run seed, step,
item index, ...), so it is identical across epochs, runs, processes and resumes. The one home of seeding
for every layer (``theory`` is the lowest, so the engine and both tracks import it from here).

Theory: docs/THEORY.md §7.4."""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure, well-mixed function of the non-negative integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded by ``derive_seed(*parts)`` (independent streams per tuple of parts)."""
    return torch.Generator().manual_seed(derive_seed(*parts))
