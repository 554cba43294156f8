"""CUDA-only checks, run wherever CUDA is present (`make test-gpu` runs just these)."""
import json

import pytest
import torch

from wscl.run.trainer import Run

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")]


def cuda_run(tiny, tmp_path, **overrides):
    overrides["runtime"] = {"device": "cuda", **overrides.get("runtime", {})}
    return Run(tiny(**overrides), tmp_path, quiet=True, log=lambda *_: None).run()


def test_gpu_defaults_resolve_and_train_every_wscl(tiny, tmp_path):
    for preset in ("authors", "full"):
        for fidelity in ("reference", "corrected"):
            m = cuda_run(tiny, tmp_path / preset / fidelity, preset=preset, fidelity=fidelity,
                         runtime={"device": "cuda", "bf16": "auto", "channels_last": "auto"})
            assert m["runtime"]["channels_last"] is True
            assert m["runtime"]["deterministic"] is (fidelity == "reference")
            assert m["runtime"]["bf16"] is (fidelity == "corrected" and torch.cuda.is_bf16_supported(False))
            assert m["task_il"]["final_avg_acc"] > 60.0


def test_same_seed_same_numbers_on_cuda_under_reference(tiny, tmp_path):
    a = cuda_run(tiny, tmp_path / "a", preset="full")
    b = cuda_run(tiny, tmp_path / "b", preset="full")
    assert a["class_il"]["accuracy_matrix"] == b["class_il"]["accuracy_matrix"]


def test_resume_on_cuda_ends_with_the_uninterrupted_metrics(tiny, tmp_path, monkeypatch):
    from wscl.run import checkpoint
    whole = cuda_run(tiny, tmp_path / "whole", preset="full")
    cfg = tiny(preset="full", runtime={"device": "cuda"})
    first = Run(cfg, tmp_path / "part", quiet=True, log=lambda *_: None)
    original = checkpoint.save  # stop the run right after its first task's checkpoint

    def stop_after_first_task(*args):
        original(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", stop_after_first_task)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(checkpoint, "save", original)
    resumed = Run(cfg, tmp_path / "part", quiet=True, log=lambda *_: None).run()
    assert resumed["class_il"]["accuracy_matrix"] == whole["class_il"]["accuracy_matrix"]


def test_speed_runs_on_cuda(tmp_path):
    from wscl.run.speed import run_speed
    results = run_speed(device="cuda", out=tmp_path / "speed.json", steps=10)
    assert json.loads((tmp_path / "speed.json").read_text())["runs"] == results["runs"]
    assert all(r["trainer_images_per_second"] > 0 for r in results["runs"])
