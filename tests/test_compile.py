"""Compiled training steps (``runtime.compile``): a whole run with the freezing trial, NREM and staged REM
compiles a bounded number of times with no graph break, learns, stays close to eager for its first steps,
and records how it ran; the steady wake step waits for the device nowhere."""
import pytest
import torch

from wscl.method import backbone
from wscl.method.backbone import RECOMPILE_LIMIT, ResNet18
from wscl.run.bench_overhead import count_per_step, phase_steps
from wscl.run.trainer import Run
from wscl.settings.runtime import resolve_runtime

WHOLE_RUN = {"preset": "full", "fidelity": "corrected", "scenario": {"n_tasks": 2},
             "wscl": {"rem": {"schedule": "staged", "epochs": 1}}, "training": {"epochs": 1},
             "runtime": {"compile": True}}
# Base ER-ACE over 2 tasks of 144 training images in batches of 16: one batch shape, so inductor compiles the
# training step once (ER-ACE replays from task 1 on, when the buffer already holds more than a batch).
PLAIN_RUN = {"preset": "base", "fidelity": "corrected", "scenario": {"n_tasks": 2}}


@pytest.fixture
def dynamo_only(monkeypatch):
    """torch.compile with dynamo's ``eager`` backend: the same graphs, graph breaks and recompiles as inductor
    (dynamo decides them before any backend runs), without inductor's code generation, which takes minutes on
    a 2-core CPU for the many variants of a whole WSCL run."""
    torch._dynamo.reset()
    monkeypatch.setattr(backbone, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(backbone, "_COMPILED", {})
    yield
    torch._dynamo.reset()


def test_a_whole_compiled_run_compiles_a_bounded_number_of_times_without_graph_breaks(tiny, tmp_path, dynamo_only):
    metrics = Run(tiny(**WHOLE_RUN), tmp_path, quiet=True, log=lambda *_: None).run()
    record = metrics["compile"]
    assert record["mode"] == "default" and record["graph_breaks"] == 0
    # Variants: per frozen depth (which parameters need gradients) and per block a trial copy starts from
    # (N_FREEZABLE_BLOCKS + 1 of each), a static then a dynamic batch size: nothing recompiles per step.
    phases = {e["phase"] for t in metrics["tasks"] for e in t["dynamics"]}
    assert {"freezing_trial", "nrem", "rem"} <= phases
    steps = sum(e["steps"] for t in metrics["tasks"] for e in t["dynamics"])
    bound = 2 * 2 * (ResNet18.N_FREEZABLE_BLOCKS + 1)
    assert 2 <= record["frames_compiled"] <= bound < RECOMPILE_LIMIT and bound < steps


def test_a_compiled_run_learns_and_stays_close_to_eager_at_first(tiny, tmp_path):
    runs = {}
    for name, switch in (("compiled", True), ("eager", False)):
        cfg = tiny(**PLAIN_RUN, runtime={"compile": switch})
        runs[name] = Run(cfg, tmp_path / name, quiet=True, log=lambda *_: None).run()
    compiled, eager = runs["compiled"], runs["eager"]
    assert compiled["compile"]["mode"] == "default" and compiled["compile"]["graph_breaks"] == 0
    assert 1 <= compiled["compile"]["frames_compiled"] <= 2
    assert eager["compile"] == {"mode": None, "frames_compiled": 0, "graphs": 0, "graph_breaks": 0}
    assert compiled["task_il"]["final_avg_acc"] > 50 + 15  # Task-IL chance is 50% with 2 classes per task
    # Fused kernels round differently: the first epoch's mean loss agrees to 1e-3 (relative); later numbers
    # drift apart as any two float orders do (docs/method.md, Compiled steps).
    first = [run["tasks"][0]["dynamics"][0]["mean_loss"] for run in (compiled, eager)]
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
