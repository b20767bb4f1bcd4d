"""Image-track tests share two busy CPU cores: one intra-op thread avoids oversubscription (10x faster here)."""
from __future__ import annotations

import torch

torch.set_num_threads(1)
