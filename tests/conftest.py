"""Test-wide settings: one torch thread per test process. The tensors here are small, and on a 2-core machine
shared with other work, OpenMP's spinning threads make small ops up to 30x slower (measured on the sampler tests)."""
import torch

torch.set_num_threads(1)
