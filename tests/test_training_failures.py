"""Training failures other than NaN are seen: an exploded loss and a collapsed network warn (or stop the run)
naming the task, epoch and step, and are recorded in metrics.json."""
import json
import math

import pytest
import torch

import wscl.method.learners as learners
import wscl.method.sleep as sleep
from wscl.cli import main
from wscl.core.errors import ExitCode, TrainingFailedError
from wscl.method.failures import collapsed_head, explosion_limit
from wscl.run.trainer import Run


def test_collapse_rule_is_one_head_taking_the_threshold_share():
    assert collapsed_head(torch.tensor([0, 96, 4, 0]), 4, 0.95) == (1, 0.96)
    assert collapsed_head(torch.tensor([0, 94, 6, 0]), 4, 0.95) is None
    assert collapsed_head(torch.tensor([50, 50, 0, 0]), 4, 0.95) is None
    assert collapsed_head(torch.tensor([60, 0]), 1, 0.95) is None  # one class seen: one head is right
    assert explosion_limit(6, 100.0) == pytest.approx(100 * math.log(6))


def collapse_after_task(task: int, monkeypatch):
    """Make the network predict head 0 for every image from the end of ``task`` on: the classifier's weights
    zeroed and its bias pointing at head 0, after the task's sleep phase (as a collapse would leave it)."""
    original = sleep.sleep_phase

    def sleep_then_collapse(night, state, *args):
        record = original(night, state, *args)
        if night.task == task:
            with torch.no_grad():
                state.learner.net.classifier.weight.zero_()
                state.learner.net.classifier.bias.copy_(torch.arange(state.learner.n_heads, 0, -1.0))
        return record

    monkeypatch.setattr(sleep, "sleep_phase", sleep_then_collapse)


def test_collapse_warns_and_is_recorded(tiny, tmp_path, monkeypatch):
    collapse_after_task(2, monkeypatch)
    lines = []
    m = Run(tiny(preset="base"), tmp_path, quiet=True, log=lines.append).run()
    # (a tiny run's earlier task may collapse on its own: docs/determinism.md; only task 2's is forced)
    forced = [f for f in m["training_failures"] if f["task"] == 2]
    assert forced == [{"kind": "collapsed", "task": 2, "head": 0, "share": 1.0, "threshold": 0.95}]
    assert m["tasks"][2]["training_failures"] == forced
    assert m["training_failures"] == [f for task in m["tasks"] for f in task["training_failures"]]
    assert any(line.startswith("warning: the network ends task 2 predicting head 0 for 100.0%") for line in lines)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["training_failures"] == m["training_failures"]


def test_collapse_stops_the_run_when_asked(tiny, tmp_path, monkeypatch):
    collapse_after_task(0, monkeypatch)
    cfg = tiny(preset="base", runtime={"on_training_failure": "stop"})
    with pytest.raises(TrainingFailedError, match=r"ends task 0 predicting head 0 .*on_training_failure=stop"):
        Run(cfg, tmp_path, quiet=True, log=lambda *_: None).run()
    assert not (tmp_path / "metrics.json").exists()


def explode_at(task: int, step_index: int, monkeypatch, excess: float = 1e4):
    """The step loss a learner reports at one step of ``task`` made large and finite (``excess`` added to the
    reported loss: the training stays as it was), once per learner (each freezing copy is a learner of its own)."""
    original = learners.Learner.observe
    fired = set()

    def exploded(self, raw, labels, sample_ids, step, generator):
        loss = original(self, raw, labels, sample_ids, step, generator)
        if self.task == task and step.index == step_index and id(self) not in fired:
            fired.add(id(self))
            loss = loss + excess
        return loss

    monkeypatch.setattr(learners.Learner, "observe", exploded)


def test_exploded_loss_warns_with_task_epoch_and_step(tiny, tmp_path, monkeypatch):
    explode_at(1, 5, monkeypatch)
    lines = []
    m = Run(tiny(preset="base"), tmp_path, quiet=True, log=lines.append).run()
    exploded = [f for f in m["training_failures"] if f["kind"] == "loss_exploded"]
    # reported once per epoch, at the exact step, though the losses are checked every 25 steps
    assert [(f["task"], f["epoch"], f["step"], f["freezing_copy"]) for f in exploded] == [(1, 0, 5, None)]
    assert exploded[0]["loss"] > exploded[0]["limit"] == pytest.approx(100 * math.log(6), rel=1e-6)
    assert any("training loss exploded" in line and "at task 1, epoch 0, step 5" in line for line in lines)


def test_exploded_loss_in_a_freezing_copy_names_the_copy(tiny, tmp_path, monkeypatch):
    explode_at(1, 3, monkeypatch)
    m = Run(tiny(preset="full"), tmp_path, quiet=True, log=lambda *_: None).run()
    copies = sorted(f["freezing_copy"] for f in m["training_failures"]
                    if f["kind"] == "loss_exploded" and f["freezing_copy"] is not None)
    assert copies == list(range(len(copies))) and len(copies) > 1  # every trial copy saw the same step


def test_exploded_loss_stops_from_the_cli_with_exit_5(tmp_path, capsys, monkeypatch):
    explode_at(0, 2, monkeypatch)
    code = main(["train", "--out", str(tmp_path), "--quiet", "--preset", "base", "--set", "runtime.device=cpu",
                 "--set", "runtime.on_training_failure=stop"])
    err = capsys.readouterr().err
    assert code == ExitCode.TRAINING_FAILED == 5
    assert "training loss exploded" in err and "at task 0, epoch 0, step 2" in err and "training.lr" in err
