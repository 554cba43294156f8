import dataclasses

import pytest

from wscl.cli import main
from wscl.core.errors import ExitCode, NonFiniteLossError
from wscl.method.learners.er_ace import ERACE
from wscl.run.trainer import Run
from wscl.settings.config import ConfigError, resolve


def test_unknown_key_names_the_key_and_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'training.lrr'.*did you mean 'training.lr'"):
        resolve({"training": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"'wscl.plastcity'.*did you mean 'wscl.plasticity'"):
        resolve({"wscl": {"plastcity": {}}})


def test_bad_values_name_the_allowed_range_or_choices():
    with pytest.raises(ConfigError, match=r"training.lr=-1.*allowed range is \[0.0, 10.0\]"):
        resolve({"training": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"training.method='sgd'.*choose one of er, er_ace, derpp"):
        resolve({"training": {"method": "sgd"}})
    with pytest.raises(ConfigError, match=r"training.epochs=1.5 must be a whole number"):
        resolve({"training": {"epochs": 1.5}})
    with pytest.raises(ConfigError, match=r"strengthen_frac \+ wscl.plasticity.weaken_frac must not exceed 1.0"):
        resolve({"wscl": {"plasticity": {"strengthen_frac": 0.6, "weaken_frac": 0.6}}})


def test_explicit_settings_beat_the_preset():
    cfg = resolve({"preset": "base", "wscl": {"nrem": {"enabled": True}}})
    assert cfg.wscl.nrem.enabled is True and cfg.wscl.freezing.enabled is False


def test_cli_exits_nonzero_with_the_message(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--set", "training.bach_size=8"])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG and "training.bach_size" in err and "training.batch_size" in err
    assert not (tmp_path / "metrics.json").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    assert main(["train", "--out", str(tmp_path), "--config", str(bad)]) == ExitCode.CONFIG
    assert "not valid YAML" in capsys.readouterr().err


def test_nan_loss_stops_with_task_epoch_and_step(tiny, tmp_path, monkeypatch):
    original = ERACE.loss
    calls = {"n": 0}

    def nan_at_step_5_of_task_1(self, inputs, labels, replays):
        loss, out = original(self, inputs, labels, replays)
        if self.task == 1:
            calls["n"] += 1
            if calls["n"] == 6:  # one loss per step (base: no trial copies): the sixth is step 5's
                loss = loss * float("nan")
        return loss, out

    monkeypatch.setattr(ERACE, "loss", nan_at_step_5_of_task_1)
    cfg = tiny(preset="base")
    with pytest.raises(NonFiniteLossError, match=r"at task 1, epoch 0, step 5"):
        Run(cfg, tmp_path, quiet=True, log=lambda *_: None).run()
    # Task 0 finished and is kept: a rerun resumes after it.
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_nan_loss_from_cli_exits_nonzero_naming_where(tmp_path, capsys, monkeypatch):
    original = ERACE.loss

    def nan_loss(self, inputs, labels, replays):
        loss, out = original(self, inputs, labels, replays)
        return loss * float("nan"), out

    monkeypatch.setattr(ERACE, "loss", nan_loss)
    code = main(["train", "--out", str(tmp_path), "--quiet", "--preset", "base", "--set", "runtime.device=cpu"])
    err = capsys.readouterr().err
    assert code == ExitCode.TRAINING_FAILED
    assert "non-finite loss (nan) at task 0, epoch 0, step 0" in err and "training.lr" in err


def test_layers_apply_in_their_kinds_order_and_each_is_named_in_its_message():
    from wscl.settings.config import Layer, build
    later_first = [Layer("set", {"training": {"lr": 0.2}}, "--set"), Layer("study", {"training": {"lr": 0.05}}, "s")]
    assert build(later_first).training.lr == 0.2  # --set beats the study whatever the list's order
    with pytest.raises(ConfigError, match=r"^config file x.yaml: unknown config key 'training.lrr'"):
        build([Layer("config file", {"training": {"lrr": 0.1}}, "config file x.yaml")])
    with pytest.raises(ValueError, match="declarations' own"):
        build([Layer("preset", {"scenario": {"n_tasks": 4}})])
    with pytest.raises(dataclasses.FrozenInstanceError):
        build([]).training.lr = 1.0
