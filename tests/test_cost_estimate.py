"""scripts/cost_estimate.py: the paper grid's cost follows from the benchmark's measured JSON, or is labelled an
estimate from an assumed rate."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cost_estimate.py"


@pytest.fixture(scope="module")
def cost():
    spec = importlib.util.spec_from_file_location("cost_estimate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_estimate"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["cost_estimate"]


@pytest.fixture(scope="module")
def paper(cost):
    return {runs.name: runs for runs in cost.grid(SCRIPT.parents[1] / "config" / "paper.yaml")}


def bench_json(path: Path, image_size: int, images_trained: int = 10_000, wake: float = 10.0, base_wall: float = 15.0,
               wscl_wall: float = 30.0, width: int = 64) -> str:
    """A `wscl speed --end-to-end` JSON as it is saved (the keys the script reads, and more)."""
    def run(preset, wall, trained):
        return {"preset": preset, "method": "er_ace", "fidelity": "reference", "wall_seconds": wall,
                "phase_seconds": {"wake": wake if preset == "base" else 1.0, "eval": 1.0},
                "images_trained": trained, "images_inferred": 5_000,
                "phases": {"wake": {"images_per_second": trained / 2 / wake, "peak_memory_mb": 900.0}},
                "peak_device_memory_mb": 900.0}
    saved = {"setup": {"image": [3, image_size, image_size], "width": width, "tasks": 5, "batch": 32},
             "device": "NVIDIA H200", "runs": [run("base", base_wall, images_trained),
                                                run("authors", wscl_wall, 3 * images_trained)]}
    path.write_text(json.dumps(saved))
    return str(path)


def shares_json(path: Path, factors: dict, image_size: int = 32) -> str:
    batches = [{"k": k, "throughput_factor": f} for k, f in factors.items()]
    path.write_text(json.dumps({"setup": {"image": [3, image_size, image_size], "width": 64}, "label": "no_mps",
                                "batches": batches}))
    return str(path)


def test_the_grid_as_the_paper_runs_it(paper):
    cifar = paper["seq-cifar10"]
    assert cifar.count == 145 and (cifar.image_size, cifar.width) == (32, 64)
    # 2 buffers x 14 presets x 5 seeds with replay, 10 epochs of 50 000 images x 2; wake_rem has no buffer
    assert sorted(set(cifar.images)) == [500_000, 1_000_000] and cifar.images.count(500_000) == 5
    assert sum(not w for w in cifar.wscl) == 2 * 3 * 5  # base: 3 methods x 2 buffers x 5 seeds


def test_measured_hours_follow_from_the_json(cost, paper, tmp_path):
    bench = cost.read_bench(bench_json(tmp_path / "b.json", 32))
    assert (bench.rate, bench.overhead_base, bench.overhead_wscl) == (1000.0, 1.5, 3.0)
    [c] = cost.costs([paper["seq-cifar10"]], [bench], cost.sharing(4, None, None))
    assert c.source.startswith("measured at 32x32")
    wake_only = (140 * 1_000_000 + 5 * 500_000) / 1000 / 3600
    whole = (30 * 1_000_000 * 1.5 + 110 * 1_000_000 * 3.0 + 5 * 500_000 * 3.0) / 1000 / 3600
    assert c.gpu_hours == pytest.approx((wake_only, whole))
    assert c.per_run == pytest.approx((1_000_000 / 1000 / 3600, 1_000_000 * 3.0 / 1000 / 3600))
    # no gain assumed from sharing: K = 4 runs on one GPU each take 4 times as long
    assert c.factor == 1.0 and c.job_at_k == pytest.approx(tuple(4 * h for h in c.per_run))
    assert c.wall(1) == pytest.approx(c.gpu_hours)


def test_doubling_the_measured_rate_halves_every_figure(cost, paper, tmp_path):
    share = cost.sharing(4, None, None)
    runs, b32, b256 = list(paper.values()), (tmp_path / "32.json"), tmp_path / "256.json"
    slow = cost.costs(runs, [cost.read_bench(bench_json(b32, 32)), cost.read_bench(bench_json(b256, 256))], share)
    fast = cost.costs(runs, [cost.read_bench(bench_json(b32, 32, images_trained=20_000)),
                             cost.read_bench(bench_json(b256, 256, wake=5.0, base_wall=7.5, wscl_wall=15.0))],
                      share)
    for s, f in zip(slow, fast):
        assert f.gpu_hours == pytest.approx(tuple(h / 2 for h in s.gpu_hours))
        assert f.wall(8) == pytest.approx(tuple(h / 2 for h in s.wall(8)))


def test_a_resolution_not_measured_is_scaled_by_multiply_accumulates(cost, paper, tmp_path):
    benches = [cost.read_bench(bench_json(tmp_path / "32.json", 32)),
               cost.read_bench(bench_json(tmp_path / "256.json", 256, images_trained=200))]
    tiny, fg = cost.costs([paper["seq-tinyimg-half"], paper["seq-fg-imagenet"]], benches, cost.sharing(1, None, None))
    assert fg.source.startswith("measured at 256x256") and fg.rate == 20.0
    assert tiny.source.startswith("scaled from 32x32")  # 64x64 is nearer to 32 than to 256
    assert tiny.rate == pytest.approx(1000.0 * cost.forward_macs(32) / cost.forward_macs(64))


def test_a_measured_sharing_factor_applies_at_its_resolution(cost, paper, tmp_path):
    bench = [cost.read_bench(bench_json(tmp_path / "32.json", 32))]
    runs = [paper["seq-cifar10"], paper["seq-fg-imagenet"]]
    share = cost.sharing(4, shares_json(tmp_path / "shares.json", {1: 1.0, 2: 1.6, 4: 2.5}), None)
    cifar, fg = cost.costs(runs, bench, share)
    assert (cifar.factor, fg.factor) == (2.5, 1.0)
    assert cifar.shared_gpu_hours == pytest.approx(tuple(h / 2.5 for h in cifar.gpu_hours))
    assert cifar.job_at_k == pytest.approx(tuple(h * 4 / 2.5 for h in cifar.per_run))
    assert cost.sharing(4, None, 3.0).factor_at(256) == 3.0


def test_the_script_prints_the_measured_table(cost, tmp_path, capsys):
    files = [bench_json(tmp_path / "32.json", 32), bench_json(tmp_path / "256.json", 256, images_trained=200)]
    assert cost.main(["--bench", *files, "--speedup-per-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GPU cost of config/paper.yaml, measured")
    assert "| seq-cifar10 | 145 | 500,000 or 1,000,000 | 1,000 | measured at 32x32, width 64 |" in out
    wake_only, whole = (140e6 + 2.5e6) / 1000 / 3600, (45e6 + 330e6 + 7.5e6) / 1000 / 3600
    assert f"| {wake_only:.0f}–{whole:.0f} h | 2.00 |" in out
    assert "wall on 1 GPU, K = 4 | wall on 8 GPUs, K = 4 |" in out


def test_without_measurements_the_estimate_says_so(cost, capsys):
    assert cost.main(["--gpu-tflops", "30"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "GPU cost of config/paper.yaml: estimated (assumed 30 TFLOP/s), not measured"
    assert out.splitlines()[-1].startswith("| all | 580 | | 747 |")  # 1 494 GPU-hours at 15 TFLOP/s
