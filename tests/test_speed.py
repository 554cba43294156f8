"""`wscl speed --end-to-end` at another width and image size: the settings in its JSON, per-phase rates."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from wscl.cli import main
from wscl.run import speed

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize("command", ["speed", "bench"])  # bench: the command's earlier name, still accepted
def test_speed_options_default_to_the_fixed_setup(command):
    from wscl.cli import COMMANDS, build_parser
    args = build_parser().parse_args([command, "--end-to-end"])
    assert (args.width, args.image_size, args.no_exit_probe) == (speed.WIDTH, speed.SIZE, False)
    assert COMMANDS[args.command] is COMMANDS["speed"]


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded 2-core machine, two spinning threads slow small convolutions 20-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_end_to_end_speed_at_a_small_width_and_image_size_records_them(tmp_path, capsys, monkeypatch, one_thread):
    out = tmp_path / "e2e.json"
    assert main(["speed", "--end-to-end", "--quick", "--device", "cpu", "--width", "8", "--image-size", "16",
                 "--no-exit-probe", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["setup"]["image"] == [3, 16, 16] and saved["setup"]["width"] == 8
    assert saved["setup"]["size"] == "quick"
    assert saved["process_exit_seconds"] is None
    assert [r["preset"] for r in saved["runs"]] == ["base", "authors"]
    for r in saved["runs"]:
        assert r["images_trained"] > 0 and r["wall_seconds"] > 0
        assert r["phases"]["wake"]["images_per_second"] > 0
        assert all(p["peak_memory_mb"] is None for p in r["phases"].values())  # the CPU has no device memory
        assert r["peak_device_memory_mb"] is None
    assert "freezing_trial" in saved["runs"][1]["phases"]
    printed = capsys.readouterr().out
    assert "at width 8, 16x16" in printed and "not measured (--no-exit-probe)" in printed
    # the cost of the paper grid reads it: every benchmark scaled from the one resolution measured
    spec = importlib.util.spec_from_file_location("cost_estimate", SCRIPTS / "cost_estimate.py")
    cost = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cost_estimate", cost)
    spec.loader.exec_module(cost)
    assert cost.main(["--bench", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("GPU cost of config/paper.yaml, measured")
    assert table.count("| scaled from 16x16, width 8 by MACs") == 4


def test_the_bare_models_work_follows_width_and_image_size(one_thread):
    """Four times the pixels: four times the FLOPs of a trained image (all layers but the small classifier)."""
    from wscl.run.speed_e2e import replay_step_flops_per_image
    small, large = replay_step_flops_per_image(4, width=8, image_size=16), replay_step_flops_per_image(4, 8, 32)
    assert large / small == pytest.approx(4.0, rel=0.01)
