"""Run by test_ddp.py, under torchrun (2 ranks, gloo) or alone: a few image-track training steps, then each
rank saves its final weights to ``OUT/rank<r>.pt``. Usage: ``ddp_worker.py OUT FASHION_DIR``."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from image_track.train import ImageRun, init_distributed, train_image_model, unet_preset
from sims.training import TrainConfig

torch.set_num_threads(1)
out, data = Path(sys.argv[1]), sys.argv[2]
device = init_distributed()
run = ImageRun(dataset="fashion-mnist", data_path=data, n=32, loss="edm",
               unet=unet_preset("fashion-mnist", channels=8, channel_mult=(1, 2), blocks=1, attn=(14,), dropout=0.0),
               train=TrainConfig(steps=3, batch_size=8, micro_batch=2, lr=1e-3, ema_decay=0.5, xflip=True,
                                 device=device, out_dir=str(out / "run"), progress=False, log_every=1))
result = train_image_model(run, verbose=False)
rank = dist.get_rank() if dist.is_initialized() else 0
torch.save({"model": result.model.state_dict(), "ema": result.ema.state_dict(),
            "world": dist.get_world_size() if dist.is_initialized() else 1}, out / f"rank{rank}.pt")
if dist.is_initialized():
    dist.destroy_process_group()
