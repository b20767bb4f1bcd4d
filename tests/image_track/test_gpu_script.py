"""The prepared GPU experiment script runs end to end on CPU with a tiny U-Net (so a lent GPU's minutes go
to the experiment, not to debugging the script)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "image_track" / "gpu_experiment.sh"
TINY = ("--channels 8 --channel-mult 1,2 --blocks 1 --attn 14 --dropout 0 --batch 8 --lr-warmup 0 --no-progress "
        "--device cpu --num-sigmas 3 --readout-items 8 --num-samples 8 --sample-steps 3 --sample-batch 4 "
        "--features pixels")


def test_gpu_experiment_script_runs_tiny_on_cpu(tmp_path, fake_fashion):
    data = fake_fashion(tmp_path / "fm")
    env = {**os.environ, "DATA": str(data), "OUT": str(tmp_path / "gpu"), "STEPS": "2", "NS": "16", "BENCH": "0",
           "FLAGS": TINY, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=SCRIPT.parents[1], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "gpu" / "summary.jsonl").read_text().splitlines()]
    assert [(r["loss"], r["n"]) for r in lines] == [("edm", 16), ("hybrid_ambient", 16)]
    assert all(0 <= r["memorized_share"] <= 1 for r in lines)
    assert (tmp_path / "gpu" / "hybrid_ambient_n16" / "paired_figure.png").exists()
