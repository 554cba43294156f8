"""Compiled training steps (``runtime.compile``): a whole run with the freezing trial, NREM and staged REM
compiles a bounded number of times with no graph break, learns, stays close to eager for its first steps,
and records how it ran; the steady wake step waits for the device nowhere."""
import pytest
import torch

from wscl.method.backbone import RECOMPILE_LIMIT
from wscl.run.bench_overhead import count_per_step, phase_steps
from wscl.run.trainer import Run
from wscl.settings.runtime import resolve_runtime

WHOLE_RUN = {"preset": "full", "fidelity": "corrected", "scenario": {"n_tasks": 2},
             "wscl": {"rem": {"schedule": "staged", "epochs": 1}}, "training": {"epochs": 1}}


@pytest.fixture(scope="module")
def compiled_and_eager(tmp_path_factory):
    """The same tiny run (freezing trial, NREM, plasticity, staged REM), compiled (inductor) and eager."""
    from conftest import tiny_config
    runs = {}
    for name, switch in (("compiled", True), ("eager", False)):
        cfg = tiny_config(**WHOLE_RUN, runtime={"compile": switch})
        runs[name] = Run(cfg, tmp_path_factory.mktemp(name), quiet=True, log=lambda *_: None).run()
    return runs


def test_a_whole_compiled_run_compiles_a_bounded_number_of_times_without_graph_breaks(compiled_and_eager):
    record = compiled_and_eager["compiled"]["compile"]
    assert record["mode"] == "default"  # inductor on a CPU; CUDA graphs are for a GPU
    assert record["graph_breaks"] == 0
    # Variants: per frozen depth (requires_grad pattern) or trial suffix (where a copy starts), a static
    # then a dynamic batch size. Nothing recompiles per step: the count stays far below the steps run.
    steps = sum(e["steps"] for t in compiled_and_eager["compiled"]["tasks"] for e in t["dynamics"])
    assert 1 <= record["frames_compiled"] <= 3 * (8 + 1) < RECOMPILE_LIMIT
    assert record["frames_compiled"] < steps / 4
    assert compiled_and_eager["eager"]["compile"] == {"mode": None, "frames_compiled": 0, "graphs": 0,
                                                      "graph_breaks": 0}


def test_a_compiled_run_learns_and_stays_close_to_eager_at_first(compiled_and_eager):
    compiled, eager = compiled_and_eager["compiled"], compiled_and_eager["eager"]
    assert compiled["task_il"]["final_avg_acc"] > 50 + 15  # Task-IL chance is 50% with 2 classes per task
    # Fused kernels round differently: the first epoch's mean loss agrees to 1e-3 (relative); later numbers
    # drift apart as any two float orders do (docs/performance.md, Compiled steps).
    first = [t["dynamics"][0]["mean_loss"] for t in (compiled["tasks"][0], eager["tasks"][0])]
    assert first[0] == pytest.approx(first[1], rel=1e-3)


def test_runtime_compile_auto_is_off_on_a_cpu_and_for_reference_runs(tiny):
    assert resolve_runtime(tiny(fidelity="corrected")).compile is False  # measured: not worth it on a CPU
    assert resolve_runtime(tiny(fidelity="reference", runtime={"compile": True})).compile_mode == "default"
    assert resolve_runtime(tiny(runtime={"compile": True, "cuda_graphs": True})).cuda_graphs is False  # CPU


@pytest.mark.parametrize("phase", ["wake", "nrem", "rem"])
def test_the_steady_training_steps_never_wait_for_the_device(tiny, tmp_path, phase):
    run = Run(tiny(), tmp_path, quiet=True, log=lambda *_: None)
    steps = phase_steps(run.learner, 16, run.scenario.n_heads, torch.Generator().manual_seed(0))
    steps[phase]()  # warm-up
    counts = count_per_step(steps[phase], 3)
    assert counts["host_syncs_per_step"] == 0 and counts["aten_ops_per_step"] > 50
    assert count_per_step(lambda: steps[phase]().item(), 3)["host_syncs_per_step"] >= 1  # a read is counted
