"""CPU smoke run of the whole image track through the CLI: train (28x28, tiny U-Net), resume, eval, paired, bench."""
from __future__ import annotations

import json

import pytest

from memdiff.cli import main

TINY = ["--channels", "8", "--channel-mult", "1,2", "--blocks", "1", "--attn", "14", "--dropout", "0",
        "--batch", "8", "--lr-warmup", "0", "--log-every", "1", "--no-progress", "--device", "cpu"]
EVAL = ["--num-samples", "8", "--sample-steps", "3", "--sample-batch", "4", "--features", "classifier",
        "--classifier-epochs", "1"]


@pytest.fixture
def fm(tmp_path, fake_fashion):
    return str(fake_fashion(tmp_path / "fm"))


def test_train_resume_eval(tmp_path, fm, capsys):
    run = tmp_path / "run"
    args = ["image", "train", "--data-path", fm, "--n", "24", "--loss", "ambient", "--sigma-n", "0.3", *TINY,
            "--out", str(run)]
    assert main([*args, "--steps", "2", "--ckpt-every", "1"]) == 0
    assert main([*args, "--steps", "4", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "trained to step 4" in out
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert main(["image", "eval", "--run", str(run), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *EVAL]) == 0
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert "CNN classifier" in report["features"] and report["num_samples"] == 8
    assert 0 <= report["summary"]["memorized_share"] <= 1 and report["fd"] >= 0
    assert (run / "eval" / "nearest.png").stat().st_size > 0 and (run / "eval" / "nearest.json").exists()


def test_paired_writes_one_json_and_one_figure(tmp_path, fm):
    out = tmp_path / "paired"
    assert main(["image", "paired", "--data-path", fm, "--n", "16", "--loss", "hybrid_ambient", "--sigma-n", "0.5", *TINY,
                 "--steps", "2", "--out", str(out), "--num-sigmas", "4", "--readout-items", "8",
                 "--cache-dir", str(tmp_path / "cache"), *EVAL[:-3], "pixels"]) == 0
    res = json.loads((out / "paired.json").read_text())
    r = res["readout"]
    assert len(r["sigma"]) == 4 and all(v >= 0 for v in r["ratio_raw"])
    assert all(v >= 0 or v != v for v in r["ratio"])  # calibrated r: NaN where the reference is not trusted
    assert res["ambient_readout"]["sigma"][0] > 0.5
    assert res["evaluation"]["features"] == "raw pixels"
    assert (out / "paired_figure.png").exists()


def test_bench_quick_on_cpu(tmp_path, capsys):
    assert main(["bench", "image", "--quick", "--variants", "fp32,bf16", "--out", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "no GPU" in out and "bf16" in out
    res = json.loads((tmp_path / "b.json").read_text())["results"]
    assert res["fp32"]["train_speedup"] == 1.0 and res["bf16"]["train_images_per_s"] > 0


def test_bench_at_the_grid_recipe(tmp_path, capsys):
    import torch

    from sims.artifacts import REPO_ROOT
    threads = torch.get_num_threads()  # the config's [run] threads would set this process's count
    args = ["bench", "image", "--config", str(REPO_ROOT / "configs" / "image_cpu.toml"), "--dataset", "fashion-mnist",
            "--variants", "fp32", "--warmup", "1", "--steps", "2", "--rounds", "2", "--sample-batch", "2",
            "--threads", str(threads), "--out", str(tmp_path / "b.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist 14x14; batch 64" in out and "CPU time" in out and "cell min" in out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["grid"]["dataset"] == "fashion14" and res["grid"]["steps"] == 3000 and res["sample_steps"] == 18
    assert res["unet"]["model_channels"] == 32 and res["unet"]["channel_mult"] == [1, 2] and res["batch"] == 64
    fp32 = res["results"]["fp32"]
    assert fp32["cpu_step_ms"] > 0 and fp32["cell_s"] > 0 and fp32["rounds"] == 2 and len(res["raw"]["fp32"]) == 2
    assert torch.get_num_threads() == threads
