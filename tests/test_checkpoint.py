"""The checkpoint: the whole run state after every task, resumed only by the same configuration."""
import numpy as np
import pytest
import torch

from wscl.core.safe_io import atomic_torch_save
from wscl.run import checkpoint
from wscl.run.trainer import Run


def quiet(cfg, out, log=None) -> Run:
    return Run(cfg, out, quiet=True, log=log or (lambda *_: None))


def same(a, b) -> bool:
    """Deep equality of checkpoint states (tensors, arrays with NaN, nested containers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a.cpu(), b.cpu())
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return a == b


def test_a_checkpoint_restores_every_field_of_the_run_state(tiny, tmp_path):
    cfg = tiny(preset="full", training={"method": "derpp"}, scenario={"n_tasks": 2})
    done = quiet(cfg, tmp_path)
    done.run()
    fresh = quiet(cfg, tmp_path)
    assert not same(fresh.state.state_dict(), done.state.state_dict())
    assert checkpoint.restore(fresh.state, tmp_path / checkpoint.FILE_NAME, fresh.fingerprint, fresh.device)
    assert same(fresh.state.state_dict(), done.state.state_dict())
    assert fresh.state.next_task == 2 and len(fresh.state.history) == 2


def tasks_trained(monkeypatch) -> list[int]:
    trained, original = [], Run.task
    monkeypatch.setattr(Run, "task", lambda self, t, *rest: trained.append(t) or original(self, t, *rest))
    return trained


def test_the_same_configuration_resumes_after_the_last_checkpointed_task(tiny, tmp_path, monkeypatch):
    original = checkpoint.save

    def save_then_stop(*args):
        original(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    first = quiet(tiny(), tmp_path)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(checkpoint, "save", original)
    trained, log = tasks_trained(monkeypatch), []
    metrics = quiet(tiny(), tmp_path, log.append).run()
    assert trained == [1, 2] and any("resuming" in line and "after task 1" in line for line in log)
    # each task's seconds are its own across the resume: the first task keeps what the first process
    # measured, the later ones add up to the rest of the run's totals
    per_task = metrics["task_wall_seconds"]
    assert per_task[0] == first.state.history[0]["wall_seconds"]
    assert len(per_task) == 3 and all(seconds["wake"] > 0 for seconds in per_task)
    for phase in per_task[0]:
        assert sum(t[phase] for t in per_task) == pytest.approx(metrics["wall_seconds"][phase], abs=1e-3)


def test_a_checkpoint_without_per_task_seconds_leaves_the_later_ones_unknown(tiny, tmp_path, monkeypatch):
    """A checkpoint written before per-task seconds existed: the resumed tasks' seconds would include the
    earlier tasks' time, so they are reported as unknown instead."""
    original = checkpoint.save

    def save_without_task_seconds_then_stop(state, *args):
        for record in state.history:
            record.pop("wall_seconds", None)
        original(state, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_without_task_seconds_then_stop)
    with pytest.raises(KeyboardInterrupt):
        quiet(tiny(), tmp_path).run()
    monkeypatch.setattr(checkpoint, "save", original)
    assert quiet(tiny(), tmp_path).run()["task_wall_seconds"] == [None, None, None]


def test_a_checkpoint_of_another_configuration_is_not_resumed(tiny, tmp_path, monkeypatch):
    quiet(tiny(scenario={"n_tasks": 2}), tmp_path).run()
    other, log = quiet(tiny(scenario={"n_tasks": 2}, training={"lr": 0.05}), tmp_path), []
    untouched = other.state.state_dict()
    assert not checkpoint.restore(other.state, tmp_path / checkpoint.FILE_NAME, other.fingerprint, other.device,
                                  log.append)
    assert same(other.state.state_dict(), untouched) and "different configuration" in log[0]
    trained = tasks_trained(monkeypatch)
    other.run()
    assert trained == [0, 1]  # trains from its first task


def test_a_checkpoint_with_other_fields_is_not_resumed(tiny, tmp_path):
    run = quiet(tiny(scenario={"n_tasks": 2}), tmp_path)
    state = run.state.state_dict()
    del state["wake_steps"]  # as written by a version of the trainer without that field
    atomic_torch_save({"fingerprint": run.fingerprint, "state": state}, tmp_path / checkpoint.FILE_NAME, sealed=True)
    log = []
    assert not checkpoint.restore(run.state, tmp_path / checkpoint.FILE_NAME, run.fingerprint, run.device, log.append)
    assert "different configuration" in log[0]
