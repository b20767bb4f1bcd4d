"""Derived seeds: every random stream in memdiff is a pure function of a few integers (run seed, step,
item index, ...), so it is identical across epochs, runs, processes and resumes."""
from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure, well-mixed function of the non-negative integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))
