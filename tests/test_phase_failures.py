"""Every phase that changes weights checks what it produced (wscl/method/step.py): a failure injected into one
phase stops the run in that phase, naming the task, the phase and the setting to look at, and leaves no
metrics.json or model.pt behind."""
import pytest
import torch

import wscl.method.freezing as freezing
import wscl.method.nrem as nrem
import wscl.method.rem as rem
import wscl.run.trainer as trainer
from wscl.cli import main
from wscl.core.errors import ExitCode, NonFiniteLossError
from wscl.run.trainer import Run


def huge_classifier(net) -> None:
    """Finite weights whose outputs are not: the phase that made them must still be named."""
    with torch.no_grad():
        net.classifier.weight.fill_(3e38)


def poison(net) -> None:
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")


def after(module, name: str, task: int, damage, monkeypatch) -> None:
    """Run ``module.name`` as usual, then ``damage(learner)`` at the end of task ``task``'s call."""
    original = getattr(module, name)

    def damaged(*args, **kwargs):
        out = original(*args, **kwargs)
        night_or_learner = args[0]
        if getattr(night_or_learner, "task", task) == task:
            damage(night_or_learner)
        return out

    monkeypatch.setattr(module, name, damaged)


def run_until_failure(cfg, tmp_path) -> str:
    with pytest.raises(NonFiniteLossError) as failure:
        Run(cfg, tmp_path, quiet=True, log=lambda *_: None).run()
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model.pt").exists()
    return str(failure.value)


def test_wake_leaving_finite_but_overflowing_weights_is_caught_after_wake(tiny, tmp_path, monkeypatch):
    def wake_then_huge(ctx, *args):
        original(ctx, *args)
        if ctx.task == 1:
            huge_classifier(ctx.state.learner.net)

    original = trainer.wake_phase
    monkeypatch.setattr(trainer, "wake_phase", wake_then_huge)
    message = run_until_failure(tiny(preset="base"), tmp_path)
    assert "after wake of task 1" in message and "training.lr" in message


def test_a_freezing_copy_with_non_finite_weights_is_named(tiny, tmp_path, monkeypatch):
    original = freezing.train_copies

    def train_then_poison_copy_2(copies, *args, **kwargs):
        entries = original(copies, *args, **kwargs)
        poison(copies[2].net)
        return entries

    monkeypatch.setattr(freezing, "train_copies", train_then_poison_copy_2)
    message = run_until_failure(tiny(preset="full"), tmp_path)
    assert "after freezing trial (copy 2) of task 1" in message and "training.lr" in message


def test_nrem_diverging_is_caught_in_nrem_not_in_the_next_wake(tiny, tmp_path, monkeypatch):
    after(nrem, "replay_stm_ltm", 0, lambda night: poison(night.learner.net), monkeypatch)
    message = run_until_failure(tiny(preset="full"), tmp_path)
    assert "after NREM of task 0" in message and "wscl.nrem.epochs" in message


def test_a_non_finite_nrem_loss_names_the_nrem_epoch(tiny, tmp_path, monkeypatch):
    original = nrem.seen_heads_loss
    monkeypatch.setattr(nrem, "seen_heads_loss", lambda *args: original(*args) * float("nan"))
    message = run_until_failure(tiny(preset="full"), tmp_path)
    assert "at task 0, NREM epoch 0" in message and "wscl.nrem.epochs" in message


def test_plasticity_overflowing_the_weights_is_caught_in_the_last_task_too(tiny, tmp_path, monkeypatch):
    # the last task's sleep: before these checks, such a run ended with exit 0 and chance-level numbers
    original, calls = nrem.apply_plasticity, []

    def strengthen_then_overflow_in_task_2(importance, *args):
        report = original(importance, *args)
        calls.append(True)
        if len(calls) == 3:
            with torch.no_grad():
                importance.params["classifier.weight"].fill_(3e38)
        return report

    monkeypatch.setattr(nrem, "apply_plasticity", strengthen_then_overflow_in_task_2)
    message = run_until_failure(tiny(preset="full"), tmp_path)
    assert "after plasticity of task 2" in message and "wscl.plasticity.strengthen" in message


def test_non_finite_logits_entering_the_ltm_are_caught_at_the_merge(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(nrem, "stm_logits", lambda learner, raw: torch.full((len(raw), learner.n_heads), float("nan")))
    message = run_until_failure(tiny(preset="full", training={"method": "derpp"}), tmp_path)
    assert "STM->LTM merge of task 0" in message


def test_staged_rem_diverging_is_caught_in_staged_rem(tiny, tmp_path, monkeypatch):
    original = rem.dream_loss
    monkeypatch.setattr(rem, "dream_loss", lambda *args: original(*args) * float("nan"))
    cfg = tiny(preset="full", wscl={"rem": {"schedule": "staged", "epochs": 1}})
    message = run_until_failure(cfg, tmp_path)
    assert "at task 0, staged REM epoch 0" in message and "wscl.rem.epochs" in message


def test_a_phase_failure_ends_the_cli_with_exit_5_and_one_line(tmp_path, capsys, monkeypatch):
    after(nrem, "replay_stm_ltm", 0, lambda night: poison(night.learner.net), monkeypatch)
    code = main(["train", "--out", str(tmp_path), "--quiet", "--preset", "full", "--set", "runtime.device=cpu",
                 "--set", "scenario.n_tasks=2", "--set", "training.epochs=1"])
    err = capsys.readouterr().err
    assert code == ExitCode.TRAINING_FAILED == 5
    assert "after NREM of task 0" in err and "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model.pt").exists()
