"""Multi-process training (torchrun, 2 ranks, gloo on CPU) equals one process on the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from image_track.train import ImageRun, RUN_FILE, build_denoiser

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_ranks_match_one_process(tmp_path, fake_fashion):
    data = fake_fashion(tmp_path / "fm")
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
          str(tmp_path / "ddp"), str(data)])
    _run([sys.executable, str(WORKER), str(tmp_path / "single"), str(data)])
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    one = torch.load(tmp_path / "single" / "rank0.pt")
    assert r0["world"] == r1["world"] == 2 and one["world"] == 1
    run = ImageRun.from_dict(json.loads((tmp_path / "single" / "run" / RUN_FILE).read_text()))
    init = build_denoiser(run).state_dict()
    assert sum(not torch.equal(one["model"][k], init[k]) for k in init) > len(init) // 2  # training moved the weights
    for key in one["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key  # replicas identical
        torch.testing.assert_close(r0["model"][key], one["model"][key], rtol=1e-5, atol=1e-6)  # = one process
        torch.testing.assert_close(r0["ema"][key], one["ema"][key], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "ddp" / "run" / "checkpoint.pt").exists() and (tmp_path / "ddp" / "run" / "log.jsonl").exists()
