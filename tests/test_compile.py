"""Compiled training steps (``runtime.compile``): a whole run with the freezing trial, NREM and staged REM
compiles a bounded number of times with no graph break, learns, stays close to eager for its first steps,
and records how it ran; the steady wake step waits for the device nowhere."""
import copy
import os

import pytest
import torch

from wscl.method import backbone
from wscl.method.backbone import RECOMPILE_LIMIT, ResNet18
from wscl.run.speed_overhead import count_per_step, phase_steps
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
    # (N_FREEZABLE_BLOCKS + 1 of each) and per batch size (a full and a short one): nothing recompiles per step.
    phases = {e["phase"] for t in metrics["tasks"] for e in t["dynamics"]}
    assert {"freezing_trial", "nrem", "rem"} <= phases
    steps = sum(e["steps"] for t in metrics["tasks"] for e in t["dynamics"])
    bound = 2 * 2 * (ResNet18.N_FREEZABLE_BLOCKS + 1)
    assert 2 <= record["frames_compiled"] <= bound < RECOMPILE_LIMIT and bound < steps


def test_a_second_run_in_the_same_process_compiles_nothing_and_repeats_the_first(tiny, tmp_path, dynamo_only):
    # Static graphs, one per batch size: the graphs of a run do not depend on what the process compiled before.
    first = Run(tiny(**WHOLE_RUN), tmp_path / "first", quiet=True, log=lambda *_: None).run()
    again = Run(tiny(**WHOLE_RUN), tmp_path / "again", quiet=True, log=lambda *_: None).run()
    assert first["compile"]["frames_compiled"] >= 2 and again["compile"]["frames_compiled"] == 0
    assert again["class_il"] == first["class_il"] and again["task_il"] == first["task_il"]


@pytest.fixture
def fresh_compiler(monkeypatch):
    """Nothing compiled before the test, and nothing it compiled left for the next."""
    torch._dynamo.reset()
    monkeypatch.setattr(backbone, "_COMPILED", {})
    yield
    torch._dynamo.reset()


def test_a_compiled_wake_step_computes_eagers_gradients_at_every_batch_size(tiny, tmp_path, fresh_compiler):
    # A full batch, then a short one (a task's last): the second is where dynamo's default would turn the
    # batch size symbolic, and such graphs gave gradients 3% off eager's (wscl/method/backbone.py).
    run = Run(tiny(**PLAIN_RUN, runtime={"compile": True, "bf16": False}), tmp_path, quiet=True, log=lambda *_: None)
    gradients = {}
    for name in ("compiled", "eager"):
        learner = copy.deepcopy(run.learner)
        learner.net.compile_mode = learner.net.compile_mode if name == "compiled" else None
        for group in learner.opt.param_groups:
            group["lr"] = 0.0  # the weights stay put: each step's gradients are compared from the same ones
        torch.manual_seed(0)
        gradients[name] = []
        for batch in (16, 12):
            phase_steps(learner, batch, run.scenario.n_heads, torch.Generator().manual_seed(0))["wake"]()
            gradients[name] += [p.grad.clone() for p in learner.net.parameters()]
    for compiled, eager in zip(gradients["compiled"], gradients["eager"], strict=True):
        assert (compiled - eager).norm() <= 1e-4 * eager.norm() + 1e-8


def test_a_compiled_run_learns_and_its_first_steps_stay_close_to_eager(tiny, tmp_path):
    cfg = tiny(**PLAIN_RUN, runtime={"compile": True, "bf16": False})  # fp32: the tolerance is fp32's
    run = Run(cfg, tmp_path / "compiled", quiet=True, log=lambda *_: None)
    # The first steps, compiled and eager, from the same weights on the same batches: fused kernels round
    # differently, by about 1e-6 (relative) at the first step; SGD then carries the difference along
    # (docs/method.md, Compiled steps).
    eager = copy.deepcopy(run.learner)
    eager.net.compile_mode = None
    losses = {}
    for name, learner in (("compiled", run.learner), ("eager", copy.deepcopy(eager))):
        learner = copy.deepcopy(learner) if name == "compiled" else learner
        torch.manual_seed(0)  # the same random batches for both
        steps = phase_steps(learner, 16, run.scenario.n_heads, torch.Generator().manual_seed(0))
        losses[name] = [float(steps["wake"]()) for _ in range(3)]
    assert losses["compiled"][0] == pytest.approx(losses["eager"][0], rel=1e-5)
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)
    compiled = run.run()
    assert compiled["compile"]["mode"] == "default" and compiled["compile"]["graph_breaks"] == 0
    assert 1 <= compiled["compile"]["frames_compiled"] <= 2  # one batch shape: one graph (and its recompile)
    assert compiled["task_il"]["final_avg_acc"] > 50 + 15  # Task-IL chance is 50% with 2 classes per task


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


def test_compiled_code_is_shared_only_between_runs_on_the_same_cpu_kernels():
    """Code compiled for AVX-512 kernels, reused under AVX2 ones, gave NaN losses: one cache folder per kind."""
    import subprocess
    import sys
    probe = "from wscl.settings.runtime import compiled_code_folder; print(compiled_code_folder().name)"
    names = {kind: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                  env={**os.environ, "ATEN_CPU_CAPABILITY": kind}).stdout.strip()
             for kind in ("default", "avx2")}
    assert names["avx2"].endswith("-avx2") and names["default"] != names["avx2"]
    assert torch.__version__ in names["avx2"]
