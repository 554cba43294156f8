"""The speed-ups of the freezing trial and of evaluation change no number (CPU, bit for bit)."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import wscl.method.freezing as freezing
from wscl.method.evaluation import measure_layouts
from wscl.method.failures import Where
from wscl.method.freezing import TrialSpec, candidate_depths, run_trial, score
from wscl.method.wake import LossMonitor, Trainee, plan_epoch, run_epoch, step_losses
from wscl.run.speed import CLASSES_PER_TASK
from wscl.run.speed_e2e import SIZES, TASKS, run_end_to_end
from wscl.run.trainer import Run, seeds_for


def sequential_trial(learner, pool, plan, spec):
    """The trial as first written: each copy trains its whole epoch alone, from the input image."""
    depths, scores, copies = [], [], []
    for depth in candidate_depths(learner):
        candidate = copy.deepcopy(learner)
        candidate.freeze_through(depth)
        generator = torch.Generator(device=pool.device).manual_seed(spec.generator_seed)
        monitor = LossMonitor(step_losses(len(plan.steps), pool.device), spec.checks, spec.where)
        run_epoch(Trainee(candidate, generator, monitor), pool, plan)
        scores.append(score(candidate, spec))
        depths.append(depth)
        copies.append(candidate)
    return depths, scores, copies


def trial_inputs(run: Run, t: int, frozen: int):
    """The state a trial of task ``t`` starts from, after training task 0 for real."""
    run.task(0)
    run.learner.freeze_through(frozen)
    run.learner.task = t
    run.assign_heads(t, seeds_for(0, t)[1])
    pool = run.task_pool(t)
    rng, seed = seeds_for(run.cfg.seed, t)
    plan = plan_epoch(run.learner, pool, 16, 16, rng)
    def held_out(rows):
        return freezing.held_out(rows, run.train_y, run.book, run.device)

    spec = TrialSpec(run.train_source, held_out(run.scenario.val_idx[t]), held_out(run.scenario.freeze_idx[t - 1]),
                     "training_and_buff", run.reference, 16, seed + 7919, run.loss_checks, Where(t, 0))
    return pool, plan, spec


def state_of(learner) -> dict:
    return {**{f"net.{k}": v for k, v in learner.net.state_dict().items()},
            **{f"memory.{k}": v for k, v in learner.memory.state_dict().items() if torch.is_tensor(v)}}


@pytest.mark.parametrize("method,fidelity,frozen", [("er_ace", "reference", 0), ("er", "reference", 2),
                                                    ("derpp", "corrected", 1), ("er_ace", "corrected", 0)])
def test_shared_frozen_prefix_trains_every_copy_bit_for_bit_as_alone(tiny, tmp_path, method, fidelity, frozen):
    run = Run(tiny(preset="authors", fidelity=fidelity, training={"method": method}), tmp_path, quiet=True,
              log=lambda *_: None)
    pool, plan, spec = trial_inputs(run, 1, frozen)
    depths, scores, copies = sequential_trial(copy.deepcopy(run.learner), pool, plan, spec)
    result = run_trial(run.learner, pool, plan, spec)
    assert result.depths == depths and result.scores == scores
    alone = copies[depths.index(result.chosen_depth)]
    mine, theirs = state_of(result.winner), state_of(alone)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert result.winner.memory.num_seen == alone.memory.num_seen
    assert type(result.winner.net).__name__ == "ResNet18"  # the trial's wrapper is gone


def test_copies_on_different_inputs_are_refused(tiny, tmp_path):
    run = Run(tiny(preset="authors"), tmp_path, quiet=True, log=lambda *_: None)
    tape = freezing.PrefixTape(run.learner.net, 2, verify=True)
    x = torch.randn(4, 3, 12, 12)
    tape.outputs(0, x)
    with pytest.raises(RuntimeError, match="diverged"):
        tape.outputs(0, x + 1)


def test_evaluation_logits_are_those_of_a_plain_batched_pass(tiny, tmp_path):
    run = Run(tiny(), tmp_path, quiet=True, log=lambda *_: None)
    net, tests = run.learner.net, run.tests
    net.eval()
    for task in range(run.scenario.n_tasks):
        rows, bs = tests.rows[task], tests.batch_size
        with torch.no_grad():
            expected = torch.cat([net(tests.preprocess(tests.source.take(rows[s: s + bs]), None, train=False))
                                  for s in range(0, len(rows), bs)])
        assert torch.equal(tests.logits(net, task), expected)
        assert torch.equal(run.random_logits[task], expected)  # nothing has trained yet


def test_reference_evaluates_in_the_training_layout_and_records_it(tiny, tmp_path):
    metrics = Run(tiny(), tmp_path, quiet=True, log=lambda *_: None).run()
    assert metrics["runtime"]["eval_memory_format"] == "contiguous"
    assert metrics["runtime"]["eval_batch_size"] == 256
    assert metrics["runtime"]["eval_layout_decided_by"].startswith("reference")


@pytest.mark.parametrize("training_channels_last", [False, True])
def test_measured_layout_is_the_fastest_candidate_by_a_margin_or_the_training_one(training_channels_last):
    from wscl.method.backbone import ResNet18
    from wscl.method.evaluation import SWITCH_MARGIN
    layout = measure_layouts(ResNet18(4, 3, 8), (3, 12, 12), ((0.5,) * 3, (0.2,) * 3), torch.device("cpu"), (8, 16),
                             training_channels_last)
    rates = layout.images_per_second
    assert set(rates) == {"contiguous/8", "contiguous/16", "channels_last/8", "channels_last/16"}
    default = f"{'channels_last' if training_channels_last else 'contiguous'}/8"
    best = max(rates, key=rates.get)
    expected = best if rates[best] >= SWITCH_MARGIN * rates[default] else default
    assert expected == f"{'channels_last' if layout.channels_last else 'contiguous'}/{layout.batch_size}"


def test_end_to_end_speed_reports_the_work_and_its_efficiency(tmp_path, capsys):
    torch.set_num_threads(2)
    out = tmp_path / "e2e.json"
    run_end_to_end(device="cpu", out=out, size="quick")
    saved = json.loads(out.read_text())
    assert [r["preset"] for r in saved["runs"]] == ["base", "authors"]
    for r in saved["runs"]:
        assert r["images_trained"] > 0 and r["images_inferred"] > 0
        required = (r["images_trained"] / r["bare_train_images_per_second"]
                    + r["images_inferred"] / r["bare_inference_images_per_second"])
        # the rates are saved rounded to 0.01 img/s: on a slow (busy) machine that moves the sums by up to 0.1%
        assert r["required_seconds"] == pytest.approx(required, rel=1e-3, abs=2e-3)
        assert r["protocol_efficiency"] == pytest.approx(required / r["wall_seconds"], rel=1e-3, abs=2e-3)
        assert sum(r["phase_seconds"].values()) == pytest.approx(r["wall_seconds"], abs=0.05)
        assert r["hardware_fraction"] == pytest.approx(r["bare_train_gflops"] / saved["matmul_gflops"], abs=2e-3)
    base, wscl = saved["runs"]
    assert wscl["images_trained"] > base["images_trained"]  # the trial's copies train too
    # Base infers each task's test images for the random network, before its training (t > 0) and after
    # every task from its own on; its heads are in class order (no assignment pass).
    per_task, T = CLASSES_PER_TASK * SIZES["quick"]["test_per_class"], TASKS
    assert base["images_inferred"] == per_task * (T + (T - 1) + T * (T + 1) // 2)
    assert saved["allocator_retains_freed_memory"] is False  # in-process: only the wscl command sets it
    assert all(r["minor_page_faults"] > 0 for r in saved["runs"])
    assert set(saved["process_exit_seconds"]) == {"run_cli", "main_only"}
    assert all(0 < secs < 60 for secs in saved["process_exit_seconds"].values())
    printed = capsys.readouterr().out
    assert "protocol efficiency" in printed and "exit of a training process" in printed


def test_a_training_image_is_counted_at_about_three_forward_passes():
    """The FLOP count behind hardware_fraction: the backward pass costs about twice the forward (the stem
    needs no input gradient), so a trained image is 2.9-3 times an inferred one."""
    from torch.utils.flop_counter import FlopCounterMode

    from wscl.method.backbone import ResNet18
    from wscl.run.speed_e2e import BATCH, SIZE, WIDTH, replay_step_flops_per_image
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        ResNet18(10, 3, WIDTH)(torch.randn(BATCH, 3, SIZE, SIZE))
    forward = counter.get_total_flops() / BATCH
    assert 2.9 * forward < replay_step_flops_per_image(10) <= 3.0 * forward


def test_train_without_a_tracking_uri_never_imports_mlflow(tmp_path):
    sets = ["runtime.device=cpu", "scenario.n_tasks=2", "dataset.synthetic.classes=4",
            "dataset.synthetic.train_per_class=30", "model.width=4", "training.epochs=1"]
    argv = ["train", "--dataset", "synthetic", "--preset", "base", "--quiet", "--out", str(tmp_path)]
    argv += [a for s in sets for a in ("--set", s)]
    code = f"import sys\nfrom wscl.cli import main\nmain({argv!r})\nsys.stderr.write(' '.join(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    loaded = set(done.stderr.split())
    assert "mlflow" not in loaded and "scipy.optimize" not in loaded
    assert np.isfinite(json.loads((tmp_path / "metrics.json").read_text())["class_il"]["final_avg_acc"])
