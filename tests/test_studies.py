from pathlib import Path

import pytest
import yaml

from wscl.config import ConfigError
from wscl.studies import RunKey, Study

PAPER = yaml.safe_load((Path(__file__).parents[1] / "config/paper.yaml").read_text())


def test_buffer_free_preset_runs_once_per_benchmark_at_buffer_zero():
    runs = list(Study(PAPER).runs())
    wake_rem = [r for r in runs if r.preset == "wake_rem"]
    assert {r.buffer for r in wake_rem} == {0} and len(wake_rem) == 4 * 5
    assert len(runs) == len(set(runs))


def test_overrides_apply_in_order_to_matching_runs_only():
    study = Study(PAPER)
    lr = lambda b, buf, m: study.trainer_config(RunKey(b, buf, m, "base", 0))["training"]["lr"]  # noqa: E731
    assert lr("seq-cifar10", 200, "er") == 0.1
    assert lr("seq-tinyimg-half", 500, "er") == 0.03 and lr("seq-tinyimg-half", 200, "er") == 0.1
    assert lr("seq-cifar10", 200, "er_ace") == 0.03
    derpp = study.trainer_config(RunKey("seq-tinyimg-half", 200, "derpp", "full", 1))["training"]["derpp"]
    assert derpp == {"alpha": 0.1, "beta": 1.0}
    fg = study.trainer_config(RunKey("seq-fg-imagenet", 1000, "derpp", "full", 1))
    assert fg["training"]["derpp"] == {"alpha": 0.2, "beta": 0.5} and fg["training"]["batch_size"] == 8
    assert fg["scenario"]["n_tasks"] == 20 and fg["training"]["buffer_size"] == 1000 and fg["seed"] == 1


def test_preset_controlled_settings_are_refused_in_study_wide_sections():
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    config["trainer"]["wscl"]["nrem"] = {"enabled": True}
    with pytest.raises(ConfigError, match=r"trainer sets wscl.nrem.enabled, which the presets control"):
        Study(config)


def test_bad_trainer_setting_is_reported_at_planning_time():
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    config["benchmarks"]["seq-cifar10"]["trainer"]["model"] = {"widht": 8}
    with pytest.raises(ConfigError, match=r"model.widht.*did you mean 'model.width'"):
        Study(config).trainer_config(RunKey("seq-cifar10", 200, "er", "base", 0))
